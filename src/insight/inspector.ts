/**
 * Insight calls: what the syscalls did not say, read from /proc and the file system. Events reach us after the
 * fact, so every answer may describe a later state (the fd reused, the process gone, the file replaced); callers
 * cross-check identities (dev, ino) before trusting one. Every method returns null instead of throwing, because
 * "gone" is the normal case for short-lived processes.
 *
 * Injected into the engine so unit tests run on hand-written event sequences with a fake (or no) system.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';

export interface FileStat {
  dev: number;
  ino: number;
  size: number;
  /** Last modification, wall-clock nanoseconds. */
  mtimeNs: number;
  /** Creation (statx's btime), wall-clock nanoseconds; absent where the file system does not keep it. */
  birthNs?: number;
  kind: 'regular' | 'directory' | 'other';
  nlink: number;
}

/** A regular file opened for reading back: one descriptor for every read of one look. Close it when done. */
export interface FileReader {
  /** The file as fstat saw it through the descriptor (so reads are of this very file, whatever its path names later). */
  readonly stat: FileStat;
  /** Bytes at [offset, offset + length), fewer at the end of the file; null when the read failed. */
  read(offset: number, length: number): Buffer | null;
  close(): void;
}

export interface FdInfo {
  pos: number;
  flags: number;
}

export interface SystemInspector {
  /** The open fd numbers of a process (/proc/PID/fd), or null when it is gone. */
  openFds(pid: number): number[] | null;
  /** readlink /proc/PID/fd/N; `deleted` when the kernel appended " (deleted)". */
  fdTarget(pid: number, fd: number): { path: string; deleted: boolean } | null;
  fdInfo(pid: number, fd: number): FdInfo | null;
  statFd(pid: number, fd: number): FileStat | null;
  statPath(path: string): FileStat | null;
  /** When the last component of `path` is a symbolic link: the path with every link resolved (realpath); else null. */
  symlinkTarget(path: string): string | null;
  /** The directory's path with every symbolic link resolved (realpath); null when it cannot be resolved (gone). */
  realDirectory(path: string): string | null;
  cwd(pid: number): string | null;
  exe(pid: number): string | null;
  cmdline(pid: number): string[] | null;
  /** Opens what /proc/PID/fd/N refers to (works for unlinked files); null unless it is a regular file. */
  openFd(pid: number, fd: number): FileReader | null;
  /** Opens a path for reading; null unless it leads to a regular file. */
  openPath(path: string): FileReader | null;
  /** Converts a wall-clock time to the events' CLOCK_MONOTONIC scale, or null when this run has no such link. */
  wallToMonotonicNs(wallNs: number): number | null;
}

/** Inspects nothing: for replays of another machine's log and for unit tests of pure event logic. */
export class NullInspector implements SystemInspector {
  openFds(): null {
    return null;
  }
  fdTarget(): null {
    return null;
  }
  fdInfo(): null {
    return null;
  }
  statFd(): null {
    return null;
  }
  statPath(): null {
    return null;
  }
  symlinkTarget(): null {
    return null;
  }
  realDirectory(): null {
    return null;
  }
  cwd(): null {
    return null;
  }
  exe(): null {
    return null;
  }
  cmdline(): null {
    return null;
  }
  openFd(): null {
    return null;
  }
  openPath(): null {
    return null;
  }
  wallToMonotonicNs(): null {
    return null;
  }
}

const DELETED_SUFFIX = ' (deleted)';

function attempt<T>(fn: () => T): T | null {
  try {
    return fn();
  } catch {
    return null;
  }
}

function toFileStat(stat: fs.BigIntStats): FileStat {
  const kind = stat.isFile() ? 'regular' : stat.isDirectory() ? 'directory' : 'other';
  return {
    dev: Number(stat.dev),
    ino: Number(stat.ino),
    size: Number(stat.size),
    mtimeNs: Number(stat.mtimeNs),
    ...(stat.birthtimeNs > 0n ? { birthNs: Number(stat.birthtimeNs) } : {}),
    kind,
    nlink: Number(stat.nlink),
  };
}

/**
 * Opens a file to read it back, if it is a regular file. O_NONBLOCK and O_NOCTTY because the name may have come to
 * name a FIFO or a terminal since the trace saw it (open then returns at once and takes no terminal); fstat through
 * the descriptor then rules out anything but a regular file before a byte is read.
 */
