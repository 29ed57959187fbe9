/**
 * SemanticIndex: what the engine knows about one volume, fed by SemanticMessages, asked by the classify layer.
 *
 *  - an LBA map (lba-map.ts): volume byte ranges → file, from FileExtents and from matched writes;
 *  - a fingerprint table (fingerprint-table.ts): 4 KiB content fingerprint → file, with expiry, from
 *    WriteFingerprints and CopyFingerprints;
 *  - a file table: fileId → path, size, class inputs (process, app class, patterns), its shared IoTag.
 *
 * Everything is bounded (see SemanticIndexOptions); what falls out is forgotten in a way that makes answers
 * 'unknown', never wrong. Tags are shared, frozen objects (one per file and class): layers below must not modify
 * them. Messages are applied synchronously; a message about ranges already seen re-tags them (onRetag).
 *
 * Tagging rules (the heart of Sky, DESIGN.md):
 *  - Before any message arrived for the volume, every request is 'unknown'.
 *  - Reads (and trim/zero/cache): the owner with the most bytes of the request decides (ties: the lowest offset):
 *    a file → 'data' of that file; no known extent → 'metadata'; an evicted range → 'unknown'.
 *  - Writes: each whole aligned 4 KiB block's fingerprint is looked up. The file matching the most blocks wins if
 *    it matched at least as many blocks as matched nothing; otherwise the request is tagged like a read (so an
 *    in-place overwrite of a known extent stays data of its file, and a write nobody announced is metadata).
 *    Writes with no whole block inside (sub-4 KiB or unaligned small writes) are tagged like a read.
 *  - A matched write teaches the LBA map that those blocks belong to the file (learnFromWrites).
 *  - Inside a DataRegions range (btrfs data block groups), what would be metadata is data of no described file: the
 *    file system puts nothing else there. Its extents, when they come, re-tag it as that file's.
 *  - A write that would be metadata but is all zeroes (4 KiB or more) is data of no described file too
 *    (zeroWritesAreData): file systems do not write metadata requests of nothing but zeroes (their blocks carry
 *    headers, magic numbers, checksums; btrfs zeroes the free middle of its 16 KiB nodes, so a *partly* zero write
 *    says nothing), applications do — preallocating a file by writing zeroes (PostgreSQL's WAL segments, VM images,
 *    swap files, `dd if=/dev/zero`) — and they fsync it at once, so it reaches the volume before any hint can
 *    describe it. The rare exception is a free-space bitmap that became all zero, written on its own. Zero writes
 *    that touch are one zero-fill run, one file's at least as large as the run so far (zeroFillTag).
 */
import assert from 'node:assert/strict';
import type { IoTag } from '../volume/types.js';
import { FINGERPRINT_BLOCK_BYTES, FINGERPRINT_BYTES, decodeFingerprintHex, zeroBlockFingerprintHex, type FingerprintBlockBytes } from './fingerprint.js';
import { FingerprintTable, NO_OWNER, type FingerprintTableStats } from './fingerprint-table.js';
import { fileFacts, paperIoClassRules, SECTOR_BYTES, type ClassifyFacts, type FileFacts, type IoClassRules, type IoDirection } from './ioclass.js';
import { GAP, LbaMap, UNKNOWN, type LbaMapStats } from './lba-map.js';
import { SEMANTIC_MESSAGE_TYPES, parseSemanticMessage, type SemanticMessage, type SemanticMessageType, type VolumeExtent } from './messages.js';

export interface SemanticIndexOptions {
  rules?: IoClassRules;
  /** Intervals in the LBA map (≈ 40 bytes each at worst). Default 1,000,000. */
  maxExtents?: number;
  /** Registered write fingerprints (≈ 56 bytes each with table slack, plus 16 per remembered for copies). Default 262,144. */
  maxFingerprints?: number;
  /** Files described (≈ 300 bytes each plus paths). Default 100,000; the least recently described is forgotten first. */
  maxFiles?: number;
  /** Ranges learnt from matched writes, per file (beyond, learning stops for that file). Default 4096. */
  maxLearnedRangesPerFile?: number;
  /** Longest fingerprint TTL honoured; longer ones are clamped. Default 10 minutes. */
  fingerprintTtlMsMax?: number;
  /** TTL of fingerprints registered by CopyFingerprints without a ttlMs. Default 60 s. */
  copyTtlMs?: number;
  /** Record the blocks of matched writes in the LBA map. Default true. */
  learnFromWrites?: boolean;
  /**
   * Tag a write that no fingerprint or known extent claims, and that is all zeroes (4 KiB or more), as data of a
   * file not described yet instead of metadata. Default true. Costs other writes a comparison that stops at their
   * first non-zero 4 KiB block, and only writes that would otherwise be metadata.
   */
  zeroWritesAreData?: boolean;
  /** Monotonic milliseconds (injected for tests). Default performance.now. */
  clock?: () => number;
}

export const SEMANTIC_DEFAULTS = {
  maxExtents: 1_000_000,
  maxFingerprints: 262_144,
  maxFiles: 100_000,
  maxLearnedRangesPerFile: 4096,
  fingerprintTtlMsMax: 10 * 60 * 1000,
  copyTtlMs: 60 * 1000,
  learnFromWrites: true,
  zeroWritesAreData: true,
} as const;

/** One range whose tag changed after it was seen. */
export interface RetagRange {
  offset: number;
  length: number;
  tag: IoTag;
}

export type RetagCause = 'extents' | 'class' | 'gone';

export type RetagListener = (ranges: readonly RetagRange[], cause: RetagCause) => void;

/** A layer below classify that wants re-tags implements this; the classify layer subscribes it at open(). */
export interface RetagSink {
  applyRetag(ranges: readonly RetagRange[], cause: RetagCause): void;
}

export function isRetagSink(layer: unknown): layer is RetagSink {
  return typeof (layer as Partial<RetagSink> | null)?.applyRetag === 'function';
}

/** Zero writes that touch, each within ZERO_RUN_GAP_MS of the last, are one zero-fill run (zeroFillTag). */
interface ZeroRun {
  start: number;
  end: number;
  at: number;
  ioClass: number;
  sizeClass: number;
}
const ZERO_RUN_GAP_MS = 2000;
const ZERO_RUNS_MAX = 16;
/** Shared by every zero-fill tag: tags are frozen and layers only read their hints. */
const ZERO_FILL_HINTS = new Set(['zero-fill']);

