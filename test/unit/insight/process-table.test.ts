import { describe, expect, it } from 'vitest';
import { InsightEngine } from '../../../src/insight/index.js';
import type { SyscallEvent } from '../../../src/trace/events.js';
import {
  CREATE,
  Clock,
  FakeSystem,
  MS,
  O_APPEND,
  O_CLOEXEC,
  O_CREAT,
  O_DIRECTORY,
  O_EXCL,
  O_RDONLY,
  O_WRONLY,
  Task,
  ofKind,
  run,
} from './helpers.js';

const AT_FDCWD_ = -100;

function replayEngine(): InsightEngine {
  return new InsightEngine({ inspector: 'none' });
}

describe('paths', () => {
  it('resolves relative paths against the cwd, after chdir, and against a dirfd', () => {
    const engine = replayEngine();
    const shell = new Task(new Clock(), 100);
    const insights = run(engine, [
      shell.chdir('/work'),
      shell.open('a.txt', CREATE, 3),
      shell.chdir('sub/../deeper'),
      shell.open('./b.txt', CREATE, 4),
      shell.open('/data', O_RDONLY | O_DIRECTORY, 5),
      shell.open('c/d.txt', CREATE, 6, 5),
      shell.open('../etc/e', O_RDONLY, 7, 5),
    ]);
    const paths = ofKind(insights, 'file_opened').map((i) => i.path);
    expect(paths).toEqual(['/work/a.txt', '/work/deeper/b.txt', '/data', '/data/c/d.txt', '/etc/e']);
    expect(engine.inspectProcess(100)?.cwd).toBe('/work/deeper');
  });

  it("resolves a dirfd by the directory's identity when the fd table does not know the fd or holds a stale entry", () => {
    // The ebpf backend's 'storage' mode reports no close or dup of a directory fd; each *at() call says which
    // directory its dirfd referred to, and a directory the trace opened is known by that identity.
    const engine = replayEngine();
    const p = new Task(new Clock(), 1);
    const dir = (ino: number) => ({ dirIno: ino, dirDev: 8 });
    const opened = (path: string, flags: number, ret: number, dirfd: number, extra: object) =>
      p.ev('open', { dirfd, path, flags, mode: 0, ret, ...extra });
    const insights = run(engine, [
      opened('/data', O_RDONLY | O_DIRECTORY, 5, AT_FDCWD_, { ino: 10, dev: 8 }),
      opened('/srv', O_RDONLY | O_DIRECTORY, 6, AT_FDCWD_, { ino: 11, dev: 8 }),
      // fd 5 was closed and fd 9 is a dup of 5 (neither reported): by identity, 9 is /data.
      opened('a.txt', CREATE, 7, 9, dir(10)),
      // fd 5 now refers to /srv (an unreported dup2): the table's entry for 5 is stale.
      opened('b.txt', CREATE, 8, 5, dir(11)),
      p.write(7, 100),
      p.ev('unlink', { dirfd: 9, path: 'a.txt', flags: 0, ret: 0, ...dir(10) }),
      p.close(7), // open when unlinked: its blocks die at the last close
    ]);
    expect(ofKind(insights, 'file_opened').map((i) => i.path)).toEqual(['/data', '/srv', '/data/a.txt', '/srv/b.txt']);
    expect(ofKind(insights, 'lifetime_ended').map((i) => i.path)).toEqual(['/data/a.txt']);
  });

  it("takes an open's size and type from the kernel's view of the inode, with no inspection", () => {
    const engine = replayEngine(); // no system to ask: a replayed ebpf log still knows sizes
    const p = new Task(new Clock(), 1);
    const inode = (ino: number, size: number, fileType: string) => ({ ino, dev: 8, size, fileType, nlink: 1, mtimeUs: 1_700_000_000_000_000 });
    const [big, dir] = ofKind(
      run(engine, [
        p.ev('open', { dirfd: AT_FDCWD_, path: '/v/movie', flags: O_RDONLY, mode: 0, ret: 3, ...inode(20, 3 * 2 ** 20, 'regular') }),
        p.ev('open', { dirfd: AT_FDCWD_, path: '/v', flags: O_RDONLY | O_DIRECTORY, mode: 0, ret: 4, ...inode(21, 4096, 'directory') }),
      ]),
      'file_opened',
    );
    expect(big).toMatchObject({ path: '/v/movie', size: 3 * 2 ** 20, ioClass: 2, metadata: false });
    expect(big.uncertain).toBeUndefined();
    expect(dir).toMatchObject({ path: '/v', metadata: true, ioClass: 5 });
  });

  it('marks the directory opened as metadata (class 5) and files by size class', () => {
    const engine = replayEngine();
    const p = new Task(new Clock(), 1);
    const [dir, file] = ofKind(run(engine, [p.open('/d', O_RDONLY | O_DIRECTORY, 3), p.open('/d/f', CREATE, 4)]), 'file_opened');
    expect(dir).toMatchObject({ metadata: true, ioClass: 5 });
    expect(file).toMatchObject({ metadata: false, ioClass: 4, size: 0 });
  });

  it('reports files in /dev/shm (a tmpfs) but not device nodes, /proc or /sys', () => {
    const engine = replayEngine();
    const p = new Task(new Clock(), 1);
    const opened = ofKind(
      run(engine, [p.open('/dev/null', O_WRONLY, 3), p.open('/proc/self/status', O_RDONLY, 4), p.open('/sys/kernel/mm/x', O_RDONLY, 5), p.open('/dev/shm/scratch', CREATE, 6)]),
      'file_opened',
    );
    expect(opened.map((insight) => insight.path)).toEqual(['/dev/shm/scratch']);
  });

  it('an attached process gone before its first event still lends its children its cwd (sky trace --pid)', () => {
    // A shell attached to by pid runs short commands with relative paths and exits: by the time its events are
    // handled /proc knows neither it nor its children, so what /proc said at attach time stands in.
    const system = new FakeSystem();
    system.addProc(50, '/bin/sh', '/w');
    system.addFile('/w/r1.bin', 'x');
    const attached = new InsightEngine({ inspector: system });
    attached.attached([50]);
    const bare = new InsightEngine({ inspector: system });
    system.procs.delete(50);
    const shell = new Task(new Clock(), 50);
    const child = new Task(shell.clock, 51);
    const events = [shell.fork(51), child.open('r1.bin', O_RDONLY, 3), child.close(3), child.unlink('r1.bin')];
    const names = (engine: InsightEngine) => ofKind(run(engine, events), 'lifetime_ended').map((i) => i.path);
    expect(names(attached)).toEqual(['/w/r1.bin']);
    expect(names(bare)).toEqual([]);
    expect(attached.inspectProcess(50)?.exe).toBe('/bin/sh');
  });

  it("an attached process's files open at attach time are its fd table's start, used only for fds no event opened", () => {
    const system = new FakeSystem();
    system.addProc(60, '/usr/bin/app', '/w');
    system.addFile('/w/old.log', 'x'.repeat(100));
    system.addFile('/w/new.log');
    system.procs.get(60)!.fds.set(3, '/w/old.log');
    system.procs.get(60)!.fds.set(4, '/w/new.log'); // opened after tracing started: its open is an event
    system.addFile('/w/idle.log', 'y'.repeat(10));
    system.procs.get(60)!.fds.set(5, '/w/idle.log'); // only closed
    const engine = new InsightEngine({ inspector: system });
    engine.attached([60]);
    system.procs.delete(60); // gone before its events are handled
    const p = new Task(new Clock(), 60);
    const insights = run(engine, [
      p.open('/w/new.log', O_WRONLY, 4),
      p.summary(3, { writeCalls: 1, writeBytes: 20, writeStart: 100, writeEnd: 120, position: 120 }),
      p.summary(4, { writeCalls: 1, writeBytes: 7, writeStart: 0, writeEnd: 7, position: 7 }),
      p.close(3),
      p.close(4),
      p.close(5),
    ]);
    expect(ofKind(insights, 'file_opened').map((o) => [o.path, o.fd, o.discovered])).toEqual([
      ['/w/new.log', 4, false],
      ['/w/old.log', 3, true],
      ['/w/idle.log', 5, true],
    ]);
    expect(ofKind(insights, 'file_closed').map((c) => [c.path, c.size, c.writeBytes, c.cause])).toEqual([
      ['/w/old.log', 120, 20, 'close'],
      ['/w/new.log', 7, 7, 'close'],
      ['/w/idle.log', 10, 0, 'close'],
    ]);
  });

  it('reports a path relative to an unknown cwd as given, flagged uncertain', () => {
    const engine = replayEngine();
    const [opened] = ofKind(run(engine, [new Task(new Clock(), 3).open('rel.txt', CREATE, 3)]), 'file_opened');
    expect(opened.path).toBe('rel.txt');
    expect(opened.uncertain).toMatch(/relative to a directory we do not know/);
  });

  it('fchdir to a directory fd changes the cwd', () => {
    const engine = replayEngine();
    const p = new Task(new Clock(), 1);
    run(engine, [p.chdir('/'), p.open('/srv/x', O_RDONLY | O_DIRECTORY, 3), p.ev('fchdir', { fd: 3, ret: 0 }), p.open('y', CREATE, 4)]);
    expect(engine.inspectProcess(1)?.fds.find((f) => f.fd === 4)?.path).toBe('/srv/x/y');
  });
});