function openRegular(path: string): FileReader | null {
  const fd = attempt(() => fs.openSync(path, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK | fs.constants.O_NOCTTY));
  if (fd === null) return null;
  const stat = attempt(() => fs.fstatSync(fd, { bigint: true }));
  if (!stat || !stat.isFile()) {
    fs.closeSync(fd);
    return null;
  }
  return new DescriptorReader(fd, toFileStat(stat));
}

class DescriptorReader implements FileReader {
  private fd: number | null;

  constructor(fd: number, readonly stat: FileStat) {
    this.fd = fd;
  }

  read(offset: number, length: number): Buffer | null {
    const fd = this.fd;
    assert.ok(fd !== null, 'read after close');
    const buffer = Buffer.allocUnsafe(length);
    const got = attempt(() => fs.readSync(fd, buffer, 0, length, offset));
    return got === null ? null : buffer.subarray(0, got);
  }

  close(): void {
    if (this.fd === null) return;
    attempt(() => fs.closeSync(this.fd!));
    this.fd = null;
  }
}

/** The live system. Pids are in this process's pid namespace, as the backends report them. */
export class ProcInspector implements SystemInspector {
  /** CLOCK_MONOTONIC and wall clock sampled together once; both backends' `ts` are monotonic nanoseconds. */
  private readonly wallMinusMonotonicNs = Date.now() * 1e6 - Number(process.hrtime.bigint());

  openFds(pid: number): number[] | null {
    const names = attempt(() => fs.readdirSync(`/proc/${pid}/fd`));
    return names === null ? null : names.map(Number).filter(Number.isSafeInteger);
  }

  fdTarget(pid: number, fd: number): { path: string; deleted: boolean } | null {
    const target = attempt(() => fs.readlinkSync(`/proc/${pid}/fd/${fd}`));
    if (target === null) return null;
    const deleted = target.endsWith(DELETED_SUFFIX);
    return { path: deleted ? target.slice(0, -DELETED_SUFFIX.length) : target, deleted };
  }

  fdInfo(pid: number, fd: number): FdInfo | null {
    const text = attempt(() => fs.readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'));
    if (text === null) return null;
    const pos = /^pos:\s+(\d+)/m.exec(text);
    const flags = /^flags:\s+([0-7]+)/m.exec(text);
    if (!pos || !flags) return null;
    return { pos: Number(pos[1]), flags: parseInt(flags[1], 8) };
  }

  statFd(pid: number, fd: number): FileStat | null {
    return this.statPath(`/proc/${pid}/fd/${fd}`);
  }

  statPath(path: string): FileStat | null {
    // "Gone" is common (short-lived processes and files): without throwIfNoEntry, building the exception for
    // ENOENT costs twice the stat itself.
    const stat = attempt(() => fs.statSync(path, { bigint: true, throwIfNoEntry: false }));
    return stat ? toFileStat(stat) : null;
  }

  symlinkTarget(path: string): string | null {
    const link = attempt(() => fs.lstatSync(path, { throwIfNoEntry: false }));
    return link?.isSymbolicLink() ? attempt(() => fs.realpathSync.native(path)) : null;
  }

  realDirectory(path: string): string | null {
    return attempt(() => fs.realpathSync.native(path));
  }

  cwd(pid: number): string | null {
    return attempt(() => fs.readlinkSync(`/proc/${pid}/cwd`));
  }

  exe(pid: number): string | null {
    const exe = attempt(() => fs.readlinkSync(`/proc/${pid}/exe`));
    return exe === null ? null : exe.endsWith(DELETED_SUFFIX) ? exe.slice(0, -DELETED_SUFFIX.length) : exe;
  }

  cmdline(pid: number): string[] | null {
    const raw = attempt(() => fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8'));
    if (raw === null || raw.length === 0) return null; // zombies and kernel threads have none
    return raw.replace(/\0$/, '').split('\0');
  }

  openFd(pid: number, fd: number): FileReader | null {
    return openRegular(`/proc/${pid}/fd/${fd}`);
  }

  openPath(path: string): FileReader | null {
    return openRegular(path);
  }

  wallToMonotonicNs(wallNs: number): number | null {
    return wallNs - this.wallMinusMonotonicNs;
  }
}
