/**
 * Data syscalls: offsets and sizes. Plain read/write use and move the description's position (writes with
 * O_APPEND start at the end of the file); positional calls move nothing. The ebpf and ptrace backends report
 * plain calls as per-fd aggregates (rw_summary) and only hinted calls one by one.
 */
import assert from 'node:assert/strict';
import { AT_FDCWD, type SyscallEvent } from '../trace/events.js';
import { heldBytes, identityOf, noteChange, noteData, noteEmptied, type FileRecord } from './files.js';
import { endLifetimeByTruncate, endLifetimeOfBytes } from './handlers-fd.js';
import { syscallArgsHint } from './hints.js';
import { FALLOC_FL_COLLAPSE_RANGE, FALLOC_FL_INSERT_RANGE, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE } from '../trace/linux.js';
import { writeBackFile } from './mmap.js';
import { doubtAsyncIo, fileIo, recordProcessRead, type OpenFile, type Process } from './process.js';
import type { EngineState } from './state.js';
import type { ByteRange, CopyMethod, DataWrittenInsight } from './types.js';

type Ev<K extends SyscallEvent['kind']> = Extract<SyscallEvent, { kind: K }>;

function recordRead(state: EngineState, process: Process, openFile: OpenFile, bytes: number): void {
  openFile.readBytes += bytes;
  const file = openFile.file;
  if (!file || file.metadata) return;
  file.readBytes += bytes;
  recordProcessRead(process, file, bytes);
  state.noteRead(process, file);
}

/**
 * `end` is the offset just past the bytes written (null when unknown); `bornBy` the earliest moment the bytes
 * can have been written (a summary covers a window, not an instant).
 */
function recordWrite(
  state: EngineState,
  process: Process,
  openFile: OpenFile,
  write: { bytes: number; start: number | null; end: number | null; bornBy: number; ts: number; quiet: boolean; head?: number },
): void {
  openFile.writeBytes += write.bytes;
  openFile.writers.add(process);
  const file = openFile.file;
  if (!file || file.metadata) return;
  file.writeBytes += write.bytes;
  noteChange(file, write.start);
  if (write.head !== undefined && !file.mappedShared) file.writtenHead = write.head;
  const io = fileIo(process, file);
  io.writeBytes += write.bytes;
  if (write.start === null || write.start === 0) io.wroteAtStart = true;
  if (file.bornTs === null) {
    file.bornTs = write.bornBy;
    file.bornFrom = 'first-write';
  }
  noteData(file, write.start, write.end, write.bytes);
  if (write.end === null) {
    file.uncertain ??= `write of ${write.bytes} bytes at an unknown offset`;
    file.sizeDoubted = true;
    return;
  }
  if (file.size === null) {
    file.uncertain ??= 'size before tracing unknown';
    file.sizeDoubted = true;
  }
  state.setSize(file, Math.max(file.size ?? 0, write.end), 'write', write.ts, process.pid, write.quiet);
}

/** data_written (opt-in): `range` null when the offsets are unknown (then the whole file is named, flagged). */
function reportWritten(
  state: EngineState,
  process: Process,
  openFile: OpenFile,
  fd: number,
  range: ByteRange | null,
  via: DataWrittenInsight['via'],
  ts: number,
  bytes: number,
): void {
  const file = openFile.file;
  if (!state.reportWrites || !file || file.metadata) return;
  if (range !== null && range.length <= 0) return;
  const whole = range === null;
  state.emit({
    kind: 'data_written',
    ts,
    pid: process.pid,
    ...state.fileRef(file),
    fd,
    range: range ?? { offset: 0, length: Math.max(file.size ?? 0, bytes) },
    via,
    ...(whole ? { uncertain: 'write offsets unknown: the whole file is named' } : state.uncertainty(openFile, file)),
  });
}