describe('fd table', () => {
  it('dup2 onto stdout sends later writes to the new file and releases the old description', () => {
    const engine = replayEngine();
    const p = new Task(new Clock(), 7);
    const insights = run(engine, [
      p.open('/tmp/old', CREATE, 1),
      p.open('/tmp/out', CREATE, 3),
      p.dup(3, 1),
      p.close(3),
      p.write(1, 100),
      p.close(1),
    ]);
    const closed = ofKind(insights, 'file_closed');
    expect(closed.map((c) => [c.path, c.cause, c.writeBytes])).toEqual([
      ['/tmp/old', 'replaced', 0],
      ['/tmp/out', 'close', 100],
    ]);
    expect(engine.inspectFile('/tmp/out')?.size).toBe(100);
    expect(engine.inspectFile('/tmp/old')?.size).toBe(0);
  });

  it('fcntl F_DUPFD shares the description (and its offset) with the original', () => {
    const engine = replayEngine();
    const p = new Task(new Clock(), 7);
    run(engine, [p.open('/f', CREATE, 3), p.ev('fcntl', { fd: 3, cmd: 0, arg: 10, ret: 10 }), p.write(3, 10), p.write(10, 5)]);
    const fds = engine.inspectProcess(7)?.fds ?? [];
    expect(fds.map((f) => [f.fd, f.position])).toEqual([
      [3, 15],
      [10, 15],
    ]);
    expect(fds[0].description).toBe(fds[1].description);
    expect(engine.inspectFile('/f')?.size).toBe(15);
  });

  it('close_range closes a range, or only marks it close-on-exec', () => {
    const engine = replayEngine();
    const p = new Task(new Clock(), 7);
    run(engine, [
      p.open('/a', CREATE, 3),
      p.open('/b', CREATE, 4),
      p.open('/c', CREATE, 5),
      p.ev('close_range', { first: 5, last: 4294967295, flags: 4, ret: 0 }),
      p.ev('close_range', { first: 3, last: 3, flags: 0, ret: 0 }),
    ]);
    expect(engine.inspectProcess(7)?.fds.map((f) => [f.fd, f.cloexec])).toEqual([
      [4, false],
      [5, true],
    ]);
  });

  it('execve drops O_CLOEXEC and FD_CLOEXEC fds only', () => {
    const engine = replayEngine();
    const p = new Task(new Clock(), 9);
    const insights = run(engine, [
      p.open('/keep', CREATE, 3),
      p.open('/gone', CREATE | O_CLOEXEC, 4),
      p.open('/later', CREATE, 5),
      p.ev('fcntl', { fd: 5, cmd: 2, arg: 1, ret: 0 }),
      p.exec('/usr/bin/true'),
    ]);
    expect(engine.inspectProcess(9)?.fds.map((f) => f.fd)).toEqual([3]);
    expect(ofKind(insights, 'file_closed').map((c) => [c.path, c.cause])).toEqual([
      ['/gone', 'exec'],
      ['/later', 'exec'],
    ]);
    expect(engine.inspectProcess(9)?.exe).toBe('/usr/bin/true');
  });

  it('a failed close (EBADF) changes nothing; EINTR still releases the fd', () => {
    const engine = replayEngine();
    const p = new Task(new Clock(), 9);
    run(engine, [p.open('/x', CREATE, 3), p.close(3, -9)]);
    expect(engine.inspectProcess(9)?.fds.map((f) => f.fd)).toEqual([3]);
    run(engine, [p.close(3, -4)]);
    expect(engine.inspectProcess(9)?.fds).toEqual([]);
  });
});

