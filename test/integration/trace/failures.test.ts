/**
 * How the tracers fail: a clear TraceError at start naming what is missing, a stream that ends with an error when
 * the tracer dies, and counted (not silent) losses when the kernel side overflows.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SyscallEvent } from '../../../src/trace/events.js';
import { TraceError, startTrace } from '../../../src/trace/index.js';
import { tempDir, traceCommand } from './helpers.js';

const isRoot = process.getuid?.() === 0;
const hasBpftrace = spawnSync('sh', ['-c', 'command -v bpftrace']).status === 0;

let dir = '';
beforeAll(() => {
  dir = tempDir('failures');
});
afterAll(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

async function startError(options: Parameters<typeof startTrace>[0]): Promise<TraceError> {
  const error = await startTrace(options).then(
    () => null,
    (thrown: unknown) => thrown,
  );
  expect(error).toBeInstanceOf(TraceError);
  return error as TraceError;
}

describe('start failures name what is missing', () => {
  it.runIf(isRoot)('a bpftrace that cannot load the program: its own message, and the command never ran', async () => {
    const fake = path.join(dir, 'fake-bpftrace');
    fs.writeFileSync(fake, '#!/bin/sh\necho "ERROR: kernel refused the program (fake)" >&2\nexit 1\n', { mode: 0o755 });
    const marker = path.join(dir, 'ran');
    const error = await startError({
      backend: 'ebpf',
      target: { kind: 'command', argv: ['touch', marker], stdio: 'ignore' },
      ebpf: { bpftrace: fake },
    });
    expect(error.message).toMatch(/^bpftrace failed to start \(exit 1\): ERROR: kernel refused the program \(fake\)$/);
    expect(fs.existsSync(marker)).toBe(false);
  });

  it('bpftrace or strace not installed', async () => {
    const missing = path.join(dir, 'no-such-binary');
    const ebpf = await startError({ backend: 'ebpf', target: { kind: 'pid', pid: process.pid }, ebpf: { bpftrace: missing } });
    expect(ebpf.message).toBe(isRoot ? `bpftrace is not installed at ${missing} (not an executable file)` : ebpf.message);
    const ptrace = await startError({ backend: 'ptrace', target: { kind: 'pid', pid: process.pid }, ptrace: { strace: missing } });
    expect(ptrace.message).toBe(`strace is not installed at ${missing} (not an executable file)`);
  });

  it.runIf(isRoot && hasBpftrace)('a pid that does not exist, a cgroup path that does not exist', async () => {
    const pid = 4_000_000; // above pid_max's default ceiling: never a process
    for (const backend of ['ebpf', 'ptrace'] as const) {
      const error = await startError({ backend, target: { kind: 'pid', pid } });
      expect(error.message).toBe(`pid ${pid} does not exist`);
    }
    const cgroup = path.join(dir, 'no-such-cgroup');
    const error = await startError({ backend: 'ebpf', target: { kind: 'cgroup', path: cgroup } });
    expect(error.message).toBe(`cgroup path ${cgroup} does not exist`);
  });

  it('a replay target with a live backend, a live target with replay', async () => {
    const file = path.join(dir, 'x.jsonl');
    expect((await startError({ backend: 'ebpf', target: { kind: 'replay', file } })).message).toMatch(/replay backend/);
    expect((await startError({ backend: 'replay', target: { kind: 'pid', pid: 1 } })).message).toMatch(/replay target/);
    expect((await startError({ backend: 'replay', target: { kind: 'replay', file } })).message).toBe(`recorded trace ${file} does not exist`);
  });
});

describe('failures while tracing', () => {
  it('a malformed recorded line ends the replay with its line number', async () => {
    const file = path.join(dir, 'bad.jsonl');
    const good = JSON.stringify({ kind: 'close', ts: 1, pid: 2, tid: 2, fd: 3, ret: 0 });
    const bad = JSON.stringify({ kind: 'close', ts: 2, pid: 2, tid: 2, fd: '3', ret: 0 });
    fs.writeFileSync(file, `${good}\n${good}\n${bad}\n${good}\n`);
    const session = await startTrace({ backend: 'replay', target: { kind: 'replay', file } });
    const seen: SyscallEvent[] = [];
    const error = await (async () => {
      for await (const event of session.events) seen.push(event);
    })().then(() => null, (thrown: unknown) => thrown as Error);
    expect(seen).toHaveLength(2);
    expect(error).toBeInstanceOf(TraceError);
    expect(error?.message).toBe(`${file}:3: close event: field "fd" must be an integer`);
    fs.writeFileSync(file, `${good}\n{"kind": "close",\n`);
    const truncated = await startTrace({ backend: 'replay', target: { kind: 'replay', file } });
    await expect((async () => { for await (const _ of truncated.events); })()).rejects.toThrow(new RegExp(`^${file}:2: not JSON`));
  });

  it.runIf(isRoot && hasBpftrace)('bpftrace dying ends the stream with an error that says so', async () => {
    const session = await startTrace({ backend: 'ebpf', target: { kind: 'command', argv: ['sleep', '30'], stdio: 'ignore' } });
    const children = fs.readFileSync(`/proc/${process.pid}/task/${process.pid}/children`, 'utf8').trim().split(/\s+/).map(Number);
    const bpftrace = children.find((pid) => fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'bpftrace');
    // The command (the stopped shell that becomes `sleep`) is the other child.
    const sleeper = children.find((pid) => pid !== bpftrace);
    expect(bpftrace).toBeGreaterThan(0);
    process.kill(bpftrace!, 'SIGKILL');
    try {
      await expect((async () => { for await (const _ of session.events); })()).rejects.toThrow(/^bpftrace exited unexpectedly \(signal SIGKILL\)/);
    } finally {
      if (sleeper) process.kill(sleeper, 'SIGKILL');
    }
    expect(await session.exited).toBe(128 + 9);
  });

  it.runIf(isRoot && hasBpftrace)('counts events lost to full kernel maps, in lost(), as lost events and as warnings', async () => {
    // 64 map entries for a command that opens hundreds of files within one collection period.
    const run = await traceCommand('ebpf', ['sh', '-c', 'for i in $(seq 300); do : < /dev/null; done'], dir, {
      ebpf: { mapEntries: 64, collectMs: 1000 },
    });
    expect(run.exit).toBe(0);
    expect(run.lost).toBeGreaterThan(0);
    const lost = run.events.filter((event) => event.kind === 'lost');
    expect(lost.reduce((sum, event) => sum + (event.kind === 'lost' ? event.count : 0), 0)).toBe(run.lost);
    expect(run.warnings.some((message) => /^ebpf: lost \d+ events: event maps full/.test(message))).toBe(true);
  });
});
