/** What a tracer needs from the machine, checked up front so a failure names the missing piece. */
import { spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, readFileSync, readdirSync, statSync, statfsSync } from 'node:fs';
import { constants as osConstants, getPriority, setPriority } from 'node:os';
import { delimiter, isAbsolute, join, resolve } from 'node:path';
import { TraceError } from './errors.js';
import { monotonicNowNs } from './events.js';

const TRACEFS = '/sys/kernel/tracing';
const CGROUP2_SUPER_MAGIC = 0x63677270;

export function requireRoot(backend: string, why: string): void {
  if (process.getuid?.() !== 0) throw new TraceError(`the ${backend} backend must run as root (${why})`);
}

function isExecutableFile(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/** PATH lookup as execvp does it; null when nothing executable is found. */
export function findExecutable(name: string, pathVariable = process.env.PATH ?? '/usr/bin:/bin', cwd = process.cwd()): string | null {
  if (name.includes('/')) {
    const path = isAbsolute(name) ? name : resolve(cwd, name);
    return isExecutableFile(path) ? path : null;
  }
  for (const dir of pathVariable.split(delimiter)) {
    const candidate = join(dir === '' ? cwd : resolve(cwd, dir), name);
    if (isExecutableFile(candidate)) return candidate;
  }
  return null;
}

/** `explicit` is a path the caller configured; otherwise `name` is looked up on PATH. */
export function requireExecutable(name: string, packageHint: string, explicit?: string): string {
  if (explicit !== undefined) {
    if (!isExecutableFile(explicit)) throw new TraceError(`${name} is not installed at ${explicit} (not an executable file)`);
    return explicit;
  }
  const found = findExecutable(name);
  if (!found) throw new TraceError(`${name} is not installed (no ${name} on PATH; install the ${packageHint} package)`);
  return found;
}

/** Syscall tracepoints live under tracefs; mount it where the kernel expects it when nobody has. */
export function ensureTracefs(): void {
  if (existsSync(`${TRACEFS}/events`)) return;
  const mount = spawnSync('mount', ['-t', 'tracefs', 'nodev', TRACEFS], { encoding: 'utf8' });
  if (existsSync(`${TRACEFS}/events`)) return;
  const detail = (mount.stderr || mount.error?.message || '').trim();
  throw new TraceError(`tracefs is not mounted at ${TRACEFS} and mounting it failed${detail ? `: ${detail}` : ''}`);
}

export function requireSyscallTracepoints(): void {
  if (existsSync(`${TRACEFS}/events/syscalls/sys_exit_openat`)) return;
  throw new TraceError(`this kernel has no syscall tracepoints (${TRACEFS}/events/syscalls is missing; CONFIG_FTRACE_SYSCALLS)`);
}

export function requirePid(pid: number): void {
  if (!Number.isSafeInteger(pid) || pid <= 0) throw new TraceError(`pid ${pid} is not a process id`);
  if (!existsSync(`/proc/${pid}`)) throw new TraceError(`pid ${pid} does not exist`);
}

/** The cgroup must exist and be a cgroup v2 directory: bpftrace's cgroup builtin is the v2 cgroup id. */
export function requireCgroup(path: string): void {
  if (!existsSync(path)) throw new TraceError(`cgroup path ${path} does not exist`);
  if (!statSync(path).isDirectory()) throw new TraceError(`cgroup path ${path} is not a directory`);
  if (statfsSync(path).type !== CGROUP2_SUPER_MAGIC) {
    throw new TraceError(`${path} is not in a cgroup v2 hierarchy (eBPF filters by v2 cgroup id)`);
  }
}

/** Processes in the cgroup and every cgroup below it (a container's processes often sit in sub-cgroups). */
export function cgroupMembers(path: string): number[] {
  const pids: number[] = [];
  const pending = [path];
  for (let visited = 0; pending.length > 0 && visited < CGROUP_TREE_MAX; visited++) {
    const dir = pending.shift()!;
    try {
      const procs = readFileSync(join(dir, 'cgroup.procs'), 'utf8');
      for (const line of procs.split('\n')) if (line !== '') pids.push(Number(line));
      for (const entry of readdirSync(dir, { withFileTypes: true })) if (entry.isDirectory()) pending.push(join(dir, entry.name));
    } catch {
      // removed while we walked
    }
  }
  return pids;
}

/** Bound on the processes of one attached tree. */
const PROCESS_TREE_MAX = 4096;

/**
 * A process and every process below it now, the root first (parents from each /proc/PID/stat). Attaching to a
 * server's main process must take the children it already has: PostgreSQL's postmaster writes nothing itself.
 */
export function processTree(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    if (name.charCodeAt(0) < 48 || name.charCodeAt(0) > 57) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${name}/stat`, 'latin1');
    } catch {
      continue; // exited while we looked
    }
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    if (!Number.isSafeInteger(ppid)) continue;
    const siblings = children.get(ppid);
    if (siblings) siblings.push(Number(name));
    else children.set(ppid, [Number(name)]);
  }
  const tree = [root];
  for (let i = 0; i < tree.length && tree.length < PROCESS_TREE_MAX; i++) {
    for (const child of children.get(tree[i]!) ?? []) if (tree.length < PROCESS_TREE_MAX) tree.push(child);
  }
  return tree;
}

/** Bound on the cgroups walked for one target. */
const CGROUP_TREE_MAX = 4096;

/** THREAD_SIZE: 16 KiB on x86-64, doubled by KASAN. The saved user registers sit at the top of that stack. */
export function kernelStackBytes(): number {
  const release = readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim();
  for (const config of [`/boot/config-${release}`]) {
    if (existsSync(config) && /^CONFIG_KASAN=y$/m.test(readFileSync(config, 'utf8'))) return 32768;
  }
  return 16384;
}

/**
 * Whether the running kernel's struct inode has i_mtime_sec (Linux 6.11 and later), from its BTF. The name is a
 * BTF string whatever struct it belongs to; no other kernel struct has a field of that name.
 */
export function kernelInodeHasTimes(btfPath = '/sys/kernel/btf/vmlinux'): boolean {
  try {
    return readFileSync(btfPath).includes('\0i_mtime_sec\0');
  } catch {
    return false;
  }
}

/**
 * Whether io_uring requests can be followed: the kernel has io_uring's submit and complete tracepoints and its BTF
 * describes struct io_rw (where a prepared read or write keeps its offset). Call after ensureTracefs.
 */
export function kernelIoUringTraceable(btfPath = '/sys/kernel/btf/vmlinux'): boolean {
  if (!existsSync(`${TRACEFS}/events/io_uring/io_uring_submit_req`) || !existsSync(`${TRACEFS}/events/io_uring/io_uring_complete`)) return false;
  try {
    return readFileSync(`${TRACEFS}/events/io_uring/io_uring_submit_req/format`, 'utf8').includes('void * req;') &&
      readFileSync(btfPath).includes('\0io_rw\0');
  } catch {
    return false;
  }
}

/** The one-letter state of a process in /proc/PID/stat, or null once it is gone. */
export function processState(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    return stat.charAt(stat.lastIndexOf(')') + 2);
  } catch {
    return null;
  }
}

/** Wall clock minus the monotonic clock in ns, to put strace's wall-clock timestamps on the events' clock. */
export function wallMinusMonotonicNs(): number {
  const monotonic = monotonicNowNs();
  const wall = Date.now() * 1e6;
  return wall - monotonic;
}

/** A child's exit as a shell reports it: the code, or 128 + the number of the signal that killed it. */
export function exitStatus(code: number | null, signal: NodeJS.Signals | null): number | null {
  if (code !== null) return code;
  if (signal === null) return null;
  const number = (osConstants.signals as Record<string, number>)[signal];
  return number === undefined ? null : 128 + number;
}

/** The highest nice value (the lowest CPU priority) Linux has. */
export const NICE_MAX = 19;

/**
 * Lowers the CPU priority of every thread of this process by `by` nice steps (at most to NICE_MAX): a tracer is an
 * observer and should take the CPU only when the workload it observes leaves some, catching up in the gaps (its
 * kernel side keeps recording meanwhile; what overflows the BPF maps is counted as lost, never silently dropped).
 * Linux keeps a nice value per thread, and threads started later inherit their creator's, so every thread alive now
 * is lowered. Children started before the call (the traced command, strace, bpftrace) keep their priority. Returns
 * the main thread's nice value after the call (unchanged when the system refused).
 */
export function lowerOwnCpuPriority(by: number): number {
  const mainNice = getPriority(0);
  if (!(by > 0)) return mainNice;
  let tids: string[];
  try {
    tids = readdirSync('/proc/self/task');
  } catch {
    tids = [String(process.pid)];
  }
  for (const tid of tids) {
    try {
      const now = getPriority(Number(tid));
      setPriority(Number(tid), Math.min(NICE_MAX, now + by));
    } catch {
      // A thread that ended since the directory was read.
    }
  }
  return getPriority(0);
}
