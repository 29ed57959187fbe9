/**
 * The ebpf backend: runs the generated bpftrace program and collects what it stores in its maps. For a command
 * target the command is started stopped (a shell that stops itself, then execs the command once bpftrace has
 * attached), so its first syscall is already traced and the exec that starts it is an event.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { TraceError } from '../errors.js';
import { exitStatusOf, monotonicNowNs, type SyscallEvent } from '../events.js';
import { LineSplitter } from '../lines.js';
import { OrderedRelease } from '../order.js';
import { LINGER_DEFAULT_MS, lingerText, type EbpfTuning, type EventSink, type RunningBackend, type TraceOptions, type TraceTarget } from '../session.js';
import {
  ensureTracefs, exitStatus, findExecutable, kernelInodeHasTimes, kernelIoUringTraceable, kernelStackBytes, lowerOwnCpuPriority, processState, processTree,
  requireCgroup, requireExecutable, requirePid, requireRoot, requireSyscallTracepoints,
} from '../system.js';
import { openMapNamed, type BpfMap } from './bpf.js';
import { Collector } from './collect.js';
import { STRING_BYTES, buildProgram, type ProgramFilter } from './program.js';
import { CgroupFollower, cgroupTreeIds } from './cgroup.js';

const STDERR_KEPT_BYTES = 16_384;
/** How often the tree under a cgroup target is scanned for new cgroups. */
const CGROUP_SCAN_MS = 250;
/** Linux's limit on one argument (MAX_ARG_STRLEN). */
const MAX_ARGUMENT_BYTES = 128 * 1024;
/** Pids or cgroup ids written into the program itself (16–30 bytes each); more go into its map once it runs. */
const SEEDED_PIDS_MAX = 256;

interface Wrapper {
  child: ChildProcess;
  exited: Promise<number | null>;
}

/** Starts `sh`, which stops itself; after SIGCONT it execs the command in its place (same pid, traced). */
async function startStopped(target: Extract<TraceTarget, { kind: 'command' }>): Promise<Wrapper> {
  if (target.argv.length === 0) throw new TraceError('the command to trace is empty');
  const env = target.env ?? process.env;
  // Resolved here so the shell does not try each PATH entry in turn (each try would be a traced exec).
  const program = findExecutable(target.argv[0], env.PATH, target.cwd) ?? target.argv[0];
  const child = spawn('/bin/sh', ['-c', 'kill -STOP $$ && exec "$@"', 'sky-trace', program, ...target.argv.slice(1)], {
    cwd: target.cwd,
    env,
    stdio: target.stdio ?? 'inherit',
  });
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code, signal) => resolve(exitStatus(code, signal)));
    child.once('error', () => resolve(null));
  });
  await waitStopped(child);
  return { child, exited };
}

async function waitStopped(child: ChildProcess): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const state = child.pid === undefined ? null : processState(child.pid);
    if (state === 'T') return;
    if (state === null || state === 'Z' || child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new TraceError('could not start the command stopped (/bin/sh did not stop itself)');
    }
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

function filterFor(target: TraceTarget, wrapper: Wrapper | null): ProgramFilter {
  switch (target.kind) {
    case 'command':
      return { kind: 'pids', pids: [wrapper!.child.pid!] };
    case 'pid':
      requirePid(target.pid);
      // The rest of a large tree is added to the map once the program runs (addTracedPids): the program is one
      // command-line argument, at most 128 KiB.
      return { kind: 'pids', pids: processTree(target.pid).slice(0, SEEDED_PIDS_MAX) };
    case 'cgroup':
      requireCgroup(target.path);
      // As for pids: a large tree's other cgroups join at the follower's first scan, as soon as the program runs.
      return { kind: 'cgroup', path: target.path, ids: cgroupTreeIds(target.path).ids.slice(0, SEEDED_PIDS_MAX) };
    case 'replay':
      throw new TraceError('the ebpf backend traces live processes; use the replay backend for a recorded log');
  }
}

/** bpftrace's stderr minus its noise (a memlock warning it cannot act on, warnings about our casts). */
export function meaningfulStderr(text: string): string {
  const lines = text.split('\n');
  const kept: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (line.includes('RLIMIT_MEMLOCK') || line.trim() === '') continue;
    if (line.includes('WARNING:')) {
      while (i + 1 < lines.length && (lines[i + 1].startsWith(' ') || lines[i + 1].includes('~'))) i++;
      continue;
    }
    kept.push(line);
  }
  return kept.join('\n').trim();
}

