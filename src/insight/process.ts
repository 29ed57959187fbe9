/**
 * The process table's data: processes (thread groups) with their fd tables, open file descriptions, cwd, exe
 * and shared writable mappings. The semantics follow the kernel's: an fd points at an open file description
 * (offset, O_APPEND, the file), dup and fork share descriptions, threads share the whole table, FD_CLOEXEC
 * belongs to the fd and is acted on at execve.
 */
import assert from 'node:assert/strict';
import { trimTarget } from '../util/bounded.js';
import type { FileRecord } from './files.js';
import type { FdInfo, FileStat } from './inspector.js';
import type { CopyMethod } from './types.js';

export type OpenFileKind = 'regular' | 'directory' | 'other';

/** An open file description (the kernel's `struct file`). */
export interface OpenFile {
  readonly id: number;
  kind: OpenFileKind;
  /** The storage file behind it; null for pipes, sockets, devices and fds we could not identify. */
  file: FileRecord | null;
  /** Absolute path it was opened by (what dirfd-relative lookups and fchdir resolve against), or /proc's name. */
  path: string | null;
  flags: number;
  append: boolean;
  /** File position; null once we lost track of it. */
  position: number | null;
  /** fds (in any process) that refer to this description. */
  refs: number;
  readBytes: number;
  writeBytes: number;
  openedTs: number;
  /** End of the window the previous rw_summary covered: the next summary's writes happened after it. */
  summarisedTs: number;
  /** Processes that wrote through it: each gets its copy/encryption check when the description is released. */
  writers: Set<Process>;
  /** A pipe fed from a file by splice/sendfile: the file whose bytes it carries. */
  carries: FileRecord | null;
  /**
   * The pipe's inode when `carries` was set (ebpf). Pipe closes are not reported by default, so the entry at this
   * fd number may be stale: a copy out of another inode does not carry that file.
   */
  carriesIno: number | null;
  uncertain?: string;
  /** Set when a process holding it does I/O the trace cannot see (Process.asyncUnseen): its byte counts are short. */
  unseenIo?: string;
}

export interface FdEntry {
  file: OpenFile;
  cloexec: boolean;
}

export class FdTable {
  private readonly entries = new Map<number, FdEntry>();

  get(fd: number): FdEntry | undefined {
    return this.entries.get(fd);
  }

  /** Installs `entry` at `fd` and returns what was there, which the caller must release. */
  install(fd: number, entry: FdEntry): FdEntry | undefined {
    assert.ok(Number.isInteger(fd) && fd >= 0, `bad fd ${fd}`);
    const displaced = this.entries.get(fd);
    this.entries.set(fd, entry);
    return displaced;
  }

  remove(fd: number): FdEntry | undefined {
    const entry = this.entries.get(fd);
    this.entries.delete(fd);
    return entry;
  }

  fds(): number[] {
    return [...this.entries.keys()].sort((a, b) => a - b);
  }

  entriesOf(): IterableIterator<[number, FdEntry]> {
    return this.entries.entries();
  }

  get size(): number {
    return this.entries.size;
  }

  /** fork: the child gets its own table whose entries share the parent's open file descriptions. */
  clone(): FdTable {
    const copy = new FdTable();
    for (const [fd, entry] of this.entries) {
      entry.file.refs++;
      copy.entries.set(fd, { file: entry.file, cloexec: entry.cloexec });
    }
    return copy;
  }
}

/** A shared writable file mapping: stores through it reach the file without a write syscall. */
export interface Mapping {
  start: number;
  length: number;
  file: FileRecord;
  fileOffset: number;
}

export interface PendingCopy {
  source: FileRecord;
  method: CopyMethod;
  bytes: number;
}

/** What one process moved from or into one file, for the copy and encryption detectors. */
export interface FileIo {
  readBytes: number;
  writeBytes: number;
  /**
   * Some of those writes started at offset 0, or at an offset nobody knows. The read/write copy detector compares
   * a file with its source from the start, so writes that all began further in (appends) cannot make one it finds.
   */
  wroteAtStart: boolean;
  /** Explicit copies into this file, keyed by source id and method. */
  copiesIn: Map<string, PendingCopy>;
  /** A read-write copy check found no source yet: retry when the process exits. */
  recheck: boolean;
  /** The encryption check had evidence but could not read the file back: retried with the copy check. */
  encryptionUnseen: boolean;
  /**
   * Sources whose first block already differed from this file's: not read again at each recheck (a mail server
   * appends to a file and closes it hundreds of times, with the same similar-sized files read in between).
   */
  ruledOut: Set<FileRecord> | null;
}