/**
 * The paper's rules give a file's size class: a zero-fill run is re-tagged when it changes, whatever the deployment's
 * rules make of the size (reports score the tag's fileSize by that class).
 */
const PAPER_RULES = paperIoClassRules();

/** iDedup's hook: a copy was announced; `fingerprints` are the source's known ones (16 bytes each, packed). */
export type CopyListener = (event: { sourceFileId: string; targetFileId: string; fingerprints: readonly Uint8Array[] }) => void;

export type ApplyResult = { ok: true } | { ok: false; error: string };

export interface FileSnapshot {
  fileId: string;
  path: string | null;
  size: number;
  /** The class the rules give the file (file facts only). */
  ioClass: number;
  /** The sender's opinion (FileExtents/FileClass ioClass). */
  senderClass: number | null;
  appClass: number | null;
  copy: boolean;
  encrypted: boolean;
  sourceFileId: string | null;
  /** From the last FileExtents. */
  extents: VolumeExtent[];
  /** Learnt from matched writes since. */
  learned: VolumeExtent[];
  /** Fingerprints remembered for copies. */
  fingerprints: number;
}

export interface SemanticIndexStats {
  insight: boolean;
  files: number;
  lba: LbaMapStats;
  fingerprints: FingerprintTableStats;
  messages: Record<SemanticMessageType, number>;
  rejected: number;
  filesEvicted: number;
  reads: { data: number; metadata: number; unknown: number };
  writes: { data: number; metadata: number; unknown: number };
  blocks: { matched: number; unmatched: number };
  retagRanges: number;
  /** Bytes of the volume the sender said hold only file data (DataRegions). */
  dataRegionBytes: number;
  /** Writes tagged data of no described file because they were all zeroes (zeroWritesAreData). */
  zeroWrites: number;
}

/** Bound on the bitmap of seen granules (re-tags name only ranges that layers below may hold). */
const SEEN_BITMAP_BYTES_MAX = 16 * 1024 * 1024;

interface FileRecord {
  readonly index: number;
  readonly id: string;
  path: string | null;
  size: number;
  senderClass: number | null;
  appClass: number | null;
  copy: boolean;
  encrypted: boolean;
  sourceFileId: string | null;
  pid: number | null;
  process: string | null;
  facts: FileFacts;
  /** Class and tag when the rules look at files only; otherwise per-class tags are cached in tagsByClass. */
  ioClass: number;
  tag: IoTag;
  tagsByClass: (IoTag | undefined)[];
  /** Pairs [start, end) from the last FileExtents. */
  extents: Float64Array;
  /** Pairs [start, end) learnt from matched writes since. */
  learned: number[];
  /** Packed fingerprints (16 bytes each) this file registered or inherited, oldest first. */
  fingerprintChunks: Uint8Array[];
  /** The quick key of each fingerprint in the chunk at the same index (null: the sender sent none). */
  quickKeyChunks: (Uint32Array | null)[];
  /** Neighbours in the recency list (see SemanticIndex.oldest). */
  older: FileRecord | null;
  newer: FileRecord | null;
}

/**
 * What tagWrite may ask about the content of the write it tags, only when the answer can change the tag (each is a
 * pass over the data): the classify layer computes them then, not for every write.
 */
export interface WriteContent {
  /**
   * The write's fingerprints in blocks smaller than 4 KiB (SemanticIndex.smallBlockBytes), asked only when no 4 KiB
   * block of the write matched.
   */
  smallBlockPrints(offset: number, length: number): SmallBlockPrints | null;
  /** Whether the write is 4 KiB or more of nothing but zeroes; asked only for a write that would be metadata. */
  allZero(): boolean;
}

/** A write's fingerprints in blocks smaller than 4 KiB, laid out as in tagWrite. */
export interface SmallBlockPrints {
  fingerprints: Uint8Array;
  firstBlockOffset: number;
  blocks: number;
  strideBlocks: number;
  blockBytes: FingerprintBlockBytes;
}

const OUTCOME_DATA = 0;
const OUTCOME_METADATA = 1;
const OUTCOME_UNKNOWN = 2;

export class SemanticIndex {
  readonly rules: IoClassRules;
  readonly lba: LbaMap;
  readonly fingerprints: FingerprintTable;
  private readonly options: Required<Omit<SemanticIndexOptions, 'rules' | 'clock'>>;
  private readonly now: () => number;
  private insight = false;
  private readonly files: (FileRecord | null)[] = [];
  private readonly byId = new Map<string, FileRecord>();
  /**
   * Files by recency of description (moved to the newest end on every message); the oldest is evicted first. A list
   * through the records rather than byId's insertion order: evicting a Map's first entry walks every hole earlier
   * deletions left at its front (util/bounded.ts), 30 µs an eviction at 65k files.
   */
  private oldest: FileRecord | null = null;
  private newest: FileRecord | null = null;
  private readonly freeIndexes: number[] = [];
  /** Fingerprint chunks in arrival order across files, for bounding what copies may re-register. */
  private history: { file: FileRecord; chunk: Uint8Array }[] = [];
  private historyHead = 0;
  private historyFingerprints = 0;
  private readonly retagListeners: RetagListener[] = [];
  private readonly copyListeners: CopyListener[] = [];
  private seen: Uint8Array | null = null;
  /** seen !== null and someone listens: only then are requests recorded. */
  private seenActive = false;
  /** The tag of each file index (file-only rules), read on the hot path without touching the file record. */
  private readonly ownerTags: (IoTag | null)[] = [];
  private readonly fileOnly: boolean;
  /** Outcome of the last tagging (OUTCOME_*), and counts: reads data/metadata/unknown, then writes. */
  private outcome = OUTCOME_UNKNOWN;
  private readonly outcomes = new Float64Array(6);
  private seenShift = 16;
  /**
   * The smallest block size a sender fingerprints in below 4 KiB (a file system with 1 or 2 KiB blocks on the
   * volume); 0 while every fingerprint is of 4 KiB blocks. The classify layer then also fingerprints written blocks of
   * this size, for writes no 4 KiB block of which matches.
   */
  get smallBlockBytes(): FingerprintBlockBytes | 0 {
    return this.smallestBlockBytes;
  }
  private smallestBlockBytes: FingerprintBlockBytes | 0 = 0;
  private readonly scratchOwners = new Int32Array(8);
  private readonly scratchCounts = new Int32Array(8);
  private readonly facts: ClassifyFacts = { metadata: false, file: null, requestBytes: 0, direction: 'read', sector: 0 };
  private readonly metadataTags: (IoTag | undefined)[] = [];
  private readonly unknownTags: (IoTag | undefined)[] = [];
  /** Zero-fill runs being written (zeroFillTag), at most ZERO_RUNS_MAX. */
  private readonly zeroRuns: ZeroRun[] = [];
  /** Data of a file not described yet (a block in a data region, see DataRegions), by class. */
  private readonly anonymousDataTags: (IoTag | undefined)[] = [];
  /** DataRegions: sorted, disjoint [start, end) pairs of volume bytes that hold only file data. */
  private dataRegions = new Float64Array(0);
  private readonly goneTag: IoTag;
  private readonly fileOnlyMetadataTag: IoTag;
  private readonly fileOnlyUnknownTag: IoTag;
  private readonly fileOnlyAnonymousDataTag: IoTag;
  private readonly counters = {
    messages: Object.fromEntries(SEMANTIC_MESSAGE_TYPES.map((t) => [t, 0])) as Record<SemanticMessageType, number>,
    rejected: 0,
    filesEvicted: 0,
    blocks: { matched: 0, unmatched: 0 },
    retagRanges: 0,
    zeroWrites: 0,
  };

