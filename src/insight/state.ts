/**
 * Everything the handlers share: the process and file tables, the inspector, and the few operations whose
 * semantics must be identical everywhere (finding a process or an fd, attaching and releasing fds, changing a
 * file's size, emitting). Handlers live in handlers-*.ts and only call into here.
 */
import assert from 'node:assert/strict';
import { posix } from 'node:path';
import { AT_FDCWD, FD_LINK_PATH, type SyscallEvent } from '../trace/events.js';
import { FileTable, sameIdentity, type FileRecord, type Identity } from './files.js';
import type { FdInfo, FileReader, FileStat, SystemInspector } from './inspector.js';
import { classifyFile, validateIoClassTable, type IoClass, type IoClassTable } from './ioclass.js';
import { O_APPEND, O_CLOEXEC, O_DIRECTORY } from '../trace/linux.js';
import { COPY_SOURCES_RECENT, FdTable, newProcess, type AttachedFd, type FdEntry, type OpenFile, type OpenFileKind, type Process } from './process.js';
import type { CloseCause, FileRef, Insight, SizeChangeCause } from './types.js';

export interface Counters {
  events: number;
  /** Processes (thread groups) seen, forked or discovered. */
  processes: number;
  lostEvents: number;
  /** Events naming an fd that neither the stream nor /proc could identify. */
  unknownFds: number;
  /** fds never seen opened whose file the trace knew by the inode the kernel named (SCM_RIGHTS, pidfd_getfd). */
  receivedFds: number;
  /** Unlinks, renames and truncates of names we had no record of (their bytes are unknown). */
  unknownNames: number;
  /** Opens whose file could only be inspected by path, or not at all. */
  lateInspections: number;
  /** Read-write copy candidates whose files could not be read back. */
  unverifiedCopies: number;
  /** Hinted calls whose magic was not ours. */
  foreignHints: number;
}

/** Hooks the state calls when a description is released; set by the engine (detectors live elsewhere). */
export interface ReleaseHooks {
  onWritesFinished(state: EngineState, process: Process, file: FileRecord, ts: number, final: boolean): void;
  onLastClose(state: EngineState, file: FileRecord, ts: number, pid: number): void;
}

type Listener = (insight: Insight) => void;

/** What a backend saw an fd refer to at a call (see the dup event): the kernel's identity, strace's path. */
export interface FdSeen {
  identity: Identity | null;
  /** '' when the fd was not a path (pipe, socket); undefined when the backend did not say. */
  path?: string;
}

/** The file a backend saw behind an fd at its calls: the inode the kernel named (eBPF), or strace's name for it. */
interface LastKnown {
  identity: Identity | null;
  path?: string;
}

/** The inode decides: btrfs subvolumes and overlayfs give stat(2) a st_dev other than the kernel's s_dev. */
function agrees(seen: FdSeen, path: string, stat: FileStat | null): boolean {
  if (seen.identity && stat?.ino !== seen.identity.ino) return false;
  return seen.path === undefined || seen.path === path;
}

/** Distinct st_dev values that stand for another device (btrfs: one per subvolume in use). */
const DEV_ALIASES_MAX = 256;

/** Attached processes remembered at start (a large cgroup's beyond this are read from /proc when first seen). */
const ATTACHED_REMEMBERED_MAX = 4096;
/**
 * Regular files remembered per attached process, and over all of them (a database server may hold thousands; each
 * costs a readlink, a stat and an fdinfo read at attach): fds beyond are looked up in /proc when first used, as before.
 */
const ATTACHED_FDS_MAX = 4096;
const ATTACHED_FDS_TOTAL_MAX = 65_536;

interface AttachedProcess {
  cwd: string | null;
  exe: string | null;
  argv: string[] | null;
  fds: AttachedFd[];
}

