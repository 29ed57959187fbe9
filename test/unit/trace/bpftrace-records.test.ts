/**
 * The ebpf backend's record decoder on records laid out as the BPF program stores them (keys and tuples of
 * little-endian int64, 200-byte strings), and the program generator's shape.
 */
import { describe, expect, it } from 'vitest';
import { int64At } from '../../../src/trace/ebpf/bpf.js';
import {
  AGGREGATE_KEY_BYTES, AGGREGATE_VALUE_BYTES, RECORD_KEY_BYTES, RECORD_VALUE_BYTES, RecordDecoder, aggregateEvent,
  stringAt, stringKey, userDev, type StringTable,
} from '../../../src/trace/ebpf/decode.js';
import { Code, RECORD_FIELDS, STRING_BYTES, buildProgram } from '../../../src/trace/ebpf/program.js';
import { SKY_HINT_MAGIC } from '../../../src/trace/hint-abi.js';

function int64s(values: readonly (number | bigint)[]): Buffer {
  const buffer = Buffer.alloc(values.length * 8);
  values.forEach((value, i) => buffer.writeBigInt64LE(BigInt.asIntN(64, BigInt(value)), i * 8));
  return buffer;
}

function record(tid: number, ts: number, code: number, pid: number, fields: readonly (number | bigint)[]): { key: Buffer; value: Buffer } {
  const padded = [...fields, ...Array<number>(RECORD_FIELDS - fields.length).fill(0)];
  return { key: int64s([tid, ts, 0]), value: int64s([code, pid, ...padded]) };
}

function text(value: string | Buffer): Buffer {
  const buffer = Buffer.alloc(STRING_BYTES);
  (typeof value === 'string' ? Buffer.from(value) : value).copy(buffer, 0, 0, STRING_BYTES - 1);
  return buffer;
}

class Harness {
  readonly strings: StringTable = new Map();
  readonly decoder = new RecordDecoder(this.strings);

  string(tid: number, ts: number, sub: number, value: string | Buffer): this {
    this.strings.set(stringKey(tid, ts, sub), stringAt(text(value), 0));
    return this;
  }

  decode(tid: number, ts: number, code: number, pid: number, fields: readonly (number | bigint)[]) {
    const { key, value } = record(tid, ts, code, pid, fields);
    expect(key.length).toBe(RECORD_KEY_BYTES);
    expect(value.length).toBe(RECORD_VALUE_BYTES);
    return this.decoder.decode(key, 0, value, 0);
  }
}

const GIB = 2 ** 30;

