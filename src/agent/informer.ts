/**
 * Informer: Insights (src/insight) in, SemanticMessages (src/semantics) out, for the files that live on one volume.
 *
 *  - file_opened (regular files) → FileExtents: where the file's bytes are, so reads of them are tagged data. An
 *    open for reading also starts extent read-ahead around the file (prefetch.ts), unless `prefetch` is false.
 *  - data_written / mmap_writeback → WriteFingerprints: the written range is read back (through /proc/PID/fd/N
 *    while the writer lives, else the path), each 4 KiB-aligned block fingerprinted (the last partial block
 *    zero-padded, as the file system writes it), so the block writes that follow — seconds later, with delayed
 *    allocation — are recognised. Ranges are coalesced per file and read back after `debounceMs` (`syncWaitMs`
 *    for a process that syncs what it writes), so a file written in 4 KiB pieces is read once.
 *  - file_synced → FileExtents at once (the sync placed the blocks); what it covered is not read back first but in
 *    the background, bounded, for later writes of the same content: its own block writes are already behind us.
 *  - file_closed / file_synced of a written file → FileExtents after each of `refreshDelaysMs` (write-back can
 *    come 30 s after the write): late-allocated extents re-tag their blocks in the engine. A map that finds every
 *    byte placed ends the refreshes.
 *  - file_size_changed → FileClass; copy_detected → FilePattern copy (+ CopyFingerprints for explicit copies);
 *    encryption_detected → FilePattern encrypted; lifetime_ended → FileGone (truncation: fresh extents instead);
 *    app_hint with a file → AppHint.
 *
 * fileId is "dev:ino". Which device is on the volume is decided once per st_dev (AgentFileSystem.locate); insights
 * about other files cost a map lookup. All work is bounded: tracked files, pending readbacks, scheduled refreshes.
 * Vanished files and processes (ENOENT, ESRCH) are normal and counted, never thrown.
 *
 * The informer runs on the agent's event loop beside the tracer's events: a late event is a late hint, so every
 * batch of work here is sliced (readbacks 4 MiB, refreshes 10 ms) and the agent's summary reports the lag.
 */
import { basename } from 'node:path';
import type { Insight } from '../insight/types.js';
import {
  FINGERPRINT_BLOCK_BYTES,
  FINGERPRINT_BLOCK_SIZES,
  FINGERPRINT_BYTES,
  encodeFingerprintHex,
  fingerprintBlocks,
  quickKey,
  zeroBlockFingerprintHex,
  type FingerprintBlockBytes,
} from '../semantics/fingerprint.js';
import {
  DATA_REGIONS_MAX,
  EXTENTS_PER_MESSAGE_MAX,
  FINGERPRINTS_PER_MESSAGE_MAX,
  SEMANTIC_MESSAGE_TYPES,
  type SemanticMessage,
  type SemanticMessageType,
  type VolumeExtent,
} from '../semantics/messages.js';
import { opensExistingForReading } from '../insight/index.js';
import { extentSignature, isGone, LocalFileSystem, placedExtents, type AgentFileSystem, type OpenedFile, type VolumePlacement } from './fs.js';
import { ExtentPrefetcher, type PrefetchedFile, type Prefetcher, type PrefetchOptions, type PrefetchStats } from './prefetch.js';
import { prefetchThreadAvailable, ThreadedPrefetcher } from './prefetch-thread.js';
import { trimOldest, trimTarget } from '../util/bounded.js';
import { DueQueue } from './due-queue.js';

export type SemanticSink = (message: SemanticMessage) => void;

export interface InformerOptions {
  sink: SemanticSink;
  fs: AgentFileSystem;
  /** Fingerprint lifetime in the engine: write-back can be 30 s+ after the write. Default 120 s. */
  ttlMs?: number;
  /** Readbacks wait this long for more writes to the same file. Default 50 ms. */
  debounceMs?: number;
  /**
   * Readbacks of a process that synced a file in the last 10 s wait this long (at least debounceMs) for its next
   * sync, which makes them unnecessary. Default 75 ms (three of the agent's 25 ms tracer collections).
   */
  syncWaitMs?: number;
  /** Synced writes waiting for a background readback, at most (the oldest are dropped). Default 32 MiB; 0: none. */
  syncedBacklogBytes?: number;
  /**
   * Extent refreshes after a written file is closed or synced. Default [1 s, 5 s, 35 s]: a close maps nothing at
   * once (under delayed allocation nothing is placed yet; where something is, a second later is soon enough), and a
   * file found wholly placed drops the rest.
   */
  refreshDelaysMs?: number[];
  /** How often a btrfs's data regions are read again. Default DATA_REGIONS_REFRESH_MS. */
  dataRegionsRefreshMs?: number;
  /** Files waiting in each refresh queue; beyond, the oldest are dropped (counted). Default 16384. */
  refreshFilesMax?: number;
  /** Files with a pending readback; beyond, the oldest is read back at once. Default 4096. */
  pendingFilesMax?: number;
  /** Files remembered (path, holders, last extents sent). Default 65536. */
  filesMax?: number;
  /** Bytes read back per read call (a multiple of 4 KiB). Default 1 MiB. */
  readChunkBytes?: number;
  /**
   * Bytes read back before the informer yields to the event loop. Default 4 MiB (a few ms): the tracer's events
   * wait meanwhile, and a late sync or close costs more than a readback split in slices.
   */
  sliceBytes?: number;
  /** Extents per FileExtents message; the hint channel's frames are ≤ 1 MiB (≈ 45 bytes of JSON per extent). */
  extentsMax?: number;
  /** Extent read-ahead around files opened for reading (see prefetch.ts); false turns it off. */
  prefetch?: PrefetchOptions | false;
  log?: (line: string) => void;
}