describe('processes and threads', () => {
  it('fork copies the fd table sharing descriptions; the file closes when the last process lets go', () => {
    const engine = replayEngine();
    const clock = new Clock();
    const parent = new Task(clock, 10);
    const child = new Task(clock, 11);
    const insights = run(engine, [
      parent.chdir('/home'),
      parent.open('log', CREATE, 3),
      parent.fork(11),
      child.write(3, 40),
      parent.write(3, 2),
      child.exit(),
    ]);
    expect(ofKind(insights, 'file_closed')).toEqual([]);
    expect(engine.inspectProcess(11)).toBeNull();
    const view = engine.inspectProcess(10);
    expect(view?.fds.map((f) => [f.fd, f.position])).toEqual([[3, 42]]);
    expect(engine.inspectFile('/home/log')?.size).toBe(42);
    const closed = ofKind(run(engine, [parent.close(3)]), 'file_closed');
    expect(closed.map((c) => [c.path, c.writeBytes, c.position])).toEqual([['/home/log', 42, 42]]);
  });

  it('a forked child inherits the cwd; a chdir in the child does not move the parent', () => {
    const engine = replayEngine();
    const clock = new Clock();
    const parent = new Task(clock, 10);
    const child = new Task(clock, 12);
    run(engine, [parent.chdir('/a'), parent.fork(12), child.chdir('b'), child.open('f', CREATE, 3), parent.open('f', CREATE, 3)]);
    expect(engine.inspectProcess(12)?.fds[0].path).toBe('/a/b/f');
    expect(engine.inspectProcess(10)?.fds[0].path).toBe('/a/f');
  });

  it('threads share the fd table and cwd; a thread exit leaves the process alive', () => {
    const engine = replayEngine();
    const main = new Task(new Clock(), 20);
    const worker = main.thread(21);
    run(engine, [main.chdir('/t'), main.fork(21, true), worker.open('w', CREATE, 3), main.write(3, 8), worker.exit(false)]);
    const view = engine.inspectProcess(20);
    expect(view?.threads).toEqual([20]);
    expect(view?.fds.map((f) => [f.path, f.position])).toEqual([['/t/w', 8]]);
  });

  it('a child whose events arrive before its fork event keeps what it closed closed', () => {
    const engine = replayEngine();
    const clock = new Clock();
    const parent = new Task(clock, 30);
    const child = new Task(clock, 31);
    run(engine, [
      parent.open('/p1', CREATE, 3),
      parent.open('/p2', CREATE, 4),
      child.close(3),
      parent.fork(31),
      child.write(4, 7),
    ]);
    expect(engine.inspectProcess(31)?.fds.map((f) => [f.fd, f.path])).toEqual([[4, '/p2']]);
    expect(engine.inspectFile('/p2')?.size).toBe(7);
    expect(engine.inspectProcess(30)?.fds.map((f) => f.fd)).toEqual([3, 4]);
  });
});

