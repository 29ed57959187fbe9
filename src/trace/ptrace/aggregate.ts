/**
 * The ptrace backend sees every read and write; this turns them into the same rw_summary events the ebpf
 * backend aggregates in the kernel, so consumers see one shape. It keeps what the kernel would have told us:
 * which fds hold storage (regular files, block devices) and the file position, per open file description as
 * the kernel does (dup and fork share one; open makes a new one). A position it cannot know (O_APPEND, an fd
 * inherited from before tracing) is -1, and so are the write offsets of plain writes made at it.
 */
import { readlinkSync, statSync } from 'node:fs';
import type { SyscallEvent } from '../events.js';
import { O_APPEND, O_TRUNC, SEEK_END } from '../linux.js';
import type { FdKind } from './parse.js';

/** An open file description: what dup and fork share. */
interface Description {
  kind: FdKind | 'unknown';
  /** File position after the last call we saw, or -1 when we cannot know it. */
  position: number;
  /**
   * O_APPEND: every plain write goes to the end of the file, wherever the position was (an lseek(SEEK_SET) does not
   * place the next write), and leaves the position there.
   */
  append: boolean;
  /**
   * The end of the file, where the next append goes, or -1 when we cannot know it. Known from an O_TRUNC open, an
   * lseek(SEEK_END) (Python's open('ab') makes one), an ftruncate through the description, and kept by the writes
   * after; lost when the file may have changed otherwise (a truncation elsewhere).
   */
  end: number;
  /** The file strace named at the calls ('' for what is not a path or not yet named). */
  path: string;
}

/** One fd's calls since its last summary. */
interface FdState {
  description: Description;
  readCalls: number;
  readBytes: number;
  writeCalls: number;
  writeBytes: number;
  writeStart: number;
  writeEnd: number;
  /** A write went to an offset we could not know, so the range above is not the whole story. */
  rangeUnknown: boolean;
  lastTs: number;
  lastTid: number;
}


function fdState(description: Description): FdState {
  return {
    description, readCalls: 0, readBytes: 0, writeCalls: 0, writeBytes: 0, writeStart: -1, writeEnd: -1,
    rangeUnknown: false, lastTs: 0, lastTid: 0,
  };
}

export class RwAggregator {
  private readonly tables = new Map<number, Map<number, FdState>>();

  constructor(private readonly emit: (event: SyscallEvent) => void) {}

  private table(pid: number): Map<number, FdState> {
    let table = this.tables.get(pid);
    if (!table) {
      table = new Map();
      this.tables.set(pid, table);
    }
    return table;
  }

  /** fd now refers to something else: what the old one did is reported first. */
  private replace(pid: number, fd: number, description: Description): void {
    this.flush(pid, fd);
    this.table(pid).set(fd, fdState(description));
  }

  opened(pid: number, fd: number, kind: FdKind, flags: number, path: string): void {
    const append = (flags & O_APPEND) !== 0;
    this.replace(pid, fd, { kind, position: 0, append, end: (flags & O_TRUNC) !== 0 ? 0 : -1, path });
  }

  /** dup family: the new fd shares the source's description (and so its position). */
  duplicated(pid: number, fd: number, target: number, kind: FdKind | null): void {
    const source = this.table(pid).get(fd)?.description;
    const description = source ?? { kind: kind ?? 'unknown', position: -1, append: false, end: -1, path: '' };
    if (kind !== null && description.kind === 'unknown') description.kind = kind;
    this.replace(pid, target, description);
  }

  /** An fd whose target strace printed (any decoded call): learn what it is, and its name, if we did not know. */
  learned(pid: number, fd: number, kind: FdKind, path: string): void {
    const state = this.table(pid).get(fd);
    if (!state) this.table(pid).set(fd, fdState({ kind, position: -1, append: false, end: -1, path }));
    else {
      if (state.description.kind === 'unknown') state.description.kind = kind;
      if (path !== '') state.description.path = path;
    }
  }

  /** fcntl(F_SETFL) turned O_APPEND on or off. */
  flagsSet(pid: number, fd: number, flags: number): void {
    const description = this.table(pid).get(fd)?.description;
    if (!description) return;
    const append = (flags & O_APPEND) !== 0;
    if (append && !description.append) description.end = -1;
    description.append = append;
  }

  /** lseek returned `position`; with SEEK_END that is the end of the file plus `offset`. */
  seeked(pid: number, fd: number, position: number, whence: number, offset: number): void {
    const description = this.table(pid).get(fd)?.description;
    if (!description) return;
    description.position = position;
    if (whence === SEEK_END && Number.isFinite(offset)) description.end = position - offset;
  }

  /**
   * ftruncate/fallocate through fd: what was written before goes first, through every fd (another process may be
   * appending to the file: `truncate -s 0 log`, logrotate's copytruncate), and an O_APPEND description's next write
   * goes to the new end when ftruncate set it; other descriptions (of the same file or not: we cannot tell) no longer
   * know theirs.
   */
  resized(pid: number, fd: number, newEnd: number | null): void {
    this.cutSomewhere();
    const description = this.table(pid).get(fd)?.description;
    if (description) description.end = newEnd ?? -1;
  }

