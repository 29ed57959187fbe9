/**
 * Extent read-ahead. A fresh engine knows no file, and a traced process reads a file right after it opens it — on a
 * cold cache within a millisecond or two — while the tracer reports the open up to a collection interval later
 * (25 ms for the agent with eBPF). So the first reads of every file would be tagged metadata and fixed only by a re-tag. A
 * program that reads one file of a directory usually reads its neighbours next (cp -r, tar c, rsync, a build, a
 * backup), in the order the directory lists them; so when a traced process opens a file on the volume for reading,
 * the prefetcher walks the tree around it in that same order — the file's directory depth first, then upwards, but
 * only into directories the traced workload itself listed (cp -r SRC lists SRC: the walk may climb to SRC and no
 * higher; a database that opens its files by name gets its file's directory walked, not the whole disk) — and sends
 * FileExtents for every regular file it finds. It needs no data reads (an inode and FIEMAP per file), so it runs
 * ahead of a program that reads and writes the data. The walk from the latest open goes first (a workload that moved
 * to another directory reads there next), setting aside the one in progress, which resumes after.
 *
 * Bounded: entries examined are paid from a token bucket (`entriesPerSecond`, up to `entriesBurst`), so an agent on a
 * huge file system spends a bounded share of the disk on it; a directory is walked at most once per `rewalkMs`; ids
 * and directories remembered are capped. Work is done in slices of ≤ `sliceMs` so the agent keeps taking events. It
 * never follows symlinks and never leaves the file system it started on (another st_dev: a mount or a btrfs
 * subvolume). Files already described by the informer are skipped, and the informer skips sending what the
 * prefetcher already sent (`signatureOf`).
 */
import path from 'node:path';
import type { VolumeExtent } from '../semantics/messages.js';
import { trimOldest } from '../util/bounded.js';
import { extentSignature, isGone, placedExtents, type AgentFileSystem, type VolumePlacement } from './fs.js';

export interface PrefetchOptions {
  /** Directory entries examined per second, on average. Default 50,000. */
  entriesPerSecond?: number;
  /** Entries that may be examined at once before the rate applies. Default 500,000. */
  entriesBurst?: number;
  /** A directory is walked again only after this long. Default 60 s. */
  rewalkMs?: number;
  /** Files whose sent extents are remembered (to avoid sending them twice). Default 262,144. */
  filesMax?: number;
  /**
   * Longest stretch of work before yielding to the event loop. Default 30 ms. In its own thread that only lets the
   * walk take new opens; on the agent's thread (`thread: false`, or a test's file system) it is against 10 ms slices
   * of event handling: while both have work the walk gets three quarters of the thread.
   */
  sliceMs?: number;
  /**
   * Walk in a worker thread of its own (default true where the agent reads the real file system, see
   * prefetch-thread.ts): its listings, opens and FIEMAP calls block, and on the agent's thread a cp -r's walk took
   * three quarters of it for 12 s, with the events waiting behind it.
   */
  thread?: boolean;
}

export const PREFETCH_DEFAULTS = { entriesPerSecond: 50_000, entriesBurst: 500_000, rewalkMs: 60_000, filesMax: 262_144, sliceMs: 30 } as const;

/** What the informer asks of extent read-ahead, wherever it runs. */
export interface Prefetcher {
  /** A traced process opened `file` (absolute, on the volume) for reading. */
  opened(file: string, tracerDev: number, placement: VolumePlacement): void;
  /** A traced process opened this directory: walks may climb into it. */
  listed(dir: string): void;
  /** The signature of the FileExtents the read-ahead sent for this file, if any. */
  signatureOf(fileId: string): string | undefined;
  stop(): void;
  stats(): PrefetchStats;
}

export interface PrefetchStats {
  /** Walks started (a traced read of a file in a directory not walked recently). */
  walks: number;
  directories: number;
  /** Regular files mapped. */
  files: number;
  /** FileExtents sent (files with placed extents that the informer had not described). */
  messages: number;
  /** Times the walk waited for the token bucket. */
  throttled: number;
  /** The walk ran in a thread of its own (prefetch-thread.ts). */
  thread?: boolean;
}

