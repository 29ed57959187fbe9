/**
 * `sky trace` as a user runs it: the built CLI (dist/, built by the test script or `npm run build`) on a recorded
 * log and on live commands under each backend.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BACKENDS, FIXTURES, tempDir } from './helpers.js';

const SKY = path.resolve('bin/sky');
const REPLAY = path.join(FIXTURES, 'replay-cp.jsonl');

async function waitFor(condition: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/**
 * Runs the CLI without blocking this worker (a synchronous spawn of an eBPF trace holds the worker's event loop for
 * ~10 s each, long enough for vitest's worker RPC to time out on a loaded machine).
 */
async function sky(args: string[], cwd = process.cwd()): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [SKY, 'trace', ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  const code = await new Promise<number | null>((resolve) => child.once('close', (status) => resolve(status)));
  clearTimeout(timer);
  return { code, stdout, stderr };
}

describe('sky trace on a recorded log', () => {
  it('--json streams one insight per line, in event order', async () => {
    const { code, stdout, stderr } = await sky(['--replay', REPLAY, '--json']);
    expect(stderr).toBe('');
    expect(code).toBe(0);
    const insights = stdout.trim().split('\n').map((line) => JSON.parse(line) as { kind: string });
    expect(insights.map((i) => i.kind)).toEqual([
      'file_opened',
      'file_opened',
      'app_hint',
      'file_size_changed',
      'file_closed',
      'copy_detected',
      'file_closed',
      'file_opened',
      'file_size_changed',
      'file_closed',
      'lifetime_ended',
      'uncertainty',
    ]);
    expect(insights[5]).toMatchObject({ srcPath: '/work/demo/a', dstPath: '/work/demo/b', bytes: 3145728, method: 'copy_file_range' });
    expect(insights[10]).toMatchObject({ path: '/work/demo/tmp', bytes: 8192, cause: 'unlink', livedMs: 3 });
  });

  it('prints a human summary by default', async () => {
    const { code, stdout } = await sky(['--replay', REPLAY]);
    expect(code).toBe(0);
    expect(stdout).toContain('copy        /work/demo/a -> /work/demo/b  3.0 MiB by copy_file_range (/usr/bin/cp)');
    expect(stdout).toMatch(/3\.0 MiB {2}class 2 .* \/work\/demo\/b/);
    expect(stdout).toContain('5 LOST');
    expect(stdout).toContain('unlink       8.0 KiB lived 3.0 ms  /work/demo/tmp');
  });

  it('rejects ambiguous targets with a usage error', async () => {
    const { code, stderr } = await sky(['--replay', REPLAY, '--pid', '1']);
    expect(code).toBe(2);
    expect(stderr).toContain('exactly one target');
  });

  it('refuses --fd-events for the ptrace backend, which reports every fd call anyway', async () => {
    const { code, stderr } = await sky(['--backend', 'ptrace', '--fd-events', 'all', '--', 'true']);
    expect(code).toBe(2);
    expect(stderr).toContain('--fd-events tunes the ebpf backend');
  });

  it('says clearly when a log cannot be read', async () => {
    const { code, stderr } = await sky(['--replay', '/nonexistent/log.jsonl']);
    expect(code).toBe(3);
    expect(stderr).toMatch(/^sky trace: .*nonexistent/);
  });
});