class EbpfSession implements RunningBackend {
  readonly name = 'ebpf (bpftrace)';
  readonly exited: Promise<number | null>;
  private readonly order: OrderedRelease;
  private readonly splitter: LineSplitter;
  private collector: Collector | null = null;
  private timer: NodeJS.Timeout | null = null;
  private cgroups: { follower: CgroupFollower; timer: NodeJS.Timeout } | null = null;
  private bpftrace: ChildProcess | null = null;
  private stderr = '';
  private lostTotal = 0;
  private stopping: Promise<void> | null = null;
  private finished: Promise<void>;
  private markFinished: () => void = () => undefined;
  private ready: { resolve: () => void; reject: (error: Error) => void } = { resolve: () => undefined, reject: () => undefined };
  private failure: Error | null = null;
  private resolveExited: (status: number | null) => void = () => undefined;
  /** Traced thread groups not seen exit (forks and group exits of the stream): what a command may leave running. */
  private readonly living = new Set<number>();

  constructor(
    private readonly options: TraceOptions,
    private readonly tuning: EbpfTuning,
    private readonly sink: EventSink,
    private readonly wrapper: Wrapper | null,
  ) {
    this.order = new OrderedRelease((event) => this.deliver(event));
    this.splitter = new LineSplitter((buffer, start, end) => this.line(buffer.toString('utf8', start, end)));
    this.finished = new Promise((resolve) => (this.markFinished = resolve));
    this.exited = wrapper ? wrapper.exited : new Promise((resolve) => (this.resolveExited = resolve));
  }

  lost(): number {
    return this.lostTotal;
  }

  /** A pid target's session ends with the process, like a command target's. */
  private deliver(event: SyscallEvent): void {
    this.sink.event(event);
    if (event.kind === 'fork' && !event.thread) this.living.add(event.child);
    else if (event.kind === 'exit' && event.group) this.living.delete(event.pid);
    const target = this.options.target;
    if (event.kind !== 'exit' || !event.group || target.kind !== 'pid' || event.pid !== target.pid) return;
    this.resolveExited(exitStatusOf(event));
    setImmediate(() => void this.stop()); // not from inside the collection that delivered this event
  }