export function onRw(state: EngineState, ev: Ev<'rw'>): void {
  if (ev.ret < 0) return;
  const process = state.processFor(ev);
  const entry = state.fdEntry(process, ev.fd, ev.ts);
  if (!entry) return;
  const openFile = entry.file;
  const start = ev.offset ?? callStart(openFile, ev);
  if (ev.offset === null) openFile.position = start === null ? null : start + ev.ret;
  if (ev.op === 'read') recordRead(state, process, openFile, ev.ret);
  else if (ev.ret > 0) {
    const end = start === null ? null : start + ev.ret;
    recordWrite(state, process, openFile, { bytes: ev.ret, start, end, bornBy: ev.ts, ts: ev.ts, quiet: true });
    reportWritten(state, process, openFile, ev.fd, start === null ? null : { offset: start, length: ev.ret }, 'write', ev.ts, ev.ret);
  }
  syscallArgsHint(state, process, ev, entry, start);
}

/** Where a plain read/write began: the kernel's position after the call (ebpf) tells it exactly, O_APPEND included. */
function callStart(openFile: OpenFile, ev: Ev<'rw'>): number | null {
  if (ev.position !== undefined && ev.position >= 0) return ev.position - ev.ret;
  if (ev.op === 'write' && openFile.append) return openFile.file && !openFile.file.sizeDoubted ? openFile.file.size : null;
  return openFile.position;
}

export function onRwSummary(state: EngineState, ev: Ev<'rw_summary'>): void {
  const process = state.processFor(ev);
  const entry = state.fdEntryFor(process, ev.fd, ev.ts, identityOf(ev.ino, ev.dev), ev.path);
  if (!entry) return;
  const openFile = entry.file;
  if (ev.readBytes > 0) recordRead(state, process, openFile, ev.readBytes);
  if (ev.writeBytes > 0) {
    const end = summaryWriteEnd(openFile, ev);
    const range = summaryWriteRange(ev, end);
    recordWrite(state, process, openFile, { bytes: ev.writeBytes, start: range?.offset ?? null, end, bornBy: openFile.summarisedTs, ts: ev.ts, quiet: false, head: ev.writeHead });
    reportWritten(state, process, openFile, ev.fd, range, 'write', ev.ts, ev.writeBytes);
  }
  openFile.position = summaryPosition(openFile, ev);
  openFile.summarisedTs = ev.ts;
}

/**
 * A backend that could not place O_APPEND writes (writeEnd -1) cannot know where they left the position either,
 * whatever it says: appends move it to an end of file it never saw.
 */
function summaryPosition(openFile: OpenFile, ev: Ev<'rw_summary'>): number | null {
  if (openFile.append && ev.writeBytes > 0 && ev.writeEnd < 0) return null;
  if (ev.position >= 0) return ev.position;
  return ev.readCalls + ev.writeCalls > 0 ? null : openFile.position;
}

/** The backend's writeEnd when it knows it; for O_APPEND the bytes went to the end, wherever that was. */
function summaryWriteEnd(openFile: OpenFile, ev: Ev<'rw_summary'>): number | null {
  if (ev.writeEnd >= 0) return ev.writeEnd;
  const file = openFile.file;
  if (openFile.append && file && file.size !== null && !file.sizeDoubted) return file.size + ev.writeBytes;
  return null;
}

/** The span a summary's writes covered: the backend's [writeStart, writeEnd), or the bytes that ended at `end`. */
function summaryWriteRange(ev: Ev<'rw_summary'>, end: number | null): ByteRange | null {
  if (ev.writeStart >= 0 && ev.writeEnd > ev.writeStart) return { offset: ev.writeStart, length: ev.writeEnd - ev.writeStart };
  if (end !== null && end >= ev.writeBytes) return { offset: end - ev.writeBytes, length: ev.writeBytes };
  return null;
}

export function onLseek(state: EngineState, ev: Ev<'lseek'>): void {
  if (ev.ret < 0) return;
  const entry = state.fdEntry(state.processFor(ev), ev.fd, ev.ts);
  if (entry) entry.file.position = ev.ret;
}