describe.each(BACKENDS)('sky trace --backend %s on a live command', (backend) => {
  let dir = '';
  beforeAll(() => {
    dir = tempDir(`cli-${backend}`);
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('exits with the traced command exit code and reports its files', async () => {
    const { code, stdout } = await sky(['--backend', backend, '--', 'sh', '-c', 'printf hello > out.txt; exit 5'], dir);
    expect(code).toBe(5);
    expect(stdout).toMatch(/5 B {2}class 4 .* written {7}5 B {2}.*\/out\.txt/);
  });

  it('follows a process the command left running (a daemon) for --linger, and exits with the command\'s status', async () => {
    const daemon = 'setsid sh -c "sleep 1; printf 123456 > late.out" < /dev/null > /dev/null 2>&1 &';
    const lateClosed = (stdout: string) =>
      stdout
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line) as { kind: string; path?: string; size?: number })
        .filter((i) => i.kind === 'file_closed' && path.basename(i.path ?? '') === 'late.out');
    const followed = await sky(['--backend', backend, '--json', '--', 'sh', '-c', `${daemon} exit 3`], dir);
    expect(followed.code).toBe(3);
    expect(lateClosed(followed.stdout).map((i) => i.size)).toEqual([6]);
    fs.rmSync(path.join(dir, 'late.out'), { force: true });
    const left = await sky(['--backend', backend, '--json', '--linger', '0', '--', 'sh', '-c', `${daemon} exit 4`], dir);
    expect(left.code).toBe(4);
    expect(left.stderr).toMatch(/stopped tracing .*left running.*--linger/);
    // strace detaches from a sleeping tracee only when it next stops, so with ptrace the late write may still be seen.
    if (backend === 'ebpf') expect(lateClosed(left.stdout)).toEqual([]);
  });

  it('closes the files of a process killed by SIGKILL, and exits as it did (128 + 9)', async () => {
    const { code, stdout } = await sky(['--backend', backend, '--json', '--', 'sh', '-c', 'exec 3> killed.out; printf 1234567 >&3; kill -KILL $$'], dir);
    expect(code).toBe(137);
    const closed = stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { kind: string; path?: string; size?: number; cause?: string })
      .filter((i) => i.kind === 'file_closed' && path.basename(i.path ?? '') === 'killed.out');
    expect(closed.map((i) => [i.size, i.cause])).toEqual([[7, 'exit']]);
  });

  // The log has no cwd for the traced command, so the replay reports the relative path as given (flagged).
  it('records a log that replays to the same insights', async () => {
    const log = path.join(dir, 'run.jsonl');
    const live = await sky(['--backend', backend, '--record', log, '--json', '--', 'sh', '-c', 'printf 123 > rec.txt'], dir);
    expect(live.code).toBe(0);
    const replayed = await sky(['--replay', log, '--json'], dir);
    const closed = (out: string): unknown[] =>
      out
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line) as { kind: string; path?: string; writeBytes?: number })
        .filter((i) => i.kind === 'file_closed' && path.basename(i.path ?? '') === 'rec.txt')
        .map((i) => i.writeBytes);
    expect(closed(replayed.stdout)).toEqual(closed(live.stdout));
    expect(closed(live.stdout)).toEqual([3]);
  });

  it('--pid: the tree is traced (children it already had too), and files opened before tracing are followed to their close', async () => {
    const go = path.join(dir, 'go');
    // fd 3 is opened before the trace starts, in the process and in a child it already has; the sleeps' execs show
    // when tracing runs.
    const wait = `while [ ! -e ${go} ]; do sleep 0.1; done`;
    const script = `(exec 3>>child.log; ${wait}; printf abc >&3) & exec 3>>pre.log; ${wait}; printf 12345 >&3; exec 3>&-; wait; exit 0`;
    for (const log of ['pre.log', 'child.log']) fs.rmSync(path.join(dir, log), { force: true });
    const target = spawn('sh', ['-c', script], { cwd: dir, stdio: 'ignore' });
    await waitFor(() => fs.existsSync(path.join(dir, 'pre.log')) && fs.existsSync(path.join(dir, 'child.log')), 10_000);
    const child = spawn(process.execPath, [SKY, 'trace', '--backend', backend, '--pid', String(target.pid), '--json'], { cwd: dir });
    let stdout = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      await waitFor(() => stdout.includes('\n'), 60_000);
      fs.writeFileSync(go, '');
      expect(await exited).toBe(0);
      const insights = stdout.trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
      const pre = insights.filter((i) => i.path === path.join(dir, 'pre.log'));
      expect(pre.filter((i) => i.kind === 'file_opened')).toMatchObject([{ pid: target.pid, fd: 3, discovered: true }]);
      expect(pre.filter((i) => i.kind === 'file_closed')).toMatchObject([{ pid: target.pid, size: 5, writeBytes: 5 }]);
      const child = insights.filter((i) => i.path === path.join(dir, 'child.log') && i.kind === 'file_closed');
      expect(child).toHaveLength(1);
      expect(child[0]).toMatchObject({ size: 3, writeBytes: 3 });
      expect(child[0]!.pid).not.toBe(target.pid);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
      if (target.exitCode === null) target.kill('SIGKILL');
      fs.rmSync(go, { force: true });
    }
  });

  it('stops cleanly on Ctrl-C (to the whole process group, as a terminal sends it) and prints the summary', async () => {
    const marker = path.join(dir, 'started');
    const script = `printf go > ${marker}; sleep 30`;
    const child = spawn(process.execPath, [SKY, 'trace', '--backend', backend, '--', 'sh', '-c', script], { cwd: dir, detached: true });
    let stdout = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      await waitFor(() => fs.existsSync(marker), 60_000);
      process.kill(-child.pid!, 'SIGINT');
      expect(await exited).toBe(130);
      expect(stdout).toContain(`${marker}`);
      expect(stdout).toMatch(/^sky trace: \d+ events, 0 lost/m);
    } finally {
      if (child.exitCode === null) process.kill(-child.pid!, 'SIGKILL');
    }
  });
});