export interface InformerStats {
  messages: Record<SemanticMessageType, number>;
  /** Distinct files on the volume that messages were sent about. */
  files: number;
  /** Distinct files seen elsewhere (other file systems), ignored. */
  skippedFiles: number;
  devices: { onVolume: number; elsewhere: number };
  bytesFingerprinted: number;
  blocksFingerprinted: number;
  /** Zero blocks are not sent (every sparse file has them; the engine ignores them). */
  zeroBlocks: number;
  /**
   * Written bytes an fsync had put on the disk before they were read back, dropped from the background readback
   * (its bound, or the end of the run): their own block writes were behind us anyway.
   */
  bytesSyncedUnread: number;
  /** Synced writes read back in the background (for later writes of the same content). */
  bytesSyncedRead: number;
  readbacks: number;
  readbackMs: number;
  /** FIEMAPs of files (opens, syncs, refreshes), and how many found the file wholly placed. */
  maps: number;
  mapsSettled: number;
  /** Files or processes gone before they could be read (normal for short-lived files). */
  vanished: number;
  /** Files found again under a new name (file_renamed) after a readback or mapping found them gone. */
  foundRenamed: number;
  /** Bytes of the volume last announced as holding only file data (DataRegions: btrfs data block groups). */
  dataRegionBytes: number;
  /** Written files mapped instead of read back: their file system had placed every block at write(). */
  readbacksMapped: number;
  /** Insights about files whose identity (dev, ino) was unknown. */
  unidentified: number;
  extentsTruncated: number;
  refreshesDropped: number;
  sinkErrors: number;
  errors: number;
  lastError: string | null;
  /** Extent read-ahead; null when off. */
  prefetch: PrefetchStats | null;
}

interface Holder {
  pid: number;
  fd: number;
}

interface TrackedFile {
  readonly id: string;
  readonly dev: number;
  readonly ino: number;
  readonly placement: VolumePlacement;
  path: string;
  pid: number | null;
  process: string | null;
  /** Recent (pid, fd) pairs that referred to the file, newest first. */
  holders: Holder[];
  /** Pending readback: sorted, disjoint [start, end) pairs of file offsets. */
  ranges: number[];
  /** Written since the last FileExtents. */
  written: boolean;
  /** When the pending readback is due (performance.now()). */
  readbackDue: number;
  /** Synced, and not written since: a close finds nothing new to read back or map. */
  syncedClean: boolean;
  /** Size and extents of the last FileExtents sent ('' before any). */
  lastExtents: string;
  /** The I/O class of the last AppHint sent (null before any). */
  appClass: number | null;
  /**
   * A readback or a mapping found the file gone from its path (and from its holders' fds): the work waits for a
   * file_renamed naming where it went (rsync and editors write a temporary name and rename it over the real one).
   */
  lostPath: boolean;
}

/** Background readback of synced writes (deferSynced): bound, slice, pace. */
const SYNCED_BACKLOG_BYTES_MAX = 32 * 1024 * 1024;
const SYNCED_SLICE_BYTES = 1024 * 1024;
const SYNCED_SLICE_MS = 20;
/** How long a writer that syncs gets for its sync to be reported before its writes are read back. */
const SYNC_WAIT_MS_DEFAULT = 75;
/** A process that synced within this long is expected to sync again. */
const SYNC_HABIT_MS = 10_000;
const REFRESH_SLICE_MS = 10;
/** What mapping a file instead of reading it back counts for in a readback slice (a FIEMAP, not a read). */
const MAPPED_READBACK_COST = 64 * 1024;
/** How often the data regions of a btrfs on the volume are read again (block groups allocated as it fills). */
const DATA_REGIONS_REFRESH_MS = 250;
const HOLDERS_MAX = 4;
const RANGES_MAX = 64;
const PROCESSES_MAX = 4096;
const PATHS_MAX = 65536;
const SKIPPED_SET_MAX = 65536;
const CLONES = new Set(['FICLONE', 'FICLONERANGE']);

export class Informer {
  private readonly sink: SemanticSink;
  private readonly fs: AgentFileSystem;
  private readonly ttlMs: number;
  private readonly debounceMs: number;
  private readonly refreshDelaysMs: number[];
  private readonly refreshFilesMax: number;
  private readonly pendingFilesMax: number;
  private readonly filesMax: number;
  private readonly sliceBytes: number;
  private readonly extentsMax: number;
  private readonly log: (line: string) => void;
  private readonly prefetcher: Prefetcher | null;

  private readonly devices = new Map<number, VolumePlacement | null>();
  /** Placements that say where their file system keeps only file data, and what the engine was last told. */
  private readonly dataRegionSources: VolumePlacement[] = [];
  private dataRegionsKey = '';
  private dataRegionsTimer: NodeJS.Timeout | null = null;
  private readonly dataRegionsRefreshMs: number;
  private readonly files = new Map<string, TrackedFile>();
  private readonly pathIds = new Map<string, string>();
  private readonly processes = new Map<number, string>();
  private readonly informed = new Set<string>();
  private informedOverflow = 0;
  private readonly skipped = new Set<string>();
  private skippedOverflow = 0;
  private readonly pending = new Set<TrackedFile>();
  private debounce: NodeJS.Timeout | null = null;
  private debounceDue = 0;
  private flushing = false;
  /** When each writing process last synced a file (performance.now()); bounded by PROCESSES_MAX. */
  private readonly syncedAt = new Map<number, number>();
  private readonly syncWaitMs: number;
  /** Synced writes waiting for a background readback (deferSynced), oldest first. */
  private readonly synced = new Map<TrackedFile, number[]>();
  private syncedBytes = 0;
  private syncedTimer: NodeJS.Timeout | null = null;
  private readonly syncedBacklogBytes: number;
  private draining: Promise<void> | null = null;
  /** One queue per refresh delay: fileId → due time (insertion order = due order, since the delay is fixed). */
  private readonly refreshQueues: DueQueue<string>[];
  private readonly refreshTimers: (NodeJS.Timeout | null)[];

