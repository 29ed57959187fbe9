/**
 * Hand-written event sequences: a tiny builder per process (thread) that stamps ascending timestamps, and a fake
 * system for the insight calls so detectors that read files back can be tested without a kernel.
 */
import { createHash } from 'node:crypto';
import { AT_FDCWD, type SyscallEvent } from '../../../src/trace/events.js';
import type { FdInfo, FileReader, FileStat, SystemInspector } from '../../../src/insight/inspector.js';
import { InsightEngine, type Insight, type InsightKind } from '../../../src/insight/index.js';

import { O_CREAT, O_TRUNC, O_WRONLY } from '../../../src/trace/linux.js';

export { O_APPEND, O_CLOEXEC, O_CREAT, O_DIRECTORY, O_EXCL, O_RDWR, O_TRUNC, O_WRONLY } from '../../../src/trace/linux.js';
/** Read-only is the absence of the access-mode bits. */
export const O_RDONLY = 0;
export const CREATE = O_WRONLY | O_CREAT | O_TRUNC;
export const MS = 1_000_000;

export class Clock {
  now = 1_000 * MS;
  tick(ms = 1): number {
    this.now += ms * MS;
    return this.now;
  }
}

type Body<K extends SyscallEvent['kind']> = Omit<Extract<SyscallEvent, { kind: K }>, 'ts' | 'pid' | 'tid' | 'kind'>;

/** Events of one thread; `pid` is the thread group, `tid` the thread. */
export class Task {
  constructor(
    readonly clock: Clock,
    readonly pid: number,
    readonly tid = pid,
  ) {}

  thread(tid: number): Task {
    return new Task(this.clock, this.pid, tid);
  }

  ev<K extends SyscallEvent['kind']>(kind: K, body: Body<K>): SyscallEvent {
    return { ts: this.clock.tick(), pid: this.pid, tid: this.tid, kind, ...body } as unknown as SyscallEvent;
  }

  open(path: string, flags: number, ret: number, dirfd = AT_FDCWD): SyscallEvent {
    return this.ev('open', { dirfd, path, flags, mode: 0o644, ret });
  }
  close(fd: number, ret = 0): SyscallEvent {
    return this.ev('close', { fd, ret });
  }
  dup(fd: number, ret: number, cloexec = false): SyscallEvent {
    return this.ev('dup', { fd, cloexec, ret });
  }
  write(fd: number, count: number, offset: number | null = null, hint?: { magic: number; ioClass: number }): SyscallEvent {
    return this.ev('rw', { op: 'write', fd, offset, count, ret: count, ...(hint ? { hint } : {}) });
  }
  read(fd: number, count: number, offset: number | null = null): SyscallEvent {
    return this.ev('rw', { op: 'read', fd, offset, count, ret: count });
  }
  summary(fd: number, s: Partial<Body<'rw_summary'>>): SyscallEvent {
    return this.ev('rw_summary', {
      fd,
      readCalls: 0,
      readBytes: 0,
      writeCalls: 0,
      writeBytes: 0,
      writeStart: -1,
      writeEnd: -1,
      position: -1,
      ...s,
    });
  }
  fork(child: number, thread = false): SyscallEvent {
    return this.ev('fork', { child: thread ? this.pid : child, childTid: child, thread });
  }
  exec(path: string, argv?: string[]): SyscallEvent {
    return this.ev('exec', { path, ret: 0, ...(argv ? { argv } : {}) });
  }
  exit(group = true): SyscallEvent {
    return this.ev('exit', { group, code: 0 });
  }
  chdir(path: string): SyscallEvent {
    return this.ev('chdir', { path, ret: 0 });
  }
  copy(call: 'copy_file_range' | 'sendfile' | 'splice' | 'FICLONE' | 'FICLONERANGE', fdIn: number, fdOut: number, ret: number, length = ret): SyscallEvent {
    return this.ev('copy', { call, fdIn, fdOut, offsetIn: null, offsetOut: null, length, ret });
  }
  unlink(path: string, dirfd = AT_FDCWD): SyscallEvent {
    return this.ev('unlink', { dirfd, path, flags: 0, ret: 0 });
  }
  rename(oldpath: string, newpath: string, flags = 0): SyscallEvent {
    return this.ev('rename', { olddirfd: AT_FDCWD, oldpath, newdirfd: AT_FDCWD, newpath, flags, ret: 0 });
  }
  link(oldpath: string, newpath: string): SyscallEvent {
    return this.ev('link', { olddirfd: AT_FDCWD, oldpath, newdirfd: AT_FDCWD, newpath, flags: 0, ret: 0 });
  }
}

export function run(engine: InsightEngine, events: SyscallEvent[]): Insight[] {
  return events.flatMap((ev) => engine.handle(ev));
}