describe('sky trace --nice (ebpf)', () => {
  let dir = '';
  beforeAll(() => {
    dir = tempDir('cli-nice');
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  // The command's parent is sky trace itself (the ebpf backend's wrapper execs the command): it writes its own nice
  // value and that of every thread of its parent (field 19 of stat, the 17th after "pid (comm) ").
  const script = "sed 's/.*) //' /proc/self/stat | cut -d' ' -f17 > own.txt; for t in /proc/$PPID/task/*; do sed 's/.*) //' $t/stat | cut -d' ' -f17; done > tracer.txt";
  const read = (name: string): number[] => fs.readFileSync(path.join(dir, name), 'utf8').trim().split('\n').map(Number);
  const base = os.getPriority(0);

  it('lowers its own threads by 10 by default; the traced command keeps the caller\'s priority', async () => {
    expect((await sky(['--backend', 'ebpf', '--', 'sh', '-c', script], dir)).code).toBe(0);
    expect(read('own.txt')).toEqual([base]);
    const tracer = read('tracer.txt');
    expect(tracer.length).toBeGreaterThan(1);
    expect(new Set(tracer)).toEqual(new Set([Math.min(19, base + 10)]));
  });

  it('--nice 0 leaves it; a value outside 0-19 is refused', async () => {
    expect((await sky(['--backend', 'ebpf', '--nice', '0', '--', 'sh', '-c', script], dir)).code).toBe(0);
    expect(new Set(read('tracer.txt'))).toEqual(new Set([base]));
    const refused = await sky(['--nice', '20', '--', 'true'], dir);
    expect(refused.code).toBe(2); // a usage error, as every sky command's
    expect(refused.stderr).toContain('a nice increment is an integer from 0 to 19');
  });
});

describe('sky trace --fd-events (ebpf)', () => {
  let dir = '';
  beforeAll(() => {
    dir = tempDir('cli-fd-events');
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it("reports a directory fd's close with --fd-events all, not by default", async () => {
    const closesOfDirectories = async (fdEvents: string[]): Promise<number> => {
      const log = path.join(dir, `fd-events-${fdEvents.join('') || 'default'}.jsonl`);
      const run = await sky(['--backend', 'ebpf', ...fdEvents, '--record', log, '--json', '--', 'ls', '/'], dir);
      expect(run.code).toBe(0);
      const events = fs.readFileSync(log, 'utf8').trim().split('\n').map((line) => JSON.parse(line) as { kind: string; fd?: number; ret?: number; path?: string; flags?: number; pid: number });
      const at = events.findIndex((e) => e.kind === 'open' && e.path === '/' && (e.flags! & 0o200000) !== 0);
      expect(at).toBeGreaterThanOrEqual(0);
      const { pid, ret: fd } = events[at]!;
      // The log is in time order: what ends that fd's life first, its close or another open taking its number?
      const next = events.slice(at + 1).find((e) => e.pid === pid && ((e.kind === 'close' && e.fd === fd) || (e.kind === 'open' && e.ret === fd)));
      return next?.kind === 'close' ? 1 : 0;
    };
    expect(await closesOfDirectories(['--fd-events', 'all'])).toBe(1);
    expect(await closesOfDirectories([])).toBe(0);
  });

});