export class EngineState {
  readonly processes = new Map<number, Process>();
  private readonly devAliases = new Map<number, number>();
  /**
   * The files read last by any traced process, with who read them (at most COPY_SOURCES_RECENT, oldest first): a
   * copy's reader and writer can be two processes (rsync's sender and receiver, `tar c | tar x`).
   */
  readonly recentReads = new Map<FileRecord, Process>();
  /** Directory path → the same with symbolic links resolved (withRealDirectory). */
  private readonly realDirectories = new Map<string, string>();
  /** rememberAttached: attached processes not seen yet. */
  private readonly attached = new Map<number, AttachedProcess>();
  private attachedFdsTotal = 0;
  readonly files: FileTable;
  readonly counters: Counters = {
    events: 0,
    processes: 0,
    lostEvents: 0,
    unknownFds: 0,
    receivedFds: 0,
    unknownNames: 0,
    lateInspections: 0,
    unverifiedCopies: 0,
    foreignHints: 0,
  };
  readonly listeners = new Set<Listener>();
  /** Emit data_written and file_synced (the agent wants them; `sky trace` does not). */
  reportWrites = false;
  private pending: Insight[] = [];
  private nextOpenFileId = 1;

  constructor(
    readonly inspector: SystemInspector,
    /** False when there is no live system behind the events (a replay): no insight calls, no "late" doubts. */
    readonly live: boolean,
    readonly ioClassTable: IoClassTable,
    readonly hintMagic: number,
    filesMax: number,
    readonly hooks: ReleaseHooks,
    /** Working directory the traced command was started in, for the first process discovered; null if unknown. */
    private commandCwd: string | null,
  ) {
    validateIoClassTable(ioClassTable);
    this.files = new FileTable(filesMax);
  }

  emit(insight: Insight): void {
    this.pending.push(insight);
    for (const listener of this.listeners) listener(insight);
  }

  drain(): Insight[] {
    const out = this.pending;
    this.pending = [];
    return out;
  }

  classOf(file: FileRecord): IoClass {
    return classifyFile(file, this.ioClassTable);
  }

  // ---- processes

  processFor(ev: SyscallEvent): Process {
    const process = this.processes.get(ev.pid) ?? this.discoverProcess(ev.pid);
    process.threads.add(ev.tid);
    if (ev.comm) process.comm = ev.comm;
    return process;
  }

  noteRead(process: Process, file: FileRecord): void {
    this.recentReads.delete(file); // re-inserted: the map stays in order of last read
    this.recentReads.set(file, process);
    if (this.recentReads.size > COPY_SOURCES_RECENT) this.recentReads.delete(this.recentReads.keys().next().value!);
  }

  /** InsightEngineOptions.attached: what /proc says of an attached process now, for discoverProcess. */
  rememberAttached(pid: number): void {
    if (this.attached.size >= ATTACHED_REMEMBERED_MAX) return;
    const fds: AttachedFd[] = [];
    for (const fd of this.inspector.openFds(pid) ?? []) {
      if (fds.length >= ATTACHED_FDS_MAX || this.attachedFdsTotal >= ATTACHED_FDS_TOTAL_MAX) break;
      this.attachedFdsTotal++;
      const stat = this.inspector.statFd(pid, fd);
      const target = stat?.kind === 'regular' ? this.inspector.fdTarget(pid, fd) : null;
      if (stat && target) fds.push({ fd, path: target.path, stat, info: this.inspector.fdInfo(pid, fd) });
    }
    this.attached.set(pid, { cwd: this.inspector.cwd(pid), exe: this.inspector.exe(pid), argv: this.inspector.cmdline(pid), fds });
  }