describe('RecordDecoder', () => {
  it('an open joins its path, and reports the file identity in stat(2) encoding', () => {
    const h = new Harness().string(11, 5000, 0, 'dir/file.txt');
    const kernelDev = (8 << 20) | 1; // sda1
    expect(h.decode(11, 5000, Code.open, 10, [-100, 0o1101, 0o644, 3, 1234, kernelDev])).toEqual({
      kind: 'open', ts: 5000, pid: 10, tid: 11, dirfd: -100, path: 'dir/file.txt', flags: 0o1101, mode: 0o644, ret: 3, ino: 1234, dev: 0x801,
    });
    expect(h.strings.size).toBe(0);
  });

  it("an open carries the inode as the kernel had it (size, type, links, mtime) and the dirfd's directory", () => {
    const h = new Harness().string(11, 6000, 0, 'f');
    const kernelDev = (8 << 20) | 1;
    const typeAndLinks = 0o100644 | (3 * 0x10000); // a regular file with 3 links
    const mtimeUs = 1_796_615_870_847_321;
    expect(h.decode(11, 6000, Code.open, 10, [7, 0, 0, 4, 1234, kernelDev, 5 * GIB, typeAndLinks, mtimeUs, 99, kernelDev])).toEqual({
      kind: 'open', ts: 6000, pid: 10, tid: 11, dirfd: 7, path: 'f', flags: 0, mode: 0, ret: 4, ino: 1234, dev: 0x801,
      size: 5 * GIB, fileType: 'regular', nlink: 3, mtimeUs, dirIno: 99, dirDev: 0x801,
    });
    const dir = new Harness().string(11, 6001, 0, 'd');
    expect(dir.decode(11, 6001, Code.open, 10, [-100, 0, 0, 5, 77, kernelDev, 4096, 0o40755 | 0x20000, mtimeUs])).toMatchObject({
      fileType: 'directory', nlink: 2, size: 4096,
    });
    // A kernel without i_mtime_sec: no inode fields, so insight stats the file instead.
    const old = new Harness().string(11, 6002, 0, 'f');
    expect(old.decode(11, 6002, Code.open, 10, [-100, 0, 0, 5, 77, kernelDev, 0, 0, 0])).not.toHaveProperty('fileType');
  });

  it('unlink, rename and fchdir carry the identity of the directory behind their fds', () => {
    const kernelDev = (8 << 20) | 1;
    const h = new Harness().string(1, 9, 0, 'x').string(1, 10, 0, 'a').string(1, 10, 1, 'b');
    expect(h.decode(1, 9, Code.unlink, 1, [5, 0, 0, 42, kernelDev])).toMatchObject({ dirfd: 5, dirIno: 42, dirDev: 0x801 });
    expect(h.decode(1, 10, Code.rename, 1, [5, 6, 0, 0, 42, kernelDev, 43, kernelDev])).toMatchObject({
      oldDirIno: 42, oldDirDev: 0x801, newDirIno: 43, newDirDev: 0x801,
    });
    expect(h.decode(1, 11, Code.fchdir, 1, [5, 0, 42, kernelDev])).toEqual({ kind: 'fchdir', ts: 11, pid: 1, tid: 1, fd: 5, ret: 0, ino: 42, dev: 0x801 });
    h.string(1, 12, 0, 'tmp_obj').string(1, 12, 1, 'ab/cdef');
    expect(h.decode(1, 12, Code.link, 1, [5, 5, 0, 0, 42, kernelDev, 42, kernelDev])).toEqual({
      kind: 'link', ts: 12, pid: 1, tid: 1, olddirfd: 5, oldpath: 'tmp_obj', newdirfd: 5, newpath: 'ab/cdef', flags: 0, ret: 0,
      oldDirIno: 42, oldDirDev: 0x801, newDirIno: 42, newDirDev: 0x801,
    });
  });

  it('a record whose string has not arrived is undefined (retried later), not an event', () => {
    expect(new Harness().decode(1, 2, Code.unlink, 1, [-100, 0, 0])).toBeUndefined();
  });

  it('a rename has two strings; a string that filled the buffer is flagged truncated', () => {
    const long = 'x'.repeat(300);
    const h = new Harness().string(1, 9, 0, 'old').string(1, 9, 1, long);
    expect(h.decode(1, 9, Code.rename, 1, [3, -100, 1, 0])).toEqual({
      kind: 'rename', ts: 9, pid: 1, tid: 1, olddirfd: 3, oldpath: 'old', newdirfd: -100, newpath: 'x'.repeat(STRING_BYTES - 1), flags: 1, ret: 0, truncated: true,
    });
  });

  it('an exec pairs its entry and exit halves whichever comes first, with argv and the close-on-exec fds', () => {
    for (const exitFirst of [false, true]) {
      const h = new Harness().string(7, 100, 0, '/bin/cat').string(7, 100, 1, 'cat').string(7, 100, 2, 'a b').string(7, 200, 0, 'cat');
      const enter = () => h.decode(7, 100, Code.execEnter, 7, [-100, (1n << 3n) | (1n << 63n), 1n << 1n, 2]);
      const exit = () => h.decode(7, 200, Code.execExit, 7, [0, 100]);
      const first = exitFirst ? exit() : enter();
      const second = exitFirst ? enter() : exit();
      expect(first).toBeNull();
      expect(second).toEqual({
        kind: 'exec', ts: 200, pid: 7, tid: 7, comm: 'cat', path: '/bin/cat', argv: ['cat', 'a b'], ret: 0, closedFds: [3, 63, 65],
      });
      expect(h.decoder.unpairedExecs()).toEqual([]);
    }
  });

  it("a PATH search's failed execs pair each exit with its own entry, in whatever order a collection brings them", () => {
    // env tries /a/env-target, then /b/env-target (both ENOENT), then /c/env-target: six halves of one pid.
    const h = new Harness();
    const tries = [['/a/t', 100, 110, -2], ['/b/t', 120, 130, -2], ['/c/t', 140, 150, 0]] as const;
    for (const [path, enterTs, exitTs] of tries) h.string(7, enterTs, 0, path).string(7, enterTs, 1, 't').string(7, exitTs, 0, 'env');
    const enter = (i: number) => h.decode(7, tries[i]![1], Code.execEnter, 7, [-100, 0n, 0n, 1]);
    const exit = (i: number) => h.decode(7, tries[i]![2], Code.execExit, 7, [tries[i]![3], tries[i]![1]]);
    const events = [exit(2), enter(1), enter(0), exit(0), enter(2), exit(1)].filter((event) => event !== null);
    expect(events.map((event) => [event!.kind === 'exec' && event!.path, event!.kind === 'exec' && event!.ret])).toEqual([
      ['/a/t', -2], ['/c/t', 0], ['/b/t', -2],
    ]);
    expect(h.decoder.unpairedExecs()).toEqual([]);
  });

  it('an exec exit that cannot name its entry (0) takes the latest entry before it', () => {
    const h = new Harness().string(7, 100, 0, '/bin/a').string(7, 100, 1, 'a').string(7, 120, 0, '/bin/b').string(7, 120, 1, 'b').string(7, 130, 0, 'b');
    expect(h.decode(7, 100, Code.execEnter, 7, [-100, 0n, 0n, 1])).toBeNull();
    expect(h.decode(7, 120, Code.execEnter, 7, [-100, 0n, 0n, 1])).toBeNull();
    expect(h.decode(7, 130, Code.execExit, 7, [0, 0])).toMatchObject({ path: '/bin/b', ret: 0 });
  });

  it('an exec whose entry was never seen is reported without path at the end of the collection', () => {
    const h = new Harness().string(7, 200, 0, 'sh');
    expect(h.decode(7, 200, Code.execExit, 7, [-2])).toBeNull();
    expect(h.decoder.unpairedExecs()).toEqual([{ kind: 'exec', ts: 200, pid: 7, tid: 7, comm: 'sh', path: '', ret: -2 }]);
  });

  it('exit: a group exit has a status or a signal; a thread exit has neither', () => {
    const h = new Harness().string(5, 1, 0, 'a').string(6, 2, 0, 'a').string(5, 3, 0, 'a');
    expect(h.decode(5, 1, Code.exit, 5, [1, 3 << 8])).toMatchObject({ kind: 'exit', group: true, code: 3, comm: 'a' });
    expect(h.decode(6, 2, Code.exit, 5, [0, 0])).toEqual({ kind: 'exit', ts: 2, pid: 5, tid: 6, comm: 'a', group: false });
    expect(h.decode(5, 3, Code.exit, 5, [1, 9])).toMatchObject({ kind: 'exit', group: true, signal: 9 });
  });

  it('fork of a thread belongs to the forking process; of a process, to the child', () => {
    const h = new Harness();
    expect(h.decode(5, 1, Code.fork, 5, [6, 1])).toEqual({ kind: 'fork', ts: 1, pid: 5, tid: 5, child: 5, childTid: 6, thread: true });
    expect(h.decode(5, 2, Code.fork, 5, [7, 0])).toEqual({ kind: 'fork', ts: 2, pid: 5, tid: 5, child: 7, childTid: 7, thread: false });
  });

  it('hinted calls carry the magic, class, offset (null for positional-less calls) and position', () => {
    const h = new Harness();
    expect(h.decode(3, 4, Code.rw, 3, [1, 5, -1, 4096, 4096, 3, 4096])).toEqual({
      kind: 'rw', ts: 4, pid: 3, tid: 3, op: 'write', fd: 5, offset: null, count: 4096, ret: 4096, hint: { magic: SKY_HINT_MAGIC, ioClass: 3 }, position: 4096,
    });
    expect(h.decode(3, 5, Code.rw, 3, [2, 5, 8192, 100, 100, 4, 0])).toMatchObject({ op: 'read', offset: 8192, hint: { ioClass: 4 } });
  });

  it('copies: null offset pointers and the call by number', () => {
    const h = new Harness();
    expect(h.decode(3, 4, Code.copy, 3, [0, 4, 5, 100, 0, 1000, 1000, 2])).toMatchObject({
      kind: 'copy', call: 'copy_file_range', fdIn: 4, fdOut: 5, offsetIn: 100, offsetOut: null, length: 1000, ret: 1000,
    });
    expect(h.decode(3, 5, Code.copy, 3, [3, 4, 5, 0, 0, 0, -95, 3])).toMatchObject({ call: 'FICLONE', offsetIn: null, offsetOut: null, ret: -95 });
    expect(h.decode(3, 6, Code.copy, 3, [2, 4, 5, 0, 0, 4096, 4096, 3, 900, 77])).toMatchObject({ call: 'splice', inIno: 900, outIno: 77 });
    expect(h.decode(3, 7, Code.copy, 3, [2, 4, 5, 0, 0, 4096, 4096, 3])).not.toHaveProperty('inIno');
  });

  it('a summary moved out at fsync is an rw_summary timed by its last call', () => {
    const h = new Harness();
    expect(h.decode(3, 900, Code.summary, 3, [4, 77, 1, 10, 2, 20, 0, 20, 20, 800, 8 << 20])).toEqual({
      kind: 'rw_summary', ts: 800, pid: 3, tid: 3, fd: 4, readCalls: 1, readBytes: 10, writeCalls: 2, writeBytes: 20,
      writeStart: 0, writeEnd: 20, position: 20, ino: 77, dev: 0x800,
    });
    // Moved out by another thread than the writer (a close): the writer's tid rides above the fd.
    expect(h.decode(3, 904, Code.summary, 3, [4 + 5 * 2 ** 32, 77, 0, 0, 1, 20, 0, 20, 20, 800, 8 << 20])).toMatchObject({ tid: 5, fd: 4 });
  });

  it("the dev field's upper half is the head written at offset 0 (absent when zero or nothing was written there)", () => {
    const h = new Harness();
    const head = Buffer.from('From').readUInt32LE(0);
    const devAndHead = (BigInt(head) << 32n) | BigInt(8 << 20);
    const fields = (writeStart: number) => [4, 77, 0, 0, 1, 20, writeStart, writeStart + 20, 20, 800, devAndHead];
    expect(h.decode(3, 901, Code.summary, 3, fields(0))).toMatchObject({ dev: 0x800, writeHead: head });
    expect(h.decode(3, 902, Code.summary, 3, fields(4096))).not.toHaveProperty('writeHead');
    expect(h.decode(3, 903, Code.summary, 3, [4, 77, 0, 0, 1, 20, 0, 20, 20, 800, 8 << 20])).not.toHaveProperty('writeHead');
    const key = int64s([42, 3, 99, 7]);
    const value = int64s([0, 0, 1, 20, 0, 20, 20, 123456, 43, 0]);
    value.writeUInt32LE(8 << 20, 9 * 8);
    value.writeUInt32LE(head, 9 * 8 + 4);
    expect(aggregateEvent(key, 0, value, 0)).toMatchObject({ dev: 0x800, writeStart: 0, writeHead: head });
  });
});

