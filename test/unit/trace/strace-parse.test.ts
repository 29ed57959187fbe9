/** The strace line parser and the strace-to-events decoder, on lines in the exact format the backend asks for. */
import { describe, expect, it } from 'vitest';
import type { SyscallEvent } from '../../../src/trace/events.js';
import { StraceDecoder } from '../../../src/trace/ptrace/decode.js';
import {
  Resumer, decoration, fdKindOf, parseNumber, parseStraceLine, parseString, parseStringArray, seenPath, splitArgs, structField,
} from '../../../src/trace/ptrace/parse.js';

describe('parseStraceLine', () => {
  it('a call with decorated fds, a string, raw flags and an fd result', () => {
    const line = parseStraceLine('23390 1795622548.490555382 openat(-100</root/tx/sc>, "/etc/ld.so.cache", 0x80000) = 3</etc/ld.so.cache>');
    expect(line).toEqual({
      type: 'call', tid: 23390, sec: 1795622548, nsec: 490555382, name: 'openat',
      args: ['-100</root/tx/sc>', '"/etc/ld.so.cache"', '0x80000'], ret: { value: 3, target: '/etc/ld.so.cache' },
    });
  });

  it('a failed call returns minus its errno', () => {
    const line = parseStraceLine('7 1.5 openat(-100</x>, "nope", 0) = -1 ENOENT (No such file or directory)');
    expect(line).toMatchObject({ type: 'call', nsec: 500000000, ret: { value: -2, target: null } });
    expect(parseStraceLine('7 1.000000001 ioctl(5</b>, 0x40049409, 4) = -1 EOPNOTSUPP (Operation not supported)')).toMatchObject({ ret: { value: -95 } });
  });

  it('a string argument holding ") = " does not end the call', () => {
    const line = parseStraceLine('7 1.000000001 unlink("a) = 3, b") = 0');
    expect(line).toMatchObject({ name: 'unlink', args: ['"a) = 3, b"'], ret: { value: 0 } });
  });

  it('exits, kills, calls without a return, unfinished and resumed halves', () => {
    expect(parseStraceLine('9 2.000000000 +++ exited with 3 +++')).toEqual({ type: 'exit', tid: 9, sec: 2, nsec: 0, code: 3 });
    expect(parseStraceLine('9 2.000000000 +++ killed by SIGSEGV (core dumped) +++')).toEqual({ type: 'killed', tid: 9, sec: 2, nsec: 0, signal: 11 });
    expect(parseStraceLine('9 2.000000000 exit_group(0) = ?')).toMatchObject({ type: 'call', ret: { value: null } });
    expect(parseStraceLine('9 2.000000000 write(0x1, 0x5595, 0x3 <unfinished ...>')).toEqual({
      type: 'unfinished', tid: 9, sec: 2, nsec: 0, text: 'write(0x1, 0x5595, 0x3',
    });
    expect(parseStraceLine('9 2.100000000 <... write resumed>) = 0x3')).toEqual({
      type: 'resumed', tid: 9, sec: 2, nsec: 100000000, name: 'write', text: ') = 0x3',
    });
    expect(parseStraceLine('strace: Process 12 attached')).toMatchObject({ type: 'other' });
  });

  it('Resumer joins the halves of each thread, timed at the end, remembering the start', () => {
    const resumer = new Resumer();
    const lines = [
      '9 2.000000000 write(0x1, 0x5595, 0x3 <unfinished ...>',
      '10 2.050000000 close(3</a>) = 0',
      '9 2.100000000 <... write resumed>) = 0x3',
    ].map((text) => resumer.feed(parseStraceLine(text)));
    expect(lines[0]).toBeNull();
    expect(lines[1]).toMatchObject({ type: 'call', tid: 10, name: 'close' });
    expect(lines[2]).toEqual({
      type: 'call', tid: 9, sec: 2, nsec: 100000000, name: 'write', args: ['0x1', '0x5595', '0x3'], ret: { value: 3, target: null },
      start: { sec: 2, nsec: 0 },
    });
  });
});