  async start(filter: ProgramFilter, bpftracePath: string): Promise<void> {
    const program = buildProgram({
      filter,
      kernelStackBytes: this.tuning.kernelStackBytes ?? kernelStackBytes(),
      reportSetCloexec: this.tuning.reportSetCloexec ?? false,
      fdEvents: this.tuning.fdEvents ?? 'storage',
      inodeTimes: kernelInodeHasTimes(),
      ioUring: kernelIoUringTraceable(),
    });
    // On the command line rather than in a file: nothing to clean up if this process dies.
    assert.ok(program.length < MAX_ARGUMENT_BYTES, `bpftrace program of ${program.length} bytes`);
    const readyPromise = new Promise<void>((resolve, reject) => (this.ready = { resolve, reject }));
    const child = spawn(bpftracePath, ['-f', 'json', '-e', program], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, BPFTRACE_STRLEN: String(STRING_BYTES), BPFTRACE_MAP_KEYS_MAX: String(this.tuning.mapEntries ?? 262_144) },
    });
    this.bpftrace = child;
    child.stdout!.on('data', (chunk: Buffer) => this.data(chunk));
    child.stderr!.on('data', (chunk: Buffer) => this.keepStderr(chunk));
    child.once('error', (error) => this.ready.reject(new TraceError(`cannot run ${bpftracePath}: ${error.message}`)));
    child.once('close', (code, signal) => this.closed(code, signal));
    await this.awaitReady(readyPromise);
    this.collector = new Collector(child.pid!, {
      event: (event) => this.order.push(event),
      watermark: (ns) => this.order.release(ns),
      lost: (count, why) => this.lose(count, why),
    });
    this.timer = setInterval(() => this.collect(), this.tuning.collectMs ?? 100);
    if (filter.kind === 'cgroup') this.followCgroups(child.pid!, filter.path, filter.ids);
    if (this.options.target.kind === 'pid') addTracedPids(child.pid!, processTree(this.options.target.pid), filter.kind === 'pids' ? filter.pids : []);
    // Before the command runs: it was started (stopped) at our priority and keeps it; bpftrace too.
    if ((this.options.nice ?? 0) > 0) lowerOwnCpuPriority(this.options.nice!);
    this.wrapper?.child.kill('SIGCONT');
    this.wrapper?.exited.then(() => this.afterCommand());
  }

  /**
   * The command exited: the trace goes on while processes it started live on (a daemon that double-forked, a job
   * left in the background), for up to `lingerMs`, so what they do next is not lost; Ctrl-C stops it sooner.
   */
  private async afterCommand(): Promise<void> {
    const roundMs = this.tuning.collectMs ?? 100;
    const lingerMs = this.options.lingerMs ?? LINGER_DEFAULT_MS;
    const since = performance.now();
    // The forks of the command's last moments reach `living` a collection or two later.
    await new Promise((resolve) => setTimeout(resolve, 2 * roundMs + 10));
    // The program's own set says who is still traced: a pid whose exit the stream lost, reused since by a process
    // nobody traces, must not keep the trace open.
    let traced: BpfMap | null = null;
    try {
      if (this.bpftrace?.pid) traced = openMapNamed(this.bpftrace.pid, 'AT_t');
    } catch {
      traced = null; // bpftrace is gone: stop() below ends the trace
    }
    const key = Buffer.alloc(traced?.info.keySize ?? 8);
    const value = Buffer.alloc(traced?.info.valueSize ?? 8);
    const stillTraced = (pid: number): boolean => {
      if (traced === null) return false;
      key.fill(0);
      key.writeUIntLE(pid, 0, Math.min(6, key.length));
      return traced.lookup(key, value);
    };
    let told = false;
    while (!this.stopping) {
      const left = [...this.living].filter((pid) => pid !== this.wrapper?.child.pid && !['Z', 'X', null].includes(processState(pid)) && stillTraced(pid));
      if (left.length === 0) break;
      const pids = left.slice(0, 5).join(', ') + (left.length > 5 ? ', …' : '');
      if (performance.now() - since >= lingerMs) {
        this.sink.warning(`ebpf: stopped tracing ${left.length} process(es) the command left running (${pids}): what they do from now on is not traced (--linger)`);
        break;
      }
      if (!told) {
        this.sink.warning(`ebpf: the command exited; tracing ${left.length} process(es) it left running (${pids}) ${lingerText(lingerMs)}`);
        told = true;
      }
      await new Promise((resolve) => setTimeout(resolve, roundMs));
    }
    traced?.close();
    await this.stop();
  }

  /** Cgroups created under the target later join the traced set (a quarter-second scan of the tree). */
  private followCgroups(bpftracePid: number, root: string, seeded: readonly number[]): void {
    const follower = new CgroupFollower(bpftracePid, root, seeded, (message) => this.sink.warning(message));
    follower.refresh(); // the cgroups beyond the program's seed, and any made while it compiled
    const timer = setInterval(() => {
      try {
        follower.refresh();
      } catch (error) {
        this.sink.warning(`ebpf: cannot follow new cgroups under ${root}: ${(error as Error).message}`);
        clearInterval(timer);
      }
    }, CGROUP_SCAN_MS);
    this.cgroups = { follower, timer };
  }

  private async awaitReady(ready: Promise<void>): Promise<void> {
    const timeoutMs = this.tuning.startTimeoutMs ?? 60_000;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new TraceError(`bpftrace did not attach within ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      await Promise.race([ready, timeout]);
    } catch (error) {
      this.wrapper?.child.kill('SIGKILL');
      this.bpftrace?.kill('SIGKILL');
      await this.finished;
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }

  private collect(final = false): void {
    if (!this.collector || this.failure) return;
    try {
      this.collector.collect(final);
    } catch (error) {
      this.failure = new TraceError(`cannot read bpftrace's maps: ${(error as Error).message}`);
      this.bpftrace?.kill('SIGKILL');
    }
  }

  /** bpftrace prints only the ready marker (and notices); everything else is read from its maps. */
  private data(chunk: Buffer): void {
    try {
      this.splitter.push(chunk);
    } catch (error) {
      this.failure ??= new TraceError(`cannot decode bpftrace output: ${(error as Error).message}`);
    }
  }

  private line(text: string): void {
    if (text.includes('"printf"') && text.includes('"R\\n"')) this.ready.resolve();
    else if (text.includes('"lost_events"')) this.lose(Number(/"events":\s*(\d+)/.exec(text)?.[1] ?? 0), 'perf buffer full');
  }

  private keepStderr(chunk: Buffer): void {
    this.stderr += chunk.toString('utf8');
    if (this.stderr.length > 2 * STDERR_KEPT_BYTES) this.stderr = this.stderr.slice(-STDERR_KEPT_BYTES);
  }

  private lose(count: number, why: string): void {
    this.lostTotal += count;
    this.order.push({ kind: 'lost', ts: monotonicNowNs(), pid: 0, tid: 0, count });
    this.sink.warning(`ebpf: lost ${count} events: ${why}`);
  }

  /** bpftrace is gone. If we did not stop it, it died: collect what it left and end with an error. */
  private closed(code: number | null, signal: NodeJS.Signals | null): void {
    const detail = meaningfulStderr(this.stderr);
    this.ready.reject(new TraceError(`bpftrace failed to start (exit ${code ?? signal})${detail ? `: ${detail}` : ''}`));
    if (this.stopping) return;
    const died = new TraceError(`bpftrace exited unexpectedly (${code !== null ? `code ${code}` : `signal ${signal}`})${detail ? `: ${detail}` : ''}`);
    this.finish(died);
  }

  /** The last collection (the maps are ours, whatever bpftrace is doing), then the end of the stream. */
  private finish(error: Error | null): void {
    if (this.timer) clearInterval(this.timer);
    if (this.cgroups) {
      clearInterval(this.cgroups.timer);
      this.cgroups.follower.close();
      this.cgroups = null;
    }
    this.collect(true);
    this.failure ??= error;
    this.collector?.close();
    this.order.drain();
    this.resolveExited(null);
    this.sink.end(this.failure ?? undefined);
    this.markFinished();
  }

  stop(): Promise<void> {
    this.stopping ??= this.shutdown();
    return this.stopping;
  }

  /**
   * SIGKILL: the maps hold everything traced (bpftrace's own exit path would only print them again). Its probes
   * take seconds to detach, so the last collection does not wait for that; a process still traced meanwhile
   * (a command's leftover child) may lose its last calls.
   */
  private async shutdown(): Promise<void> {
    const child = this.bpftrace;
    const running = child !== null && child.exitCode === null && child.signalCode === null;
    if (running) child.kill('SIGKILL');
    if (running && this.collector) this.finish(null);
    await this.finished;
  }
}