describe('offsets and sizes', () => {
  it('O_APPEND writes land at the end of the file; positional writes do not move the offset', () => {
    const engine = replayEngine();
    const p = new Task(new Clock(), 1);
    run(engine, [
      p.open('/log', CREATE, 3),
      p.write(3, 100),
      p.open('/log', O_WRONLY | O_APPEND, 4),
      p.write(4, 10),
      p.write(3, 5, 500),
      p.write(4, 1),
    ]);
    const fds = engine.inspectProcess(1)?.fds ?? [];
    expect(fds.map((f) => [f.fd, f.position, f.append])).toEqual([
      [3, 100, false],
      [4, 506, true],
    ]);
    expect(engine.inspectFile('/log')?.size).toBe(506);
  });

  it('an O_APPEND open inspected late does not count its appends twice (the late look already has them)', () => {
    const system = new FakeSystem();
    system.addFile('/l/log', 'x'.repeat(127)); // git's reflog line, already appended when we look
    system.addProc(4, '/usr/bin/git'); // the fd is gone: the open is inspected by path
    const engine = new InsightEngine({ inspector: system });
    const p = new Task(new Clock(), 4);
    const insights = run(engine, [
      p.open('/l/log', O_WRONLY | O_CREAT | O_APPEND, 3),
      p.summary(3, { writeCalls: 1, writeBytes: 127, writeStart: -1, writeEnd: -1, position: -1 }),
      p.close(3),
    ]);
    expect(ofKind(insights, 'file_closed')).toMatchObject([{ path: '/l/log', size: 127, writeBytes: 127 }]);
    expect(ofKind(insights, 'file_size_changed').map((c) => c.size)).not.toContain(254);
  });

  describe('a look made after the open (ptrace) at a file opened O_CREAT | O_APPEND', () => {
    const APPEND_CREATE = O_WRONLY | O_CREAT | O_APPEND;
    /** A shell appending two lines with `echo … >> log`; each look finds both lines there already. */
    function appendTwice(file: { data: string; birthNs?: number; mtimeNs?: number }) {
      const system = new FakeSystem();
      system.wallMinusMonotonicNs = 0;
      Object.assign(system.addFile('/w/log', file.data), file);
      system.addProc(5, '/usr/bin/bash');
      system.procs.get(5)!.fds.set(3, '/w/log'); // the fd still open at the look: no doubt from that side
      const engine = new InsightEngine({ inspector: system });
      const p = new Task(new Clock(), 5);
      return run(engine, [p.open('/w/log', APPEND_CREATE, 3), p.write(3, 6), p.close(3), p.open('/w/log', APPEND_CREATE, 3), p.write(3, 6), p.close(3)]);
    }
    const OPEN_TS = 1_001 * MS; // the first event's time (Clock)

    it('a file born at the open was empty at it, whatever the look found', () => {
      const insights = appendTwice({ data: 'line1\nline2\n', birthNs: OPEN_TS + MS / 2, mtimeNs: OPEN_TS + 4 * MS });
      expect(ofKind(insights, 'file_opened').map((o) => o.size)).toEqual([0, 6]);
      expect(ofKind(insights, 'file_closed').map((c) => c.size)).toEqual([6, 12]);
    });

    it('an older file modified since the open is re-read at close instead of summed', () => {
      const insights = appendTwice({ data: 'old\nline1\nline2\n', birthNs: 1, mtimeNs: OPEN_TS + 4 * MS });
      expect(ofKind(insights, 'file_closed').map((c) => c.size)).toEqual([16, 16]);
    });

    it('an older file not modified since the look is summed from its size at the open', () => {
      const insights = appendTwice({ data: 'old\n', birthNs: 1, mtimeNs: 2 });
      expect(ofKind(insights, 'file_closed').map((c) => c.size)).toEqual([10, 16]);
    });
  });

  it('lseek moves the offset; a write past EOF grows the file', () => {
    const engine = replayEngine();
    const p = new Task(new Clock(), 1);
    const insights = run(engine, [
      p.open('/f', CREATE, 3),
      p.ev('lseek', { fd: 3, offset: 4096, whence: 0, ret: 4096 }),
      p.write(3, 10),
      p.read(3, 0, 0),
    ]);
    expect(engine.inspectProcess(1)?.fds[0].position).toBe(4106);
    expect(engine.inspectFile('/f')?.size).toBe(4106);
    // Per-call writes report a size change only when it moves the file to another class.
    expect(ofKind(insights, 'file_size_changed')).toEqual([]);
    const grown = run(engine, [p.write(3, 2 * 1024 * 1024)]);
    expect(ofKind(grown, 'file_size_changed').map((s) => [s.size, s.ioClass, s.cause])).toEqual([[4106 + 2 * 1024 * 1024, 2, 'write']]);
  });

  it('F_SETFL toggles O_APPEND on a description', () => {
    const engine = replayEngine();
    const p = new Task(new Clock(), 1);
    run(engine, [p.open('/f', CREATE, 3), p.write(3, 50), p.ev('lseek', { fd: 3, offset: 0, whence: 0, ret: 0 })]);
    run(engine, [p.ev('fcntl', { fd: 3, cmd: 4, arg: O_APPEND, ret: 0 }), p.write(3, 5)]);
    expect(engine.inspectProcess(1)?.fds[0].position).toBe(55);
    expect(engine.inspectFile('/f')?.size).toBe(55);
  });

  it('rw_summary aggregates: sizes from writeEnd, positions from the backend', () => {
    const engine = replayEngine();
    const p = new Task(new Clock(), 1);
    const insights = run(engine, [
      p.open('/big', CREATE, 3),
      p.summary(3, { writeCalls: 300, writeBytes: 3 * 1024 * 1024, writeStart: 0, writeEnd: 3 * 1024 * 1024, position: 3 * 1024 * 1024 }),
      p.close(3),
    ]);
    expect(ofKind(insights, 'file_size_changed')).toMatchObject([{ oldSize: 0, size: 3 * 1024 * 1024, ioClass: 2 }]);
    expect(ofKind(insights, 'file_closed')).toMatchObject([{ size: 3 * 1024 * 1024, ioClass: 2, position: 3 * 1024 * 1024 }]);
  });

  it('an O_APPEND summary without offsets adds its bytes at the end', () => {
    const engine = replayEngine();
    const p = new Task(new Clock(), 1);
    run(engine, [p.open('/a', O_WRONLY | O_CREAT | O_EXCL | O_APPEND, 3), p.summary(3, { writeCalls: 2, writeBytes: 30 }), p.summary(3, { writeCalls: 1, writeBytes: 12, position: 12 })]);
    expect(engine.inspectFile('/a')).toMatchObject({ size: 42 });
    expect(engine.inspectFile('/a')?.uncertain).toBeUndefined();
    // The backend could not place the appends, so its position (12) cannot be right either.
    expect(engine.inspectProcess(1)?.fds[0].position).toBeNull();
  });

  it('truncate, ftruncate and fallocate set sizes', () => {
    const engine = replayEngine();
    const p = new Task(new Clock(), 1);
    run(engine, [p.open('/f', CREATE, 3), p.write(3, 1000)]);
    run(engine, [p.ev('ftruncate', { fd: 3, length: 200, ret: 0 })]);
    expect(engine.inspectFile('/f')?.size).toBe(200);
    run(engine, [p.ev('fallocate', { fd: 3, mode: 0, offset: 0, length: 8192, ret: 0 })]);
    expect(engine.inspectFile('/f')?.size).toBe(8192);
    run(engine, [p.ev('fallocate', { fd: 3, mode: 1, offset: 0, length: 1 << 20, ret: 0 })]);
    expect(engine.inspectFile('/f')?.size).toBe(8192);
    run(engine, [p.ev('truncate', { path: '/f', length: 10, ret: 0 })]);
    expect(engine.inspectFile('/f')?.size).toBe(10);
  });

  it('a write on a file whose size was never known is flagged uncertain', () => {
    const engine = replayEngine();
    const p = new Task(new Clock(), 1);
    run(engine, [p.open('/old', O_WRONLY, 3), p.write(3, 10, 0)]);
    expect(engine.inspectFile('/old')).toMatchObject({ size: 10, uncertain: 'size before tracing unknown' });
  });
});