  /** Reused for every readback: no allocation per block or per read. */
  private readonly chunk: Uint8Array;
  private readonly prints: Uint8Array;
  private batch: string[] = [];
  /** The quick key of each fingerprint in `batch`. */
  private batchQuickKeys: number[] = [];

  private readonly counters: InformerStats = {
    messages: Object.fromEntries(SEMANTIC_MESSAGE_TYPES.map((t) => [t, 0])) as Record<SemanticMessageType, number>,
    files: 0,
    skippedFiles: 0,
    devices: { onVolume: 0, elsewhere: 0 },
    bytesFingerprinted: 0,
    blocksFingerprinted: 0,
    zeroBlocks: 0,
    bytesSyncedUnread: 0,
    bytesSyncedRead: 0,
    readbacks: 0,
    readbackMs: 0,
    maps: 0,
    mapsSettled: 0,
    vanished: 0,
    foundRenamed: 0,
    dataRegionBytes: 0,
    readbacksMapped: 0,
    unidentified: 0,
    extentsTruncated: 0,
    refreshesDropped: 0,
    sinkErrors: 0,
    errors: 0,
    lastError: null,
    prefetch: null,
  };

  constructor(options: InformerOptions) {
    this.sink = options.sink;
    this.fs = options.fs;
    this.ttlMs = options.ttlMs ?? 120_000;
    this.debounceMs = options.debounceMs ?? 50;
    this.syncedBacklogBytes = options.syncedBacklogBytes ?? SYNCED_BACKLOG_BYTES_MAX;
    this.syncWaitMs = Math.max(this.debounceMs, options.syncWaitMs ?? SYNC_WAIT_MS_DEFAULT);
    this.refreshDelaysMs = options.refreshDelaysMs ?? [1_000, 5_000, 35_000];
    this.dataRegionsRefreshMs = options.dataRegionsRefreshMs ?? DATA_REGIONS_REFRESH_MS;
    this.refreshFilesMax = options.refreshFilesMax ?? 16_384;
    this.pendingFilesMax = options.pendingFilesMax ?? 4096;
    this.filesMax = options.filesMax ?? 65_536;
    this.sliceBytes = options.sliceBytes ?? 4 * 1024 * 1024;
    this.extentsMax = Math.min(options.extentsMax ?? 16_384, EXTENTS_PER_MESSAGE_MAX);
    this.log = options.log ?? (() => undefined);
    const chunkBytes = options.readChunkBytes ?? 1024 * 1024;
    if (chunkBytes <= 0 || chunkBytes % FINGERPRINT_BLOCK_BYTES !== 0) throw new RangeError('readChunkBytes is a positive multiple of 4 KiB');
    this.chunk = new Uint8Array(chunkBytes);
    this.prints = new Uint8Array((chunkBytes / FINGERPRINT_BLOCK_SIZES[0]) * FINGERPRINT_BYTES);
    this.refreshQueues = this.refreshDelaysMs.map(() => new DueQueue<string>());
    this.refreshTimers = this.refreshDelaysMs.map(() => null);
    this.prefetcher = options.prefetch === false ? null : this.startPrefetcher(options.prefetch);
  }

  private startPrefetcher(options: PrefetchOptions = {}): Prefetcher {
    const host = {
      described: (id: string) => (this.files.get(id)?.lastExtents ?? '') !== '',
      send: (file: PrefetchedFile) => this.send({ type: 'FileExtents', fileId: file.fileId, path: file.path, size: file.size, extents: file.extents }, null),
      extentsMax: this.extentsMax,
      fail: (error: unknown, what: string) => this.fail(error, `read-ahead: ${what}`),
    };
    // Its own thread where it reads the real file system (prefetch-thread.ts); a test's in-memory one stays here.
    if (options.thread !== false && this.fs instanceof LocalFileSystem && prefetchThreadAvailable()) {
      try {
        return new ThreadedPrefetcher(this.fs.route, host, options);
      } catch (error) {
        this.fail(error, 'read-ahead: no thread of its own (walking on the agent thread instead)');
      }
    }
    return new ExtentPrefetcher({ ...host, fs: this.fs }, options);
  }

  // -------------------------------------------------------------------------------------------------------------
  // Insights

  handle(insight: Insight): void {
    try {
      this.dispatch(insight);
    } catch (error) {
      this.fail(error, `handling ${insight.kind}`);
    }
  }