export function truncateTo(state: EngineState, file: FileRecord, length: number, cause: 'truncate' | 'ftruncate', ts: number, pid: number): void {
  if (file.metadata) return;
  noteChange(file, length);
  endLifetimeByTruncate(state, file, length, ts, pid);
  if (file.dataEnd !== null) file.dataEnd = Math.min(file.dataEnd, length);
  if (length === 0) {
    noteEmptied(file);
    file.bornTs = null;
    file.bornFrom = null;
  }
  state.setSize(file, length, cause, ts, pid);
}

export function onTruncate(state: EngineState, ev: Ev<'truncate'>): void {
  if (ev.ret !== 0) return;
  const process = state.processFor(ev);
  const path = ev.truncated ? null : state.resolve(process, AT_FDCWD, ev.path, ev.ts);
  const file = path === null ? undefined : state.files.atPath(path);
  if (!file) {
    state.counters.unknownNames++;
    return;
  }
  truncateTo(state, file, ev.length, 'truncate', ev.ts, process.pid);
}

export function onFtruncate(state: EngineState, ev: Ev<'ftruncate'>): void {
  if (ev.ret !== 0) return;
  const process = state.processFor(ev);
  const file = state.fdEntry(process, ev.fd, ev.ts)?.file.file;
  if (file) truncateTo(state, file, ev.length, 'ftruncate', ev.ts, process.pid);
}

export function onFallocate(state: EngineState, ev: Ev<'fallocate'>): void {
  if (ev.ret !== 0) return;
  const process = state.processFor(ev);
  const file = state.fdEntry(process, ev.fd, ev.ts)?.file.file;
  if (!file || file.metadata) return;
  // Anything but plain allocation (punch, zero, collapse, insert) changes bytes from the offset on.
  const changesBytes = (ev.mode & ~FALLOC_FL_KEEP_SIZE) !== 0;
  noteChange(file, changesBytes ? ev.offset : Number.MAX_SAFE_INTEGER);
  if (file.size === null) return;
  // What a punched hole or a collapsed range held (within the file; beyond its end there was nothing) is gone.
  // Whether those bytes had blocks (a hole already) is the file system's to say: the agent maps the file again.
  if ((ev.mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_COLLAPSE_RANGE)) !== 0) {
    const freed = Math.min(heldBytes(file)!, ev.offset + ev.length) - ev.offset;
    if (freed > 0) endLifetimeOfBytes(state, file, freed, 'hole', ev.ts, process.pid);
  }
  // A collapse moves the data after the range down by its length, an insert up.
  if (file.dataEnd !== null && file.dataEnd > ev.offset) {
    if ((ev.mode & FALLOC_FL_COLLAPSE_RANGE) !== 0) file.dataEnd = Math.max(ev.offset, file.dataEnd - ev.length);
    else if ((ev.mode & FALLOC_FL_INSERT_RANGE) !== 0) file.dataEnd += ev.length;
  }
  if ((ev.mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_INSERT_RANGE)) !== 0 && ev.offset < (file.dataEnd ?? file.size)) file.holes = true;
  const size = fallocatedSize(file.size, ev.mode, ev.offset, ev.length);
  state.setSize(file, size, 'fallocate', ev.ts, process.pid);
}

function fallocatedSize(size: number, mode: number, offset: number, length: number): number {
  if ((mode & FALLOC_FL_COLLAPSE_RANGE) !== 0) return Math.max(0, size - length);
  if ((mode & FALLOC_FL_INSERT_RANGE) !== 0) return size + length;
  if ((mode & FALLOC_FL_KEEP_SIZE) !== 0) return size;
  return Math.max(size, offset + length);
}

export function onFsync(state: EngineState, ev: Ev<'fsync'>): void {
  if (ev.ret !== 0) return;
  const process = state.processFor(ev);
  const file = state.fdEntry(process, ev.fd, ev.ts)?.file.file;
  if (!file) return;
  writeBackFile(state, file.id, ev.ts);
  if (state.reportWrites && !file.metadata) {
    state.emit({ kind: 'file_synced', ts: ev.ts, pid: process.pid, ...state.fileRef(file), fd: ev.fd, dataOnly: ev.dataOnly, ...state.uncertainty(file) });
  }
}