  constructor(options: SemanticIndexOptions = {}) {
    this.rules = options.rules ?? paperIoClassRules();
    this.fileOnly = this.rules.fileOnly;
    this.options = {
      maxExtents: options.maxExtents ?? SEMANTIC_DEFAULTS.maxExtents,
      maxFingerprints: options.maxFingerprints ?? SEMANTIC_DEFAULTS.maxFingerprints,
      maxFiles: options.maxFiles ?? SEMANTIC_DEFAULTS.maxFiles,
      maxLearnedRangesPerFile: options.maxLearnedRangesPerFile ?? SEMANTIC_DEFAULTS.maxLearnedRangesPerFile,
      fingerprintTtlMsMax: options.fingerprintTtlMsMax ?? SEMANTIC_DEFAULTS.fingerprintTtlMsMax,
      copyTtlMs: options.copyTtlMs ?? SEMANTIC_DEFAULTS.copyTtlMs,
      learnFromWrites: options.learnFromWrites ?? SEMANTIC_DEFAULTS.learnFromWrites,
      zeroWritesAreData: options.zeroWritesAreData ?? SEMANTIC_DEFAULTS.zeroWritesAreData,
    };
    assert.ok(this.options.maxFiles >= 1 && this.options.maxFiles < 2 ** 31, 'maxFiles out of range');
    this.now = options.clock ?? (() => performance.now());
    this.lba = new LbaMap(this.options.maxExtents);
    this.fingerprints = new FingerprintTable(this.options.maxFingerprints);
    this.goneTag = Object.freeze({ origin: 'unknown', ioClass: this.rules.defaultClass, hints: new Set(['gone']) });
    // With file-only rules the class of metadata and unknown blocks never depends on the request.
    this.fileOnlyMetadataTag = this.requestTag('metadata', 0, 0, 'read');
    this.fileOnlyUnknownTag = this.requestTag('unknown', 0, 0, 'read');
    this.fileOnlyAnonymousDataTag = this.requestTag('data', 0, 0, 'read');
  }

  /** True once any message arrived: from then on, bytes outside known files are metadata. */
  get hasInsight(): boolean {
    return this.insight;
  }

  // -------------------------------------------------------------------------------------------------------------
  // Messages

  /** Validates and applies a decoded message (what the hint channel calls). */
  accept(raw: unknown): ApplyResult {
    const parsed = parseSemanticMessage(raw);
    if (!parsed.ok) {
      this.counters.rejected++;
      return parsed;
    }
    return this.apply(parsed.message);
  }

  /** Applies a validated message. */
  apply(message: SemanticMessage): ApplyResult {
    const result = this.dispatch(message);
    if (result.ok) {
      this.counters.messages[message.type]++;
      this.insight = true;
    } else this.counters.rejected++;
    return result;
  }

  private dispatch(m: SemanticMessage): ApplyResult {
    switch (m.type) {
      case 'FileExtents': return this.onFileExtents(m);
      case 'WriteFingerprints': return this.onWriteFingerprints(m);
      case 'FileClass': return this.describe(m.fileId, (f) => { f.size = m.size; f.senderClass = m.ioClass; });
      case 'FilePattern': return this.describe(m.fileId, (f) => {
        if (m.pattern === 'copy') {
          f.copy = true;
          f.sourceFileId = m.sourceFileId ?? f.sourceFileId;
        } else f.encrypted = true;
      });
      case 'AppHint':
        if (!this.rules.classById(m.ioClass)) return { ok: false, error: `AppHint.ioClass: class ${m.ioClass} is not defined in the active rules` };
        return this.describe(m.fileId, (f) => { f.appClass = m.ioClass; });
      case 'FileGone': return this.onFileGone(m.fileId);
      case 'CopyFingerprints': return this.onCopyFingerprints(m.sourceFileId, m.targetFileId, m.ttlMs ?? this.options.copyTtlMs);
      case 'Tracing': return { ok: true }; // applying any message turns insight on; this one carries nothing else
      case 'DataRegions': return this.onDataRegions(m.regions);
    }
  }

  private onDataRegions(regions: readonly VolumeExtent[]): ApplyResult {
    const sorted = regions.map((r) => [r.volumeOffset, r.volumeOffset + r.length] as const).sort((a, b) => a[0] - b[0]);
    const merged: number[] = [];
    for (const [start, end] of sorted) {
      const last = merged.length - 1;
      if (last > 0 && start <= merged[last]!) merged[last] = Math.max(merged[last]!, end);
      else merged.push(start, end);
    }
    this.dataRegions = Float64Array.from(merged);
    return { ok: true };
  }

