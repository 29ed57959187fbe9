/**
 * Process lifecycle: fork copies the fd table (sharing descriptions), threads share everything, execve drops
 * FD_CLOEXEC fds and mappings, exit releases every fd. Backends may deliver a child's first events before the
 * parent's fork event (different CPUs); such a child was discovered lazily and the fork event fills in what it
 * inherited without resurrecting fds it already closed.
 */
import { AT_FDCWD, type SyscallEvent } from '../trace/events.js';
import { identityOf } from './files.js';
import { O_CLOEXEC } from '../trace/linux.js';
import { endMappings } from './mmap.js';
import { newProcess, type Process } from './process.js';
import type { EngineState } from './state.js';

type Ev<K extends SyscallEvent['kind']> = Extract<SyscallEvent, { kind: K }>;

export function onFork(state: EngineState, ev: Ev<'fork'>): void {
  const parent = state.processFor(ev);
  if (ev.thread) {
    parent.threads.add(ev.childTid);
    return;
  }
  const existing = state.processes.get(ev.child);
  if (existing?.discovered) {
    inheritLate(state, parent, existing, ev.ts);
    return;
  }
  if (existing) exitProcess(state, existing, ev.ts); // pid reused: its exit was lost
  const child = newProcess(ev.child, parent.fds.clone(), false);
  child.ppid = parent.pid;
  child.cwd = parent.cwd;
  child.exe = parent.exe;
  child.argv = parent.argv;
  child.comm = parent.comm;
  child.uncertain = parent.uncertain;
  child.asyncUnseen = parent.asyncUnseen; // the ring or AIO context goes with the fds
  if (parent.attachedFds) child.attachedFds = new Map(parent.attachedFds);
  child.mappings = parent.mappings.map((mapping) => ({ ...mapping }));
  for (const [fd, entry] of child.fds.entriesOf()) {
    if (entry.file.file) entry.file.file.holder ??= { pid: child.pid, fd };
  }
  state.processes.set(child.pid, child);
  state.counters.processes++;
}

function inheritLate(state: EngineState, parent: Process, child: Process, ts: number): void {
  for (const [fd, entry] of parent.fds.entriesOf()) {
    if (child.fds.get(fd) || child.closedBeforeFork.has(fd)) continue;
    state.attach(child, fd, entry.file, entry.cloexec, ts);
  }
  child.discovered = false;
  child.closedBeforeFork.clear();
  child.ppid = parent.pid;
  child.cwd ??= parent.cwd;
}

export function onExec(state: EngineState, ev: Ev<'exec'>): void {
  if (ev.ret !== 0) return;
  const process = state.processFor(ev);
  // The kernel's own list (ebpf) beats our FD_CLOEXEC bookkeeping, which lost events or untraced fcntls can skew.
  const closing = ev.closedFds ?? [
    ...process.fds.fds().filter((fd) => process.fds.get(fd)?.cloexec),
    ...[...(process.attachedFds?.values() ?? [])].filter((seen) => ((seen.info?.flags ?? 0) & O_CLOEXEC) !== 0).map((seen) => seen.fd),
  ];
  for (const fd of closing) state.release(process, fd, 'exec', ev.ts);
  endMappings(state, process, 'exec', ev.ts);
  process.threads = new Set([process.pid]);
  process.exe = state.resolve(process, AT_FDCWD, ev.path, ev.ts) ?? ev.path;
  process.argv = ev.argv ?? (state.live ? state.inspector.cmdline(process.pid) : null);
}

export function onExit(state: EngineState, ev: Ev<'exit'>): void {
  const process = state.processes.get(ev.pid);
  if (!process) return;
  if (!ev.group) {
    process.threads.delete(ev.tid);
    if (process.threads.size > 0) return;
  }
  exitProcess(state, process, ev.ts);
}

export function exitProcess(state: EngineState, process: Process, ts: number): void {
  for (const fd of process.fds.fds()) state.release(process, fd, 'exit', ts);
  endMappings(state, process, 'exit', ts);
  for (const [file, io] of process.io) {
    if (io.writeBytes > 0 || io.copiesIn.size > 0 || io.recheck) state.hooks.onWritesFinished(state, process, file, ts, true);
  }
  state.processes.delete(process.pid);
}

export function onChdir(state: EngineState, ev: Ev<'chdir'>): void {
  if (ev.ret !== 0) return;
  const process = state.processFor(ev);
  const cwd = ev.truncated ? null : state.resolve(process, AT_FDCWD, ev.path, ev.ts, null, false);
  process.cwd = cwd ?? (state.live ? state.inspector.cwd(process.pid) : null);
  if (cwd === null) process.uncertain = `cwd unknown after chdir(${JSON.stringify(ev.path)})`;
  else if (ev.path.startsWith('/')) process.uncertain = undefined;
}

export function onFchdir(state: EngineState, ev: Ev<'fchdir'>): void {
  if (ev.ret !== 0) return;
  const process = state.processFor(ev);
  const path = state.directoryPath(process, ev.fd, ev.ts, identityOf(ev.ino, ev.dev));
  process.cwd = path ?? (state.live ? state.inspector.cwd(process.pid) : null);
}
