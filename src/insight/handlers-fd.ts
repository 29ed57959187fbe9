/**
 * fd-table syscalls: open/openat/openat2/creat, close, close_range, dup/dup2/dup3/F_DUPFD, other fcntls.
 * An open is also when Sky asks the system what the syscall did not say (size, dev/ino): see probeOpen.
 */
import assert from 'node:assert/strict';
import type { SyscallEvent } from '../trace/events.js';
import { heldBytes, holesDoubt, identityOf, noteChange, noteEmptied, noteLook, sameIdentity, type FileRecord, type Identity } from './files.js';
import type { FileStat } from './inspector.js';
import { rwHint } from './hints.js';
import {
  CLOSE_RANGE_CLOEXEC,
  FD_CLOEXEC,
  F_DUPFD,
  F_DUPFD_CLOEXEC,
  F_SETFD,
  F_SETFL,
  F_SET_FILE_RW_HINT,
  F_SET_RW_HINT,
  O_APPEND,
  O_CLOEXEC,
  O_CREAT,
  O_EXCL,
  O_DIRECTORY,
  O_PATH,
  O_TMPFILE,
  O_TRUNC,
  isWritable,
} from '../trace/linux.js';
import { doubtAsyncIo, type OpenFileKind, type Process } from './process.js';
import { guessKind, isVirtual, LOOK_SLACK_NS, type EngineState } from './state.js';

type Ev<K extends SyscallEvent['kind']> = Extract<SyscallEvent, { kind: K }>;

const EBADF = 9;

interface Probe {
  path: string | null;
  stat: FileStat | null;
  /** The file's identity, from the inspection or (ebpf) from the kernel at open time. */
  identity: Identity | null;
  kind: OpenFileKind;
  /** `stat` is the kernel's view at the open itself (ebpf), not a later inspection. */
  atOpen?: boolean;
  /** Why the inspection cannot be trusted to describe the file at open time. */
  doubt?: string;
}

/**
 * Identify the file an open returned. By the time we look the process may have closed the fd (or reused it) and
 * the path may name another file, so an inspection counts only when its identity matches: the one the kernel
 * reported with the event (ebpf), or else the fd's and the path's agreeing with each other.
 */
function probeOpen(state: EngineState, pid: number, ev: Ev<'open'>, path: string | null): Probe {
  const expected = identityOf(ev.ino, ev.dev);
  const guess = guessKind(path, ev.flags);
  const trustedPath = ev.truncated ? null : path; // a cut-short path names some other file, if any
  // The kernel described the inode at the open itself: nothing to ask, and nothing a later look could get wrong.
  const atOpen = expected && trustedPath !== null ? kernelStat(ev, expected) : null;
  if (atOpen) return { path: trustedPath, stat: atOpen, identity: expected, kind: atOpen.kind, atOpen: true };
  if (!state.live) {
    return { path, stat: null, identity: expected, kind: guess, doubt: ev.truncated ? 'path cut short by the tracer' : undefined };
  }
  const pathStat = trustedPath ? state.inspector.statPath(trustedPath) : null;
  // The kernel named the file: a path that still leads to it is all we need (one stat instead of three calls).
  if (expected && pathStat && state.isKernelIdentity(pathStat, expected)) return { path: trustedPath, stat: pathStat, identity: expected, kind: pathStat.kind };
  const fdStat = state.inspector.statFd(pid, ev.ret);
  const target = fdStat ? state.inspector.fdTarget(pid, ev.ret) : null;
  const named = trustedPath ?? target?.path ?? path;
  if (expected) return probeAgainst(state, expected, { fdStat, pathStat, target, named, guess });
  if (fdStat && pathStat && sameIdentity(fdStat, pathStat)) return { path: named, stat: fdStat, identity: fdStat, kind: fdStat.kind };
  if (fdStat && target && (trustedPath === null || target.path === trustedPath || (target.deleted && !pathStat))) {
    return { path: trustedPath ?? target.path, stat: fdStat, identity: fdStat, kind: fdStat.kind };
  }
  state.counters.lateInspections++;
  if (pathStat) {
    const doubt = 'fd gone or reused before inspection; inspected by path';
    const elsewhere = named === null ? undefined : knownByAnotherName(state, pathStat, named);
    if (elsewhere === undefined) return { path: named, stat: pathStat, identity: pathStat, kind: pathStat.kind, doubt };
    // Still at the name it is known by: `named` leads there (a symbolic link), and that name is the file's.
    if (stillAtKnownName(state, elsewhere, pathStat)) return { path: elsewhere.path, stat: pathStat, identity: pathStat, kind: pathStat.kind, doubt };
    return { path: named, stat: null, identity: null, kind: pathStat.kind, doubt: 'the path named another file by the time it was inspected' };
  }
  return { path: named, stat: null, identity: null, kind: guess, doubt: 'process and file gone before inspection' };
}