  /** Whether [offset, offset + length) lies inside one data region (binary search; no allocation). */
  private inDataRegion(offset: number, length: number): boolean {
    const regions = this.dataRegions;
    let low = 0;
    let high = regions.length / 2 - 1;
    while (low <= high) {
      const middle = (low + high) >>> 1;
      if (regions[2 * middle]! <= offset) low = middle + 1;
      else high = middle - 1;
    }
    return high >= 0 && offset + length <= regions[2 * high + 1]!;
  }

  private onFileExtents(m: Extract<SemanticMessage, { type: 'FileExtents' }>): ApplyResult {
    const file = this.upsert(m.fileId);
    file.path = m.path;
    file.size = m.size;
    if (m.ioClass !== undefined) file.senderClass = m.ioClass;
    if (m.pid !== undefined) file.pid = m.pid;
    if (m.process !== undefined) file.process = m.process;
    this.refresh(file);
    this.forgetRanges(file, GAP);
    const extents = new Float64Array(m.extents.length * 2);
    m.extents.forEach((e, k) => {
      extents[2 * k] = e.volumeOffset;
      extents[2 * k + 1] = e.volumeOffset + e.length;
    });
    file.extents = extents;
    for (let k = 0; k < extents.length; k += 2) this.lba.assign(extents[k]!, extents[k + 1]!, file.index);
    this.emitFileRetag(file, 'extents');
    return { ok: true };
  }

  private onWriteFingerprints(m: Extract<SemanticMessage, { type: 'WriteFingerprints' }>): ApplyResult {
    const file = this.upsert(m.fileId);
    let changed = false;
    if (m.path !== undefined) file.path = m.path;
    if (m.size !== undefined && m.size !== file.size) {
      file.size = m.size;
      changed = true;
    }
    if (m.pid !== undefined) file.pid = m.pid;
    if (m.process !== undefined) file.process = m.process;
    if (changed || m.path !== undefined || m.process !== undefined || m.pid !== undefined) this.refreshAndRetag(file);
    const now = this.now();
    const expiresAt = now + Math.min(m.ttlMs, this.options.fingerprintTtlMsMax);
    const zeroHex = zeroBlockFingerprintHex(m.blockSize);
    if (m.blockSize < FINGERPRINT_BLOCK_BYTES && m.fingerprints.length > 0) {
      this.smallestBlockBytes = this.smallestBlockBytes === 0 ? m.blockSize : (Math.min(this.smallestBlockBytes, m.blockSize) as FingerprintBlockBytes);
    }
    const chunk = new Uint8Array(m.fingerprints.length * FINGERPRINT_BYTES);
    const quickKeys = m.quickKeys === undefined ? null : new Uint32Array(m.fingerprints.length);
    let kept = 0;
    m.fingerprints.forEach((hex, k) => {
      if (hex.toLowerCase() === zeroHex) return;
      const ok = decodeFingerprintHex(hex, chunk, kept * FINGERPRINT_BYTES);
      assert.ok(ok, 'fingerprints were validated');
      const quickKey = m.quickKeys === undefined ? null : m.quickKeys[k]!;
      if (quickKeys !== null) quickKeys[kept] = quickKey!;
      this.fingerprints.insert(chunk, kept * FINGERPRINT_BYTES, file.index, expiresAt, now, quickKey);
      kept++;
    });
    if (kept > 0) this.remember(file, chunk.subarray(0, kept * FINGERPRINT_BYTES), quickKeys === null ? null : quickKeys.subarray(0, kept));
    return { ok: true };
  }

  private onFileGone(fileId: string): ApplyResult {
    const file = this.byId.get(fileId);
    if (!file) return { ok: true };
    this.emitOwnedRetag(file, this.goneTag, 'gone');
    this.removeFile(file, GAP);
    return { ok: true };
  }

  private onCopyFingerprints(sourceId: string, targetId: string, ttlMs: number): ApplyResult {
    if (sourceId === targetId) return { ok: false, error: 'CopyFingerprints: source and target are the same file' };
    // Touch the source first, so that making room for a new target cannot forget it.
    const source = this.byId.has(sourceId) ? this.upsert(sourceId) : undefined;
    const target = this.upsert(targetId);
    target.copy = true;
    target.sourceFileId = sourceId;
    this.refreshAndRetag(target);
    if (!source) return { ok: true };
    const now = this.now();
    const expiresAt = now + Math.min(ttlMs, this.options.fingerprintTtlMsMax);
    const chunks = source.fingerprintChunks.slice();
    const quickKeyChunks = source.quickKeyChunks.slice();
    chunks.forEach((chunk, c) => {
      const quickKeys = quickKeyChunks[c]!;
      for (let at = 0; at < chunk.length; at += FINGERPRINT_BYTES) {
        this.fingerprints.insert(chunk, at, target.index, expiresAt, now, quickKeys === null ? null : quickKeys[at / FINGERPRINT_BYTES]!);
      }
      this.remember(target, chunk, quickKeys);
    });
    for (const listener of this.copyListeners) listener({ sourceFileId: sourceId, targetFileId: targetId, fingerprints: chunks });
    return { ok: true };
  }

  /** Applies `change` to the file (created if new), recomputes its class and re-tags what was seen if it moved. */
  private describe(fileId: string, change: (file: FileRecord) => void): ApplyResult {
    const file = this.upsert(fileId);
    change(file);
    this.refreshAndRetag(file);
    return { ok: true };
  }

  // -------------------------------------------------------------------------------------------------------------
  // Tagging (the classify layer's hot path: no allocation)

  /** Tag for a read (or trim, zero, cache) of [offset, offset + length). */
  tagRead(offset: number, length: number): IoTag {
    if (this.seenActive) this.markSeen(offset, length);
    const tag = this.tagByMap(offset, length, 'read');
    this.outcomes[this.outcome]!++;
    return tag;
  }

