/**
 * Both live backends against real programs. One traced shell script per backend runs every scenario (a
 * bpftrace start costs seconds); each test then checks its part of the log. Exact values come from what the
 * scenario does; where the backends differ by design (the ebpf backend sees the kernel's file position and the
 * app hint, strace does not), the test says which and why.
 */
import { spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SyscallEvent } from '../../../src/trace/events.js';
import { SKY_HINT_MAGIC, startTrace } from '../../../src/trace/index.js';
import {
  compileFixtures, isDescendant, killGroup, ofKind, openOf, startOutsider, summariesOf, tempDir, total, traceCommand,
  type Backend, type Ev, type Run,
} from './helpers.js';

const O_CREAT = 0o100;
const O_APPEND = 0o2000;
const O_DIRECTORY = 0o200000;
const AT_FDCWD = -100;
const COPY_BYTES = 100_000;
const CAT_TEXT = 'cat copies this line\n';
const DD_TEXT = 'dd reads and writes this\n';

const isRoot = process.getuid?.() === 0;
const hasTools = spawnSync('sh', ['-c', 'command -v bpftrace && command -v strace && command -v gcc && command -v fio']).status === 0;

function scenario(bin: Record<string, string>): string {
  return `set -e
sh -c 'sh -c "echo x > chain.txt"'
${bin.thread} thread.txt
mkdir fdops.d && ${bin.fdops} "$PWD/fdops.d"
cp copy-src.bin copy-dst.bin
cat cat-a.txt > cat-b.txt
dd if=dd-a.txt of=dd-b.txt bs=4096 status=none
mkdir misc.d && ${bin.misc} "$PWD/misc.d"
${bin.hint} hint.dat
env PATH=/sky-nonexistent-a:/sky-nonexistent-b:/usr/bin:/bin true
ln cat-a.txt cat-a.link && rm cat-a.txt
fio --output=/dev/null --name=u --filename=uring.dat --rw=write --bs=64k --size=1m --fallocate=none --ioengine=io_uring --iodepth=4
fio --output=/dev/null --name=a --filename=aio.dat --rw=write --bs=4k --size=256k --fallocate=none --ioengine=libaio --direct=1 --iodepth=8
fio --output=/dev/null --name=f --filename=fixed.dat --rw=write --bs=4k --size=64k --ioengine=io_uring --registerfiles=1 --iodepth=2
exit 3
`;
}