  private dispatch(insight: Insight): void {
    switch (insight.kind) {
      case 'file_opened': {
        if (insight.metadata) {
          // A directory the workload lists: extent read-ahead may walk it.
          if (this.prefetcher && insight.dev !== null && this.onVolume(insight.dev, insight.path)) this.prefetcher.listed(insight.path);
          return;
        }
        if (insight.pid !== null && insight.exe) this.rememberProcess(insight.pid, insight.exe);
        const file = this.track(insight, insight.pid);
        if (!file) return;
        this.addHolder(file, insight.pid, insight.fd);
        // A file the open created or truncated has no blocks yet: it is mapped once written (close, sync, refresh).
        if ((file.lastExtents === '' || file.written) && insight.size !== 0) this.sendExtents(file);
        if (this.prefetcher && opensExistingForReading(insight.flags)) {
          this.prefetcher.opened(insight.path, file.dev, file.placement);
        }
        return;
      }
      case 'data_written': {
        const file = this.track(insight, insight.pid);
        if (!file) return;
        this.addHolder(file, insight.pid, insight.fd);
        file.written = true;
        file.syncedClean = false;
        // A clone shares the source's blocks: nothing is written, the extent refresh will place them.
        if (CLONES.has(insight.via)) this.scheduleRefresh(file);
        else this.addRange(file, insight.range.offset, insight.range.offset + insight.range.length, insight.pid);
        return;
      }
      case 'mmap_writeback': {
        const file = this.track(insight, insight.pid);
        if (!file) return;
        file.written = true;
        file.syncedClean = false;
        this.addRange(file, insight.range.offset, insight.range.offset + insight.range.length, insight.pid);
        return;
      }
      case 'file_closed': {
        if (insight.metadata) return;
        const file = this.track(insight, insight.pid);
        if (!file) return;
        const dirty = file.written || file.ranges.length > 0 || (insight.writeBytes > 0 && !file.syncedClean);
        if (dirty) this.settle(file);
        this.dropHolder(file, insight.pid, insight.fd);
        return;
      }
      case 'file_synced': {
        const file = this.track(insight, insight.pid);
        if (!file) return;
        // The sync returned: every write we were told of so far is on the disk, so fingerprints of it can no
        // longer tag a block write, and reading it back (a WAL segment is 16 MiB per sync) only delays the agent.
        this.deferSynced(file);
        if (insight.pid !== null) this.noteSync(insight.pid);
        this.scheduleRefresh(file);
        this.sendExtents(file); // after: a file found wholly placed drops the refreshes
        file.syncedClean = true;
        return;
      }
      case 'file_renamed': {
        if (insight.metadata) return;
        const file = this.track(insight, insight.pid);
        if (!file || !file.lostPath) return;
        // What could not be read or mapped under the old name, now under the new one.
        file.lostPath = false;
        this.counters.foundRenamed++;
        if (file.ranges.length > 0) this.readBack(file);
        this.scheduleRefresh(file);
        return;
      }
      case 'file_size_changed': {
        const file = this.track(insight, insight.pid);
        if (file) this.send({ type: 'FileClass', fileId: file.id, size: insight.size, ioClass: insight.ioClass }, file);
        return;
      }
      case 'copy_detected': {
        const target = this.byPath(insight.dstPath);
        if (!target) return;
        const source = this.byPath(insight.srcPath);
        const sourceId = source?.id ?? this.pathIds.get(insight.srcPath);
        this.send({ type: 'FilePattern', fileId: target.id, pattern: 'copy', ...(sourceId ? { sourceFileId: sourceId } : {}) }, target);
        if (insight.method !== 'read-write' && source && source.id !== target.id) {
          this.send({ type: 'CopyFingerprints', sourceFileId: source.id, targetFileId: target.id, ttlMs: this.ttlMs }, target);
        }
        return;
      }
      case 'encryption_detected': {
        const file = this.byPath(insight.path);
        if (file) this.send({ type: 'FilePattern', fileId: file.id, pattern: 'encrypted' }, file);
        return;
      }
      case 'lifetime_ended': {
        if (insight.dev === null || insight.ino === null) return;
        const id = `${insight.dev}:${insight.ino}`;
        if (insight.cause === 'truncate' || insight.cause === 'hole') {
          // The file lives on with fewer bytes: its extents say which blocks it still owns.
          const file = this.track(insight, insight.pid);
          if (file) {
            file.written = true;
            this.sendExtents(file);
          }
          return;
        }
        if (!this.onVolume(insight.dev, insight.path)) return;
        this.forget(id);
        this.send({ type: 'FileGone', fileId: id, cause: insight.cause }, null);
        return;
      }
      case 'app_hint': {
        if (insight.path === null) return;
        const file = this.byPath(insight.path);
        // cp advises every file it reads, PostgreSQL every segment it closes: only a change is news to the engine.
        if (!file || file.appClass === insight.ioClass) return;
        file.appClass = insight.ioClass;
        this.send({ type: 'AppHint', fileId: file.id, ioClass: insight.ioClass }, file);
        return;
      }
      default:
        return;
    }
  }

  // -------------------------------------------------------------------------------------------------------------
  // Files and routing

  /** The tracked file for a FileRef on the volume; null for files elsewhere or of unknown identity. */
  private track(ref: { path: string; dev: number | null; ino: number | null }, pid: number | null): TrackedFile | null {
    if (ref.dev === null || ref.ino === null) {
      this.counters.unidentified++;
      return null;
    }
    const id = `${ref.dev}:${ref.ino}`;
    const known = this.files.get(id);
    if (known) {
      if (known.path !== ref.path) this.rememberPath(ref.path, id);
      known.path = ref.path;
      if (pid !== null) this.setProcess(known, pid);
      // Recently used files go to the back, so the oldest are forgotten first.
      this.files.delete(id);
      this.files.set(id, known);
      return known;
    }
    const placement = this.placementOf(ref.dev, ref.path);
    if (!placement) {
      if (placement === null) this.noteSkipped(id);
      return null;
    }
    const file: TrackedFile = {
      id, dev: ref.dev, ino: ref.ino, placement, path: ref.path, pid: null, process: null, holders: [], ranges: [], written: false,
      syncedClean: false,
      readbackDue: 0,
      appClass: null,
      lostPath: false,
      lastExtents: this.prefetcher?.signatureOf(id) ?? '',
    };
    if (pid !== null) this.setProcess(file, pid);
    this.files.set(id, file);
    this.rememberPath(ref.path, id);
    if (this.files.size > this.filesMax) this.evictOldest();
    return file;
  }

  private byPath(path: string): TrackedFile | null {
    const id = this.pathIds.get(path);
    return id === undefined ? null : (this.files.get(id) ?? null);
  }

  /** null: not on the volume; undefined: cannot tell yet (asked again next time). */
  private placementOf(dev: number, path: string): VolumePlacement | null | undefined {
    const cached = this.devices.get(dev);
    if (cached !== undefined) return cached;
    let placement: VolumePlacement | null;
    try {
      placement = this.fs.locate(dev, path);
    } catch (error) {
      if (isGone(error)) this.counters.vanished++;
      else this.fail(error, `locating device ${dev}`);
      return undefined;
    }
    this.devices.set(dev, placement);
    if (placement) {
      this.counters.devices.onVolume++;
      this.log(`on the volume: ${placement.label}`);
      if (placement.dataRegions) this.watchDataRegions(placement);
    } else this.counters.devices.elsewhere++;
    return placement;
  }