  /**
   * Tag for a write of [offset, offset + length) whose whole aligned blocks have the fingerprints in
   * `fingerprints` (16 bytes each; `blocks` of them, the first at byte `firstBlockOffset` of the volume).
   */
  /**
   * Tags a write from the fingerprints of its aligned blocks. With `strideBlocks` > 1 they are samples: fingerprint k
   * is of the block at firstBlockOffset + k × stride × 4 KiB, and `blocks` counts samples. Sampled matches teach the
   * LBA map the whole aligned range only when every sample matched the same file (blocks between samples are then
   * that file's too, short of a request made of several files' interleaved pieces).
   */
  tagWrite(offset: number, length: number, fingerprints: Uint8Array | null, firstBlockOffset: number, blocks: number, strideBlocks = 1, content: WriteContent | null = null): IoTag {
    if (this.seenActive) this.markSeen(offset, length);
    const tag = this.tagWriteInner(offset, length, fingerprints, firstBlockOffset, blocks, strideBlocks, content);
    this.outcomes[3 + this.outcome]!++;
    return tag;
  }

  /** Whether any write fingerprint is registered: without one, no write can match and hashing can be skipped. */
  hasFingerprints(): boolean {
    return this.fingerprints.size > 0;
  }

  /** False when no registered fingerprint has this quick key (fingerprint.ts): the block need not be hashed. */
  mayHoldBlock(quickKey: number): boolean {
    const table = this.fingerprints;
    // The clock is read only while unkeyed entries live (an older sender), not once per written block.
    if (table.unkeyedEntries > 0) {
      const now = this.now();
      if (table.unkeyedExpired(now)) table.sweep(now);
    }
    return table.mayHold(quickKey);
  }

  private tagWriteInner(
    offset: number, length: number, fingerprints: Uint8Array | null, firstBlockOffset: number, blocks: number, strideBlocks: number, content: WriteContent | null,
  ): IoTag {
    if (!this.insight) {
      this.outcome = OUTCOME_UNKNOWN;
      return this.unknownTag(offset, length, 'write');
    }
    let owner = NO_OWNER;
    if (fingerprints !== null && blocks > 0) owner = this.matchBlocks(offset, length, fingerprints, firstBlockOffset, blocks, strideBlocks, FINGERPRINT_BLOCK_BYTES);
    const prints = owner === NO_OWNER && content !== null && this.smallestBlockBytes !== 0 ? content.smallBlockPrints(offset, length) : null;
    if (prints !== null) owner = this.matchBlocks(offset, length, prints.fingerprints, prints.firstBlockOffset, prints.blocks, prints.strideBlocks, prints.blockBytes);
    if (owner !== NO_OWNER) {
      this.outcome = OUTCOME_DATA;
      return this.fileTag(owner, offset, length, 'write');
    }
    return this.tagByMap(offset, length, 'write', content);
  }

  /**
   * The file most of the write's fingerprinted blocks belong to, if its blocks are at least as many as the unmatched
   * ones (else NO_OWNER); teaches the LBA map the runs it found. Blocks are `blockBytes` each.
   */
  private matchBlocks(
    offset: number, length: number, fingerprints: Uint8Array, firstBlockOffset: number, blocks: number, strideBlocks: number, blockBytes: number,
  ): number {
    assert.ok(fingerprints.length >= blocks * FINGERPRINT_BYTES, 'one fingerprint per block');
    const owners = this.scratchOwners;
    const counts = this.scratchCounts;
    let distinct = 0;
    let unmatched = 0;
    const table = this.fingerprints;
    // The clock is read once per request, and only if some block is found (most metadata writes find none).
    let now = -1;
    let runOwner = NO_OWNER;
    let runStart = 0;
    const sampled = strideBlocks > 1;
    for (let block = 0; block < blocks; block++) {
      const slot = table.probe(fingerprints, block * FINGERPRINT_BYTES);
      let owner = NO_OWNER;
      if (slot >= 0) {
        if (now < 0) now = this.now();
        owner = table.ownerIfAlive(slot, now);
      }
      if (sampled) {
        // Runs of samples say nothing exact about the blocks between them; see tagWrite.
      } else if (owner !== runOwner) {
        if (runOwner !== NO_OWNER) this.learn(runOwner, firstBlockOffset + runStart * blockBytes, (block - runStart) * blockBytes);
        runOwner = owner;
        runStart = block;
      }
      if (owner === NO_OWNER) {
        unmatched++;
        continue;
      }
      let k = 0;
      while (k < distinct && owners[k] !== owner) k++;
      if (k === distinct) {
        if (distinct === owners.length) continue; // beyond 8 distinct files in one request: ignored
        owners[distinct] = owner;
        counts[distinct++] = 0;
      }
      counts[k]!++;
    }
    if (!sampled && runOwner !== NO_OWNER) this.learn(runOwner, firstBlockOffset + runStart * blockBytes, (blocks - runStart) * blockBytes);
    if (sampled && distinct === 1 && unmatched === 0) {
      const alignedEnd = Math.floor((offset + length) / blockBytes) * blockBytes;
      this.learn(owners[0]!, firstBlockOffset, alignedEnd - firstBlockOffset);
    }
    this.counters.blocks.matched += blocks - unmatched;
    this.counters.blocks.unmatched += unmatched;
    let best = -1;
    for (let k = 0; k < distinct; k++) if (best < 0 || counts[k]! > counts[best]!) best = k;
    return best >= 0 && counts[best]! >= unmatched ? owners[best]! : NO_OWNER;
  }

  /** Tags by the LBA map's dominant owner; sets `outcome`. */
  private tagByMap(offset: number, length: number, direction: IoDirection, content: WriteContent | null = null): IoTag {
    if (!this.insight) {
      this.outcome = OUTCOME_UNKNOWN;
      return this.unknownTag(offset, length, direction);
    }
    const owner = this.lba.dominant(offset, length);
    if (owner >= 0) {
      this.outcome = OUTCOME_DATA;
      return this.fileTag(owner, offset, length, direction);
    }
    if (owner === GAP) {
      // Where the file system keeps only file data, a block no described file owns is a file's not described yet.
      // A write of nothing but zeroes is an application's preallocation (zeroWritesAreData).
      const inRegion = this.dataRegions.length > 0 && this.inDataRegion(offset, length);
      // In a data region too: there a zero-fill is data anyway, but its run gives it a size.
      const zeroes = content !== null && this.options.zeroWritesAreData && content.allZero();
      if (zeroes) this.counters.zeroWrites++;
      if (inRegion || zeroes) {
        this.outcome = OUTCOME_DATA;
        if (zeroes) return this.zeroFillTag(offset, length, direction);
        return this.fileOnly ? this.fileOnlyAnonymousDataTag : this.requestTag('data', offset, length, direction);
      }
      this.outcome = OUTCOME_METADATA;
      return this.fileOnly ? this.fileOnlyMetadataTag : this.requestTag('metadata', offset, length, direction);
    }
    this.outcome = OUTCOME_UNKNOWN;
    return this.unknownTag(offset, length, direction);
  }

