/**
 * Targets other than a command: a running pid (both backends) and a cgroup v2 (ebpf filters on the cgroup id;
 * ptrace attaches to the processes in it). Each traced process waits for a file before it does anything, so the
 * tracer is attached first.
 */
import { spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { SyscallEvent } from '../../../src/trace/events.js';
import { startTrace, type TraceSession } from '../../../src/trace/index.js';
import { killGroup, ofKind, startOutsider, tempDir, type Backend } from './helpers.js';

const isRoot = process.getuid?.() === 0;
const hasTools = spawnSync('sh', ['-c', 'command -v bpftrace && command -v strace']).status === 0;
const CGROUP2 = '/sys/fs/cgroup/unified';
const hasCgroup2 = fs.existsSync(path.join(CGROUP2, 'cgroup.procs'));
const WAIT_FOR_GO = 'while [ ! -e go ]; do sleep 0.05; done';

const started: ChildProcess[] = [];
const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const child of started.splice(0)) killGroup(child);
  for (const cleanup of cleanups.splice(0)) cleanup();
});

function directory(prefix: string): string {
  const dir = tempDir(prefix);
  cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function collect(session: TraceSession): Promise<SyscallEvent[]> {
  const events: SyscallEvent[] = [];
  for await (const event of session.events) events.push(event);
  return events;
}

async function exitOf(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null) return child.exitCode;
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

describe.each<Backend>(['ebpf', 'ptrace'])('%s backend, pid target', (backend) => {
  it.runIf(isRoot && hasTools)('traces a running process from attach to exit and reports its exit status', async () => {
    const dir = directory(`pid-${backend}`);
    const target = startOutsider(`${WAIT_FOR_GO}; echo hello > pid.txt; exit 5`, dir);
    started.push(target);
    const session = await startTrace({ backend, target: { kind: 'pid', pid: target.pid! } });
    const events = collect(session);
    fs.writeFileSync(path.join(dir, 'go'), '');
    expect(await exitOf(target)).toBe(5);
    const log = await events;
    expect(await session.exited).toBe(5);
    const opens = ofKind(log, 'open').filter((event) => event.path === 'pid.txt');
    expect(opens).toMatchObject([{ pid: target.pid, flags: 0o1101, ret: 3 }]);
    expect(ofKind(log, 'exit').filter((event) => event.pid === target.pid)).toMatchObject([{ group: true, code: 5 }]);
  });
});

describe('ebpf backend, cgroup target', () => {
  it.runIf(isRoot && hasTools && hasCgroup2)('traces the processes of one cgroup v2 and nothing else', async () => {
    const dir = directory('cgroup');
    const cgroup = fs.mkdtempSync(path.join(CGROUP2, 'sky-trace-test-'));
    cleanups.push(() => fs.rmdirSync(cgroup));
    const inside = startOutsider(`echo $$ > ${cgroup}/cgroup.procs; ${WAIT_FOR_GO}; echo in > inside.txt`, dir);
    const outside = startOutsider(`${WAIT_FOR_GO}; echo out > outside.txt`, dir);
    started.push(inside, outside);
    for (let i = 0; i < 200 && !fs.readFileSync(path.join(cgroup, 'cgroup.procs'), 'utf8').trim(); i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    const session = await startTrace({ backend: 'ebpf', target: { kind: 'cgroup', path: cgroup } });
    const events = collect(session);
    fs.writeFileSync(path.join(dir, 'go'), '');
    expect(await exitOf(inside)).toBe(0);
    expect(await exitOf(outside)).toBe(0);
    await new Promise((resolve) => setTimeout(resolve, 500)); // a collection or two
    await session.stop();
    const log = await events;
    expect(ofKind(log, 'open').filter((event) => event.path === 'inside.txt')).toMatchObject([{ pid: inside.pid }]);
    expect(ofKind(log, 'open').filter((event) => event.path === 'outside.txt')).toEqual([]);
    expect(log.filter((event) => event.pid === outside.pid)).toEqual([]);
    expect(await session.exited).toBeNull();
  });

  it.runIf(isRoot && hasTools && hasCgroup2)('follows cgroups below the target, also those created after tracing began', async () => {
    const dir = directory('cgroup-tree');
    const cgroup = fs.mkdtempSync(path.join(CGROUP2, 'sky-trace-test-'));
    const before = path.join(cgroup, 'before');
    const later = path.join(cgroup, 'later');
    fs.mkdirSync(before);
    cleanups.push(() => {
      for (const sub of [later, before]) if (fs.existsSync(sub)) fs.rmdirSync(sub);
      fs.rmdirSync(cgroup);
    });
    const nested = startOutsider(`echo $$ > ${before}/cgroup.procs; ${WAIT_FOR_GO}; echo a > nested.txt`, dir);
    started.push(nested);
    for (let i = 0; i < 200 && !fs.readFileSync(path.join(before, 'cgroup.procs'), 'utf8').trim(); i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    const session = await startTrace({ backend: 'ebpf', target: { kind: 'cgroup', path: cgroup } });
    const events = collect(session);
    fs.mkdirSync(later);
    await new Promise((resolve) => setTimeout(resolve, 1000)); // the tree is scanned every 250 ms
    const joined = startOutsider(`echo $$ > ${later}/cgroup.procs; ${WAIT_FOR_GO}; echo b > joined.txt`, dir);
    started.push(joined);
    for (let i = 0; i < 200 && !fs.readFileSync(path.join(later, 'cgroup.procs'), 'utf8').trim(); i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    fs.writeFileSync(path.join(dir, 'go'), '');
    expect(await exitOf(nested)).toBe(0);
    expect(await exitOf(joined)).toBe(0);
    await new Promise((resolve) => setTimeout(resolve, 500));
    await session.stop();
    const log = await events;
    expect(ofKind(log, 'open').filter((event) => event.path === 'nested.txt')).toMatchObject([{ pid: nested.pid }]);
    expect(ofKind(log, 'open').filter((event) => event.path === 'joined.txt')).toMatchObject([{ pid: joined.pid }]);
  });
});
