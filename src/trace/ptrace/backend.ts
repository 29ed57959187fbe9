/**
 * The ptrace backend: strace follows the target (`-f`, with a seccomp filter so only the traced syscalls stop
 * it) and writes one line per call into a FIFO this process reads. Every traced call costs two context switches
 * into strace, so this is the fallback for machines where eBPF is not available. Reads and writes are
 * aggregated into rw_summary here (aggregate.ts); the app hint's extra arguments are not visible (strace prints
 * a syscall's declared arguments only), so there are no per-call rw events.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, writeSync, constants as fsConstants } from 'node:fs';
import { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TraceError } from '../errors.js';
import { exitStatusOf, type SyscallEvent } from '../events.js';
import { LineSplitter } from '../lines.js';
import { LINGER_DEFAULT_MS, type EventSink, type RunningBackend, type TraceOptions } from '../session.js';
import { cgroupMembers, exitStatus, processState, processTree, requireExecutable, requirePid, wallMinusMonotonicNs } from '../system.js';
import { RAW_SYSCALLS, StraceDecoder, TRACED_SYSCALLS } from './decode.js';

/** strace's string limit: paths are never cut in practice (PATH_MAX is 4096). */
const STRING_LIMIT = 65_535;
const FLUSH_INTERVAL_MS = 1000;
const STOP_GRACE_MS = 10_000;
/**
 * Written into the FIFO after strace exits: everything before it is strace's. It starts a line of its own: strace
 * ends its output without a newline when it re-raises a tracee's fatal signal (`+++ killed by SIGKILL +++`).
 */
const END_LINE = '\u0000sky-trace-end';
const END_MARKER = `\n${END_LINE}\n`;

/**
 * Signals whose default action ends the process. strace prints `+++ killed by SIG +++` only for signals in its
 * `-e signal` set (with `signal=none` a process killed by SIGKILL just vanishes, and its files are never closed);
 * the set costs a `--- SIG ---` line per delivery of a handled one, which the decoder skips. SIGCHLD, the commonest,
 * is not in it: it never kills.
 */
const FATAL_SIGNALS = [
  'SIGHUP', 'SIGINT', 'SIGQUIT', 'SIGILL', 'SIGTRAP', 'SIGABRT', 'SIGBUS', 'SIGFPE', 'SIGKILL', 'SIGUSR1', 'SIGSEGV',
  'SIGUSR2', 'SIGPIPE', 'SIGALRM', 'SIGTERM', 'SIGSTKFLT', 'SIGXCPU', 'SIGXFSZ', 'SIGVTALRM', 'SIGPROF', 'SIGIO',
  'SIGPWR', 'SIGSYS',
] as const;

export function straceArguments(output: string): string[] {
  return [
    '-f', '--seccomp-bpf', '-q', '-X', 'raw', '-yy', '--timestamps=unix,ns', '-s', String(STRING_LIMIT),
    '-e', `signal=${FATAL_SIGNALS.join(',')}`, '-e', `trace=${TRACED_SYSCALLS.join(',')}`, '-e', `raw=${RAW_SYSCALLS.join(',')}`, '-o', output,
  ];
}

function clockOffset(): { sec: number; nsec: number } {
  const offset = BigInt(Math.round(wallMinusMonotonicNs()));
  return { sec: Number(offset / 1_000_000_000n), nsec: Number(offset % 1_000_000_000n) };
}

/** Threads of the processes to attach to: strace -f -p attaches all of them, and they are one group each. */
function threadsOf(pids: readonly number[]): Map<number, number> {
  const threads = new Map<number, number>();
  for (const pid of pids) {
    threads.set(pid, pid);
    try {
      for (const tid of readdirSync(`/proc/${pid}/task`)) threads.set(Number(tid), pid);
    } catch {
      // gone already: strace will say so
    }
  }
  return threads;
}

function tracerOf(pid: number): number | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    return Number(/^TracerPid:\s+(\d+)/m.exec(status)?.[1] ?? 0);
  } catch {
    return null;
  }
}