describe('insight calls', () => {
  it('uses fstat through /proc when the fd is still open', () => {
    const system = new FakeSystem();
    system.addFile('/data/f', 'x'.repeat(2_000_000));
    system.addProc(5, '/usr/bin/app', '/data');
    system.procs.get(5)?.fds.set(3, '/data/f');
    const engine = new InsightEngine({ inspector: system });
    const [opened] = ofKind(run(engine, [new Task(new Clock(), 5).open('f', O_RDONLY, 3)]), 'file_opened');
    expect(opened).toMatchObject({ path: '/data/f', size: 2_000_000, ioClass: 3, dev: 8, exe: '/usr/bin/app' });
    expect(opened.uncertain).toBeUndefined();
  });

  it('falls back to the path when the process is gone, and says so', () => {
    const system = new FakeSystem();
    system.addFile('/data/f', 'hello');
    const engine = new InsightEngine({ inspector: system });
    const p = new Task(new Clock(), 5);
    const [opened] = ofKind(run(engine, [p.chdir('/data'), p.open('f', O_RDONLY, 3)]), 'file_opened');
    expect(opened).toMatchObject({ path: '/data/f', size: 5 });
    expect(opened.uncertain).toMatch(/inspected by path/);
  });

  it('reports nothing it cannot know when both process and file are gone', () => {
    const engine = new InsightEngine({ inspector: new FakeSystem() });
    const [opened] = ofKind(run(engine, [new Task(new Clock(), 5).open('/gone', O_RDONLY, 3)]), 'file_opened');
    expect(opened).toMatchObject({ path: '/gone', size: null });
    expect(opened.uncertain).toMatch(/gone before inspection/);
  });

  it('learns an fd the stream never showed (inherited) from /proc, once', () => {
    const system = new FakeSystem();
    system.addFile('/out.txt');
    system.addProc(5, '/bin/echo');
    system.procs.get(5)?.fds.set(1, '/out.txt');
    const engine = new InsightEngine({ inspector: system });
    const p = new Task(new Clock(), 5);
    const insights = run(engine, [p.write(1, 6), p.write(2, 3)]);
    expect(ofKind(insights, 'file_opened')).toMatchObject([{ path: '/out.txt', fd: 1, discovered: true }]);
    expect(engine.inspectFile('/out.txt')?.size).toBe(6);
    expect(engine.summary().counters.unknownFds).toBe(1);
  });

  // `sh -c 'printf x > out'`: F_DUPFD saves the inherited stdout, dup2 puts out on 1, the write and the restore all
  // happen before we handle the F_DUPFD, when /proc already says fd 1 is out.
  const shellRedirect = (saved: Partial<Extract<SyscallEvent, { kind: 'dup' }>>) => {
    const p = new Task(new Clock(), 5);
    return [
      p.open('/out', CREATE, 3),
      p.ev('dup', { fd: 1, cloexec: false, ret: 11, ...saved }),
      p.close(1),
      p.dup(3, 1),
      p.close(3),
      p.write(1, 6),
      p.ev('dup', { fd: 11, cloexec: false, ret: 1, ...saved }),
      p.close(11),
      p.exit(),
    ];
  };
  const redirected = () => {
    const system = new FakeSystem();
    const out = system.addFile('/out');
    system.addProc(5, '/bin/sh');
    system.procs.get(5)?.fds.set(1, '/out');
    return { system, out };
  };

  it('does not take a saved stdout for the file /proc shows after a redirect (strace saw a pipe)', () => {
    const engine = new InsightEngine({ inspector: redirected().system });
    const closes = ofKind(run(engine, shellRedirect({ seenPath: '' })), 'file_closed');
    expect(closes.map((c) => [c.path, c.writeBytes])).toEqual([['/out', 6]]);
    expect(engine.summary().counters.unknownFds).toBe(0);
  });

  it('does not take a saved stdout for the file /proc shows after a redirect (the kernel named another inode)', () => {
    const { system, out } = redirected();
    const engine = new InsightEngine({ inspector: system });
    const closes = ofKind(run(engine, shellRedirect({ ino: out.ino + 1000, dev: 99 })), 'file_closed');
    expect(closes.map((c) => [c.path, c.writeBytes])).toEqual([['/out', 6]]);
  });

  it('without what the backend saw, the same race reports the redirected file closed twice (why dups carry it)', () => {
    const engine = new InsightEngine({ inspector: redirected().system });
    const closes = ofKind(run(engine, shellRedirect({})), 'file_closed');
    expect(closes.map((c) => [c.path, c.writeBytes])).toEqual([['/out', 6], ['/out', 0]]);
  });

  it('still learns a saved fd from /proc when it is what the backend saw', () => {
    const { system, out } = redirected();
    const engine = new InsightEngine({ inspector: system });
    const p = new Task(new Clock(), 5);
    const insights = run(engine, [p.ev('dup', { fd: 1, cloexec: false, ret: 11, ino: out.ino, dev: out.dev }), p.write(11, 4)]);
    expect(ofKind(insights, 'file_opened')).toMatchObject([{ path: '/out', fd: 1, discovered: true }]);
    expect(engine.inspectFile('/out')?.size).toBe(4);
  });
});