  private discoverProcess(pid: number): Process {
    const process = newProcess(pid, new FdTable(), true);
    this.counters.processes++;
    if (this.live) {
      process.cwd = this.inspector.cwd(pid);
      process.exe = this.inspector.exe(pid);
      process.argv = this.inspector.cmdline(pid);
    }
    // Attached to when tracing started: what it was then (a later chdir comes as an event), and its open files.
    const seen = this.attached.get(pid);
    if (seen) {
      this.attached.delete(pid);
      process.cwd ??= seen.cwd;
      process.exe ??= seen.exe;
      process.argv ??= seen.argv;
    }
    // The traced command is the one process seen without a fork; events arrive late enough that a short command
    // is gone from /proc by then, so its starting directory comes from whoever started it.
    if (process.cwd === null && this.commandCwd !== null) process.cwd = this.commandCwd;
    this.commandCwd = null;
    this.processes.set(pid, process);
    if (seen && seen.fds.length > 0) process.attachedFds = new Map(seen.fds.map((fd) => [fd.fd, fd]));
    return process;
  }

  /**
   * Whether a stat describes the file the kernel identified (ebpf: inode and the super block's device). The same
   * unless the file system gives stat another device number (btrfs subvolumes): then a learnt alias must match.
   */
  isKernelIdentity(stat: { dev: number; ino: number }, kernel: Identity): boolean {
    return stat.ino === kernel.ino && (stat.dev === kernel.dev || this.devAliases.get(stat.dev) === kernel.dev);
  }

  /** stat's `statDev` is the kernel's `kernelDev` (see isKernelIdentity); bounded, first word wins. */
  learnDevAlias(statDev: number, kernelDev: number): void {
    if (statDev === kernelDev || this.devAliases.has(statDev) || this.devAliases.size >= DEV_ALIASES_MAX) return;
    this.devAliases.set(statDev, kernelDev);
  }

  /** The cwd to resolve against; re-read from /proc when lost events may have hidden a chdir. */
  cwdOf(process: Process): string | null {
    if (process.uncertain && this.live) {
      const cwd = this.inspector.cwd(process.pid);
      if (cwd !== null) process.cwd = cwd;
    }
    return process.cwd;
  }

  /**
   * Absolute, normalised path for (dirfd, path) as the process meant it, its directory part as the file system names
   * it (withRealDirectory); null when the base is unknown. `realDirectory` false keeps the directory part as given:
   * for opens of directories and chdir, because a tree walk opens every directory and asking the system about each
   * one's parent would cost more than the walk is traced for (the files below are resolved when they are opened).
   */
  resolve(process: Process, dirfd: number, path: string, ts: number, dir: Identity | null = null, realDirectory = true): string | null {
    let resolved: string;
    if (path.startsWith('/')) resolved = posix.resolve(path);
    else {
      const base = dirfd === AT_FDCWD ? this.cwdOf(process) : this.directoryPath(process, dirfd, ts, dir);
      if (base === null || !base.startsWith('/')) return null;
      if (path === '') return base;
      resolved = posix.resolve(base, path);
    }
    return realDirectory ? this.withRealDirectory(resolved) : resolved;
  }

  /**
   * The path with its directory named as the file system names it (symbolic links in directory components
   * resolved): a file written as `lnk/f` (lnk → real) and removed as `real/f` is one file, and its removal must be
   * seen. Asked of the system once per directory path, cached until the trace shows a rename (which can change what
   * a directory path leads to). The last component is left alone: opens decide about it (throughSymlink), and
   * unlink and rename act on a link itself. /proc, /sys and /dev are left alone (/proc/self is the tracer's).
   */
  private withRealDirectory(path: string): string {
    if (!this.live) return path;
    const slash = path.lastIndexOf('/');
    if (slash <= 0 || isVirtual(path)) return path;
    const dir = path.slice(0, slash);
    let real = this.realDirectories.get(dir);
    if (real === undefined) {
      const resolved = this.inspector.realDirectory(dir);
      if (resolved === null) return path; // gone already: the name as the process gave it
      real = resolved;
      if (this.realDirectories.size >= REAL_DIRECTORIES_MAX) this.realDirectories.clear();
      this.realDirectories.set(dir, real);
    }
    return real === dir ? path : `${real === '/' ? '' : real}${path.slice(slash)}`;
  }

