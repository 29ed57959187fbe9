/**
 * InsightEngine: SyscallEvents in, Insights out. One synchronous `handle` per event keeps every insight in the
 * order of the events that caused it; the only I/O is the bounded insight calls into /proc and the files.
 */
import assert from 'node:assert/strict';
import type { SyscallEvent, SyscallEventKind } from '../trace/events.js';
import { HINT_MAGIC } from './hint-magic.js';
import { writesFinished } from './detectors.js';
import { onClose, onCloseRange, onDup, onFcntl, onOpen } from './handlers-fd.js';
import { onAsyncUnseen, onCopy, onFallocate, onFsync, onFtruncate, onLseek, onRw, onRwSummary, onTruncate } from './handlers-data.js';
import { onChdir, onExec, onExit, onFchdir, onFork } from './handlers-process.js';
import { onFadvise, onIoprio } from './hints.js';
import { NullInspector, ProcInspector, type SystemInspector } from './inspector.js';
import { PAPER_IOCLASS_TABLE, type IoClass, type IoClassTable } from './ioclass.js';
import { lastClose, onLink, onRename, onUnlink } from './lifetime.js';
import { onMmap, onMsync, onMunmap } from './mmap.js';
import { SummaryCollector, type InsightSummary } from './summary.js';
import { EngineState } from './state.js';
import type { Insight } from './types.js';

export interface InsightEngineOptions {
  /**
   * Where insight calls go: 'proc' (default) is this machine, live; 'none' makes no calls (replaying a log, whose
   * pids and files are not this machine's now); or an injected inspector (tests).
   */
  inspector?: 'proc' | 'none' | SystemInspector;
  /** Whether `inspector` describes the live system the events come from (default: true unless 'none'). */
  live?: boolean;
  ioClassTable?: IoClassTable;
  hintMagic?: number;
  /** Bound on remembered files (closed ones beyond it are forgotten oldest first). */
  filesMax?: number;
  /**
   * The directory a traced command was started in. The first process seen without a fork is that command; if it
   * is gone from /proc before its first event is handled, its relative paths still resolve.
   */
  commandCwd?: string;
  /** Also emit data_written (every written range) and file_synced insights. Default false. */
  reportWrites?: boolean;
}

type Handler<K extends SyscallEventKind> = (state: EngineState, ev: Extract<SyscallEvent, { kind: K }>) => void;

function onLost(state: EngineState, ev: Extract<SyscallEvent, { kind: 'lost' }>): void {
  assert.ok(ev.count >= 0);
  state.counters.lostEvents += ev.count;
  const reason = `${ev.count} event(s) lost before ts ${ev.ts}: state derived since is re-checked against /proc where possible`;
  state.doubtEverything(reason);
  state.emit({ kind: 'uncertainty', ts: ev.ts, pid: null, reason, lostEvents: ev.count });
}

const HANDLERS: { [K in SyscallEventKind]: Handler<K> } = {
  fork: onFork,
  exec: onExec,
  exit: onExit,
  open: onOpen,
  close: onClose,
  close_range: onCloseRange,
  dup: onDup,
  fcntl: onFcntl,
  chdir: onChdir,
  fchdir: onFchdir,
  rw: onRw,
  rw_summary: onRwSummary,
  lseek: onLseek,
  truncate: onTruncate,
  ftruncate: onFtruncate,
  fallocate: onFallocate,
  fsync: onFsync,
  copy: onCopy,
  unlink: onUnlink,
  rename: onRename,
  link: onLink,
  fadvise: onFadvise,
  ioprio: onIoprio,
  mmap: onMmap,
  msync: onMsync,
  munmap: onMunmap,
  async_unseen: onAsyncUnseen,
  lost: onLost,
};

/** A read-only view of one process, for tests and debugging tools. */
export interface ProcessView {
  pid: number;
  ppid: number | null;
  exe: string | null;
  cwd: string | null;
  threads: number[];
  fds: Array<{ fd: number; path: string | null; kind: string; position: number | null; append: boolean; cloexec: boolean; description: number }>;
  uncertain?: string;
}