  /**
   * A file system that keeps file data apart (btrfs): the engine is told where, so a block there that no file
   * described yet owns is tagged data, not metadata (btrfs writes data back within a second, often before the
   * agent has read the file). Block groups come and go, so the set is re-read every DATA_REGIONS_REFRESH_MS.
   */
  private watchDataRegions(placement: VolumePlacement): void {
    if (this.dataRegionSources.includes(placement)) return;
    this.dataRegionSources.push(placement);
    this.refreshDataRegions();
    if (this.dataRegionsTimer === null) {
      this.dataRegionsTimer = setInterval(() => this.refreshDataRegions(), this.dataRegionsRefreshMs);
      this.dataRegionsTimer.unref();
    }
  }

  private refreshDataRegions(): void {
    const regions: VolumeExtent[] = [];
    for (const source of this.dataRegionSources) {
      try {
        regions.push(...(source.dataRegions?.() ?? []));
      } catch (error) {
        // Keep what the engine has: a set missing this file system's regions would turn its data into metadata.
        this.fail(error, `reading where ${source.label} keeps file data`);
        return;
      }
    }
    regions.sort((a, b) => a.volumeOffset - b.volumeOffset);
    const key = regions.map((r) => `${r.volumeOffset}+${r.length}`).join(',');
    if (key === this.dataRegionsKey) return;
    this.dataRegionsKey = key;
    this.counters.dataRegionBytes = regions.reduce((sum, r) => sum + r.length, 0);
    this.send({ type: 'DataRegions', regions: regions.slice(0, DATA_REGIONS_MAX), source: 'btrfs data block groups' }, null);
  }

  private onVolume(dev: number, path: string): boolean {
    return !!this.placementOf(dev, path);
  }

  private noteSkipped(id: string): void {
    if (this.skipped.has(id)) return;
    if (this.skipped.size < SKIPPED_SET_MAX) this.skipped.add(id);
    else this.skippedOverflow++;
  }

  private rememberPath(path: string, id: string): void {
    this.pathIds.delete(path);
    this.pathIds.set(path, id);
    trimOldest(this.pathIds, PATHS_MAX);
  }

  private rememberProcess(pid: number, exe: string): void {
    this.processes.delete(pid);
    this.processes.set(pid, basename(exe));
    trimOldest(this.processes, PROCESSES_MAX);
  }

  private setProcess(file: TrackedFile, pid: number): void {
    file.pid = pid;
    file.process = this.processes.get(pid) ?? file.process;
  }

  private addHolder(file: TrackedFile, pid: number | null, fd: number): void {
    if (pid === null || fd < 0) return;
    file.holders = [{ pid, fd }, ...file.holders.filter((h) => h.pid !== pid || h.fd !== fd)].slice(0, HOLDERS_MAX);
  }

  private dropHolder(file: TrackedFile, pid: number | null, fd: number): void {
    file.holders = file.holders.filter((h) => h.pid !== pid || h.fd !== fd);
  }

  /** Forgets the oldest files that have no readback pending, an eighth of the table at once (util/bounded.ts). */
  private evictOldest(): void {
    let excess = this.files.size - trimTarget(this.filesMax);
    for (const file of this.files.values()) {
      if (excess === 0) return;
      if (this.pending.has(file)) continue;
      this.forget(file.id);
      excess--;
    }
  }

  private forget(id: string): void {
    const file = this.files.get(id);
    if (!file) return;
    this.files.delete(id);
    this.pending.delete(file);
    if (this.synced.has(file)) this.dropSynced(file);
    if (this.pathIds.get(file.path) === id) this.pathIds.delete(file.path);
    for (const queue of this.refreshQueues) queue.delete(id);
  }

  /**
   * Opens the file itself: by its path, else through a holder's /proc/PID/fd/N (works after a rename or unlink);
   * only a handle with the file's identity counts. null when it is gone.
   */
  private openTracked(file: TrackedFile): OpenedFile | null {
    // The path first: it is what usually still names the file, and a holder's fd has often been closed by the time
    // the informer gets to the file (a failed /proc lookup costs as much as an open).
    const byPath = this.tryOpen(file.path, file);
    if (byPath) return byPath;
    for (const holder of [...file.holders]) {
      const opened = this.tryOpen(`/proc/${holder.pid}/fd/${holder.fd}`, file);
      if (opened) return opened;
      this.dropHolder(file, holder.pid, holder.fd);
    }
    this.counters.vanished++;
    return null;
  }

  private tryOpen(path: string, file: TrackedFile): OpenedFile | null {
    let opened: OpenedFile;
    try {
      opened = this.fs.open(path, file.placement);
    } catch (error) {
      if (!isGone(error) && (error as NodeJS.ErrnoException).code !== 'ENOTREG') this.fail(error, `opening ${path}`);
      return null;
    }
    if ((opened.dev === file.dev || opened.aliasDev === file.dev) && opened.ino === file.ino) return opened;
    opened.close();
    return null;
  }

  // -------------------------------------------------------------------------------------------------------------
  // Extents