  /** A rename may have moved a directory or what a link leads to: directory paths are resolved afresh. */
  forgetRealDirectories(): void {
    this.realDirectories.clear();
  }

  /**
   * The path of the directory behind `fd`. `dir` is its identity as the backend saw it at the call (ebpf): the
   * fd table may not know the fd (directory closes and dups are not reported in 'storage' mode) or may hold a
   * stale entry, but a directory the trace opened before is known by identity.
   */
  directoryPath(process: Process, fd: number, ts: number, dir: Identity | null): string | null {
    if (dir === null) return this.fdEntry(process, fd, ts)?.file.path ?? null;
    const held = process.fds.get(fd)?.file.file;
    if (held && held.dev !== null && sameIdentity(held, dir)) return held.path;
    const known = this.files.withIdentity(dir);
    if (known) return known.path;
    return this.fdEntryFor(process, fd, ts, dir)?.file.path ?? null;
  }

  // ---- fds

  newOpenFile(kind: OpenFileKind, path: string | null, flags: number, ts: number): OpenFile {
    return {
      id: this.nextOpenFileId++,
      kind,
      file: null,
      path,
      flags,
      append: (flags & O_APPEND) !== 0,
      position: 0,
      refs: 0,
      readBytes: 0,
      writeBytes: 0,
      openedTs: ts,
      summarisedTs: ts,
      writers: new Set(),
      carries: null,
      carriesIno: null,
    };
  }

  /** Binds an open file description to a file record (one more description open on it). */
  bindFile(openFile: OpenFile, file: FileRecord): void {
    assert.equal(openFile.file, null, 'a description is bound once');
    openFile.file = file;
    file.opens++;
    file.openCount++;
    if (openFile.kind === 'directory') file.metadata = true;
  }

  /**
   * The file open at an fd link (FD_LINK_PATH) `process` named — the file linkat(AT_SYMLINK_FOLLOW) links and an open
   * of the link reopens — when the trace knows that fd's file; undefined for any other path.
   */
  fileAtFdLink(process: Process, path: string, ts: number): FileRecord | undefined {
    const link = FD_LINK_PATH.exec(path);
    if (!link) return undefined;
    const own = link[1] === undefined || link[1] === 'self' || link[1] === 'thread-self';
    const owner = own ? process : this.processes.get(Number(link[1]));
    return owner ? this.fdEntry(owner, Number(link[2]), ts)?.file.file ?? undefined : undefined;
  }

  /**
   * attach for an fd an open call returned: the kernel hands out only free numbers, so whatever our table still held
   * there was closed without our seeing the close — with the ebpf backend's default fd events, every directory fd
   * (their closes are not traced). Its file_closed says so: it comes now, reported as 'replaced'.
   */
  attachOpened(process: Process, fd: number, openFile: OpenFile, cloexec: boolean, ts: number): void {
    const stale = process.fds.get(fd)?.file;
    if (stale && stale.refs === 1 && !stale.uncertain) stale.uncertain = 'closed before its fd number was opened again; the close itself was not traced';
    this.attach(process, fd, openFile, cloexec, ts);
  }

  attach(process: Process, fd: number, openFile: OpenFile, cloexec: boolean, ts: number): void {
    openFile.refs++;
    process.attachedFds?.delete(fd); // an event put something else there: what /proc said at attach is history
    process.closedBeforeFork.delete(fd);
    const displaced = process.fds.install(fd, { file: openFile, cloexec });
    if (displaced) this.drop(process, fd, displaced, 'replaced', ts);
    if (openFile.file) openFile.file.holder = { pid: process.pid, fd };
  }

  release(process: Process, fd: number, cause: CloseCause, ts: number): void {
    const entry = process.fds.remove(fd) ?? this.attachedEntry(process, fd, ts);
    if (process.discovered) process.closedBeforeFork.add(fd);
    if (!entry) return;
    this.drop(process, fd, entry, cause, ts);
  }