describe('aggregates, strings, numbers', () => {
  it('an aggregate is the rw_summary of its generation', () => {
    const key = int64s([42, 3, 99, 7]);
    const value = int64s([2, 100, 0, 0, 0, 0, 100, 123456, 43, 8 << 20]);
    expect(key.length).toBe(AGGREGATE_KEY_BYTES);
    expect(value.length).toBe(AGGREGATE_VALUE_BYTES);
    expect(aggregateEvent(key, 0, value, 0)).toEqual({
      kind: 'rw_summary', ts: 123456, pid: 42, tid: 43, fd: 3, readCalls: 2, readBytes: 100, writeCalls: 0, writeBytes: 0,
      writeStart: -1, writeEnd: -1, position: 100, ino: 99, dev: 0x800,
    });
  });

  it('strings end at NUL; bytes that are not UTF-8 become U+FFFD', () => {
    expect(stringAt(text('abc'), 0)).toEqual({ value: 'abc', truncated: false });
    expect(stringAt(text(Buffer.from([0x61, 0xff, 0x62])), 0)).toEqual({ value: 'a\ufffdb', truncated: false });
    expect(stringAt(text('é'.repeat(99)), 0).truncated).toBe(false);
    expect(stringAt(text('é'.repeat(100)), 0).truncated).toBe(true);
  });

  it('int64 fields: exact below 2^53, clamped beyond', () => {
    expect(int64At(int64s([-100]), 0)).toBe(-100);
    expect(int64At(int64s([5 * GIB * 1024]), 0)).toBe(5 * GIB * 1024);
    expect(int64At(int64s([2n ** 63n - 2n ** 30n]), 0)).toBe(Number.MAX_SAFE_INTEGER);
    expect(int64At(int64s([-(2n ** 62n)]), 0)).toBe(-Number.MAX_SAFE_INTEGER);
  });

  it('an async request the program cannot follow names its API, why and the opcode', () => {
    const h = new Harness();
    expect(h.decode(8, 70, Code.asyncUnseen, 8, [1, 0, 23])).toEqual({
      kind: 'async_unseen', ts: 70, pid: 8, tid: 8, api: 'io_uring', detail: 'a request on a registered (fixed) file (opcode 23)',
    });
    expect(h.decode(8, 71, Code.asyncUnseen, 8, [0, 3, 8])).toMatchObject({ api: 'aio', detail: 'a vectored AIO request (opcode 8)' });
    expect(() => h.decode(8, 72, Code.asyncUnseen, 8, [2, 0, 0])).toThrow(/async record/);
  });

  it('dev_t: kernel encoding to makedev encoding', () => {
    expect(userDev((254 << 20) | 0)).toBe(65024);
    expect(userDev((259 << 20) | 3)).toBe(259 * 256 + 3);
    expect(userDev((8 << 20) | 300)).toBe((300 & 0xff) | (8 << 8) | ((300 >> 8) << 20));
  });
});