/** What the prefetcher hands back for each file it mapped. */
export interface PrefetchedFile {
  fileId: string;
  path: string;
  size: number;
  extents: VolumeExtent[];
  /** Same form as the informer's signature of what it sent (size, path, extents). */
  signature: string;
}

export interface PrefetchHost {
  fs: AgentFileSystem;
  /** Whether the informer already described this file (then the walk skips it). */
  described(fileId: string): boolean;
  send(file: PrefetchedFile): void;
  /** Extents per message at most; more are cut (as the informer does). */
  extentsMax: number;
  fail(error: unknown, what: string): void;
}

interface Frame {
  dir: string;
  /** Names still to look at, in the order the file system listed them; null until listed. */
  entries: { name: string; kind: 'file' | 'directory' | 'other' }[] | null;
  next: number;
}

interface Walk {
  /** Device number the tracer uses for files of this file system: it names the files (dev:ino). */
  tracerDev: number;
  /** st_dev of the walked file system as stat reports it (btrfs: the subvolume's). */
  statDev: number;
  placement: VolumePlacement;
  root: string;
  /** Directory the walk will go up from once its stack is empty. */
  origin: string;
  stack: Frame[];
  /** Begun, then set aside for a newer walk: it resumes where it was. */
  started: boolean;
}

const WALKS_QUEUED_MAX = 64;
/** Directories the workload listed, kept as the tops of their subtrees (a listed directory inside one is not kept). */
const LISTED_MAX = 4096;

export class ExtentPrefetcher implements Prefetcher {
  private readonly rate: number;
  private readonly burst: number;
  private readonly rewalkMs: number;
  private readonly filesMax: number;
  private readonly sliceMs: number;
  private tokens: number;
  private refilledAt = performance.now();
  /** dev:ino of directories → when they were walked (insertion order = walk order). */
  private readonly walked = new Map<string, number>();
  /** fileId → signature of the FileExtents sent. */
  private readonly sent = new Map<string, string>();
  /** Walks waiting, newest last: the newest goes first (see opened). */
  private readonly queue: Walk[] = [];
  private readonly listedTops = new Map<string, true>();
  private current: Walk | null = null;
  private lastOpenedDir = '';
  private lastOpenedAt = 0;
  private timer: NodeJS.Immediate | NodeJS.Timeout | null = null;
  private stopped = false;
  private readonly counters: PrefetchStats = { walks: 0, directories: 0, files: 0, messages: 0, throttled: 0 };

  constructor(private readonly host: PrefetchHost, options: PrefetchOptions = {}) {
    this.rate = options.entriesPerSecond ?? PREFETCH_DEFAULTS.entriesPerSecond;
    this.burst = options.entriesBurst ?? PREFETCH_DEFAULTS.entriesBurst;
    this.rewalkMs = options.rewalkMs ?? PREFETCH_DEFAULTS.rewalkMs;
    this.filesMax = options.filesMax ?? PREFETCH_DEFAULTS.filesMax;
    this.sliceMs = options.sliceMs ?? PREFETCH_DEFAULTS.sliceMs;
    if (!(this.rate > 0) || !(this.burst >= 1)) throw new RangeError('prefetch entriesPerSecond and entriesBurst must be positive');
    this.tokens = this.burst;
  }

  /** The signature of the FileExtents the prefetcher sent for this file, if any. */
  signatureOf(fileId: string): string | undefined {
    return this.sent.get(fileId);
  }