  private drop(process: Process, fd: number, entry: FdEntry, cause: CloseCause, ts: number): void {
    const openFile = entry.file;
    openFile.refs--;
    assert.ok(openFile.refs >= 0, 'an open file description is released at most once per fd');
    const file = openFile.file;
    if (file?.holder?.pid === process.pid && file.holder.fd === fd) file.holder = null;
    if (openFile.refs === 0) this.closeOpenFile(process, fd, openFile, cause, ts);
  }

  private closeOpenFile(process: Process, fd: number, openFile: OpenFile, cause: CloseCause, ts: number): void {
    const file = openFile.file;
    if (!file) return;
    file.opens--;
    assert.ok(file.opens >= 0);
    if (!file.doomed) this.observeSize(file, ts, process.pid);
    this.emit({
      kind: 'file_closed',
      ts,
      pid: process.pid,
      ...this.fileRef(file),
      fd,
      size: file.size,
      ioClass: this.classOf(file),
      metadata: file.metadata,
      readBytes: openFile.readBytes,
      writeBytes: openFile.writeBytes,
      position: openFile.position,
      cause,
      ...this.uncertainty(openFile, { uncertain: openFile.unseenIo }, file),
    });
    for (const writer of openFile.writers) this.hooks.onWritesFinished(this, writer, file, ts, false);
    if (file.opens === 0) this.hooks.onLastClose(this, file, ts, process.pid);
  }

  /**
   * The fd's entry, learning it from /proc when the stream never showed it (inherited, opened before tracing, or
   * hidden by lost events). Never null for fd >= 0: an unknowable fd gets a placeholder so we ask /proc once.
   * `lastKnown`: what the backend saw the fd refer to at its calls, for when /proc can no longer name it.
   */
  fdEntry(process: Process, fd: number, ts: number, seen?: FdSeen, lastKnown?: LastKnown): FdEntry | null {
    if (fd < 0) return null;
    const entry = process.fds.get(fd);
    if (entry && !entry.file.uncertain) return entry;
    if (entry && !this.live) return entry;
    if (entry && this.confirm(process, fd, entry)) return entry;
    if (entry) this.release(process, fd, 'replaced', ts);
    return this.discoverFd(process, fd, ts, seen, lastKnown);
  }

  /**
   * The entry of a dup's source, which the backend saw at the call (`seen`). For an fd the stream never showed,
   * /proc describes the fd as it is *when we look*: a shell saves stdout with F_DUPFD, dup2s a file onto 1 and
   * writes before we handle the F_DUPFD, so /proc names the file. Its answer counts only when it agrees with what
   * the backend saw; otherwise the fd gets a placeholder, never another file's record.
   */
  fdEntrySeen(process: Process, fd: number, ts: number, seen: FdSeen): FdEntry | null {
    const entry = process.fds.get(fd);
    if (entry && !entry.file.uncertain && seen.identity) return this.fdEntryFor(process, fd, ts, seen.identity);
    return this.fdEntry(process, fd, ts, seen);
  }

  /**
   * fdEntry, checked against the identity the kernel reported for the fd (ebpf summaries): a mismatch means our
   * table missed an open or close, so the entry is replaced by what /proc says, or doubted when /proc cannot say.
   */
  fdEntryFor(process: Process, fd: number, ts: number, identity: Identity | null, namedAs?: string): FdEntry | null {
    const entry = this.fdEntry(process, fd, ts, undefined, { identity, path: namedAs });
    const file = entry?.file.file;
    if (!entry || !identity || !file || file.dev === null || sameIdentity(file, identity)) return entry;
    const reason = `fd ${fd} of pid ${process.pid} is not the file the stream said (missed open or close)`;
    if (!this.live) {
      entry.file.uncertain = reason;
      return entry;
    }
    this.release(process, fd, 'replaced', ts);
    const found = this.discoverFd(process, fd, ts);
    if (found.file.file && !sameIdentity(found.file.file, identity)) found.file.uncertain = reason;
    return found;
  }