describe('lost events', () => {
  it('emit an uncertainty and mark what was derived before as uncertain', () => {
    const engine = replayEngine();
    const p = new Task(new Clock(), 1);
    run(engine, [p.open('/f', CREATE, 3), p.write(3, 10)]);
    const lost = run(engine, [p.ev('lost', { count: 17 })]);
    expect(ofKind(lost, 'uncertainty')).toMatchObject([{ lostEvents: 17, pid: null }]);
    const closed = ofKind(run(engine, [p.close(3)]), 'file_closed');
    expect(closed[0].uncertain).toMatch(/17 event\(s\) lost/);
    expect(engine.summary().counters.lostEvents).toBe(17);
  });

  it('re-check an fd against /proc after a loss and replace it when it changed', () => {
    const system = new FakeSystem();
    system.addFile('/a');
    system.addFile('/b');
    system.addProc(5, '/bin/app');
    system.procs.get(5)?.fds.set(3, '/a');
    const engine = new InsightEngine({ inspector: system });
    const p = new Task(new Clock(), 5);
    run(engine, [p.open('/a', O_WRONLY, 3), p.ev('lost', { count: 2 })]);
    system.procs.get(5)?.fds.set(3, '/b'); // the lost events closed /a and opened /b at fd 3
    const insights = run(engine, [p.write(3, 4, 0)]);
    expect(ofKind(insights, 'file_opened')).toMatchObject([{ path: '/b', discovered: true }]);
    expect(engine.inspectProcess(5)?.fds.map((f) => f.path)).toEqual(['/b']);
  });
});

