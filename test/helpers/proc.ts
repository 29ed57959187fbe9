/**
 * Child processes for integration tests: run a command to completion (bounded by a timeout), start a long-lived
 * one with a pid, and stop it by pid (SIGTERM, then SIGKILL after a grace period). Every long-lived child is
 * recorded so a test file's afterAll (and, as a last resort, process exit) can end whatever a failing test left.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  timeout_ms?: number;
  input?: string | Buffer;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
}

const RUN_TIMEOUT_MS_DEFAULT = 120_000;
const OUTPUT_BYTES_MAX = 64 * 1024 * 1024;

/** Runs a command to completion; never rejects for a non-zero exit (the caller asserts on `code`). */
export function run(command: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  const timeout_ms = options.timeout_ms ?? RUN_TIMEOUT_MS_DEFAULT;
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: options.cwd,
      env: options.env ?? process.env,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    let output_bytes = 0;
    const collect = (into: Buffer[]) => (chunk: Buffer) => {
      output_bytes += chunk.length;
      if (output_bytes <= OUTPUT_BYTES_MAX) into.push(chunk);
    };
    child.stdout!.on('data', collect(stdout));
    child.stderr!.on('data', collect(stderr));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
    }, timeout_ms);
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${command}: ${error.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({
        code,
        signal,
        stdout: Buffer.concat(stdout).toString('utf8'),
        stderr: Buffer.concat(stderr).toString('utf8') + (signal === 'SIGKILL' ? `\n[killed after ${timeout_ms} ms]` : ''),
      });
    });
    child.stdin!.on('error', () => undefined);
    child.stdin!.end(options.input ?? '');
  });
}

/** Like run(), but throws (with the command's output) unless it exits 0. */
export async function runOk(command: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  const result = await run(command, args, options);
  if (result.code !== 0) {
    throw new Error(`${command} ${args.join(' ')} exited ${result.code ?? result.signal}\n` + `stdout: ${result.stdout}\nstderr: ${result.stderr}`);
  }
  return result;
}

/** A long-lived child started by the tests. */
export interface Tracked {
  pid: number;
  child: ChildProcess;
  /** Settles once with the exit code and signal. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  description: string;
}

const tracked = new Map<number, Tracked>();

export function startTracked(command: string, args: readonly string[], options: SpawnOptions, description: string): Tracked {
  const child = spawn(command, args, options);
  if (child.pid === undefined) throw new Error(`cannot start ${description}: ${command} ${args.join(' ')}`);
  const pid = child.pid;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('exit', (code, signal) => {
      tracked.delete(pid);
      resolve({ code, signal });
    });
    child.on('error', () => {
      tracked.delete(pid);
      resolve({ code: null, signal: null });
    });
  });
  const entry: Tracked = { pid, child, exited, description };
  tracked.set(pid, entry);
  return entry;
}

export function isRunning(entry: Tracked): boolean {
  return entry.child.exitCode === null && entry.child.signalCode === null && tracked.has(entry.pid);
}

/**
 * Stops one tracked process by pid: `signal` first (SIGTERM by default; null sends nothing and only waits),
 * SIGKILL once `grace_ms` has passed.
 * Returns how it ended and whether SIGKILL was needed.
 */
export async function stopTracked(
  entry: Tracked,
  options: { signal?: NodeJS.Signals | null; grace_ms?: number } = {},
): Promise<{ code: number | null; signal: NodeJS.Signals | null; forced: boolean }> {
  const grace_ms = options.grace_ms ?? 10_000;
  if (!isRunning(entry)) return { ...(await entry.exited), forced: false };
  // signal null: the process is expected to exit by itself (e.g. nbdfuse after fusermount3 -u); just wait.
  const first_signal = options.signal === undefined ? 'SIGTERM' : options.signal;
  if (first_signal !== null) signalPid(entry.pid, first_signal);
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), grace_ms);
  });
  const first = await Promise.race([entry.exited, timedOut]);
  clearTimeout(timer);
  if (first !== 'timeout') return { ...first, forced: false };
  signalPid(entry.pid, 'SIGKILL');
  return { ...(await entry.exited), forced: true };
}

function signalPid(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
  }
}

/** Stops every process this test file started and has not stopped yet (for afterAll). */
export async function stopAllTracked(grace_ms = 5_000): Promise<void> {
  await Promise.all([...tracked.values()].map((entry) => stopTracked(entry, { grace_ms })));
}

// Last resort: a crashed test run must not leave servers or nbdfuse behind.
process.on('exit', () => {
  for (const entry of tracked.values()) signalPid(entry.pid, 'SIGKILL');
});

/** Polls `probe` until it returns true or the deadline passes (then throws with `what`). */
export async function waitUntil(what: string, probe: () => Promise<boolean> | boolean, timeout_ms = 30_000, interval_ms = 50): Promise<void> {
  const deadline = Date.now() + timeout_ms;
  for (;;) {
    if (await probe()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout_ms} ms waiting for ${what}`);
    await sleep(interval_ms);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Resident set size and its peak, in bytes, from /proc/PID/status (null once the process is gone). */
export function memoryOf(pid: number): { rss_bytes: number; rss_peak_bytes: number } | null {
  const path = `/proc/${pid}/status`;
  if (!existsSync(path)) return null;
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return null;
  }
  const field = (name: string): number => {
    const match = new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text);
    return match ? Number(match[1]) * 1024 : 0;
  };
  return { rss_bytes: field('VmRSS'), rss_peak_bytes: field('VmHWM') };
}

/** True when the command is on PATH. */
export async function haveCommand(command: string): Promise<boolean> {
  const result = await run('sh', ['-c', `command -v ${command}`]);
  return result.code === 0;
}