  /**
   * Data of a file being zero-filled: an application writes a preallocation in one go and syncs it (PostgreSQL's 16
   * MiB WAL segment reaches the volume as one writeback), so zero writes that touch, each within ZERO_RUN_GAP_MS of
   * the last, are taken as one file's, at least as large as the run so far. That lower bound is the size the tag
   * carries — what the tracer says of a file still being written — with the hint 'zero-fill'. When the run's size
   * moves it to another size class (or I/O class), its earlier bytes are re-tagged, as a file's are when it grows.
   */
  private zeroFillTag(offset: number, length: number, direction: IoDirection): IoTag {
    const now = this.now();
    const end = offset + length;
    let run: ZeroRun | undefined;
    let stalest = 0;
    for (let k = 0; k < this.zeroRuns.length; k++) {
      const candidate = this.zeroRuns[k]!;
      if (now - candidate.at <= ZERO_RUN_GAP_MS && offset <= candidate.end && end >= candidate.start) {
        run = candidate;
        break;
      }
      if (candidate.at < this.zeroRuns[stalest]!.at) stalest = k;
    }
    if (run === undefined) {
      run = { start: offset, end, at: now, ioClass: -1, sizeClass: -1 };
      if (this.zeroRuns.length < ZERO_RUNS_MAX) this.zeroRuns.push(run);
      else this.zeroRuns[stalest] = run;
    } else {
      run.start = Math.min(run.start, offset);
      run.end = Math.max(run.end, end);
      run.at = now;
    }
    // Writeback does not go in order (ext4 sent a WAL segment as 256 KiB here, 256 KiB 1.25 MiB further, then the
    // 1 MiB between): a run that now touches another is one with it, and the other's bytes take the joint tag.
    let merged = false;
    for (let k = this.zeroRuns.length - 1; k >= 0; k--) {
      const other = this.zeroRuns[k]!;
      if (other === run || now - other.at > ZERO_RUN_GAP_MS || other.start > run.end || other.end < run.start) continue;
      run.start = Math.min(run.start, other.start);
      run.end = Math.max(run.end, other.end);
      this.zeroRuns.splice(k, 1);
      merged = true;
    }
    const size = run.end - run.start;
    const ioClass = this.rules.classify(this.factsFor(false, fileFacts(null, size), offset, length, direction));
    const tag: IoTag = Object.freeze({ origin: 'data', ioClass, fileSize: size, hints: ZERO_FILL_HINTS });
    const sizeClass = PAPER_RULES.classify(this.facts); // the facts factsFor just filled in
    if (merged || (run.ioClass >= 0 && (ioClass !== run.ioClass || sizeClass !== run.sizeClass))) {
      const ranges: RetagRange[] = [];
      if (offset > run.start) ranges.push({ offset: run.start, length: offset - run.start, tag });
      if (run.end > end) ranges.push({ offset: end, length: run.end - end, tag });
      this.emitRetag(ranges, 'class');
    }
    run.ioClass = ioClass;
    run.sizeClass = sizeClass;
    return tag;
  }

  private emitRetag(ranges: RetagRange[], cause: RetagCause): void {
    if (ranges.length === 0 || this.retagListeners.length === 0 || this.seen === null) return;
    this.counters.retagRanges += ranges.length;
    for (const listener of this.retagListeners.slice()) listener(ranges, cause);
  }

  private unknownTag(offset: number, length: number, direction: IoDirection): IoTag {
    return this.fileOnly ? this.fileOnlyUnknownTag : this.requestTag('unknown', offset, length, direction);
  }

  private fileTag(owner: number, offset: number, length: number, direction: IoDirection): IoTag {
    if (this.fileOnly) return this.ownerTags[owner]!;
    const file = this.files[owner]!;
    const facts = this.factsFor(false, file.facts, offset, length, direction);
    const ioClass = this.rules.classify(facts);
    return (file.tagsByClass[ioClass] ??= this.buildFileTag(file, ioClass));
  }

  /** Tag for metadata, unknown blocks or data of no described file, under the request's facts (cached per class). */
  private requestTag(origin: 'metadata' | 'unknown' | 'data', offset: number, length: number, direction: IoDirection): IoTag {
    const ioClass = this.rules.classify(this.factsFor(origin === 'metadata', null, offset, length, direction));
    const cache = origin === 'metadata' ? this.metadataTags : origin === 'data' ? this.anonymousDataTags : this.unknownTags;
    return (cache[ioClass] ??= Object.freeze({ origin, ioClass, hints: new Set<string>() }));
  }

  private factsFor(metadata: boolean, file: FileFacts | null, offset: number, length: number, direction: IoDirection): ClassifyFacts {
    const facts = this.facts;
    facts.metadata = metadata;
    facts.file = file;
    facts.requestBytes = length;
    facts.direction = direction;
    facts.sector = Math.floor(offset / SECTOR_BYTES);
    return facts;
  }

  /** Records that [offset, offset + length) holds `owner`'s blocks, unless the map already says so. */
  private learn(owner: number, offset: number, length: number): void {
    if (!this.options.learnFromWrites) return;
    if (this.lba.dominant(offset, length) === owner && this.lba.dominantBytes === length) return;
    const file = this.files[owner]!;
    const learned = file.learned;
    const last = learned.length - 1;
    if (last > 0 && learned[last] === offset) learned[last] = offset + length;
    else if (learned.length / 2 < this.options.maxLearnedRangesPerFile) learned.push(offset, offset + length);
    else return;
    this.lba.assign(offset, offset + length, owner);
  }