describe.each<Backend>(['ebpf', 'ptrace'])('%s backend', (backend) => {
  let dir = '';
  let run: Run;
  let outsider: ChildProcess | null = null;
  let record = '';
  const ready = isRoot && hasTools;

  beforeAll(async () => {
    if (!ready) return;
    dir = tempDir(backend);
    const bin = compileFixtures(dir);
    fs.writeFileSync(path.join(dir, 'copy-src.bin'), Buffer.alloc(COPY_BYTES, 7));
    fs.writeFileSync(path.join(dir, 'cat-a.txt'), CAT_TEXT);
    fs.writeFileSync(path.join(dir, 'dd-a.txt'), DD_TEXT);
    fs.writeFileSync(path.join(dir, 'scenario.sh'), scenario(bin));
    // Runs during the whole trace, started by nobody traced: none of its calls may show up.
    outsider = startOutsider('while :; do echo y >> outsider.txt; sleep 0.01; done', dir);
    record = path.join(dir, 'record.jsonl');
    run = await traceCommand(backend, ['sh', 'scenario.sh'], dir, { record });
  });

  afterAll(() => {
    killGroup(outsider);
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it.runIf(ready)('reports the command exit status and loses nothing', () => {
    expect(run.exit).toBe(3);
    expect(run.lost).toBe(0);
    expect(ofKind(run.events, 'lost')).toEqual([]);
  });

  it.runIf(ready)('delivers events in time order', () => {
    // ptrace reports an fd's summary when the fd is closed, stamped with its last call: the one exception.
    const ordered = run.events.filter((event) => event.kind !== 'rw_summary' || backend === 'ebpf');
    for (let i = 1; i < ordered.length; i++) expect(ordered[i].ts).toBeGreaterThanOrEqual(ordered[i - 1].ts);
  });

  it.runIf(ready)('follows fork and exec chains (sh -c \'sh -c "echo x > f"\')', () => {
    const execs = ofKind(run.events, 'exec').filter((event) => event.ret === 0);
    const inner = execs.filter((event) => event.argv?.join(' ') === 'sh -c echo x > chain.txt');
    expect(inner).toHaveLength(1);
    const middle = execs.filter((event) => event.argv?.at(-1) === 'sh -c "echo x > chain.txt"');
    expect(middle).toHaveLength(1);
    const open = openOf(run.events, 'chain.txt');
    expect(open.pid).toBe(inner[0].pid);
    expect(isDescendant(run.events, open.pid, middle[0].pid)).toBe(true);
    expect(isDescendant(run.events, middle[0].pid, run.root)).toBe(true);
    expect(open.pid).not.toBe(middle[0].pid);
    // dash saves stdout with F_DUPFD, then moves the file onto fd 1 and writes "x\n" through it.
    const dups = ofKind(run.events, 'dup').filter((event) => event.pid === open.pid && event.fd === open.ret);
    expect(dups.map((event) => event.ret)).toEqual([1]);
    const written = total(summariesOf(run.events, open.pid, 1, dups[0].ts));
    expect(written).toMatchObject({ writeCalls: 1, writeBytes: 2, writeStart: 0, writeEnd: 2, readCalls: 0 });
    const exits = ofKind(run.events, 'exit').filter((event) => event.pid === open.pid);
    expect(exits).toMatchObject([{ group: true, code: 0 }]);
  });

  it.runIf(ready)('reports a hard link (ln) with both names, and the unlink after it', () => {
    const links = ofKind(run.events, 'link').filter((event) => event.newpath.endsWith('cat-a.link'));
    expect(links).toHaveLength(1);
    expect(links[0]!.oldpath.endsWith('cat-a.txt')).toBe(true);
    expect(links[0]!.ret).toBe(0);
    const unlinked = ofKind(run.events, 'unlink').filter((event) => event.path.endsWith('cat-a.txt') && event.pid !== links[0]!.pid);
    expect(unlinked).toMatchObject([{ ret: 0 }]);
    expect(unlinked[0]!.ts).toBeGreaterThan(links[0]!.ts);
  });

  /** fio's job process (a child of fio's main process, which lays the file out first): its open of `file`. */
  function fioJobOpen(file: string): Ev<'open'> {
    const opens = ofKind(run.events, 'open').filter((event) => event.path === file && event.ret >= 0);
    expect(opens.length).toBeGreaterThanOrEqual(1);
    return opens.at(-1)!;
  }

  it.runIf(ready)('follows io_uring and AIO writes (ebpf), or says it cannot (ptrace)', () => {
    const uring = fioJobOpen('uring.dat');
    const aio = fioJobOpen('aio.dat');
    const unseen = ofKind(run.events, 'async_unseen');
    const written = (open: Ev<'open'>) => total(summariesOf(run.events, open.pid, open.ret, open.ts));
    if (backend === 'ebpf') {
      expect(written(uring)).toMatchObject({ writeBytes: 1 << 20, writeStart: 0, writeEnd: 1 << 20 });
      expect(written(aio)).toMatchObject({ writeBytes: 256 << 10, writeStart: 0, writeEnd: 256 << 10 });
      expect(unseen.filter((event) => event.pid === uring.pid || event.pid === aio.pid)).toEqual([]);
    } else {
      // strace cannot read the requests out of the ring or the iocbs; the setup says they will come unseen.
      expect(written(uring).writeBytes).toBe(0);
      expect(unseen.filter((event) => event.pid === uring.pid).map((event) => event.api)).toEqual(['io_uring']);
      expect(unseen.filter((event) => event.pid === aio.pid).map((event) => event.api)).toEqual(['aio']);
    }
    // Requests on a registered file name no fd: neither backend follows them, both say so.
    const fixed = fioJobOpen('fixed.dat');
    const fixedUnseen = unseen.filter((event) => event.pid === fixed.pid);
    expect(fixedUnseen.map((event) => event.api)).toEqual(['io_uring']);
    if (backend === 'ebpf') expect(fixedUnseen[0]!.detail).toMatch(/registered \(fixed\) file/);
  });

  it.runIf(ready)("pairs each exec of a PATH search with its own path and result (env tries three directories)", () => {
    const execs = ofKind(run.events, 'exec');
    const search = execs.filter((event) => event.path.endsWith('/true'));
    expect(search.map((event) => [event.path, event.ret])).toEqual([
      ['/sky-nonexistent-a/true', -2],
      ['/sky-nonexistent-b/true', -2],
      ['/usr/bin/true', 0],
    ]);
    expect(new Set(search.map((event) => event.pid)).size).toBe(1);
  });

  it.runIf(ready)('follows threads: a write from a second thread is the process\'s', () => {
    const open = openOf(run.events, 'thread.txt');
    const threads = ofKind(run.events, 'fork').filter((event) => event.pid === open.pid && event.thread);
    expect(threads).toHaveLength(1);
    expect(threads[0].child).toBe(open.pid);
    expect(threads[0].childTid).not.toBe(open.pid);
    const summaries = summariesOf(run.events, open.pid, open.ret, open.ts);
    expect(total(summaries)).toMatchObject({ writeCalls: 1, writeBytes: 14, writeStart: 0, writeEnd: 14 });
    expect(summaries.map((event) => event.tid)).toEqual([threads[0].childTid]);
    // The ebpf backend reads the first 4 bytes a write put at offset 0 ("from a thread\n"); strace does not.
    expect(summaries.map((event) => event.writeHead)).toEqual([backend === 'ebpf' ? Buffer.from('from').readUInt32LE(0) : undefined]);
    const threadExit = ofKind(run.events, 'exit').filter((event) => event.tid === threads[0].childTid);
    expect(threadExit).toMatchObject([{ pid: open.pid, group: false }]);
  });

  it.runIf(ready)('reports dup2 and the write through the new fd', () => {
    const open = openOf(run.events, 'dup2.txt');
    const dup = ofKind(run.events, 'dup').filter((event) => event.pid === open.pid && event.fd === open.ret);
    expect(dup).toMatchObject([{ ret: 7, cloexec: false }]);
    const close = ofKind(run.events, 'close').filter((event) => event.pid === open.pid && event.ts > dup[0].ts);
    expect(close[0]).toMatchObject({ fd: open.ret, ret: 0 });
    expect(total(summariesOf(run.events, open.pid, 7, dup[0].ts))).toMatchObject({ writeCalls: 1, writeBytes: 14, writeStart: 0, writeEnd: 14 });
  });

  it.runIf(ready)('reports O_APPEND writes where the kernel put them (ebpf) or as unknown offsets (ptrace)', () => {
    const open = openOf(run.events, 'append.txt', (event) => (event.flags & O_APPEND) !== 0);
    const written = total(summariesOf(run.events, open.pid, open.ret, open.ts));
    expect(written).toMatchObject({ writeCalls: 1, writeBytes: 3 });
    // The kernel's file position after an appending write is the end of the file; strace shows no position.
    if (backend === 'ebpf') expect(written).toMatchObject({ writeStart: 10, writeEnd: 13, position: 13 });
    else expect(written).toMatchObject({ writeStart: -1, writeEnd: -1, position: -1 });
  });

  it.runIf(ready)('reports chdir then a relative open, and openat relative to a directory fd', () => {
    const chdirs = ofKind(run.events, 'chdir').filter((event) => event.path === 'sub');
    expect(chdirs).toMatchObject([{ ret: 0 }]);
    const relative = openOf(run.events, 'relative.txt');
    expect(relative).toMatchObject({ dirfd: AT_FDCWD, pid: chdirs[0].pid });
    expect(relative.ts).toBeGreaterThan(chdirs[0].ts);
    const parent = openOf(run.events, '..', (event) => (event.flags & O_DIRECTORY) !== 0 && event.pid === chdirs[0].pid);
    const at = openOf(run.events, 'at.txt');
    expect(at).toMatchObject({ dirfd: parent.ret, flags: 0o1101, mode: 0o600 });
    expect(at.ts).toBeGreaterThan(parent.ts);
  });

  it.runIf(ready)('reports cp as a copy_file_range from the source fd to the destination fd', () => {
    const source = openOf(run.events, 'copy-src.bin');
    const target = openOf(run.events, 'copy-dst.bin', (event) => (event.flags & O_CREAT) !== 0);
    const copies = ofKind(run.events, 'copy').filter((event) => event.pid === source.pid && event.call === 'copy_file_range');
    expect(copies.map((event) => event.ret)).toEqual([COPY_BYTES, 0]);
    expect(copies[0]).toMatchObject({ fdIn: source.ret, fdOut: target.ret, offsetIn: null, offsetOut: null });
    // cp asks for "as much as possible", a length beyond 2^53: clamped.
    expect(copies[0].length).toBe(Number.MAX_SAFE_INTEGER);
  });

  it.runIf(ready)('reports cat a > b (a copy from a\'s fd to fd 1) and dd (reads on fd 0, writes on fd 1)', () => {
    const catA = openOf(run.events, 'cat-a.txt');
    const catCopies = ofKind(run.events, 'copy').filter((event) => event.pid === catA.pid && event.ret > 0);
    expect(catCopies).toMatchObject([{ call: 'copy_file_range', fdIn: catA.ret, fdOut: 1, ret: CAT_TEXT.length }]);
    const ddA = openOf(run.events, 'dd-a.txt');
    const reads = total(summariesOf(run.events, ddA.pid, 0, ddA.ts));
    expect(reads).toMatchObject({ readCalls: 2, readBytes: DD_TEXT.length, writeCalls: 0 });
    const ddB = openOf(run.events, 'dd-b.txt');
    const writes = total(summariesOf(run.events, ddB.pid, 1, ddB.ts));
    expect(writes).toMatchObject({ writeCalls: 1, writeBytes: DD_TEXT.length, writeStart: 0, writeEnd: DD_TEXT.length, readCalls: 0 });
  });

  it.runIf(ready)('decodes each call of misc.c exactly (truncate, rename, unlink, mappings, hints, copies)', () => {
    const dirOpen = openOf(run.events, '.', (event) => (event.flags & O_DIRECTORY) !== 0);
    const pid = dirOpen.pid;
    const mine = run.events.filter((event) => event.pid === pid && event.ts >= dirOpen.ts);
    const a = openOf(mine, 'a');
    const b = openOf(mine, 'b');
    const one = <K extends SyscallEvent['kind']>(kind: K) => ofKind(mine, kind);
    expect(a).toMatchObject({ dirfd: dirOpen.ret, flags: 0o1102, mode: 0o600 });
    expect(one('copy').filter((event) => event.call === 'copy_file_range')).toMatchObject([
      { fdIn: a.ret, fdOut: b.ret, offsetIn: 100, offsetOut: 0, length: 1000, ret: 1000 },
    ]);
    expect(one('copy').filter((event) => event.call === 'FICLONE')).toMatchObject([{ fdIn: a.ret, fdOut: b.ret, ret: -95 }]);
    // strace 6.1 does not follow F_SET_RW_HINT's pointer; the kernel-side tracer reads the value.
    expect(one('fcntl').filter((event) => event.cmd === 1036)).toMatchObject([{ fd: b.ret, arg: backend === 'ebpf' ? 2 : -1, ret: 0 }]);
    expect(one('fadvise')).toMatchObject([{ fd: a.ret, offset: 0, length: 4096, advice: 4, ret: 0 }]);
    expect(one('ioprio')).toMatchObject([{ which: 1, who: 0, ioprio: (2 << 13) | 4, ret: 0 }]);
    expect(one('ftruncate')).toMatchObject([{ fd: b.ret, length: 3000, ret: 0 }]);
    expect(one('fallocate')).toMatchObject([{ fd: b.ret, mode: 0, offset: 0, length: 16384, ret: 0 }]);
    const maps = one('mmap');
    expect(maps).toMatchObject([{ addr: 0, length: 4096, prot: 3, flags: 1, fd: b.ret, offset: 0 }]);
    expect(one('msync')).toMatchObject([{ addr: maps[0].ret, length: 4096, flags: 4, ret: 0 }]);
    expect(one('munmap').filter((event) => event.addr === maps[0].ret)).toMatchObject([{ length: 4096, ret: 0 }]);
    expect(one('fsync')).toMatchObject([{ fd: b.ret, dataOnly: true, ret: 0 }]);
    expect(one('dup').filter((event) => event.fd === b.ret)).toMatchObject([{ cloexec: true, ret: 10 }]);
    expect(one('truncate')).toMatchObject([{ path: 'a', length: 10, ret: 0 }]);
    expect(one('rename')).toMatchObject([
      { olddirfd: AT_FDCWD, oldpath: 'a', newdirfd: AT_FDCWD, newpath: 'a2', flags: 0, ret: 0 },
      { olddirfd: dirOpen.ret, oldpath: 'b', newdirfd: dirOpen.ret, newpath: 'b2', flags: 1, ret: 0 },
    ]);
    expect(one('unlink')).toMatchObject([
      { dirfd: dirOpen.ret, path: 'a2', flags: 0, ret: 0 },
      { dirfd: AT_FDCWD, path: 'b2', flags: 0, ret: 0 },
    ]);
    expect(one('fchdir')).toMatchObject([{ fd: dirOpen.ret, ret: 0 }]);
    expect(one('close_range')).toMatchObject([{ first: 10, last: 10, flags: 0, ret: 0 }]);
    // lseek is seen by strace; the ebpf backend reads positions from the kernel instead of hooking lseek.
    expect(one('lseek')).toEqual(backend === 'ptrace' ? [expect.objectContaining({ fd: 10, offset: 5, whence: 0, ret: 5 })] : []);
    const written = total(summariesOf(mine, pid, a.ret, a.ts));
    expect(written).toMatchObject({ writeCalls: 1, writeBytes: 8192, writeStart: 0, writeEnd: 8192 });
  });

  it.runIf(ready)('sees the app hint in the extra syscall arguments (ebpf) or aggregates the calls (ptrace)', () => {
    const open = openOf(run.events, 'hint.dat');
    const hinted = ofKind(run.events, 'rw').filter((event) => event.pid === open.pid);
    const summary = total(summariesOf(run.events, open.pid, open.ret, open.ts));
    if (backend === 'ptrace') {
      expect(hinted).toEqual([]);
      expect(summary).toMatchObject({ writeCalls: 3, writeBytes: 4096 + 1000 + 10, writeStart: 0, writeEnd: 9192, readCalls: 1, readBytes: 100 });
      return;
    }
    expect(hinted).toMatchObject([
      { op: 'write', fd: open.ret, offset: null, count: 4096, ret: 4096, hint: { magic: SKY_HINT_MAGIC, ioClass: 3 }, position: 4096 },
      { op: 'write', fd: open.ret, offset: 8192, count: 1000, ret: 1000, hint: { magic: SKY_HINT_MAGIC, ioClass: 2 } },
      { op: 'read', fd: open.ret, offset: 0, count: 100, ret: 100, hint: { magic: SKY_HINT_MAGIC, ioClass: 4 } },
    ]);
    // Hinted calls are reported one by one and not counted again in the summary.
    expect(summary).toMatchObject({ writeCalls: 1, writeBytes: 10, writeStart: 4096, writeEnd: 4106, readCalls: 0 });
  });

  it.runIf(ready)('reports file identity with ebpf opens and summaries', () => {
    const open = openOf(run.events, 'dup2.txt');
    if (backend === 'ptrace') return expect(open.ino).toBeUndefined();
    const stat = fs.statSync(path.join(dir, 'fdops.d', 'dup2.txt'));
    expect(open).toMatchObject({ ino: stat.ino, dev: stat.dev });
    expect(summariesOf(run.events, open.pid, 7, open.ts).map((event) => event.ino)).toEqual([stat.ino]);
  });

  it.runIf(ready)('does not trace a process the target did not start', () => {
    expect(outsider?.pid).toBeGreaterThan(0);
    const foreign = run.events.filter((event) => event.pid !== 0 && !isDescendant(run.events, event.pid, run.root));
    expect(foreign).toEqual([]);
    expect(ofKind(run.events, 'open').filter((event) => event.path.includes('outsider'))).toEqual([]);
    expect(fs.statSync(path.join(dir, 'outsider.txt')).size).toBeGreaterThan(0);
  });

  it.runIf(ready)('records what it delivers, and the replay backend gives it back unchanged', async () => {
    const replay = await startTrace({ backend: 'replay', target: { kind: 'replay', file: record } });
    const replayed: SyscallEvent[] = [];
    for await (const event of replay.events) replayed.push(event);
    expect(replayed).toEqual(run.events);
    expect(await replay.exited).toBeNull();
    expect(replay.lost()).toBe(0);
  });
});