  /** After lost events: is the fd still what we think it is? */
  private confirm(process: Process, fd: number, entry: FdEntry): boolean {
    const target = this.inspector.fdTarget(process.pid, fd);
    if (!target) return true; // cannot tell: keep it, still marked uncertain
    const stat = this.inspector.statFd(process.pid, fd);
    const file = entry.file.file;
    const same = file ? stat !== null && sameIdentity(file, stat) : target.path === entry.file.path;
    if (same) entry.file.uncertain = undefined;
    return same;
  }

  private discoverFd(process: Process, fd: number, ts: number, seen?: FdSeen, lastKnown?: LastKnown): FdEntry {
    if (seen?.path === '') return this.notStorage(process, fd, ts);
    const attached = process.attachedFds?.get(fd);
    if (attached) {
      process.attachedFds!.delete(fd);
      if (!seen || agrees(seen, attached.path, attached.stat)) return this.adoptAttachedFd(process, attached, ts);
    }
    const target = this.live ? this.inspector.fdTarget(process.pid, fd) : null;
    if (!target) {
      const known = lastKnown?.identity ? this.files.withIdentity(lastKnown.identity) : lastKnown?.path ? this.files.atPath(lastKnown.path) : undefined;
      return (known && this.receivedFd(process, fd, ts, known)) || this.placeholder(process, fd, ts);
    }
    const stat = this.inspector.statFd(process.pid, fd);
    if (seen && !agrees(seen, target.path, stat)) {
      this.counters.lateInspections++;
      return this.placeholder(process, fd, ts, `fd ${fd} of pid ${process.pid} was re-pointed before /proc could name it`);
    }
    const info = this.inspector.fdInfo(process.pid, fd);
    const kind: OpenFileKind = stat?.kind ?? 'other';
    const openFile = this.newOpenFile(kind, target.path, info?.flags ?? 0, ts);
    openFile.position = info?.pos ?? null;
    if (kind !== 'other') this.bindFile(openFile, this.files.lookup(target.path, stat).record);
    this.attach(process, fd, openFile, ((info?.flags ?? 0) & O_CLOEXEC) !== 0, ts);
    if (openFile.file) this.emitOpened(process, fd, openFile, ts, true, undefined);
    const entry = process.fds.get(fd);
    assert.ok(entry);
    return entry;
  }

  /**
   * An fd no event opened and /proc can no longer name (closed, or the process gone), used on a file the trace knows
   * by the inode the kernel named at the call (eBPF) or by the name strace printed (ptrace): an fd passed over a unix
   * socket (SCM_RIGHTS) or taken with pidfd_getfd, neither of which makes an open. Its calls are that file's.
   */
  private receivedFd(process: Process, fd: number, ts: number, record: FileRecord): FdEntry | null {
    if (record.metadata) return null;
    const openFile = this.newOpenFile('regular', record.path, 0, ts);
    openFile.position = null;
    this.bindFile(openFile, record);
    this.attach(process, fd, openFile, false, ts);
    this.emitOpened(process, fd, openFile, ts, true, `fd ${fd} of pid ${process.pid} was never seen opened (passed over a socket or taken with pidfd_getfd?): its file found by what the tracer saw at its calls`);
    this.counters.receivedFds++;
    return process.fds.get(fd) ?? null;
  }

  /** The entry of an fd the process had at attach and no event has used yet (a close must still report it). */
  private attachedEntry(process: Process, fd: number, ts: number): FdEntry | undefined {
    const attached = process.attachedFds?.get(fd);
    if (!attached) return undefined;
    this.adoptAttachedFd(process, attached, ts);
    return process.fds.remove(fd);
  }