  /** Forgets which file owns [offset, offset + length) (TRIM: those blocks no longer hold anyone's data). */
  forgetRange(offset: number, length: number): void {
    if (this.lba.size > 0) this.lba.assign(offset, offset + length, GAP);
  }

  // -------------------------------------------------------------------------------------------------------------
  // Re-tagging

  /** Subscribes to "these ranges, already seen, now carry this tag". Returns the unsubscribe function. */
  onRetag(listener: RetagListener): () => void {
    this.retagListeners.push(listener);
    this.seenActive = this.seen !== null;
    return () => {
      const at = this.retagListeners.indexOf(listener);
      if (at >= 0) this.retagListeners.splice(at, 1);
      this.seenActive = this.seen !== null && this.retagListeners.length > 0;
    };
  }

  /** Subscribes to announced copies (iDedup prefetches the source's fingerprint mappings). */
  onCopy(listener: CopyListener): () => void {
    this.copyListeners.push(listener);
    return () => {
      const at = this.copyListeners.indexOf(listener);
      if (at >= 0) this.copyListeners.splice(at, 1);
    };
  }

  /**
   * Starts remembering which parts of a volume of `volumeBytes` requests touched, at `granularity` bytes (a power
   * of two; coarsened so the bitmap stays ≤ 16 MiB). Re-tags name only seen granules, clipped to the file's ranges.
   */
  trackSeen(volumeBytes: number, granularity: number): void {
    assert.ok(Number.isSafeInteger(volumeBytes) && volumeBytes > 0, 'volume size');
    assert.ok(granularity >= FINGERPRINT_BLOCK_BYTES && (granularity & (granularity - 1)) === 0, 'granularity is a power of two ≥ 4 KiB');
    let shift = Math.log2(granularity);
    while (Math.ceil(volumeBytes / 2 ** shift / 8) > SEEN_BITMAP_BYTES_MAX) shift++;
    this.seenShift = shift;
    this.seen = new Uint8Array(Math.ceil(volumeBytes / 2 ** shift / 8));
    this.seenActive = this.retagListeners.length > 0;
  }

  private markSeen(offset: number, length: number): void {
    const seen = this.seen!;
    const scale = 2 ** this.seenShift;
    const last = Math.min(Math.floor((offset + length - 1) / scale), seen.length * 8 - 1);
    for (let g = Math.floor(offset / scale); g <= last; g++) seen[g >>> 3]! |= 1 << (g & 7);
  }

  private isSeen(granule: number): boolean {
    return this.seen !== null && granule < this.seen.length * 8 && (this.seen[granule >>> 3]! & (1 << (granule & 7))) !== 0;
  }

  /** Re-tags the seen parts of everything the map says the file owns, with the file's current tag. */
  private emitFileRetag(file: FileRecord, cause: RetagCause): void {
    if (this.retagListeners.length === 0 || this.seen === null) return;
    this.emitOwnedRetag(file, this.rules.fileOnly ? file.tag : this.buildFileTag(file, file.ioClass), cause);
  }

  private emitOwnedRetag(file: FileRecord, tag: IoTag, cause: RetagCause): void {
    if (this.retagListeners.length === 0 || this.seen === null) return;
    const ranges: RetagRange[] = [];
    const scale = 2 ** this.seenShift;
    const visit = (start: number, end: number, owner: number): void => {
      if (owner !== file.index) return;
      let runStart = -1;
      for (let g = Math.floor(start / scale); g * scale < end; g++) {
        if (this.isSeen(g)) {
          if (runStart < 0) runStart = Math.max(start, g * scale);
        } else if (runStart >= 0) {
          ranges.push({ offset: runStart, length: g * scale - runStart, tag });
          runStart = -1;
        }
      }
      if (runStart >= 0) ranges.push({ offset: runStart, length: end - runStart, tag });
    };
    for (let k = 0; k < file.extents.length; k += 2) this.lba.forEachIn(file.extents[k]!, file.extents[k + 1]!, visit);
    for (let k = 0; k < file.learned.length; k += 2) this.lba.forEachIn(file.learned[k]!, file.learned[k + 1]!, visit);
    this.emitRetag(ranges, cause);
  }

  // -------------------------------------------------------------------------------------------------------------
  // File table

  private upsert(fileId: string): FileRecord {
    const existing = this.byId.get(fileId);
    if (existing) {
      if (existing !== this.newest) {
        this.unlinkRecency(existing);
        this.linkNewest(existing);
      }
      return existing;
    }
    if (this.byId.size >= this.options.maxFiles) {
      assert(this.oldest !== null, 'a full file table has an oldest file');
      this.removeFile(this.oldest, UNKNOWN);
      this.counters.filesEvicted++;
    }
    const index = this.freeIndexes.pop() ?? this.files.length;
    const file: FileRecord = {
      index,
      id: fileId,
      path: null,
      size: 0,
      senderClass: null,
      appClass: null,
      copy: false,
      encrypted: false,
      sourceFileId: null,
      pid: null,
      process: null,
      facts: fileFacts(null, 0),
      ioClass: this.rules.defaultClass,
      tag: this.fileOnlyUnknownTag,
      tagsByClass: [],
      extents: new Float64Array(0),
      learned: [],
      fingerprintChunks: [],
      quickKeyChunks: [],
      older: null,
      newer: null,
    };
    this.files[index] = file;
    this.byId.set(fileId, file);
    this.linkNewest(file);
    this.refresh(file);
    return file;
  }

  private linkNewest(file: FileRecord): void {
    file.older = this.newest;
    file.newer = null;
    if (this.newest) this.newest.newer = file;
    else this.oldest = file;
    this.newest = file;
  }

  private unlinkRecency(file: FileRecord): void {
    if (file.older) file.older.newer = file.newer;
    else this.oldest = file.newer;
    if (file.newer) file.newer.older = file.older;
    else this.newest = file.older;
    file.older = file.newer = null;
  }