  /**
   * Maps the file and sends its extents if they changed; true when every byte of it had a place. A file whose every
   * byte has a place, and that nobody wrote since, will not move: its scheduled refreshes are dropped.
   */
  private sendExtents(file: TrackedFile): boolean {
    const opened = this.openTracked(file);
    if (!opened) {
      file.lostPath = true;
      return false;
    }
    let placed: ReturnType<typeof placedExtents>;
    try {
      placed = placedExtents(opened, this.extentsMax);
    } catch (error) {
      if (isGone(error)) this.counters.vanished++;
      else this.fail(error, `mapping ${file.path}`);
      return false;
    } finally {
      opened.close();
    }
    file.written = false;
    this.counters.maps++;
    if (placed.settled) this.counters.mapsSettled++;
    if (placed.settled && file.ranges.length === 0) for (const queue of this.refreshQueues) queue.delete(file.id);
    if (placed.cut) this.counters.extentsTruncated++;
    const { size, extents } = placed;
    const whollyPlaced = placed.settled && !placed.cut;
    const signature = extentSignature(size, file.path, extents);
    if (signature === file.lastExtents) return whollyPlaced;
    file.lastExtents = signature;
    this.send(
      {
        type: 'FileExtents', fileId: file.id, path: file.path, size, extents,
        ...(file.pid !== null ? { pid: file.pid } : {}), ...(file.process !== null ? { process: file.process } : {}),
      },
      file,
    );
    return whollyPlaced;
  }

  /**
   * A written file was closed: read back what is pending now (its block writes may follow soon), map it later (the
   * refreshes). Mapping at once cost a FIEMAP per file that, under delayed allocation, finds nothing placed (where
   * blocks are placed at write(), the "readback" is that mapping: see readBack).
   */
  private settle(file: TrackedFile): void {
    this.scheduleRefresh(file);
    if (file.ranges.length > 0) this.readBack(file);
  }

  private noteSync(pid: number): void {
    this.syncedAt.delete(pid);
    this.syncedAt.set(pid, performance.now());
    trimOldest(this.syncedAt, PROCESSES_MAX);
  }

  /**
   * The sync put the file's pending writes on the disk: their fingerprints can no longer tag those block writes,
   * only later writes of the same content (a block written twice is data twice). So they are read back in the
   * background — one slice of SYNCED_SLICE_BYTES per SYNCED_SLICE_MS, at most syncedBacklogBytes waiting,
   * the oldest dropped — never ahead of the readbacks and events that can still beat a block write.
   */
  private deferSynced(file: TrackedFile): void {
    this.pending.delete(file);
    if (file.ranges.length === 0) return;
    let ranges = this.synced.get(file) ?? [];
    this.syncedBytes -= rangeBytes(ranges);
    for (let k = 0; k < file.ranges.length; k += 2) ranges = insertRange(ranges, file.ranges[k]!, file.ranges[k + 1]!);
    ranges = boundRanges(ranges);
    file.ranges = [];
    this.synced.delete(file);
    this.synced.set(file, ranges);
    this.syncedBytes += rangeBytes(ranges);
    while (this.syncedBytes > this.syncedBacklogBytes) this.dropSynced(this.synced.keys().next().value!);
    this.armSynced();
  }

  private dropSynced(file: TrackedFile): void {
    const bytes = rangeBytes(this.synced.get(file) ?? []);
    this.synced.delete(file);
    this.syncedBytes -= bytes;
    this.counters.bytesSyncedUnread += bytes;
  }

  private armSynced(): void {
    if (this.syncedTimer !== null || this.synced.size === 0 || this.flushing) return;
    this.syncedTimer = setTimeout(() => {
      this.syncedTimer = null;
      this.readSyncedSlice();
      this.armSynced();
    }, SYNCED_SLICE_MS);
  }

  private readSyncedSlice(): void {
    let budget = SYNCED_SLICE_BYTES;
    while (budget > 0 && this.synced.size > 0) {
      const file = this.synced.keys().next().value!;
      const ranges = this.synced.get(file)!;
      const { taken, rest } = takeRanges(ranges, budget);
      this.syncedBytes -= rangeBytes(taken);
      if (rest.length > 0) this.synced.set(file, rest);
      else this.synced.delete(file);
      budget -= Math.max(1, this.readRanges(file, taken));
      this.counters.bytesSyncedRead += rangeBytes(taken);
    }
  }

  private scheduleRefresh(file: TrackedFile): void {
    const now = Date.now();
    this.refreshQueues.forEach((queue, k) => {
      queue.delete(file.id);
      if (queue.size >= this.refreshFilesMax) {
        queue.shift();
        this.counters.refreshesDropped++;
      }
      queue.set(file.id, now + this.refreshDelaysMs[k]!);
      this.armRefresh(k);
    });
  }

  private armRefresh(k: number): void {
    if (this.refreshTimers[k]) return;
    const first = this.refreshQueues[k]!.first();
    if (first === undefined) return;
    const timer = setTimeout(() => {
      this.refreshTimers[k] = null;
      this.runRefreshes(k, Date.now());
      this.armRefresh(k);
    }, Math.max(0, first.due - Date.now()));
    timer.unref();
    this.refreshTimers[k] = timer;
  }

  /** Runs due refreshes for at most REFRESH_SLICE_MS (an untar makes tens of thousands due at once). */
  private runRefreshes(k: number, until: number, sliceMs = REFRESH_SLICE_MS): void {
    const queue = this.refreshQueues[k]!;
    const started = performance.now();
    for (let first = queue.first(); first !== undefined && first.due <= until; first = queue.first()) {
      if (performance.now() - started > sliceMs) break;
      const id = queue.shift()!.key;
      const file = this.files.get(id);
      if (!file) continue;
      try {
        this.sendExtents(file);
      } catch (error) {
        this.fail(error, `refreshing ${file.path}`);
      }
    }
  }

  // -------------------------------------------------------------------------------------------------------------
  // Readback