  /**
   * An fd the process had when tracing started (read from /proc then): every later open, dup and close is an event,
   * so an fd used without one is still this, even when the process has exited by the time its events are handled.
   */
  private adoptAttachedFd(process: Process, attached: AttachedFd, ts: number): FdEntry {
    const { fd, path, stat, info } = attached;
    const openFile = this.newOpenFile('regular', path, info?.flags ?? 0, ts);
    openFile.position = info?.pos ?? null;
    this.bindFile(openFile, this.files.lookup(path, stat).record);
    this.attach(process, fd, openFile, ((info?.flags ?? 0) & O_CLOEXEC) !== 0, ts);
    this.emitOpened(process, fd, openFile, ts, true, undefined);
    const entry = process.fds.get(fd);
    assert.ok(entry);
    return entry;
  }

  private placeholder(process: Process, fd: number, ts: number, reason?: string): FdEntry {
    this.counters.unknownFds++;
    const entry = this.notStorage(process, fd, ts);
    entry.file.uncertain = reason ?? `fd ${fd} of pid ${process.pid} was never seen opened and /proc could not name it`;
    return entry;
  }

  /** An fd the backend saw refer to no path (pipe, socket): nothing to learn, and nothing uncertain about it. */
  private notStorage(process: Process, fd: number, ts: number): FdEntry {
    const openFile = this.newOpenFile('other', null, 0, ts);
    openFile.position = null;
    this.attach(process, fd, openFile, false, ts);
    const entry = process.fds.get(fd);
    assert.ok(entry);
    return entry;
  }

  emitOpened(process: Process, fd: number, openFile: OpenFile, ts: number, discovered: boolean, doubt: string | undefined): void {
    const file = openFile.file;
    assert.ok(file, 'only storage files are reported opened');
    const uncertain = doubt ?? this.uncertainty(process, openFile, file).uncertain;
    this.emit({
      kind: 'file_opened',
      ts,
      pid: process.pid,
      ...this.fileRef(file),
      fd,
      flags: openFile.flags,
      size: file.size,
      ioClass: this.classOf(file),
      metadata: file.metadata,
      exe: process.exe,
      discovered,
      ...(uncertain ? { uncertain } : {}),
    });
  }

  // ---- files

  fileRef(file: FileRecord): FileRef {
    return { path: file.path, dev: file.dev, ino: file.ino };
  }

  /** `quiet` (per-call writes): report only when the size crosses into another class, not every byte. */
  setSize(file: FileRecord, size: number, cause: SizeChangeCause, ts: number, pid: number, quiet = false): void {
    assert.ok(Number.isSafeInteger(size) && size >= 0, `bad size ${size}`);
    const oldSize = file.size;
    if (oldSize === size) return;
    file.size = size;
    const oldClass = oldSize === null ? null : classifyFile({ metadata: file.metadata, size: oldSize }, this.ioClassTable);
    const ioClass = this.classOf(file);
    if (quiet && oldClass === ioClass) return;
    this.emit({ kind: 'file_size_changed', ts, pid, ...this.fileRef(file), oldSize, size, ioClass, cause, ...this.uncertainty(file) });
  }

  /**
   * A stat of this very file (identity checked), through an fd that still holds it or else its path; its reads go
   * through one descriptor, opened on the first read. Close the view when done.
   */
  statOf(file: FileRecord): FileView | null {
    if (!this.live) return null;
    const holder = file.holder;
    if (holder) {
      const stat = this.inspector.statFd(holder.pid, holder.fd);
      if (stat && sameIdentity(file, stat)) return new FileView(stat, () => this.inspector.openFd(holder.pid, holder.fd));
    }
    const stat = this.inspector.statPath(file.path);
    if (!stat || (file.dev !== null && !sameIdentity(file, stat))) return null;
    const path = file.path;
    return new FileView(stat, () => this.inspector.openPath(path));
  }

  /** Like statOf, for a file about to be read: opened at once, and fstat through it is the stat (one call fewer). */
  openOf(file: FileRecord): FileView | null {
    if (!this.live) return null;
    const holder = file.holder;
    if (holder) {
      const reader = this.inspector.openFd(holder.pid, holder.fd);
      if (reader && sameIdentity(file, reader.stat)) return FileView.opened(reader);
      reader?.close();
    }
    const reader = this.inspector.openPath(file.path);
    if (reader && (file.dev === null || sameIdentity(file, reader.stat))) return FileView.opened(reader);
    reader?.close();
    return null;
  }