export function ofKind<K extends InsightKind>(insights: Insight[], kind: K): Array<Extract<Insight, { kind: K }>> {
  return insights.filter((i): i is Extract<Insight, { kind: K }> => i.kind === kind);
}

export function pseudoRandom(bytes: number, seed: string): Buffer {
  const out = Buffer.alloc(bytes);
  for (let offset = 0, i = 0; offset < bytes; i++) {
    offset += createHash('sha256').update(`${seed}:${i}`).digest().copy(out, offset);
  }
  return out;
}

interface FakeFile {
  dev: number;
  ino: number;
  data: Buffer;
  kind: FileStat['kind'];
  nlink: number;
  /** What stat reports as the last modification (a test changing data changes this as a file system would). */
  mtimeNs?: number;
  /** What stat reports as the creation time (statx's btime). */
  birthNs?: number;
}

/** A system of in-memory files and processes; tests change it to play "what /proc says now". */
export class FakeSystem implements SystemInspector {
  readonly files = new Map<string, FakeFile>();
  readonly procs = new Map<number, { cwd: string; exe: string; argv: string[]; fds: Map<number, string> }>();
  /** Symbolic link → the path it resolves to. */
  readonly symlinks = new Map<string, string>();
  /** Files opened through openFd/openPath and not closed yet (every look must close what it opened). */
  opened = 0;
  private nextIno = 100;

  addFile(path: string, data: Buffer | string = '', kind: FileStat['kind'] = 'regular'): FakeFile {
    const file = { dev: 8, ino: this.nextIno++, data: Buffer.from(data), kind, nlink: 1 };
    this.files.set(path, file);
    return file;
  }

  /** A symbolic link: stat and opens of `path` reach `target`'s file. */
  addSymlink(path: string, target: string): void {
    this.symlinks.set(path, target);
    const file = this.files.get(target);
    if (file) this.files.set(path, file);
  }

  addProc(pid: number, exe: string, cwd = '/'): void {
    this.procs.set(pid, { cwd, exe, argv: [exe], fds: new Map() });
  }

  private stat(file: FakeFile | undefined): FileStat | null {
    if (!file) return null;
    const birth = file.birthNs === undefined ? {} : { birthNs: file.birthNs };
    return { dev: file.dev, ino: file.ino, size: file.data.length, mtimeNs: file.mtimeNs ?? 0, ...birth, kind: file.kind, nlink: file.nlink };
  }

  openFds(pid: number): number[] | null {
    const fds = this.procs.get(pid)?.fds;
    return fds ? [...fds.keys()] : null;
  }

  fdTarget(pid: number, fd: number): { path: string; deleted: boolean } | null {
    const path = this.procs.get(pid)?.fds.get(fd);
    return path === undefined ? null : { path, deleted: !this.files.has(path) };
  }
  fdInfo(pid: number, fd: number): FdInfo | null {
    return this.procs.get(pid)?.fds.has(fd) ? { pos: 0, flags: 1 } : null;
  }
  statFd(pid: number, fd: number): FileStat | null {
    const path = this.procs.get(pid)?.fds.get(fd);
    return path === undefined ? null : this.stat(this.files.get(path));
  }
  statPath(path: string): FileStat | null {
    return this.stat(this.files.get(path));
  }
  symlinkTarget(path: string): string | null {
    return this.symlinks.get(path) ?? null;
  }
  /** Directory links (addSymlink of a directory path) resolved by prefix; every other directory is itself. */
  realDirectory(path: string): string | null {
    for (const [link, target] of this.symlinks) {
      if (path === link || path.startsWith(`${link}/`)) return target + path.slice(link.length);
    }
    return path;
  }
  cwd(pid: number): string | null {
    return this.procs.get(pid)?.cwd ?? null;
  }
  exe(pid: number): string | null {
    return this.procs.get(pid)?.exe ?? null;
  }
  cmdline(pid: number): string[] | null {
    return this.procs.get(pid)?.argv ?? null;
  }
  openFd(pid: number, fd: number): FileReader | null {
    const path = this.procs.get(pid)?.fds.get(fd);
    return path === undefined ? null : this.openPath(path);
  }
  openPath(path: string): FileReader | null {
    const file = this.files.get(path);
    const stat = this.stat(file);
    if (!file || !stat || file.kind !== 'regular') return null;
    this.opened++;
    return { stat, read: (offset, length) => file.data.subarray(offset, offset + length), close: () => void this.opened-- };
  }
  /** Wall clock minus the trace's monotonic clock; null: the two cannot be related (file times say nothing). */
  wallMinusMonotonicNs: number | null = null;
  wallToMonotonicNs(wallNs: number): number | null {
    return this.wallMinusMonotonicNs === null ? null : wallNs - this.wallMinusMonotonicNs;
  }
}
