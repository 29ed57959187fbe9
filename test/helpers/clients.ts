/**
 * Wrappers around the real NBD clients the integration tests drive: qemu-io, nbdinfo, nbdcopy, fio (nbd engine)
 * and libnbd's Python binding (what nbdsh runs). Each returns the raw result; tests make the assertions.
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { isRunning, run, runOk, startTracked, stopTracked, type RunResult, type Tracked } from './proc.js';

/** qemu-io on a raw NBD URI, one `-c` per command. Exits non-zero when any command failed. */
export function qemuIo(uri: string, commands: string[], options: { timeout_ms?: number; readOnly?: boolean } = {}): Promise<RunResult> {
  const mode = options.readOnly ? ['-r'] : [];
  return run('qemu-io', ['-f', 'raw', ...mode, ...commands.flatMap((command) => ['-c', command]), uri], options);
}

export interface NbdinfoExport {
  'export-name': string;
  'export-size': number;
  is_read_only: boolean;
  is_rotational: boolean;
  can_cache: boolean;
  can_df: boolean;
  can_fast_zero: boolean;
  can_flush: boolean;
  can_fua: boolean;
  can_multi_conn: boolean;
  can_trim: boolean;
  can_zero: boolean;
  block_size_minimum?: number;
  block_size_preferred?: number;
  block_size_maximum?: number;
  contexts?: string[];
  [key: string]: unknown;
}

export interface NbdinfoJson {
  protocol: string;
  TLS: boolean;
  structured: boolean;
  exports: NbdinfoExport[];
}

export async function nbdinfoJson(uri: string, extra: string[] = []): Promise<NbdinfoJson> {
  const result = await runOk('nbdinfo', ['--json', ...extra, uri]);
  return JSON.parse(result.stdout) as NbdinfoJson;
}

export interface MapEntry {
  offset: number;
  length: number;
  type: number;
  description: string;
}

/** `nbdinfo --map --json`: base:allocation extents (type bit 0 = hole, bit 1 = zero). */
export async function nbdinfoMap(uri: string): Promise<MapEntry[]> {
  const result = await runOk('nbdinfo', ['--map', '--json', uri]);
  return JSON.parse(result.stdout) as MapEntry[];
}

/** The system python3 that has libnbd's binding (python3-libnbd); nbdsh itself runs whatever `python3` is on PATH. */
export const LIBNBD_PYTHON = '/usr/bin/python3';

export async function haveLibnbdPython(): Promise<boolean> {
  if (!existsSync(LIBNBD_PYTHON)) return false;
  const result = await run(LIBNBD_PYTHON, ['-c', 'import nbd']);
  return result.code === 0;
}

/**
 * Runs a Python script with libnbd's binding imported as `nbd` (the same API nbdsh exposes). `args` reach the
 * script as sys.argv[1:].
 */
export function libnbdPython(script: string, args: string[] = [], options: { timeout_ms?: number } = {}): Promise<RunResult> {
  return run(LIBNBD_PYTHON, ['-c', `import nbd, sys, errno, os\n${script}`, ...args], options);
}

export function nbdcopy(source: string, destination: string, extra: string[] = []): Promise<RunResult> {
  return run('nbdcopy', [...extra, source, destination], { timeout_ms: 300_000 });
}

export interface FioJob {
  jobname: string;
  error: number;
  read: { io_bytes: number; total_ios: number };
  write: { io_bytes: number; total_ios: number };
  [key: string]: unknown;
}

export interface FioResult {
  result: RunResult;
  jobs: FioJob[];
}

/**
 * fio with the nbd ioengine, JSON output parsed (fio may print notes before the JSON document). fio's verify state
 * files are not written (they would land in the working directory).
 */
export async function fioNbd(uri: string, args: string[]): Promise<FioResult> {
  const result = await run('fio', ['--ioengine=nbd', `--uri=${uri}`, '--output-format=json', '--verify_state_save=0', ...args], { timeout_ms: 300_000 });
  const start = result.stdout.indexOf('{');
  let jobs: FioJob[] = [];
  if (start >= 0) {
    try {
      jobs = (JSON.parse(result.stdout.slice(start)) as { jobs: FioJob[] }).jobs;
    } catch {
      jobs = [];
    }
  }
  return { result, jobs };
}

export function sha256File(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    createReadStream(path, { highWaterMark: 1024 * 1024 })
      .on('data', (chunk) => hash.update(chunk))
      .on('error', reject)
      .on('end', () => resolve(hash.digest('hex')));
  });
}

export function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** A libnbd Python script left running (e.g. holding connections open while the server is killed). */
export interface LiveScript {
  process: Tracked;
  /** Resolves with the first stdout line matching `pattern` (rejects if the script exits first or on timeout). */
  waitForLine(pattern: RegExp, timeout_ms?: number): Promise<string>;
  output(): { stdout: string; stderr: string };
  /** Sends a line to the script's stdin. */
  send(line: string): void;
  stop(): Promise<void>;
}

export function startLibnbdPython(script: string, args: string[] = []): LiveScript {
  const child = startTracked(LIBNBD_PYTHON, ['-u', '-c', `import nbd, sys, errno, os\n${script}`, ...args], { stdio: ['pipe', 'pipe', 'pipe'] }, 'libnbd python');
  let stdout = '';
  let stderr = '';
  const listeners = new Set<() => void>();
  child.child.stdout!.on('data', (chunk: Buffer) => {
    stdout += chunk.toString('utf8');
    for (const listener of listeners) listener();
  });
  child.child.stderr!.on('data', (chunk: Buffer) => {
    stderr += chunk.toString('utf8');
  });
  child.child.stdin!.on('error', () => undefined);
  void child.exited.then(() => {
    for (const listener of listeners) listener();
  });
  return {
    process: child,
    output: () => ({ stdout, stderr }),
    send: (line) => {
      child.child.stdin!.write(line + '\n');
    },
    waitForLine: (pattern, timeout_ms = 60_000) =>
      new Promise((resolve, reject) => {
        const check = () => {
          const line = stdout.split('\n').find((candidate) => pattern.test(candidate));
          if (line !== undefined) {
            done();
            resolve(line);
          } else if (!isRunning(child)) {
            done();
            reject(new Error(`script exited before printing ${pattern}\nstdout: ${stdout}\nstderr: ${stderr}`));
          }
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`timed out waiting for ${pattern}\nstdout: ${stdout}\nstderr: ${stderr}`));
        }, timeout_ms);
        const done = () => {
          clearTimeout(timer);
          listeners.delete(check);
        };
        listeners.add(check);
        check();
      }),
    stop: async () => {
      await stopTracked(child, { signal: 'SIGKILL', grace_ms: 5_000 });
    },
  };
}