describe('I/O the trace cannot see (io_uring, AIO)', () => {
  it("says so once per process, and re-reads its files' sizes at close instead of trusting the counts", () => {
    const system = new FakeSystem();
    const before = system.addFile('/ring-before');
    const after = system.addFile('/ring-after');
    system.addProc(7, '/usr/bin/fio');
    const engine = new InsightEngine({ inspector: system });
    const p = new Task(new Clock(), 7);
    const q = new Task(new Clock(), 8);
    const unseen = { api: 'io_uring', detail: 'the ptrace backend does not see requests submitted through it' };
    const first = run(engine, [p.open('/ring-before', CREATE, 3), p.ev('async_unseen', unseen), p.ev('async_unseen', unseen)]);
    expect(ofKind(first, 'uncertainty')).toMatchObject([{ pid: 7, lostEvents: 0 }]);
    expect(ofKind(first, 'uncertainty')[0]!.reason).toMatch(/^pid 7 \(\/usr\/bin\/fio\): io_uring requests not followed/);
    // The ring wrote what no event showed; the file system knows.
    before.data = Buffer.alloc(8192);
    after.data = Buffer.alloc(4096);
    const closed = ofKind(run(engine, [p.open('/ring-after', CREATE, 4), p.close(3), p.close(4)]), 'file_closed');
    expect(closed.map((c) => [c.path, c.size, c.writeBytes])).toEqual([['/ring-before', 8192, 0], ['/ring-after', 4096, 0]]);
    for (const c of closed) expect(c.uncertain).toMatch(/io_uring requests not followed/);
    // Another process is not affected.
    run(engine, [q.open('/other', CREATE, 3), q.write(3, 10)]);
    const other = ofKind(run(engine, [q.close(3)]), 'file_closed');
    expect(other).toMatchObject([{ path: '/other', size: 10, writeBytes: 10 }]);
    expect(other[0]).not.toHaveProperty('uncertain');
  });
});