export async function startEbpf(options: TraceOptions, sink: EventSink): Promise<RunningBackend> {
  const tuning = options.ebpf ?? {};
  requireRoot('ebpf', 'loading BPF programs needs CAP_BPF and CAP_PERFMON');
  const bpftracePath = requireExecutable('bpftrace', 'bpftrace', tuning.bpftrace);
  ensureTracefs();
  requireSyscallTracepoints();
  const wrapper = options.target.kind === 'command' ? await startStopped(options.target) : null;
  try {
    const filter = filterFor(options.target, wrapper);
    const session = new EbpfSession(options, tuning, sink, wrapper);
    await session.start(filter, bpftracePath);
    return session;
  } catch (error) {
    wrapper?.child.kill('SIGKILL');
    throw error;
  }
}

/**
 * Processes of the attached tree that are not in the program's seed join the traced set now: those beyond
 * SEEDED_PIDS_MAX, and children forked while bpftrace compiled (seconds). One forked between this scan and its
 * insert is missed, as is one whose parent exited before the scan (it is then init's child, not the tree's).
 */
function addTracedPids(bpftracePid: number, pids: readonly number[], seeded: readonly number[]): void {
  const known = new Set(seeded);
  const late = pids.filter((pid) => !known.has(pid));
  if (late.length === 0) return;
  const traced = openMapNamed(bpftracePid, 'AT_t');
  try {
    const key = Buffer.alloc(traced.info.keySize);
    const one = Buffer.alloc(traced.info.valueSize);
    one.writeUIntLE(1, 0, Math.min(6, one.length));
    for (const pid of late) {
      key.fill(0);
      key.writeUIntLE(pid, 0, Math.min(6, key.length));
      traced.update(key, one);
    }
  } finally {
    traced.close();
  }
}