export interface FileView {
  path: string;
  size: number | null;
  ioClass: IoClass;
  dev: number | null;
  ino: number | null;
  opens: number;
  uncertain?: string;
}

export class InsightEngine {
  private readonly state: EngineState;
  private readonly collector = new SummaryCollector();
  private lastTs = 0;

  constructor(options: InsightEngineOptions = {}) {
    const choice = options.inspector ?? 'proc';
    const inspector = choice === 'proc' ? new ProcInspector() : choice === 'none' ? new NullInspector() : choice;
    const live = options.live ?? choice !== 'none';
    const hooks = { onWritesFinished: writesFinished, onLastClose: lastClose };
    const table = options.ioClassTable ?? PAPER_IOCLASS_TABLE;
    const magic = options.hintMagic ?? HINT_MAGIC;
    const filesMax = options.filesMax ?? 200_000;
    this.state = new EngineState(inspector, live, table, magic, filesMax, hooks, options.commandCwd ?? null);
    this.state.reportWrites = options.reportWrites ?? false;
    this.state.listeners.add((insight) => this.collector.add(insight));
  }

  /**
   * Processes just attached to (`sky trace --pid`, a cgroup's members): their cwd, exe and argv are read from /proc
   * now, once tracing runs (a later chdir is an event), for when their first event is handled after they are gone —
   * without it an attached shell's short-lived children resolve no relative path.
   */
  attached(pids: readonly number[]): void {
    if (this.state.live) for (const pid of pids) this.state.rememberAttached(pid);
  }

  /** Feeds one event; returns the insights it produced (also delivered to `onInsight` listeners). */
  handle(ev: SyscallEvent): Insight[] {
    this.state.counters.events++;
    this.lastTs = Math.max(this.lastTs, ev.ts);
    const handler = HANDLERS[ev.kind] as Handler<typeof ev.kind> | undefined;
    if (handler) handler(this.state, ev as never);
    return this.state.drain();
  }

  onInsight(listener: (insight: Insight) => void): () => void {
    this.state.listeners.add(listener);
    return () => this.state.listeners.delete(listener);
  }

  /**
   * End of the run: processes still alive (a daemon the workload started, or a `--pid` target) get their
   * pending copy and encryption checks now, since no later event will trigger them. Their fds stay open.
   */
  finish(): Insight[] {
    for (const process of this.state.processes.values()) {
      for (const [file, io] of [...process.io]) {
        if (io.writeBytes > 0 || io.copiesIn.size > 0) writesFinished(this.state, process, file, this.lastTs, true);
      }
    }
    return this.state.drain();
  }

  summary(): InsightSummary {
    const files = this.state.files;
    return this.collector.summarise(
      { ...this.state.counters },
      files.all(),
      { total: files.size, forgotten: files.forgotten },
      (file) => this.state.classOf(file),
    );
  }

  inspectProcess(pid: number): ProcessView | null {
    const process = this.state.processes.get(pid);
    if (!process) return null;
    const fds = process.fds.fds().map((fd) => {
      const entry = process.fds.get(fd);
      assert.ok(entry);
      const description = entry.file;
      const path = description.file?.path ?? description.path;
      return { fd, path, kind: description.kind, position: description.position, append: description.append, cloexec: entry.cloexec, description: description.id };
    });
    const view: ProcessView = { pid, ppid: process.ppid, exe: process.exe, cwd: process.cwd, threads: [...process.threads].sort((a, b) => a - b), fds };
    if (process.uncertain) view.uncertain = process.uncertain;
    return view;
  }

  inspectFile(path: string): FileView | null {
    const file = this.state.files.atPath(path);
    if (!file) return null;
    const view: FileView = { path: file.path, size: file.size, ioClass: this.state.classOf(file), dev: file.dev, ino: file.ino, opens: file.opens };
    if (file.uncertain) view.uncertain = file.uncertain;
    return view;
  }

  processIds(): number[] {
    return [...this.state.processes.keys()].sort((a, b) => a - b);
  }
}
