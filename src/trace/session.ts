/** Types shared by the public API and the backends. */
import type { SyscallEvent } from './events.js';
import { cgroupMembers, processTree } from './system.js';

export type TraceTarget =
  | {
      kind: 'command';
      argv: string[];
      cwd?: string;
      env?: NodeJS.ProcessEnv;
      /** The command's stdin/stdout/stderr: the caller's (default) or /dev/null. */
      stdio?: 'inherit' | 'ignore';
    }
  | { kind: 'pid'; pid: number }
  | { kind: 'cgroup'; path: string }
  | { kind: 'replay'; file: string };

/**
 * The processes a target attaches to as it starts (a pid, or a cgroup's members then): a consumer reads what it
 * needs of them from /proc now, before their first events reach it, by which time they may be gone.
 */
export function attachedPids(target: TraceTarget): number[] {
  if (target.kind === 'pid') return processTree(target.pid);
  if (target.kind === 'cgroup') return cgroupMembers(target.path);
  return [];
}

/** Knobs of the ebpf backend; the defaults suit a workstation, tests turn them to provoke edge cases. */
export interface EbpfTuning {
  /** The bpftrace binary (default: bpftrace on PATH). */
  bpftrace?: string;
  /** How often the kernel's maps are collected; events reach the stream about this long after they happen (default 100). */
  collectMs?: number;
  /** Entries per map (BPFTRACE_MAP_KEYS_MAX, default 262144): events between two collections must fit. */
  mapEntries?: number;
  /** THREAD_SIZE of the kernel (default: 16384, 32768 with KASAN). */
  kernelStackBytes?: number;
  /** Report fcntl(F_SETFD, FD_CLOEXEC) too (default false: exec events carry closedFds instead). */
  reportSetCloexec?: boolean;
  /**
   * 'storage' (default): closes, dups and fcntls are reported only for fds of regular files and block devices
   * (and every dup2/dup3/close_range, which can replace such an fd). Directory, pipe and socket fds are not
   * bookkept: each *at() call and fchdir carries the identity of its directory instead, which a consumer resolves
   * through the directories the trace saw opened. A metadata walk like find is almost all such churn (8 of every
   * 9 events); this mode cuts its tracing cost by about a third. 'all': every close, dup and fcntl.
   */
  fdEvents?: 'all' | 'storage';
  /** How long bpftrace may take to compile and attach (default 60 s). */
  startTimeoutMs?: number;
}

export interface PtraceTuning {
  /** The strace binary (default: strace on PATH). */
  strace?: string;
}

/** How long a command's leftover processes are followed after it exits, by default. */
export const LINGER_DEFAULT_MS = 5000;

/** How long the trace follows a command's leftover processes, in words. */
export function lingerText(lingerMs: number): string {
  return Number.isFinite(lingerMs) ? `for up to ${lingerMs / 1000} s more (--linger; Ctrl-C stops)` : 'until they exit (Ctrl-C stops)';
}

export interface TraceOptions {
  backend: 'ebpf' | 'ptrace' | 'replay';
  target: TraceTarget;
  /** Also write every event to this file as JSONL (the replay backend's input). */
  record?: string;
  onWarning?: (message: string) => void;
  /**
   * ebpf: once the program is attached (before a command target runs), lower this process's CPU priority by this
   * many nice steps (0, the default: leave it); the traced command and bpftrace keep theirs. For processes that only
   * trace (sky trace, sky agent), not where the engine serves I/O from the same process. Not for ptrace: there the
   * workload waits for strace, and strace for us, so a lower priority would slow the workload, not spare it.
   */
  nice?: number;
  /**
   * A command target: how long the trace goes on after the command exits while processes it started live on (a
   * daemon it left running, a background job), in ms. Default LINGER_DEFAULT_MS; Infinity: until they exit (strace
   * -f's way; gpg's agent never does); 0: the trace ends with the command. Either way a warning names who is left.
   */
  lingerMs?: number;
  ebpf?: EbpfTuning;
  ptrace?: PtraceTuning;
}

export interface TraceSession {
  /** Every event, in time order; the loop ends when the session stops and throws if the tracer died. */
  events: AsyncIterable<SyscallEvent>;
  /** Events the tracer knows it dropped so far. */
  lost(): number;
  /** Stops tracing; resolves once the last event is in `events` (and in the record file). Idempotent. */
  stop(): Promise<void>;
  /**
   * A command target's exit status (128 + signal number when a signal killed it); for a pid target the traced
   * process's exit status when it exits while traced; null when unknown or when the session stops first.
   */
  exited: Promise<number | null>;
  backendName: string;
}

/** Where a backend puts what it produces. */
export interface EventSink {
  event(event: SyscallEvent): void;
  warning(message: string): void;
  /** No more events; with an error when the tracer failed. Called exactly once. */
  end(error?: Error): void;
  /** Events produced but not yet consumed (for backends that can wait, i.e. replay). */
  backlog(): number;
}

export interface RunningBackend {
  name: string;
  exited: Promise<number | null>;
  lost(): number;
  /** Resolves after the backend called sink.end(). */
  stop(): Promise<void>;
}