describe('argument grammar', () => {
  it('splits at top-level commas only', () => {
    expect(splitArgs('3</a,b>, [100 => 1100], {flags=0x1, mode=0}, "x, y", 5 /* a, b */')).toEqual([
      '3</a,b>', '[100 => 1100]', '{flags=0x1, mode=0}', '"x, y"', '5 /* a, b */',
    ]);
    expect(splitArgs('')).toEqual([]);
  });

  it('numbers: decimal, hex, octal modes, negative, NULL, beyond 2^53 clamped', () => {
    expect(parseNumber('0x241')).toBe(0x241);
    expect(parseNumber('0644')).toBe(0o644);
    expect(parseNumber('-100</tmp>')).toBe(-100);
    expect(parseNumber('NULL')).toBe(0);
    expect(parseNumber('0')).toBe(0);
    expect(parseNumber('9223372035781033984')).toBe(Number.MAX_SAFE_INTEGER);
    expect(parseNumber('0xffffffffffffffff')).toBe(-1);
    expect(parseNumber('[RWH_WRITE_LIFE_SHORT]')).toBeNaN();
  });

  it('strings: C escapes, octal and hex bytes as UTF-8, and the mark of a cut string', () => {
    expect(parseString('"a\\"b\\\\c\\nd\\te"')).toEqual({ value: 'a"b\\c\nd\te', truncated: false });
    expect(parseString('"\\303\\251t\\xc3\\xa9"')).toEqual({ value: 'été', truncated: false });
    expect(parseString('"abc"...')).toEqual({ value: 'abc', truncated: true });
    expect(parseString('0x7ffd')).toBeNull();
    expect(parseStringArray('["sh", "-c", "echo x > f"]')).toEqual({ values: ['sh', '-c', 'echo x > f'], truncated: false });
    expect(parseStringArray('["a", ...]')).toEqual({ values: ['a'], truncated: true });
  });

  it('decorations and what they say about an fd', () => {
    expect(decoration('3</etc/passwd>')).toBe('/etc/passwd');
    expect(decoration('1</dev/null<char 1:3>>')).toBe('/dev/null<char 1:3>');
    expect(decoration('4<pipe:[266949]>')).toBe('pipe:[266949]');
    expect(decoration('0x3')).toBeNull();
    expect(fdKindOf('/etc/passwd')).toBe('file');
    expect(fdKindOf('/dev/sda<block 8:0>')).toBe('file');
    expect(fdKindOf('/dev/null<char 1:3>')).toBe('other');
    expect(fdKindOf('pipe:[266949]')).toBe('other');
    expect(fdKindOf('socket:[1]')).toBe('other');
    // what /proc/PID/fd would name: the path only, '' for what has none
    expect(['/etc/passwd', '/dev/null<char 1:3>', '/tmp/a (deleted)', 'pipe:[266949]'].map(seenPath)).toEqual(['/etc/passwd', '/dev/null', '/tmp/a', '']);
  });

  it('struct fields', () => {
    const clone3 = '{flags=0x3d0f00, child_tid=0x7f19c0675990, exit_signal=0} => {parent_tid=[5494]}';
    expect(structField(clone3, 'flags')).toBe(0x3d0f00);
    expect(structField('{src_fd=3, src_offset=4096, src_length=8192, dest_offset=0}', 'src_length')).toBe(8192);
    expect(structField('{flags=0x1}', 'mode')).toBeNull();
  });
});

/** Runs lines through a decoder whose clock offset is zero, so ts is sec * 1e9 + nsec. */
function decode(lines: string[], threads?: Map<number, number>): SyscallEvent[] {
  const events: SyscallEvent[] = [];
  const decoder = new StraceDecoder((event) => events.push(event), { clockOffset: { sec: 0, nsec: 0 }, threads });
  for (const line of lines) decoder.line(line);
  decoder.finish();
  return events;
}