/**
 * The record that knows the file with this single link by a name other than `path`. A look by path made after the
 * fd was closed may find a file that took the name after the open: patch and editors write a temporary, open the
 * original, and rename the temporary over it; renameat2(RENAME_EXCHANGE) swaps two names. Unless the file is still at
 * its known name (then `path` is a link to it), it is not the one opened here, and taking its identity would move its
 * record to this name and end the life of the wrong file at the rename. (A file renamed by a process we do not trace
 * looks the same as one renamed later; its record is left under the old name.)
 */
function knownByAnotherName(state: EngineState, stat: FileStat, path: string): FileRecord | undefined {
  if (stat.nlink > 1) return undefined;
  const known = state.files.withIdentity(stat);
  return known === undefined || state.files.atPath(path) === known ? undefined : known;
}

/** Whether the file the table knows as `known` is still at that name (one stat). */
function stillAtKnownName(state: EngineState, known: FileRecord, identity: Identity): boolean {
  const atKnownName = state.inspector.statPath(known.path);
  return atKnownName !== null && state.isKernelIdentity(atKnownName, identity);
}

/**
 * A file opened through a symbolic link is reported by the name the link leads to: the link's own name is no name
 * of the file (unlinking or renaming it leaves the file alone), and the agent maps the file it leads to. Asked once
 * per new name of a file, so a file opened again by the name it is known by costs nothing. A link in a directory
 * component is not looked for (that would be a look per component); unlinking through one does remove the file.
 */
function throughSymlink(state: EngineState, probe: Probe, flags: number): Probe {
  if (!state.live || probe.path === null || probe.kind === 'other' || probe.kind === 'directory') return probe;
  // O_CREAT | O_EXCL fails on a symbolic link: what it opened is a new file by that very name (tar, cp).
  if ((flags & (O_CREAT | O_EXCL)) === (O_CREAT | O_EXCL)) return probe;
  const known = probe.identity ? state.files.withIdentity(probe.identity) : undefined;
  if (known !== undefined && state.files.atPath(probe.path) === known) return probe;
  // Known by another name that still leads to it (a look made late, when the link may be gone already): that name.
  if (known !== undefined && probe.identity !== null && (probe.stat?.nlink ?? 1) < 2 && stillAtKnownName(state, known, probe.identity)) {
    return { ...probe, path: known.path };
  }
  const target = state.inspector.symlinkTarget(probe.path);
  return target === null ? probe : { ...probe, path: target };
}

/** What a stat would have said, from the ebpf backend's view of the inode at the open (absent on older kernels). */
function kernelStat(ev: Ev<'open'>, identity: Identity): FileStat | null {
  if (ev.size === undefined || ev.fileType === undefined || ev.nlink === undefined || ev.mtimeUs === undefined) return null;
  return { dev: identity.dev, ino: identity.ino, size: ev.size, mtimeNs: ev.mtimeUs * 1000, kind: ev.fileType, nlink: ev.nlink };
}

