/**
 * What the workload benchmarks (`sky bench overhead`, `sky bench accuracy`) share: children started in their own
 * process group, tracked in a set the caller owns and stopped by pid (the group), with an optional timeout; short
 * commands captured; and where the Debian-packaged workloads (kernel source, PostgreSQL) live.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';

export interface Finished {
  code: number | null;
  signal: NodeJS.Signals | null;
  wallSeconds: number;
  timedOut: boolean;
}

export interface Started {
  child: ChildProcess;
  done: Promise<Finished>;
}

export interface StartOptions {
  stdoutFile?: string;
  stderrFile?: string;
  /** Append to the output files instead of truncating them. */
  append?: boolean;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** SIGTERM to the group after this long, SIGKILL `killGraceMs` later. */
  timeoutSeconds?: number;
  killGraceMs?: number;
}

/** Signals the child's process group (we made it with `detached`), else the child alone; quiet once it is gone. */
export function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    try {
      child.kill(signal);
    } catch {
      // already gone
    }
  }
}

/** Starts argv in its own process group with stdout/stderr to files (or ignored); it stays in `live` until it ends. */
export function startProcess(argv: readonly string[], live: Set<ChildProcess>, options: StartOptions = {}): Started {
  const mode = options.append ? 'a' : 'w';
  const stdoutFd = options.stdoutFile ? fs.openSync(options.stdoutFile, mode) : 'ignore';
  const stderrFd = options.stderrFile ? fs.openSync(options.stderrFile, mode) : 'ignore';
  const began = process.hrtime.bigint();
  const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', stdoutFd, stderrFd], detached: true, cwd: options.cwd, env: options.env ?? process.env });
  if (typeof stdoutFd === 'number') fs.closeSync(stdoutFd);
  if (typeof stderrFd === 'number') fs.closeSync(stderrFd);
  live.add(child);
  let timedOut = false;
  let timer: NodeJS.Timeout | undefined;
  const done = new Promise<Finished>((resolve) => {
    if (options.timeoutSeconds) {
      timer = setTimeout(() => {
        timedOut = true;
        killGroup(child, 'SIGTERM');
        setTimeout(() => killGroup(child, 'SIGKILL'), options.killGraceMs ?? 5000).unref();
      }, options.timeoutSeconds * 1000);
    }
    const finish = (code: number | null, signal: NodeJS.Signals | null): void => {
      if (timer) clearTimeout(timer);
      live.delete(child);
      resolve({ code, signal, wallSeconds: Number(process.hrtime.bigint() - began) / 1e9, timedOut });
    };
    child.once('error', () => finish(127, null));
    child.once('exit', finish);
  });
  return { child, done };
}

/** Runs a short command and returns its stdout; throws with its stderr on failure (unless allowFail). */
export function capture(argv: readonly string[], options: { cwd?: string; allowFail?: boolean; timeoutSeconds?: number } = {}): string {
  const result = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8', cwd: options.cwd, timeout: (options.timeoutSeconds ?? 600) * 1000, maxBuffer: 16 * 2 ** 20 });
  if ((result.status !== 0 || result.error) && !options.allowFail) {
    throw new Error(`${argv.join(' ')} failed (${result.error?.message ?? `exit ${result.status}`}): ${(result.stderr ?? '').trim().slice(-800)}`);
  }
  return result.stdout ?? '';
}

/** The last `bytes` of a file ('' when it cannot be read). */
export async function readTail(file: string, bytes = 4000): Promise<string> {
  try {
    const text = await fsp.readFile(file, 'utf8');
    return text.length > bytes ? text.slice(-bytes) : text;
  } catch {
    return '';
  }
}

/** Alive and not a zombie. */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Resolves true when `promise` settles (either way) within `ms`, false otherwise; never keeps the process alive. */
export async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([promise.then(() => true, () => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export function packageInstalled(name: string): boolean {
  const result = spawnSync('dpkg-query', ['-W', '-f=${Status}', name], { encoding: 'utf8' });
  return result.status === 0 && result.stdout.includes('install ok installed');
}

/** Debian's linux-source tarball (the newest), or null. */
export function findKernelTarball(): string | null {
  try {
    const names = fs.readdirSync('/usr/src').filter((n) => /^linux-source-.*\.tar\.(xz|bz2|gz)$/.test(n)).sort();
    return names.length > 0 ? path.join('/usr/src', names[names.length - 1]) : null;
  } catch {
    return null;
  }
}

/** The bin directory of the newest PostgreSQL with postgres and pgbench, or null. */
export function findPostgresBin(): string | null {
  try {
    const versions = fs.readdirSync('/usr/lib/postgresql').filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a));
    for (const v of versions) {
      const bin = path.join('/usr/lib/postgresql', v, 'bin');
      if (fs.existsSync(path.join(bin, 'postgres')) && fs.existsSync(path.join(bin, 'pgbench'))) return bin;
    }
  } catch {
    // not installed
  }
  return null;
}

export function userIds(name: string): { uid: number; gid: number } | null {
  try {
    for (const line of fs.readFileSync('/etc/passwd', 'utf8').split('\n')) {
      const fields = line.split(':');
      if (fields[0] === name) return { uid: Number(fields[2]), gid: Number(fields[3]) };
    }
  } catch {
    // no passwd
  }
  return null;
}

export function positiveInt(text: string | undefined, name: string, fallback: number): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value <= 0) throw new Error(`--${name} must be a positive integer, got ${text}`);
  return value;
}