export interface Process {
  readonly pid: number;
  ppid: number | null;
  exe: string | null;
  argv: string[] | null;
  comm: string | null;
  cwd: string | null;
  fds: FdTable;
  threads: Set<number>;
  mappings: Mapping[];
  io: Map<FileRecord, FileIo>;
  /**
   * The files of `io` this process read from most recently (at most COPY_SOURCES_RECENT, oldest first): the copy
   * detector's candidates. A copy reads its source while (or just before) it writes the target; a mail server that
   * has read thousands of similar-sized files must not have each of them compared with every file it writes.
   */
  readIo: Set<FileRecord>;
  /** Created from an event of an unknown pid, not from a fork we saw: its fds come from /proc on first use. */
  discovered: boolean;
  /** fds a discovered process closed before its fork event arrived: the fork must not resurrect them. */
  closedBeforeFork: Set<number>;
  uncertain?: string;
  /**
   * Why some of this process's reads and writes are not seen (io_uring or AIO requests the backend does not follow):
   * its files' sizes are then re-read at close instead of counted, and their byte counts are flagged.
   */
  asyncUnseen?: string;
  /** Regular files it had open when tracing attached to it, by fd, until an event first uses that fd. */
  attachedFds?: Map<number, AttachedFd>;
}

/** What /proc said of an attached process's fd when tracing started. */
export interface AttachedFd {
  fd: number;
  path: string;
  stat: FileStat;
  info: FdInfo | null;
}

/** Bound on per-process file accounting: a grep over a million files must not keep a million entries. */
export const PROCESS_IO_FILES_MAX = 4096;

export function newProcess(pid: number, fds: FdTable, discovered: boolean): Process {
  return {
    pid,
    ppid: null,
    exe: null,
    argv: null,
    comm: null,
    cwd: null,
    fds,
    threads: new Set([pid]),
    mappings: [],
    io: new Map(),
    readIo: new Set(),
    discovered,
    closedBeforeFork: new Set(),
  };
}

export function fileIo(process: Process, file: FileRecord): FileIo {
  let io = process.io.get(file);
  if (io) return io;
  io = { readBytes: 0, writeBytes: 0, wroteAtStart: false, copiesIn: new Map(), recheck: false, encryptionUnseen: false, ruledOut: null };
  process.io.set(file, io);
  if (process.io.size > PROCESS_IO_FILES_MAX) dropOldest(process);
  return io;
}

/** How far dropOldest looks for a read-only entry before it drops the oldest one outright. */
const DROP_SCAN_ENTRIES = 64;

/**
 * Keeps process.io at its bound: drops an eighth of it at once (see util/bounded.ts: one at a time, every insert
 * would walk the holes earlier deletions left at the front), preferring entries that only read (the least useful to
 * copy detection) among the oldest few beyond that eighth, then the oldest written ones. Looking no further keeps
 * this amortised O(1): a process that only writes (tar -x writing 78k files) would otherwise scan every entry.
 */
function dropOldest(process: Process): void {
  let wanted = process.io.size - trimTarget(PROCESS_IO_FILES_MAX);
  const window = wanted + DROP_SCAN_ENTRIES;
  const written: FileRecord[] = [];
  let scanned = 0;
  for (const [file, io] of process.io) {
    if (wanted === 0 || scanned++ >= window) break;
    if (io.writeBytes === 0 && io.copiesIn.size === 0) {
      forgetIo(process, file);
      wanted--;
    } else written.push(file);
  }
  // The window held `wanted` entries or more, so the written ones seen make up what reads did not.
  for (let k = 0; k < wanted; k++) forgetIo(process, written[k]!);
}

/** How many recently read files the copy detector considers as a written file's source. */
export const COPY_SOURCES_RECENT = 64;

/** Counts bytes this process read from `file`, and keeps it among the files read most recently. */
export function recordProcessRead(process: Process, file: FileRecord, bytes: number): void {
  const io = fileIo(process, file);
  io.readBytes += bytes;
  if (io.readBytes === 0) return;
  const recent = process.readIo;
  recent.delete(file); // re-inserted: the set stays in order of last read
  recent.add(file);
  if (recent.size > COPY_SOURCES_RECENT) recent.delete(recent.values().next().value!);
}

export function forgetIo(process: Process, file: FileRecord): void {
  process.io.delete(file);
  process.readIo.delete(file);
}

/** A file that `process` may read or write unseen (see onAsyncUnseen). */
export function doubtAsyncIo(process: Process, openFile: OpenFile): void {
  if (process.asyncUnseen === undefined) return;
  openFile.unseenIo ??= process.asyncUnseen;
  const file = openFile.file;
  if (!file || file.metadata) return;
  file.sizeDoubted = true;
}