function probeAgainst(
  state: EngineState,
  expected: Identity,
  seen: { fdStat: FileStat | null; pathStat: FileStat | null; target: { path: string } | null; named: string | null; guess: OpenFileKind },
): Probe {
  const { fdStat, pathStat, target, named, guess } = seen;
  // btrfs: stat's st_dev is the subvolume's, the kernel's the super block's. The fd and the path agreeing on a file
  // with the kernel's inode number teaches which st_dev stands for which super block.
  if (fdStat && pathStat && sameIdentity(fdStat, pathStat) && fdStat.ino === expected.ino) state.learnDevAlias(fdStat.dev, expected.dev);
  if (fdStat && state.isKernelIdentity(fdStat, expected)) {
    return { path: named ?? target?.path ?? null, stat: fdStat, identity: expected, kind: fdStat.kind };
  }
  if (pathStat && state.isKernelIdentity(pathStat, expected)) return { path: named, stat: pathStat, identity: expected, kind: pathStat.kind };
  state.counters.lateInspections++;
  return { path: named, stat: null, identity: expected, kind: guess, doubt: 'file changed or gone before inspection; size unknown' };
}

export function onOpen(state: EngineState, ev: Ev<'open'>): void {
  if (ev.ret < 0) return;
  const process = state.processFor(ev);
  const resolved = state.resolve(process, ev.dirfd, ev.path, ev.ts, identityOf(ev.dirIno, ev.dirDev), (ev.flags & (O_DIRECTORY | O_PATH)) === 0);
  // An fd link (`echo x >> /proc/$PPID/fd/3`) reopens the file behind that fd: it is opened by that file's name.
  const reopened = resolved === null ? undefined : state.fileAtFdLink(process, resolved, ev.ts);
  const path = reopened && !reopened.metadata ? reopened.path : resolved;
  if ((ev.flags & O_PATH) !== 0) {
    // A handle for *at() calls and fchdir: no I/O goes through it, so it is not a file opened.
    state.attachOpened(process, ev.ret, state.newOpenFile(guessKind(path, ev.flags), path, ev.flags, ev.ts), cloexec(ev.flags), ev.ts);
    return;
  }
  if ((ev.flags & O_TMPFILE) === O_TMPFILE && path !== null && !isVirtual(path)) return openTmpfile(state, process, ev, path);
  const probe: Probe = isVirtual(path)
    ? { path, stat: null, identity: null, kind: 'other' }
    : throughSymlink(state, probeOpen(state, process.pid, ev, path), ev.flags);
  // Better the name as the process gave it, flagged, than no insight at all (a replay knows no cwd to start from).
  const named = probe.path ?? ev.path;
  const doubt = probe.path === null ? 'relative to a directory we do not know; path as the process gave it' : sizeSetByOpen(ev.flags) ? undefined : probe.doubt;
  const openFile = state.newOpenFile(probe.kind, named, ev.flags, ev.ts);
  if (probe.kind !== 'other') {
    const { record, created } = state.files.lookup(named, probe.stat, probe.identity);
    if (created && doubt) record.uncertain = doubt;
    state.bindFile(openFile, record);
    // The kernel's view at a read-only open is a look at the file as it was then (see FileRecord.lastLook).
    if (probe.stat && probe.atOpen && !isWritable(ev.flags)) noteLook(record, probe.stat);
    applyOpenFlags(state, record, created, probe.stat, ev);
    // (A file already known keeps the size its traced writes gave it: a late look did not set it.)
    if (created && !probe.atOpen) settleLateLook(state, record, probe, ev);
  }
  doubtAsyncIo(process, openFile);
  state.attachOpened(process, ev.ret, openFile, cloexec(ev.flags), ev.ts);
  if (openFile.file) state.emitOpened(process, ev.ret, openFile, ev.ts, false, doubt);
}

/**
 * open(dir, O_TMPFILE) makes a new, empty regular file with no name in `dir`: reported under the name the kernel gives
 * it in /proc ("dir/#inode"), with no links, so its blocks die at its last close unless a linkat names it first.
 */