  /**
   * Queues [start, end) of the file for readback. A process that synced a file lately (a database's log writer)
   * usually syncs what it writes now, too: its writes wait `syncWaitMs` instead of `debounceMs`, long enough for
   * the sync to be reported — after which there is nothing left to read (file_synced), where reading back a
   * 16 MiB log segment first would only have kept the agent from its events.
   */
  private addRange(file: TrackedFile, start: number, end: number, writer: number | null): void {
    if (!(end > start) || start < 0) return;
    file.ranges = boundRanges(insertRange(file.ranges, start, end));
    const now = performance.now();
    if (!this.pending.has(file)) {
      const syncsSoon = writer !== null && now - (this.syncedAt.get(writer) ?? -Infinity) < SYNC_HABIT_MS;
      file.readbackDue = now + (syncsSoon ? this.syncWaitMs : this.debounceMs);
    }
    this.pending.delete(file);
    this.pending.add(file);
    if (this.pending.size > this.pendingFilesMax) {
      const oldest = this.pending.values().next().value as TrackedFile;
      this.readBack(oldest);
    }
    if (this.draining === null) this.armReadback(file.readbackDue);
  }

  /** The readback timer fires at the earliest due time asked for. */
  private armReadback(due: number): void {
    if (this.debounce !== null && this.debounceDue <= due) return;
    if (this.debounce !== null) clearTimeout(this.debounce);
    this.debounceDue = due;
    this.debounce = setTimeout(() => {
      this.debounce = null;
      void this.drain();
    }, Math.max(0, due - performance.now()));
  }