  /**
   * Fills in a size the events could not establish. A size the events did establish wins: a stat runs later than
   * the event it would describe (the file may have grown or been truncated since), so it is a fallback only.
   */
  observeSize(file: FileRecord, ts: number, pid: number): void {
    if (file.metadata || (file.size !== null && !file.sizeDoubted)) return;
    const seen = this.statOf(file);
    if (!seen) return;
    seen.close();
    file.nlink = seen.stat.nlink;
    this.setSize(file, seen.stat.size, 'observed', ts, pid);
    // A look modified after (or too close to) the event may hold later writes too (the next `echo >> log` of a
    // shell): the size stays doubted, so later appends are not summed onto it but looked at again.
    const modified = this.inspector.wallToMonotonicNs(seen.stat.mtimeNs);
    file.sizeDoubted = modified === null || modified >= ts - LOOK_SLACK_NS;
    file.uncertain = undefined;
  }

  // ---- uncertainty

  uncertainty(...sources: Array<{ uncertain?: string } | null | undefined>): { uncertain?: string } {
    for (const source of sources) if (source?.uncertain) return { uncertain: source.uncertain };
    return {};
  }

  /** Lost events may have hidden any open, close, write or chdir: doubt everything until /proc confirms it. */
  doubtEverything(reason: string): void {
    for (const process of this.processes.values()) {
      process.uncertain = reason;
      for (const [, entry] of process.fds.entriesOf()) entry.file.uncertain = reason;
    }
    for (const file of this.files.all()) {
      file.uncertain = reason;
      file.sizeDoubted = true;
    }
  }
}

/**
 * How far a file's times can sit before the event that changed it: timestamps come from the kernel's coarse clock
 * (one tick, 10 ms at HZ=100), and the backends' and the inspector's wall-to-monotonic offsets differ by a little.
 */
export const LOOK_SLACK_NS = 15_000_000;

/** Directory paths whose resolution is remembered (EngineState.withRealDirectory); past that, start over. */
const REAL_DIRECTORIES_MAX = 65_536;

export function guessKind(path: string | null, flags: number): OpenFileKind {
  if ((flags & O_DIRECTORY) !== 0) return 'directory';
  if (isVirtual(path)) return 'other';
  return 'regular';
}

/**
 * /proc and /sys hold no files that have storage (their entries also vanish under inspection), nor does /dev, but
 * for /dev/shm: a tmpfs that programs write real files to (POSIX shared memory, scratch space), which a trace reports.
 */
export function isVirtual(path: string | null): boolean {
  return path !== null && /^\/(proc|sys|dev)(\/|$)/.test(path) && !/^\/dev\/shm\//.test(path);
}

/**
 * One look at a file: its stat, and reads through a single descriptor (opened on the first read, and only if it is
 * still the file the stat described). Reads return null once the file cannot be read; close() releases the descriptor.
 */
export class FileView {
  private reader: FileReader | null | undefined;

  constructor(
    readonly stat: FileStat,
    private readonly open: () => FileReader | null,
  ) {}

  static opened(reader: FileReader): FileView {
    const view = new FileView(reader.stat, () => null);
    view.reader = reader;
    return view;
  }

  /** A BlockReader (content.ts) over this view. */
  readonly read = (offset: number, length: number): Buffer | null => {
    if (this.reader === undefined) {
      let reader = this.open();
      if (reader && (reader.stat.dev !== this.stat.dev || reader.stat.ino !== this.stat.ino)) {
        reader.close(); // the name leads to another file now
        reader = null;
      }
      this.reader = reader;
    }
    return this.reader === null ? null : this.reader.read(offset, length);
  };

  close(): void {
    this.reader?.close();
    this.reader = null;
  }
}