class PtraceSession implements RunningBackend {
  readonly name = 'ptrace (strace)';
  readonly exited: Promise<number | null>;
  private resolveExited: (status: number | null) => void = () => undefined;
  private readonly directory = mkdtempSync(join(tmpdir(), 'sky-strace-'));
  private readonly fifo = join(this.directory, 'trace');
  private readonly decoder: StraceDecoder;
  private readonly splitter: LineSplitter;
  private strace: ChildProcess | null = null;
  private reader: Socket | null = null;
  private stderr = '';
  private flushTimer: NodeJS.Timeout | null = null;
  private stopping = false;
  private failure: Error | null = null;
  private commandPid: number | null = null;
  private commandStatus: number | null = null;
  private lingerTimer: NodeJS.Timeout | null = null;
  /** The trace was stopped because the command's leftovers outlived --linger: its status is the command's own. */
  private lingered = false;
  private finished!: Promise<void>;
  private markFinished!: () => void;

  constructor(
    private readonly options: TraceOptions,
    private readonly sink: EventSink,
    threads: Map<number, number>,
  ) {
    this.decoder = new StraceDecoder((event) => this.deliver(event), { clockOffset: clockOffset(), threads });
    this.splitter = new LineSplitter((buffer, start, end) => this.line(buffer.toString('utf8', start, end)));
    this.finished = new Promise((resolve) => (this.markFinished = resolve));
    this.exited = new Promise((resolve) => (this.resolveExited = resolve));
  }

  lost(): number {
    return 0;
  }

  private deliver(event: SyscallEvent): void {
    this.sink.event(event);
    const target = this.options.target;
    if (event.kind === 'exit' && event.group && target.kind === 'pid' && event.pid === target.pid) {
      this.resolveExited(exitStatusOf(event));
    }
    if (target.kind !== 'command') return;
    this.commandPid ??= event.pid; // strace's first tracee is the command
    if (event.kind === 'exit' && event.group && event.pid === this.commandPid) this.commandExited(exitStatusOf(event));
  }

  /**
   * strace -f waits for every tracee, so a daemon the command left running (gpg's agent) would hold the trace open for
   * good: it is followed for `lingerMs` at most, then strace detaches (the exit status is the command's).
   */
  private commandExited(status: number | null): void {
    this.commandStatus = status;
    const lingerMs = this.options.lingerMs ?? LINGER_DEFAULT_MS;
    if (!Number.isFinite(lingerMs)) return;
    this.lingerTimer = setTimeout(() => {
      if (this.stopping || this.strace?.exitCode !== null || this.strace?.signalCode !== null) return;
      this.sink.warning(`ptrace: the command exited ${lingerMs / 1000} s ago; stopped tracing the processes it left running: what they do from now on is not traced (--linger)`);
      this.lingered = true;
      void this.stop();
    }, lingerMs);
    this.lingerTimer.unref();
  }