  /**
   * Reads back every pending file that is due (all of them when flushing), yielding to the event loop every
   * `sliceBytes`; re-arms the timer for the rest.
   */
  private drain(): Promise<void> {
    if (this.draining) return this.draining;
    const work = async () => {
      let nextDue = Infinity;
      for (;;) {
        const now = performance.now();
        let budget = this.sliceBytes;
        nextDue = Infinity;
        for (const file of this.pending) {
          if (!this.flushing && file.readbackDue > now) {
            nextDue = Math.min(nextDue, file.readbackDue);
            continue;
          }
          budget -= this.readBack(file);
          if (budget <= 0) break;
        }
        if (budget > 0) break;
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
      if (nextDue !== Infinity && this.pending.size > 0) this.armReadback(nextDue);
    };
    // Cleared in a callback that runs after the assignment below, even when the work finishes synchronously.
    const running: Promise<void> = work().finally(() => {
      if (this.draining === running) this.draining = null;
      // A file queued after the last pass (its addRange saw a drain running and armed nothing) is not forgotten.
      if (this.draining === null && this.debounce === null && this.pending.size > 0) {
        let due = Infinity;
        for (const file of this.pending) due = Math.min(due, file.readbackDue);
        this.armReadback(due);
      }
    });
    this.draining = running;
    return running;
  }

  /** Fingerprints the file's pending ranges and sends them; returns the bytes read. */
  private readBack(file: TrackedFile): number {
    this.pending.delete(file);
    const ranges = file.ranges;
    file.ranges = [];
    // Blocks placed at write(): the file's extents say where what was written goes (a file still being written
    // too), sooner and cheaper than its fingerprints. Mapped with no ranges left, a wholly placed file drops its
    // refreshes.
    if (file.placement.allocatesAtWrite && ranges.length > 0 && this.sendExtents(file)) {
      this.counters.readbacksMapped++;
      return MAPPED_READBACK_COST;
    }
    return this.readRanges(file, ranges);
  }

  private readRanges(file: TrackedFile, ranges: readonly number[]): number {
    if (ranges.length === 0) return 0;
    const opened = this.openTracked(file);
    if (!opened) {
      // Kept for a rename that says where the file went (file_renamed); a deletion forgets the file instead.
      for (let k = 0; k < ranges.length; k += 2) file.ranges = insertRange(file.ranges, ranges[k]!, ranges[k + 1]!);
      file.ranges = boundRanges(file.ranges);
      file.lostPath = true;
      return 0;
    }
    const started = performance.now();
    let bytes = 0;
    // Blocks as the file system places them: 4 KiB, or its own smaller blocks (which land at any multiple of theirs).
    const unit = file.placement.fingerprintBlockBytes ?? FINGERPRINT_BLOCK_BYTES;
    try {
      const size = opened.size;
      const limit = Math.ceil(size / unit) * unit;
      for (let k = 0; k < ranges.length; k += 2) {
        const start = Math.floor(ranges[k]! / unit) * unit;
        const end = Math.min(Math.ceil(ranges[k + 1]! / unit) * unit, limit);
        bytes += this.fingerprintRange(file, opened, start, end, unit);
      }
      this.flushBatch(file, size, unit);
    } catch (error) {
      this.batch = [];
      this.batchQuickKeys = [];
      if (isGone(error)) this.counters.vanished++;
      else this.fail(error, `reading back ${file.path}`);
    } finally {
      opened.close();
      this.counters.readbacks++;
      this.counters.readbackMs += performance.now() - started;
    }
    return bytes;
  }

  private fingerprintRange(file: TrackedFile, opened: OpenedFile, start: number, end: number, unit: FingerprintBlockBytes): number {
    const chunk = this.chunk;
    const zeroHex = zeroBlockFingerprintHex(unit);
    let read = 0;
    for (let position = start; position < end; ) {
      const want = Math.min(chunk.length, end - position);
      let got = 0;
      while (got < want) {
        const n = opened.read(got === 0 ? chunk : chunk.subarray(got), want - got, position + got);
        if (n <= 0) break;
        got += n;
      }
      if (got === 0) break;
      const blocks = Math.ceil(got / unit);
      // The file ends inside this block: the file system writes the rest of the block as zeroes.
      chunk.fill(0, got, blocks * unit);
      fingerprintBlocks(chunk, 0, blocks, this.prints, 0, unit);
      for (let b = 0; b < blocks; b++) {
        const hex = encodeFingerprintHex(this.prints, b * FINGERPRINT_BYTES);
        if (hex === zeroHex) {
          this.counters.zeroBlocks++;
          continue;
        }
        this.batch.push(hex);
        this.batchQuickKeys.push(quickKey(chunk, b * unit, unit));
        if (this.batch.length >= FINGERPRINTS_PER_MESSAGE_MAX) this.flushBatch(file, null, unit);
      }
      this.counters.blocksFingerprinted += blocks;
      this.counters.bytesFingerprinted += got;
      read += got;
      position += got;
      if (got < want) break;
    }
    return read;
  }

  private flushBatch(file: TrackedFile, size: number | null, unit: FingerprintBlockBytes): void {
    if (this.batch.length === 0) return;
    const fingerprints = this.batch;
    const quickKeys = this.batchQuickKeys;
    this.batch = [];
    this.batchQuickKeys = [];
    this.send(
      {
        type: 'WriteFingerprints', fileId: file.id, blockSize: unit, fingerprints, quickKeys, ttlMs: this.ttlMs, path: file.path,
        ...(size !== null ? { size } : {}), ...(file.pid !== null ? { pid: file.pid } : {}), ...(file.process !== null ? { process: file.process } : {}),
      },
      file,
    );
  }

  // -------------------------------------------------------------------------------------------------------------
  // Output, flush, stats

  private send(message: SemanticMessage, file: TrackedFile | null): void {
    try {
      this.sink(message);
    } catch (error) {
      this.counters.sinkErrors++;
      this.counters.lastError = `sink: ${(error as Error).message}`;
      return;
    }
    this.counters.messages[message.type]++;
    if (file && !this.informed.has(file.id)) {
      if (this.informed.size < SKIPPED_SET_MAX) this.informed.add(file.id);
      else this.informedOverflow++;
    }
  }

  private fail(error: unknown, what: string): void {
    this.counters.errors++;
    this.counters.lastError = `${what}: ${(error as Error)?.message ?? String(error)}`;
    this.log(this.counters.lastError);
  }

  /**
   * The end of a run: stops extent read-ahead, completes every pending readback, then runs every scheduled extent
   * refresh now (instead of later).
   */
  async flush(): Promise<void> {
    this.prefetcher?.stop();
    if (this.dataRegionsTimer !== null) clearInterval(this.dataRegionsTimer);
    this.dataRegionsTimer = null;
    this.flushing = true;
    if (this.debounce) {
      clearTimeout(this.debounce);
      this.debounce = null;
    }
    while (this.draining || this.pending.size > 0) await (this.draining ?? this.drain());
    // What is synced and still unread can only help a later run's writes of the same content: not worth the wait.
    if (this.syncedTimer) clearTimeout(this.syncedTimer);
    this.syncedTimer = null;
    for (const file of [...this.synced.keys()]) this.dropSynced(file);
    if (this.debounce) {
      clearTimeout(this.debounce);
      this.debounce = null;
    }
    this.refreshTimers.forEach((timer, k) => {
      if (timer) clearTimeout(timer);
      this.refreshTimers[k] = null;
    });
    const due = new Set<string>();
    for (const queue of this.refreshQueues) {
      for (const id of queue.keys()) due.add(id);
      queue.clear();
    }
    for (const id of due) {
      const file = this.files.get(id);
      if (file) this.sendExtents(file);
    }
  }

  /** Pending readbacks and scheduled refreshes (for tests and the summary). */
  get backlog(): { readbacks: number; refreshes: number } {
    return { readbacks: this.pending.size, refreshes: this.refreshQueues.reduce((n, q) => n + q.size, 0) };
  }

  stats(): InformerStats {
    const c = this.counters;
    return {
      ...c,
      messages: { ...c.messages },
      devices: { ...c.devices },
      files: this.informed.size + this.informedOverflow,
      skippedFiles: this.skipped.size + this.skippedOverflow,
      prefetch: this.prefetcher?.stats() ?? null,
    };
  }
}

/** Inserts [start, end) into sorted disjoint pairs, merging what touches it. */
export function insertRange(ranges: number[], start: number, end: number): number[] {
  const out: number[] = [];
  let placed = false;
  for (let k = 0; k < ranges.length; k += 2) {
    const s = ranges[k]!;
    const e = ranges[k + 1]!;
    if (e < start) out.push(s, e);
    else if (s > end) {
      if (!placed) out.push(start, end);
      placed = true;
      out.push(s, e);
    } else {
      start = Math.min(start, s);
      end = Math.max(end, e);
    }
  }
  if (!placed) out.push(start, end);
  return out;
}

/** Beyond RANGES_MAX pairs, one range from the first start to the last end (reads a little more, loses nothing). */
function boundRanges(ranges: number[]): number[] {
  return ranges.length > RANGES_MAX * 2 ? [ranges[0]!, ranges[ranges.length - 1]!] : ranges;
}

function rangeBytes(ranges: readonly number[]): number {
  let bytes = 0;
  for (let k = 0; k < ranges.length; k += 2) bytes += ranges[k + 1]! - ranges[k]!;
  return bytes;
}

/** The first `budget` bytes of sorted, disjoint [start, end) pairs (at least one block), and the rest. */
export function takeRanges(ranges: readonly number[], budget: number): { taken: number[]; rest: number[] } {
  const taken: number[] = [];
  let k = 0;
  for (; k < ranges.length && budget > 0; k += 2) {
    const start = ranges[k]!;
    const end = ranges[k + 1]!;
    const cut = Math.min(end, start + Math.max(FINGERPRINT_BLOCK_BYTES, Math.ceil(budget / FINGERPRINT_BLOCK_BYTES) * FINGERPRINT_BLOCK_BYTES));
    taken.push(start, cut);
    budget -= cut - start;
    if (cut < end) return { taken, rest: [cut, end, ...ranges.slice(k + 2)] };
  }
  return { taken, rest: ranges.slice(k) };
}