describe('what the kernel told the backend (ebpf extras)', () => {
  it('execve closes exactly the fds the kernel listed', () => {
    const engine = replayEngine();
    const p = new Task(new Clock(), 9);
    run(engine, [p.open('/a', CREATE, 3), p.open('/b', CREATE, 4), p.ev('exec', { path: '/bin/x', ret: 0, closedFds: [3] })]);
    expect(engine.inspectProcess(9)?.fds.map((f) => f.path)).toEqual(['/b']);
  });

  it('a plain write with the kernel position places O_APPEND bytes exactly, even with an unknown size', () => {
    const engine = replayEngine();
    const p = new Task(new Clock(), 9);
    run(engine, [
      p.open('/log', O_WRONLY | O_APPEND, 3),
      p.ev('rw', { op: 'write', fd: 3, offset: null, count: 10, ret: 10, position: 510, hint: { magic: 1, ioClass: 1 } }),
    ]);
    expect(engine.inspectProcess(9)?.fds[0].position).toBe(510);
    expect(engine.inspectFile('/log')?.size).toBe(510);
  });

  it('a summary whose file identity disagrees with the table is flagged, not trusted', () => {
    const system = new FakeSystem();
    const first = system.addFile('/one');
    system.addProc(9, '/bin/x');
    system.procs.get(9)?.fds.set(3, '/one');
    const engine = new InsightEngine({ inspector: system });
    const p = new Task(new Clock(), 9);
    run(engine, [p.ev('open', { dirfd: -100, path: '/one', flags: O_WRONLY, mode: 0, ret: 3, dev: first.dev, ino: first.ino })]);
    const second = system.addFile('/two', 'abc');
    system.procs.get(9)?.fds.set(3, '/two'); // the stream missed a close and an open
    const insights = run(engine, [p.summary(3, { writeCalls: 1, writeBytes: 3, writeStart: 0, writeEnd: 3, dev: second.dev, ino: second.ino })]);
    expect(ofKind(insights, 'file_opened')).toMatchObject([{ path: '/two', discovered: true }]);
    expect(engine.inspectFile('/two')?.size).toBe(3);
  });

  it('an open whose kernel identity matches the path needs no fd and raises no doubt', () => {
    const system = new FakeSystem();
    const file = system.addFile('/data', 'x'.repeat(1500));
    const engine = new InsightEngine({ inspector: system });
    const p = new Task(new Clock(), 9);
    const [opened] = ofKind(run(engine, [p.ev('open', { dirfd: -100, path: '/data', flags: O_RDONLY, mode: 0, ret: 3, dev: file.dev, ino: file.ino })]), 'file_opened');
    expect(opened).toMatchObject({ size: 1500, ino: file.ino });
    expect(opened.uncertain).toBeUndefined();
  });

  it('learns that stat calls a btrfs subvolume by another device than the kernel does, then trusts the path alone', () => {
    const system = new FakeSystem();
    const a = system.addFile('/sub/a', 'a'.repeat(100));
    const b = system.addFile('/sub/b', 'b'.repeat(200));
    system.addProc(9, '/bin/x');
    system.procs.get(9)?.fds.set(3, '/sub/a');
    const fdStats: number[] = [];
    const statFd = system.statFd.bind(system);
    system.statFd = (pid: number, fd: number) => (fdStats.push(fd), statFd(pid, fd));
    const engine = new InsightEngine({ inspector: system });
    const p = new Task(new Clock(), 9);
    const superBlockDev = a.dev + 1000; // what the kernel reports: stat says a.dev (the subvolume's)
    const open = (path: string, ino: number, fd: number) => p.ev('open', { dirfd: -100, path, flags: O_RDONLY, mode: 0, ret: fd, dev: superBlockDev, ino });
    const first = ofKind(run(engine, [open('/sub/a', a.ino, 3)]), 'file_opened');
    expect(first).toMatchObject([{ size: 100, dev: superBlockDev, ino: a.ino }]);
    expect(first[0]!.uncertain).toBeUndefined();
    expect(fdStats).toEqual([3]); // the fd and the path agreed: alias learnt
    const second = ofKind(run(engine, [open('/sub/b', b.ino, 4)]), 'file_opened');
    expect(second).toMatchObject([{ size: 200, dev: superBlockDev, ino: b.ino }]);
    expect(second[0]!.uncertain).toBeUndefined();
    expect(fdStats).toEqual([3]); // no fd inspection for the second open
  });
});