  /**
   * A traced process opened `file` (an absolute path on the volume) for reading. Starts a walk from its directory
   * unless that directory was walked recently.
   */
  opened(file: string, tracerDev: number, placement: VolumePlacement): void {
    if (this.stopped || !path.isAbsolute(file) || placement.mountPoint === undefined) return;
    const root = placement.mountPoint;
    const dir = path.dirname(file);
    // A program reads a directory's files one after another: the same directory as last time needs no lstat.
    if (dir === this.lastOpenedDir && performance.now() - this.lastOpenedAt < this.rewalkMs) return;
    this.lastOpenedDir = dir;
    this.lastOpenedAt = performance.now();
    if (!isWithin(dir, root)) return;
    const identity = this.identify(dir);
    if (identity === null || this.recentlyWalked(identity.key)) return;
    if (this.current?.origin === dir || this.queue.some((w) => w.origin === dir)) return;
    // The newest walk goes first, setting aside the one in progress: the workload has moved on to this directory
    // (cp -r goes through a tree in inode order, the walk in listing order), and its next reads are here — a walk
    // still mapping some other corner of a big tree would get here only after the workload has read it. The walk set
    // aside resumes where it was and skips what the newer one mapped.
    if (this.current !== null) {
      this.queue.push(this.current);
      this.current = null;
    }
    this.queue.push({ tracerDev, statDev: identity.dev, placement, root, origin: dir, stack: [], started: false });
    if (this.queue.length > WALKS_QUEUED_MAX) this.queue.shift();
    this.schedule(0);
  }

  /** A traced process opened this directory (an absolute path on the volume): walks may climb into it. */
  listed(dir: string): void {
    if (!path.isAbsolute(dir) || this.withinListed(dir)) return;
    this.listedTops.set(dir, true);
    trimOldest(this.listedTops, LISTED_MAX);
  }

  private withinListed(dir: string): boolean {
    for (let at = dir; ; at = path.dirname(at)) {
      if (this.listedTops.has(at)) return true;
      if (at === path.dirname(at)) return false;
    }
  }

  /** Drops every queued walk (the agent is ending: read-ahead would only delay it). */
  stop(): void {
    this.stopped = true;
    this.queue.length = 0;
    this.current = null;
    if (this.timer) {
      clearTimeout(this.timer as NodeJS.Timeout);
      clearImmediate(this.timer as NodeJS.Immediate);
      this.timer = null;
    }
  }

  stats(): PrefetchStats {
    return { ...this.counters };
  }

  private schedule(delayMs: number): void {
    if (this.timer || this.stopped) return;
    const run = () => {
      this.timer = null;
      this.slice();
    };
    this.timer = delayMs > 0 ? setTimeout(run, delayMs) : setImmediate(run);
    this.timer.unref();
  }

  private slice(): void {
    const deadline = performance.now() + this.sliceMs;
    let steps = 0;
    while (!this.stopped) {
      if (this.current === null) {
        this.current = this.nextWalk();
        if (this.current === null) return;
      }
      if (this.tokens < 1 && !this.refill()) {
        this.counters.throttled++;
        this.schedule(Math.ceil(1000 / this.rate) + 1);
        return;
      }
      if (!this.step(this.current)) this.current = null;
      if ((++steps & 15) === 0 && performance.now() >= deadline) break;
    }
    this.schedule(0);
  }

  private nextWalk(): Walk | null {
    while (this.queue.length > 0) {
      const walk = this.queue.pop()!;
      if (walk.started) return walk;
      const identity = this.identify(walk.origin);
      if (identity === null || identity.dev !== walk.statDev || this.recentlyWalked(identity.key)) continue;
      this.markWalked(identity.key);
      walk.stack.push({ dir: walk.origin, entries: null, next: 0 });
      walk.started = true;
      this.counters.walks++;
      return walk;
    }
    return null;
  }

