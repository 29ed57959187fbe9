/**
 * Block lifetimes: unlink and rename-over end a file's life (at the last close if it is still open, when the
 * kernel actually frees the blocks); truncation ends the life of the bytes cut off (handlers-data.ts). A name we
 * never saw has unknown bytes: it is counted, not reported, because a guess would be silently wrong.
 */
import { FD_LINK_PATH, type SyscallEvent } from '../trace/events.js';
import { heldBytes, holesDoubt, identityOf, type FileRecord } from './files.js';
import { AT_EMPTY_PATH, AT_REMOVEDIR, AT_SYMLINK_FOLLOW, RENAME_EXCHANGE } from '../trace/linux.js';
import type { Process } from './process.js';
import type { EngineState } from './state.js';
import type { LifetimeCause } from './types.js';

type Ev<K extends SyscallEvent['kind']> = Extract<SyscallEvent, { kind: K }>;

export function onUnlink(state: EngineState, ev: Ev<'unlink'>): void {
  if (ev.ret !== 0) return;
  const process = state.processFor(ev);
  // A path the tracer cut short names some other file, if any: better unknown than wrong.
  const path = ev.truncated ? null : state.resolve(process, ev.dirfd, ev.path, ev.ts, identityOf(ev.dirIno, ev.dirDev));
  const reportedAs = path === null ? undefined : state.files.atPath(path)?.path;
  const file = path === null ? undefined : state.files.unbind(path);
  if (!file) {
    state.counters.unknownNames++;
    return;
  }
  // The name it was reported by is gone, another link remains (git links each object from a temporary name).
  if (reportedAs !== undefined && file.path !== reportedAs) renamed(state, file, reportedAs, ev);
  if ((ev.flags & AT_REMOVEDIR) !== 0) {
    // A removed directory's inode number is free for the next file made (its fds' closes are not traced with ebpf,
    // so the record would otherwise still hold the number).
    state.files.retire(file);
    return;
  }
  if (file.metadata) return;
  nameRemoved(state, file, 'unlink', ev.ts, process.pid);
}

export function onRename(state: EngineState, ev: Ev<'rename'>): void {
  if (ev.ret !== 0) return;
  const process = state.processFor(ev);
  const from = state.resolve(process, ev.olddirfd, ev.oldpath, ev.ts, identityOf(ev.oldDirIno, ev.oldDirDev));
  const to = state.resolve(process, ev.newdirfd, ev.newpath, ev.ts, identityOf(ev.newDirIno, ev.newDirDev));
  state.forgetRealDirectories();
  if (from === null || to === null || ev.truncated) {
    state.counters.unknownNames++;
    return;
  }
  if ((ev.flags & RENAME_EXCHANGE) !== 0) {
    const first = state.files.atPath(from);
    const second = state.files.atPath(to);
    state.files.exchange(from, to);
    if (first) renamed(state, first, from, ev);
    if (second) renamed(state, second, to, ev);
    return;
  }
  const moved = state.files.atPath(from);
  const { replaced, movedBelow } = state.files.rename(from, to);
  if (replaced && !replaced.metadata) nameRemoved(state, replaced, 'rename-over', ev.ts, process.pid);
  if (moved && moved.path === to) renamed(state, moved, from, ev);
  // A directory renamed (a staging directory moved into place): each file below it is now reported by a new name.
  for (const below of movedBelow) if (!below.record.metadata) renamed(state, below.record, below.from, ev);
}

function renamed(state: EngineState, file: FileRecord, from: string, ev: { ts: number; pid: number }): void {
  state.emit({ kind: 'file_renamed', ts: ev.ts, pid: ev.pid, ...state.fileRef(file), from, metadata: file.metadata, ...state.uncertainty(file) });
}

/**
 * A second name for a file (link/linkat): unlinking either name later frees nothing while the other lives (git
 * writes each object to a temporary name, links it to its final one and unlinks the first).
 */
export function onLink(state: EngineState, ev: Ev<'link'>): void {
  if (ev.ret !== 0) return;
  const process = state.processFor(ev);
  const to = state.resolve(process, ev.newdirfd, ev.newpath, ev.ts, identityOf(ev.newDirIno, ev.newDirDev));
  const file = ev.truncated ? undefined : linkSource(state, process, ev);
  if (!file || to === null) {
    state.counters.unknownNames++;
    return;
  }
  if (file.nlink === 0) {
    // An O_TMPFILE file gets its first name: it lives on after its last close, under that name.
    const from = file.path;
    state.files.rebind(file, to);
    renamed(state, file, from, ev);
    file.nlink = 1;
    file.doomed = null;
    return;
  }
  file.nlink = (file.nlink ?? 1) + 1;
  state.files.alias(to, file);
}

/**
 * What linkat links: the file open at olddirfd for AT_EMPTY_PATH with an empty path, the file open at a /proc fd
 * link followed (how O_TMPFILE files are usually named), else the file at the old path.
 */
function linkSource(state: EngineState, process: Process, ev: Ev<'link'>): FileRecord | undefined {
  if ((ev.flags & AT_EMPTY_PATH) !== 0 && ev.oldpath === '') return state.fdEntry(process, ev.olddirfd, ev.ts)?.file.file ?? undefined;
  if ((ev.flags & AT_SYMLINK_FOLLOW) !== 0 && FD_LINK_PATH.test(ev.oldpath)) return state.fileAtFdLink(process, ev.oldpath, ev.ts);
  const from = state.resolve(process, ev.olddirfd, ev.oldpath, ev.ts, identityOf(ev.oldDirIno, ev.oldDirDev));
  return from === null ? undefined : state.files.atPath(from);
}

/** One name fewer: the blocks die only with the last name and the last open description. */
function nameRemoved(state: EngineState, file: FileRecord, cause: LifetimeCause, ts: number, pid: number): void {
  if (file.nlink !== null && file.nlink > 1) {
    file.nlink--;
    return;
  }
  if (file.opens > 0) {
    file.doomed = { ts, pid, cause };
    return;
  }
  endLife(state, file, cause, ts, pid);
}

/** ReleaseHooks.onLastClose: a doomed file's blocks are freed now. */
export function lastClose(state: EngineState, file: FileRecord, ts: number, pid: number): void {
  if (file.doomed) endLife(state, file, file.doomed.cause, ts, pid);
}

function endLife(state: EngineState, file: FileRecord, cause: LifetimeCause, ts: number, pid: number): void {
  state.emit({
    kind: 'lifetime_ended',
    ts,
    pid,
    ...state.fileRef(file),
    bytes: heldBytes(file),
    livedMs: file.bornTs === null ? null : Math.max(0, (ts - file.bornTs) / 1e6),
    bornFrom: file.bornFrom,
    cause,
    ...state.uncertainty(file, holesDoubt(file)),
  });
  file.doomed = null;
  file.nlink = 0;
  state.files.retire(file);
}