  /** strace -p returns before it has attached; a tracee's TracerPid says when it has. */
  async attached(pids: readonly number[]): Promise<void> {
    const deadline = Date.now() + 10_000;
    // A child of an attached tree may exit between the scan and strace's attach: only the living must be ours.
    const ours = (pid: number) => tracerOf(pid) === this.strace?.pid || ['Z', 'X', null].includes(processState(pid));
    while (!pids.every(ours)) {
      if (this.failure || this.strace?.exitCode !== null || Date.now() > deadline) {
        await this.stop();
        const detail = this.stderr.trim();
        throw this.failure ?? new TraceError(`strace could not attach to ${pids.join(', ')}${detail ? `: ${detail}` : ''}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }

  start(stracePath: string, target: string[]): void {
    const made = spawnSync('mkfifo', ['-m', '600', this.fifo], { encoding: 'utf8' });
    if (made.status !== 0) throw new TraceError(`cannot create a FIFO for strace: ${made.stderr || made.error?.message}`);
    // Read-write so opening never blocks and the reader never sees EOF before our end marker.
    const fd = openSync(this.fifo, fsConstants.O_RDWR | fsConstants.O_NONBLOCK);
    this.reader = new Socket({ fd, readable: true, writable: false });
    this.reader.on('data', (chunk: Buffer) => this.data(chunk));
    const command = this.options.target.kind === 'command' ? this.options.target : null;
    const child = spawn(stracePath, [...straceArguments(this.fifo), ...target], {
      cwd: command?.cwd,
      env: command?.env ?? process.env,
      stdio: [command?.stdio === 'ignore' ? 'ignore' : 'inherit', command?.stdio === 'ignore' ? 'ignore' : 'inherit', 'pipe'],
    });
    this.strace = child;
    child.stderr!.on('data', (chunk: Buffer) => (this.stderr = (this.stderr + chunk.toString('utf8')).slice(-16_384)));
    child.once('error', (error) => (this.failure ??= new TraceError(`cannot run ${stracePath}: ${error.message}`)));
    child.once('close', (code, signal) => this.straceExited(code, signal));
    this.flushTimer = setInterval(() => this.decoder.flush(), FLUSH_INTERVAL_MS);
  }

  private data(chunk: Buffer): void {
    if (this.failure) return;
    try {
      this.splitter.push(chunk);
    } catch (error) {
      this.failure = new TraceError(`cannot decode strace output: ${(error as Error).message}`);
      this.strace?.kill('SIGKILL');
    }
  }

  private line(text: string): void {
    if (text === END_LINE) return this.finish();
    if (text !== '') this.decoder.line(text);
  }

  /** strace is gone: mark the end of its output in the FIFO, and finish when the reader gets there. */
  private straceExited(code: number | null, signal: NodeJS.Signals | null): void {
    const status = this.lingered ? this.commandStatus : exitStatus(code, signal);
    const traced = this.options.target.kind === 'command';
    if (this.lingerTimer) clearTimeout(this.lingerTimer);
    this.resolveExited(traced ? status : null);
    if (!this.stopping && !traced && !this.failure && code !== 0) {
      this.failure = new TraceError(`strace exited unexpectedly (${code ?? signal}): ${this.stderr.trim()}`);
    }
    const writer = openSync(this.fifo, fsConstants.O_WRONLY | fsConstants.O_NONBLOCK);
    writeSync(writer, END_MARKER);
    closeSync(writer);
  }

  private finish(): void {
    if (this.flushTimer) clearInterval(this.flushTimer);
    this.reader?.destroy();
    try {
      this.decoder.finish();
    } catch (error) {
      this.failure ??= error as Error;
    }
    rmSync(this.directory, { recursive: true, force: true });
    this.sink.end(this.failure ?? undefined);
    this.markFinished();
  }

  /** SIGINT makes strace detach from the tracees (they run on) and exit. */
  async stop(): Promise<void> {
    this.stopping = true;
    const child = this.strace;
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGINT');
      const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
      await this.finished;
      clearTimeout(timer);
    }
    await this.finished;
  }
}

function targetArguments(options: TraceOptions, warn: (message: string) => void): { args: string[]; pids: number[] } {
  const target = options.target;
  switch (target.kind) {
    case 'command':
      if (target.argv.length === 0) throw new TraceError('the command to trace is empty');
      return { args: ['--', ...target.argv], pids: [] };
    case 'pid': {
      requirePid(target.pid);
      const pids = processTree(target.pid); // the children it already has: strace -p takes only the named ones
      return { args: pids.flatMap((pid) => ['-p', String(pid)]), pids };
    }
    case 'cgroup': {
      const pids = cgroupMembers(target.path);
      if (pids.length === 0) throw new TraceError(`cgroup ${target.path} has no processes to attach to`);
      warn('ptrace: a cgroup is traced by attaching to its processes now; processes that join it later are not traced');
      return { args: pids.flatMap((pid) => ['-p', String(pid)]), pids };
    }
    case 'replay':
      throw new TraceError('the ptrace backend traces live processes; use the replay backend for a recorded log');
  }
}

export async function startPtrace(options: TraceOptions, sink: EventSink): Promise<RunningBackend> {
  const stracePath = requireExecutable('strace', 'strace', options.ptrace?.strace);
  const { args, pids } = targetArguments(options, (message) => sink.warning(message));
  const session = new PtraceSession(options, sink, threadsOf(pids));
  session.start(stracePath, args);
  if (pids.length > 0) await session.attached(pids);
  return session;
}