  /** One entry of the walk; false when the walk is over. */
  private step(walk: Walk): boolean {
    const frame = walk.stack[walk.stack.length - 1];
    if (frame === undefined) return this.ascend(walk);
    if (frame.entries === null) {
      this.tokens--;
      try {
        frame.entries = this.host.fs.list(frame.dir);
        this.counters.directories++;
      } catch (error) {
        if (!isGone(error) && (error as NodeJS.ErrnoException).code !== 'EACCES') this.host.fail(error, `listing ${frame.dir}`);
        walk.stack.pop();
      }
      return true;
    }
    const entry = frame.entries[frame.next++];
    if (entry === undefined) {
      walk.stack.pop();
      return true;
    }
    this.tokens--;
    const child = path.join(frame.dir, entry.name);
    if (entry.kind === 'directory') {
      const identity = this.identify(child);
      // Another file system (a mount, a btrfs subvolume) or a directory walked lately: not this walk's.
      if (identity === null || identity.dev !== walk.statDev || this.recentlyWalked(identity.key)) return true;
      this.markWalked(identity.key);
      walk.stack.push({ dir: child, entries: null, next: 0 });
    } else if (entry.kind === 'file') {
      this.map(walk, child);
    }
    return true;
  }

  /**
   * The subtree is done: walk the parent (whose walked children are skipped) if the workload listed it or a
   * directory above it, never above the mount point.
   */
  private ascend(walk: Walk): boolean {
    const parent = path.dirname(walk.origin);
    if (walk.origin === walk.root || !isWithin(parent, walk.root) || !this.withinListed(parent)) return false;
    const identity = this.identify(parent);
    if (identity === null || identity.dev !== walk.statDev || this.recentlyWalked(identity.key)) return false;
    this.markWalked(identity.key);
    walk.origin = parent;
    walk.stack.push({ dir: parent, entries: null, next: 0 });
    return true;
  }

  private map(walk: Walk, file: string): void {
    let opened;
    try {
      opened = this.host.fs.open(file, walk.placement);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (!isGone(error) && code !== 'ENOTREG' && code !== 'EACCES' && code !== 'ELOOP') this.host.fail(error, `opening ${file}`);
      return;
    }
    let placed: ReturnType<typeof placedExtents>;
    let fileId: string;
    try {
      if (opened.dev !== walk.statDev) return; // a bind mount of another file system's file
      fileId = `${walk.tracerDev}:${opened.ino}`;
      if (this.host.described(fileId)) return;
      placed = placedExtents(opened, this.host.extentsMax);
    } catch (error) {
      if (!isGone(error)) this.host.fail(error, `mapping ${file}`);
      return;
    } finally {
      opened.close();
    }
    this.counters.files++;
    const { size, extents } = placed;
    if (extents.length === 0) return; // empty, inline or not yet allocated: nothing of it on the volume yet
    const signature = extentSignature(size, file, extents);
    if (this.sent.get(fileId) === signature) return;
    this.sent.delete(fileId);
    this.sent.set(fileId, signature);
    trimOldest(this.sent, this.filesMax);
    this.counters.messages++;
    this.host.send({ fileId, path: file, size, extents, signature });
  }

  private identify(dir: string): { dev: number; key: string } | null {
    try {
      const { dev, ino } = this.host.fs.identify(dir);
      return { dev, key: `${dev}:${ino}` };
    } catch (error) {
      if (!isGone(error) && (error as NodeJS.ErrnoException).code !== 'EACCES') this.host.fail(error, `identifying ${dir}`);
      return null;
    }
  }

  private recentlyWalked(key: string): boolean {
    const at = this.walked.get(key);
    return at !== undefined && performance.now() - at < this.rewalkMs;
  }

  private markWalked(key: string): void {
    this.walked.delete(key);
    this.walked.set(key, performance.now());
    // Directories walked longer ago than rewalkMs no longer matter; the bucket bounds how many are younger (the bound
    // is set so that trimming keeps at least `burst` of them).
    trimOldest(this.walked, this.burst + Math.max(1, this.burst >> 2));
  }

  /** Adds what the rate earned since the last refill; true when a whole token is available. */
  private refill(): boolean {
    const now = performance.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.refilledAt) / 1000) * this.rate);
    this.refilledAt = now;
    return this.tokens >= 1;
  }
}

function isWithin(dir: string, root: string): boolean {
  const relative = path.relative(root, dir);
  return relative === '' || (!relative.startsWith('..') && !path.isAbsolute(relative));
}