  /** Recomputes facts, class and tag; true when the class or the hints changed. */
  private refresh(file: FileRecord): boolean {
    const before = file.tag;
    file.facts = fileFacts(file.path, file.size, {
      pid: file.pid, process: file.process, appClass: file.appClass, copy: file.copy, encrypted: file.encrypted,
    });
    file.tagsByClass = [];
    file.ioClass = this.rules.classify(this.factsFor(false, file.facts, 0, 0, 'read'));
    file.tag = this.buildFileTag(file, file.ioClass);
    this.ownerTags[file.index] = file.tag;
    return before.ioClass !== file.tag.ioClass || before.origin !== 'data' || !sameHints(before.hints, file.tag.hints);
  }

  private refreshAndRetag(file: FileRecord): void {
    if (this.refresh(file)) this.emitFileRetag(file, 'class');
  }

  private buildFileTag(file: FileRecord, ioClass: number): IoTag {
    const hints = new Set<string>();
    if (file.encrypted) hints.add('unique');
    if (file.copy) hints.add('copy');
    if (file.appClass !== null) hints.add('app');
    const tag: IoTag = { origin: 'data', ioClass, fileId: file.id, fileSize: file.size, hints };
    if (file.path !== null) tag.path = file.path;
    if (file.pid !== null) tag.pid = file.pid;
    if (file.process !== null) tag.exe = file.process;
    return Object.freeze(tag);
  }

  /** Drops the file: its ranges become `replacement` (GAP when gone, UNKNOWN when merely forgotten). */
  private removeFile(file: FileRecord, replacement: number): void {
    this.forgetRanges(file, replacement);
    for (const chunk of file.fingerprintChunks) {
      for (let at = 0; at < chunk.length; at += FINGERPRINT_BYTES) this.fingerprints.remove(chunk, at, file.index);
    }
    file.fingerprintChunks = [];
    file.quickKeyChunks = [];
    this.byId.delete(file.id);
    this.unlinkRecency(file);
    this.files[file.index] = null;
    this.ownerTags[file.index] = null;
    this.freeIndexes.push(file.index);
  }

  private forgetRanges(file: FileRecord, replacement: number): void {
    for (let k = 0; k < file.extents.length; k += 2) this.lba.reassignOwner(file.extents[k]!, file.extents[k + 1]!, file.index, replacement);
    for (let k = 0; k < file.learned.length; k += 2) this.lba.reassignOwner(file.learned[k]!, file.learned[k + 1]!, file.index, replacement);
    file.extents = new Float64Array(0);
    file.learned = [];
  }

  /** Keeps `chunk` for later copies of the file, within the global bound (oldest forgotten first). */
  private remember(file: FileRecord, chunk: Uint8Array, quickKeys: Uint32Array | null): void {
    assert.ok(quickKeys === null || quickKeys.length * FINGERPRINT_BYTES === chunk.length, 'one quick key per fingerprint');
    file.fingerprintChunks.push(chunk);
    file.quickKeyChunks.push(quickKeys);
    this.history.push({ file, chunk });
    this.historyFingerprints += chunk.length / FINGERPRINT_BYTES;
    while (this.historyFingerprints > this.options.maxFingerprints) {
      const oldest = this.history[this.historyHead]!;
      this.historyHead++;
      this.historyFingerprints -= oldest.chunk.length / FINGERPRINT_BYTES;
      const owner = oldest.file;
      if (this.files[owner.index] === owner && owner.fingerprintChunks[0] === oldest.chunk) {
        owner.fingerprintChunks.shift();
        owner.quickKeyChunks.shift();
        // Every table entry a file owns stays listed in its chunks, so removing the file removes them all (a
        // stale entry would name whichever file reuses the index).
        for (let at = 0; at < oldest.chunk.length; at += FINGERPRINT_BYTES) this.fingerprints.remove(oldest.chunk, at, owner.index);
      }
    }
    if (this.historyHead > 1024 && this.historyHead * 2 > this.history.length) {
      this.history = this.history.slice(this.historyHead);
      this.historyHead = 0;
    }
  }

  // -------------------------------------------------------------------------------------------------------------
  // Inspection

  /** What the index knows about a file (for tests, `sky stats`, and iDedup's copy handling). */
  file(fileId: string): FileSnapshot | undefined {
    const f = this.byId.get(fileId);
    if (!f) return undefined;
    const pairs = (p: ArrayLike<number>) => Array.from({ length: p.length / 2 }, (_, k) => ({ volumeOffset: p[2 * k]!, length: p[2 * k + 1]! - p[2 * k]! }));
    return {
      fileId: f.id, path: f.path, size: f.size, ioClass: f.ioClass, senderClass: f.senderClass, appClass: f.appClass,
      copy: f.copy, encrypted: f.encrypted, sourceFileId: f.sourceFileId,
      extents: pairs(f.extents), learned: pairs(f.learned),
      fingerprints: f.fingerprintChunks.reduce((n, c) => n + c.length / FINGERPRINT_BYTES, 0),
    };
  }

  /** The known fingerprints of a file, packed 16 bytes each (iDedup prefetches these for copies). */
  fileFingerprints(fileId: string): readonly Uint8Array[] {
    return this.byId.get(fileId)?.fingerprintChunks.slice() ?? [];
  }

  stats(): SemanticIndexStats {
    const c = this.counters;
    return {
      insight: this.insight,
      files: this.byId.size,
      lba: this.lba.stats(),
      fingerprints: this.fingerprints.stats(),
      messages: { ...c.messages },
      rejected: c.rejected,
      filesEvicted: c.filesEvicted,
      reads: { data: this.outcomes[0]!, metadata: this.outcomes[1]!, unknown: this.outcomes[2]! },
      writes: { data: this.outcomes[3]!, metadata: this.outcomes[4]!, unknown: this.outcomes[5]! },
      blocks: { ...c.blocks },
      retagRanges: c.retagRanges,
      dataRegionBytes: this.dataRegionBytes(),
      zeroWrites: c.zeroWrites,
    };
  }

  private dataRegionBytes(): number {
    let bytes = 0;
    for (let k = 0; k < this.dataRegions.length; k += 2) bytes += this.dataRegions[k + 1]! - this.dataRegions[k]!;
    return bytes;
  }
}

function sameHints(a: ReadonlySet<string>, b: ReadonlySet<string>): boolean {
  if (a.size !== b.size) return false;
  for (const h of a) if (!b.has(h)) return false;
  return true;
}