function openTmpfile(state: EngineState, process: Process, ev: Ev<'open'>, dir: string): void {
  let identity = identityOf(ev.ino, ev.dev);
  let stat = identity ? null : state.live ? state.inspector.statFd(process.pid, ev.ret) : null;
  if (stat && stat.kind === 'regular') identity = stat;
  // O_TMPFILE makes a new inode: one the table knows already is a late look through a reused fd (a later file at
  // that fd number, or a record never retired), and taking it would merge two files.
  if (identity && state.files.withIdentity(identity)) {
    identity = null;
    stat = null;
  }
  const name = `${dir === '/' ? '' : dir}/#${identity ? identity.ino : `O_TMPFILE@${ev.ts}`}`;
  const openFile = state.newOpenFile('regular', name, ev.flags, ev.ts);
  const { record } = state.files.lookup(name, stat, identity);
  state.bindFile(openFile, record);
  record.size = 0;
  noteEmptied(record);
  record.nlink = 0;
  record.bornTs = ev.ts;
  record.bornFrom = 'created';
  record.doomed = { ts: ev.ts, pid: process.pid, cause: 'tmpfile' };
  doubtAsyncIo(process, openFile);
  state.attachOpened(process, ev.ret, openFile, cloexec(ev.flags), ev.ts);
  state.emitOpened(process, ev.ret, openFile, ev.ts, false, identity ? undefined : 'O_TMPFILE file gone before inspection; inode unknown');
}

/**
 * A new record's size and link count came from a look after the open (ptrace always; ebpf when the kernel's inode
 * has no times), so they may include what the process wrote and linked since. A file born at this open (its
 * creation time) was empty at it, with one name: the writes and links that follow give the rest. Otherwise, with
 * O_APPEND, a look that is doubtful or that found the file modified after the open cannot tell the appends before it
 * from those after: the size is re-read, not summed.
 */
function settleLateLook(state: EngineState, record: FileRecord, probe: Probe, ev: Ev<'open'>): void {
  const stat = probe.stat;
  const sinceOpen = (wallNs: number | undefined) => {
    const at = wallNs === undefined ? null : state.inspector.wallToMonotonicNs(wallNs);
    return at === null ? null : at >= ev.ts - LOOK_SLACK_NS;
  };
  if (stat && (ev.flags & O_CREAT) !== 0 && sinceOpen(stat.birthNs) === true) {
    record.nlink = 1;
    if (!sizeSetByOpen(ev.flags)) {
      record.size = 0;
      startLife(record, ev.ts, 'created');
    }
    return;
  }
  if (sizeSetByOpen(ev.flags) || (ev.flags & O_APPEND) === 0) return;
  if (probe.doubt || (stat && sinceOpen(stat.mtimeNs) !== false)) record.sizeDoubted = true;
}

/**
 * O_TRUNC and O_CREAT|O_EXCL leave an empty file: the size is known without looking. (Linux truncates whatever the
 * access mode: an O_RDONLY|O_TRUNC open needs write permission and cuts the file too.)
 */
function sizeSetByOpen(flags: number): boolean {
  const truncates = (flags & O_TRUNC) !== 0;
  return truncates || (flags & (O_CREAT | O_EXCL)) === (O_CREAT | O_EXCL);
}

function cloexec(flags: number): boolean {
  return (flags & O_CLOEXEC) !== 0;
}

/** O_TRUNC ends the life of whatever the file held; a new or emptied file starts one. */
function applyOpenFlags(state: EngineState, file: FileRecord, created: boolean, stat: FileStat | null, ev: Ev<'open'>): void {
  if (file.metadata) return;
  if ((ev.flags & O_TRUNC) !== 0) {
    noteChange(file, 0);
    // A stat of a new record ran after the truncation (maybe after later writes too): only 0 is known at open.
    if (!created && file.size !== null && file.size > 0) endLifetimeByTruncate(state, file, 0, ev.ts, ev.pid);
    if (created) file.size = 0;
    else state.setSize(file, 0, 'open-truncate', ev.ts, ev.pid);
    startLife(file, ev.ts, 'created');
    return;
  }
  if (!created) return;
  const exclusive = (ev.flags & (O_CREAT | O_EXCL)) === (O_CREAT | O_EXCL);
  if (exclusive) file.size = 0; // the open itself proves the file is new, whenever we stat it
  if ((ev.flags & O_CREAT) !== 0 && file.size === 0) startLife(file, ev.ts, 'created');
  else if (stat && stat.size > 0) startLifeFromMtime(state, file, stat);
}