describe('StraceDecoder', () => {
  it('an io_uring or AIO setup that succeeded says requests will come unseen; a failed one says nothing', () => {
    const events = decode([
      '100 1.000000000 io_uring_setup(0x1, 0x7ffe2a07dc50) = 0x7',
      '100 1.100000000 io_setup(0x1, 0x55bd25bb9f50) = 0',
      '100 1.200000000 io_setup(0x1, 0x55bd25bb9f50) = -1 EAGAIN (Resource temporarily unavailable)',
    ]);
    const detail = 'the ptrace backend does not see requests submitted through it';
    expect(events).toEqual([
      { kind: 'async_unseen', ts: 1e9, pid: 100, tid: 100, api: 'io_uring', detail },
      { kind: 'async_unseen', ts: 1.1e9, pid: 100, tid: 100, api: 'aio', detail },
    ]);
  });

  it('orders a child after its fork even when strace printed the child first, and follows exit codes', () => {
    const events = decode([
      '100 1.000000000 execve("/bin/sh", ["sh", "-c", "x"], 0x7ffc /* 3 vars */) = 0',
      '100 1.100000000 clone(child_stack=NULL, flags=0x1200011, child_tidptr=0x7f23 <unfinished ...>',
      '101 1.200000000 openat(-100</w>, "f", 0x241, 0666) = 3</w/f>',
      '101 1.300000000 +++ exited with 7 +++',
      '100 1.400000000 <... clone resumed>) = 101',
      '100 1.500000000 +++ killed by SIGKILL +++',
    ]);
    expect(events).toEqual([
      { kind: 'exec', ts: 1e9, pid: 100, tid: 100, path: '/bin/sh', argv: ['sh', '-c', 'x'], ret: 0 },
      { kind: 'fork', ts: 1.1e9, pid: 100, tid: 100, child: 101, childTid: 101, thread: false },
      { kind: 'open', ts: 1.2e9, pid: 101, tid: 101, dirfd: -100, path: 'f', flags: 0x241, mode: 0o666, ret: 3 },
      { kind: 'exit', ts: 1.3e9, pid: 101, tid: 101, group: true, code: 7 },
      { kind: 'exit', ts: 1.5e9, pid: 100, tid: 100, group: true, signal: 9 },
    ]);
  });

  it('attributes a thread to its process (clone3 with CLONE_THREAD) and aggregates its writes', () => {
    const events = decode([
      '200 1.000000000 openat(-100</w>, "t", 0x241, 0644) = 3</w/t>',
      '200 1.100000000 clone3({flags=0x3d0f00, child_tid=0x7f19c0675990, exit_signal=0} => {parent_tid=[201]}, 88) = 201',
      '201 1.200000000 write(0x3, 0x556b9edf9004, 0xe) = 0xe',
      '201 1.300000000 exit(0) = ?',
      '201 1.400000000 +++ exited with 0 +++',
      '200 1.500000000 close(3</w/t>) = 0',
    ]);
    expect(events.map((event) => event.kind)).toEqual(['open', 'fork', 'exit', 'rw_summary', 'close']);
    expect(events[1]).toMatchObject({ pid: 200, child: 200, childTid: 201, thread: true });
    expect(events[2]).toEqual({ kind: 'exit', ts: 1.4e9, pid: 200, tid: 201, group: false });
    expect(events[3]).toEqual({
      kind: 'rw_summary', ts: 1.2e9, pid: 200, tid: 201, fd: 3, readCalls: 0, readBytes: 0, writeCalls: 1, writeBytes: 14,
      writeStart: 0, writeEnd: 14, position: 14, path: '/w/t', // the name strace printed for fd 3 at its open
    });
  });

  it('follows positions through dup2, lseek, pread and O_APPEND, and skips non-storage fds', () => {
    const events = decode([
      '300 1.000000000 openat(-100</w>, "a", 0x42, 0600) = 3</w/a>',
      '300 1.000000001 dup2(3</w/a>, 1</dev/null<char 1:3>>) = 1</w/a>',
      '300 1.000000002 write(0x1, 0x1, 0x64) = 0x64',
      '300 1.000000003 lseek(1</w/a>, 1000, 0) = 1000',
      '300 1.000000004 write(0x1, 0x1, 0xa) = 0xa',
      '300 1.000000005 pwrite64(0x1, 0x1, 0x5, 0x10) = 0x5',
      '300 1.000000006 close(1</w/a>) = 0',
      '300 1.000000007 openat(-100</w>, "a", 0x401) = 4</w/a>',
      '300 1.000000008 write(0x4, 0x1, 0x3) = 0x3',
      '300 1.000000009 read(0, 0x1, 0x10) = 0x10',
      '300 1.000000010 close(4</w/a>) = 0',
      '300 1.000000011 close(0<pipe:[1]>) = 0',
    ]);
    const summaries = events.filter((event) => event.kind === 'rw_summary');
    expect(summaries).toMatchObject([
      { fd: 1, writeCalls: 3, writeBytes: 115, writeStart: 0, writeEnd: 1010, position: 1010 },
      { fd: 4, writeCalls: 1, writeBytes: 3, writeStart: -1, writeEnd: -1, position: -1 },
    ]);
    expect(events.filter((event) => event.kind === 'lseek')).toMatchObject([{ fd: 1, offset: 1000, whence: 0, ret: 1000 }]);
    expect(events.filter((event) => event.kind === 'dup')).toMatchObject([{ fd: 3, cloexec: false, ret: 1 }]);
  });

  it('decodes copies, renames, unlinks, fcntls and only shared writable mappings', () => {
    const events = decode([
      '400 1.000000000 copy_file_range(4</a>, [100], 5</b>, NULL, 1000, 0) = 1000',
      '400 1.000000001 sendfile(5</b>, 4</a>, NULL, 300) = 300',
      '400 1.000000002 ioctl(5</b>, 0x40049409, 4) = -1 EOPNOTSUPP (Operation not supported)',
      '400 1.000000003 renameat2(3</d>, "b", 3</d>, "b2", 0x1) = 0',
      '400 1.000000004 rmdir("d") = 0',
      '400 1.000000005 fcntl(5</b>, 0x406, 0x3) = 6</b>',
      '400 1.000000006 fcntl(5</b>, 0x3) = 0x8002',
      '400 1.000000007 fcntl(5</b>, 0x40c, 0x7fff33166f78) = 0',
      '400 1.000000008 mmap(NULL, 8192, 0x3, 0x22, -1, 0) = 0x7fcd992d6000',
      '400 1.000000009 mmap(NULL, 4096, 0x3, 0x1, 5</b>, 0) = 0x7fcd992d5000',
      '400 1.000000010 munmap(0x7fcd992d5000, 4096) = 0',
      '400 1.000000011 link("a", "a2") = 0',
      '400 1.000000012 linkat(3</d>, "tmp_obj", 3</d>, "ab/cdef", 0) = 0',
    ]);
    expect(events).toMatchObject([
      { kind: 'copy', call: 'copy_file_range', fdIn: 4, fdOut: 5, offsetIn: 100, offsetOut: null, length: 1000, ret: 1000 },
      { kind: 'copy', call: 'sendfile', fdIn: 4, fdOut: 5, offsetIn: null, offsetOut: null, length: 300, ret: 300 },
      { kind: 'copy', call: 'FICLONE', fdIn: 4, fdOut: 5, length: 0, ret: -95 },
      { kind: 'rename', olddirfd: 3, oldpath: 'b', newdirfd: 3, newpath: 'b2', flags: 1, ret: 0 },
      { kind: 'unlink', dirfd: -100, path: 'd', flags: 0x200, ret: 0 },
      { kind: 'dup', fd: 5, cloexec: true, ret: 6, seenPath: '/b' },
      { kind: 'fcntl', fd: 5, cmd: 1036, arg: -1, ret: 0 },
      { kind: 'mmap', addr: 0, length: 4096, prot: 3, flags: 1, fd: 5, offset: 0, ret: 0x7fcd992d5000 },
      { kind: 'munmap', addr: 0x7fcd992d5000, length: 4096, ret: 0 },
      { kind: 'link', olddirfd: -100, oldpath: 'a', newdirfd: -100, newpath: 'a2', flags: 0, ret: 0 },
      { kind: 'link', olddirfd: 3, oldpath: 'tmp_obj', newdirfd: 3, newpath: 'ab/cdef', flags: 0, ret: 0 },
    ]);
  });
});