const CLONES: ReadonlySet<CopyMethod> = new Set(['FICLONE', 'FICLONERANGE']);

/** Bytes an explicit copy moved: ioctl clones return 0 and mean "the range" (0 = to the end of the source). */
function copiedBytes(ev: Ev<'copy'>, source: FileRecord | null): number {
  if (!CLONES.has(ev.call)) return ev.ret;
  if (ev.ret !== 0) return 0;
  return ev.length > 0 ? ev.length : Math.max(0, (source?.size ?? 0) - (ev.offsetIn ?? 0));
}

export function onCopy(state: EngineState, ev: Ev<'copy'>): void {
  const process = state.processFor(ev);
  const input = state.fdEntry(process, ev.fdIn, ev.ts)?.file;
  const output = state.fdEntry(process, ev.fdOut, ev.ts)?.file;
  if (!input || !output) return;
  const bytes = copiedBytes(ev, input.file);
  if (bytes <= 0) return;
  const clone = CLONES.has(ev.call);
  if (ev.offsetIn === null && !clone && input.position !== null) input.position += bytes;
  input.readBytes += bytes;
  if (input.file) input.file.readBytes += bytes;
  const start = ev.offsetOut ?? (clone ? 0 : output.append ? (output.file?.size ?? null) : output.position);
  if (ev.offsetOut === null && !clone) output.position = start === null ? null : start + bytes;
  const stale = input.carriesIno !== null && ev.inIno !== undefined && ev.inIno !== input.carriesIno;
  copyInto(state, process, output, { source: input.file ?? (stale ? null : input.carries), method: ev.call, bytes, start, ts: ev.ts });
  reportWritten(state, process, output, ev.fdOut, start === null ? null : { offset: start, length: bytes }, ev.call, ev.ts, bytes);
  if (!output.file && input.file) {
    output.carries = input.file; // file → pipe: the pipe now carries that file
    output.carriesIno = ev.outIno ?? null;
  }
}

function copyInto(
  state: EngineState,
  process: Process,
  output: OpenFile,
  copy: { source: FileRecord | null; method: CopyMethod; bytes: number; start: number | null; ts: number },
): void {
  const file = output.file;
  if (!file || file.metadata) return;
  output.writeBytes += copy.bytes;
  output.writers.add(process);
  file.writeBytes += copy.bytes;
  noteChange(file, copy.start);
  if (file.bornTs === null) {
    file.bornTs = copy.ts;
    file.bornFrom = 'first-write';
  }
  const end = copy.start === null ? null : copy.start + copy.bytes;
  noteData(file, copy.start, end, copy.bytes);
  if (end !== null) state.setSize(file, Math.max(file.size ?? 0, end), 'copy', copy.ts, process.pid);
  if (!copy.source || copy.source === file) return;
  const io = fileIo(process, file);
  const key = `${copy.source.id}:${copy.method}`;
  const pending = io.copiesIn.get(key) ?? { source: copy.source, method: copy.method, bytes: 0 };
  pending.bytes += copy.bytes;
  io.copiesIn.set(key, pending);
  assert.ok(pending.bytes > 0);
}

/**
 * Reads and writes of this process go where the trace cannot follow them (an io_uring or AIO request the backend
 * does not see): every file it has open, and every one it opens later, has its size re-read at close and its byte
 * counts flagged. Said once per process.
 */
export function onAsyncUnseen(state: EngineState, ev: Ev<'async_unseen'>): void {
  const process = state.processFor(ev);
  const known = process.asyncUnseen !== undefined;
  process.asyncUnseen ??= `${ev.api} requests not followed: ${ev.detail}`;
  for (const [, entry] of process.fds.entriesOf()) doubtAsyncIo(process, entry.file);
  if (known) return;
  const who = `pid ${process.pid}${process.exe ? ` (${process.exe})` : ''}`;
  const reason = `${who}: ${process.asyncUnseen}; its files' sizes are re-read at close, their byte counts are incomplete`;
  state.emit({ kind: 'uncertainty', ts: ev.ts, pid: process.pid, reason, lostEvents: 0 });
}