  /**
   * Some file was cut (by name, or through some fd) and we cannot tell whose fds it is under: every pending summary
   * goes first, and no description knows its file's end now.
   */
  cutSomewhere(): void {
    this.flushAll();
    for (const table of this.tables.values()) for (const state of table.values()) state.description.end = -1;
  }

  /**
   * One read or write; `offset` is the explicit offset of positional calls (pread, pwritev...), `appendFlag`
   * pwritev2's RWF_APPEND (true) or RWF_NOAPPEND (false), null otherwise. A write on an O_APPEND description goes to
   * the end of the file even with an explicit offset (Linux's pwrite appends there too).
   */
  data(pid: number, tid: number, ts: number, fd: number, write: boolean, offset: number | null, ret: number, appendFlag: boolean | null = null): void {
    if (ret < 0) return;
    const table = this.table(pid);
    let state = table.get(fd);
    if (!state) {
      state = fdState({ kind: 'unknown', position: -1, append: false, end: -1, path: '' });
      table.set(fd, state);
    }
    const description = state.description;
    // Still unknown when /proc cannot say (the process or fd gone by now): counted, and kept or dropped when a later
    // call that strace decorates (ftruncate, close) tells what the fd was — an fd received over a socket has no open.
    if (description.kind === 'unknown') probeKind(pid, fd, description);
    if (description.kind === 'other') return;
    const appended = write && (appendFlag ?? description.append);
    const start = appended ? description.end : offset ?? description.position;
    if (appended) {
      if (description.end >= 0) description.end += ret;
      // A positional write leaves the position where it was; a plain one leaves it at the end.
      if (offset === null) description.position = description.end;
    } else {
      if (offset === null && description.position >= 0) description.position += ret;
      // The end is kept by every write through the description, for a later RWF_APPEND.
      if (write && ret > 0) description.end = start >= 0 && description.end >= 0 ? Math.max(description.end, start + ret) : -1;
    }
    state.lastTs = ts;
    state.lastTid = tid;
    if (write) this.wrote(state, start, ret);
    else {
      state.readCalls++;
      state.readBytes += ret;
    }
  }

  private wrote(state: FdState, start: number, bytes: number): void {
    state.writeCalls++;
    state.writeBytes += bytes;
    if (bytes === 0) return;
    if (start < 0) state.rangeUnknown = true;
    else {
      state.writeStart = state.writeStart < 0 ? start : Math.min(state.writeStart, start);
      state.writeEnd = Math.max(state.writeEnd, start + bytes);
    }
  }

  /** Reports fd's calls since its last summary (close, fsync, dup2 onto it, and the periodic flush). */
  flush(pid: number, fd: number): void {
    const state = this.tables.get(pid)?.get(fd);
    if (!state || state.readCalls + state.writeCalls === 0) return;
    if (state.description.kind !== 'file') {
      Object.assign(state, fdState(state.description)); // never learned to be storage: nothing to report
      return;
    }
    const range = state.writeBytes > 0 && !state.rangeUnknown;
    this.emit({
      kind: 'rw_summary', ts: state.lastTs, pid, tid: state.lastTid, fd,
      readCalls: state.readCalls, readBytes: state.readBytes, writeCalls: state.writeCalls, writeBytes: state.writeBytes,
      writeStart: range ? state.writeStart : -1, writeEnd: range ? state.writeEnd : -1, position: state.description.position,
      ...(state.description.path !== '' ? { path: state.description.path } : {}),
    });
    Object.assign(state, fdState(state.description));
  }

  closed(pid: number, fd: number): void {
    this.flush(pid, fd);
    this.tables.get(pid)?.delete(fd);
  }

  closedRange(pid: number, first: number, last: number): void {
    for (const fd of [...this.table(pid).keys()]) if (fd >= first && fd <= last) this.closed(pid, fd);
  }

  /** A child process starts with its parent's fds, sharing their descriptions. */
  forked(parent: number, child: number): void {
    const copy = new Map<number, FdState>();
    for (const [fd, state] of this.table(parent)) copy.set(fd, fdState(state.description));
    this.tables.set(child, copy);
  }

  flushProcess(pid: number): void {
    for (const fd of this.tables.get(pid)?.keys() ?? []) this.flush(pid, fd);
  }

  exited(pid: number): void {
    this.flushProcess(pid);
    this.tables.delete(pid);
  }

  flushAll(): void {
    for (const pid of this.tables.keys()) this.flushProcess(pid);
  }
}

/**
 * An fd no decoded call has shown us (inherited before tracing, or received over a socket): what /proc says it is
 * now, its kind and name, while the process is alive; nothing when it cannot say.
 */
function probeKind(pid: number, fd: number, description: Description): void {
  const link = `/proc/${pid}/fd/${fd}`;
  try {
    const target = readlinkSync(link);
    if (!target.startsWith('/')) {
      description.kind = 'other';
      return;
    }
    const stat = statSync(link);
    description.kind = stat.isFile() || stat.isBlockDevice() ? 'file' : 'other';
    if (description.path === '') description.path = target;
  } catch {
    // gone: stays unknown
  }
}