describe('buildProgram', () => {
  const program = buildProgram({ filter: { kind: 'pids', pids: [1234] }, kernelStackBytes: 16384, reportSetCloexec: false, fdEvents: 'all', inodeTimes: true, ioUring: true });

  it('seeds the traced pids, follows forks and hooks each syscall once at exit', () => {
    expect(program).toContain('@t[1234] = 1;');
    expect(program).toContain('tracepoint:task:task_newtask /@t[pid]/');
    expect(program).not.toContain('raw_syscalls');
    for (const call of ['openat', 'write', 'pwrite64', 'copy_file_range', 'renameat2', 'fsync', 'mmap']) {
      expect(program).toMatch(new RegExp(`tracepoint:syscalls:sys_exit_${call} /@t\\[pid\\]/`));
      expect(program).not.toContain(`sys_enter_${call} `);
    }
    // close, dup2 and dup3 also run at entry, where the fd still names the file whose aggregate goes with it.
    for (const call of ['close', 'dup2', 'dup3']) {
      expect(program).toMatch(new RegExp(`tracepoint:syscalls:sys_exit_${call} /@t\\[pid\\]/`));
      expect(program).toMatch(new RegExp(`tracepoint:syscalls:sys_enter_${call} /@t\\[pid\\]/ \\{\\s+[^}]*delete\\(@r\\[`));
    }
    expect(program).toContain(`== ${SKY_HINT_MAGIC}`);
    expect(program).not.toContain('printf("W');
  });

  it("'storage' fd events: closes at entry and dups only of regular files and block devices", () => {
    const storage = buildProgram({ filter: { kind: 'pids', pids: [1] }, kernelStackBytes: 16384, reportSetCloexec: false, fdEvents: 'storage', inodeTimes: true, ioUring: true });
    expect(storage).toContain('tracepoint:syscalls:sys_enter_close /@t[pid]/');
    expect(storage).not.toContain('sys_exit_close ');
    expect(storage).toContain('$storage = $sm == 32768 || $sm == 24576;');
    expect(program).not.toContain('$storage');
  });

  it('reads the inode times only where the kernel has i_mtime_sec (bpftrace refuses a field BTF lacks)', () => {
    expect(program).toContain('$i->i_mtime_sec');
    const older = buildProgram({ filter: { kind: 'pids', pids: [1] }, kernelStackBytes: 16384, reportSetCloexec: false, fdEvents: 'all', inodeTimes: false, ioUring: false });
    expect(older).not.toContain('i_mtime');
    expect(older).toContain('$i->i_ino');
  });

  it('follows io_uring reads and writes only where the kernel can say where they go, AIO always', () => {
    expect(program).toContain('tracepoint:io_uring:io_uring_submit_req /@t[pid]/');
    expect(program).toContain('tracepoint:io_uring:io_uring_complete {');
    expect(program).toContain('$w = (struct io_rw *)args->req;');
    expect(program).toMatch(/tracepoint:syscalls:sys_exit_io_submit \/@t\[pid\]\//);
    const older = buildProgram({ filter: { kind: 'pids', pids: [1] }, kernelStackBytes: 16384, reportSetCloexec: false, fdEvents: 'all', inodeTimes: false, ioUring: false });
    expect(older).not.toContain('io_uring');
    expect(older).not.toContain('io_rw');
    expect(older).toContain('sys_exit_io_submit');
    // A process's "cannot follow" record is sent once per API; the flag goes with the process.
    expect(program).toContain('delete(@q[(int64)pid, 0]); delete(@q[(int64)pid, 1]);');
  });

  it('filters a cgroup target by the ids of the cgroup and those below it', () => {
    const cgroup = buildProgram({ filter: { kind: 'cgroup', path: '/sys/fs/cgroup/unified/x', ids: [4242, 4343] }, kernelStackBytes: 16384, reportSetCloexec: true, fdEvents: 'all', inodeTimes: false, ioUring: false });
    expect(cgroup).toContain('tracepoint:syscalls:sys_exit_openat /@cg[cgroup]/');
    expect(cgroup).toContain('@cg[(uint64)4242] = (int64)1; @cg[(uint64)4343] = (int64)1;');
    expect(cgroup).not.toContain('@t[');
  });
});