function startLife(file: FileRecord, ts: number, from: 'created' | 'first-write'): void {
  file.bornTs = ts;
  file.bornFrom = from;
  if (from === 'created') noteEmptied(file);
}

function startLifeFromMtime(state: EngineState, file: FileRecord, stat: FileStat): void {
  const born = state.inspector.wallToMonotonicNs(stat.mtimeNs);
  if (born === null) return;
  file.bornTs = born;
  file.bornFrom = 'mtime';
}

export function endLifetimeByTruncate(state: EngineState, file: FileRecord, length: number, ts: number, pid: number): void {
  const held = heldBytes(file);
  if (held === null || length >= held) return;
  endLifetimeOfBytes(state, file, held - length, 'truncate', ts, pid);
}

/** The file lives on, but `bytes` of what it held are gone (truncated, punched out, collapsed away). */
export function endLifetimeOfBytes(state: EngineState, file: FileRecord, bytes: number, cause: 'truncate' | 'hole', ts: number, pid: number): void {
  assert.ok(bytes > 0);
  state.emit({
    kind: 'lifetime_ended',
    ts,
    pid,
    ...state.fileRef(file),
    bytes,
    livedMs: file.bornTs === null ? null : Math.max(0, (ts - file.bornTs) / 1e6),
    bornFrom: file.bornFrom,
    cause,
    ...state.uncertainty(file, holesDoubt(file)),
  });
}

export function onClose(state: EngineState, ev: Ev<'close'>): void {
  // Linux releases the fd even when close reports EINTR or EIO; only EBADF means there was none.
  if (ev.ret === -EBADF) return;
  const process = state.processFor(ev);
  state.release(process, ev.fd, 'close', ev.ts);
}

export function onCloseRange(state: EngineState, ev: Ev<'close_range'>): void {
  if (ev.ret !== 0) return;
  const process = state.processFor(ev);
  for (const fd of process.fds.fds()) {
    if (fd < ev.first || fd > ev.last) continue;
    const entry = process.fds.get(fd);
    if (entry && (ev.flags & CLOSE_RANGE_CLOEXEC) !== 0) entry.cloexec = true;
    else state.release(process, fd, 'close', ev.ts);
  }
}

export function onDup(state: EngineState, ev: Ev<'dup'>): void {
  if (ev.ret < 0 || ev.ret === ev.fd) return; // dup2(fd, fd) changes nothing, not even FD_CLOEXEC
  const process = state.processFor(ev);
  duplicate(state, process, ev, ev.cloexec);
}

function duplicate(state: EngineState, process: Process, ev: Ev<'dup'> | Ev<'fcntl'>, cloexecFlag: boolean): void {
  const seen = ev.kind === 'dup' && (ev.ino !== undefined || ev.seenPath !== undefined)
    ? { identity: identityOf(ev.ino, ev.dev), path: ev.seenPath }
    : null;
  const source = seen ? state.fdEntrySeen(process, ev.fd, ev.ts, seen) : state.fdEntry(process, ev.fd, ev.ts);
  if (!source) return;
  state.attach(process, ev.ret, source.file, cloexecFlag, ev.ts);
}

export function onFcntl(state: EngineState, ev: Ev<'fcntl'>): void {
  if (ev.ret < 0) return;
  const process = state.processFor(ev);
  switch (ev.cmd) {
    case F_DUPFD:
    case F_DUPFD_CLOEXEC:
      duplicate(state, process, ev, ev.cmd === F_DUPFD_CLOEXEC);
      return;
    case F_SETFD: {
      const entry = state.fdEntry(process, ev.fd, ev.ts);
      if (entry) entry.cloexec = (ev.arg & FD_CLOEXEC) !== 0;
      return;
    }
    case F_SETFL: {
      const entry = state.fdEntry(process, ev.fd, ev.ts);
      if (entry) entry.file.append = (ev.arg & O_APPEND) !== 0;
      return;
    }
    case F_SET_RW_HINT:
    case F_SET_FILE_RW_HINT:
      rwHint(state, process, ev.fd, ev.arg, ev.ts);
      return;
  }
}
