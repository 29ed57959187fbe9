/**
 * Ground truth for tag accuracy: after a workload, which bytes of the volume (export offsets) are data of which
 * file, which are file-system metadata, and — where the file system can say — which are free.
 *
 * Built from the file system itself, ideally unmounted and remounted (read-only) so nothing is in flight:
 *   layer 0  the whole export                      metadata 'outside-file-system' (partition table, other space)
 *   layer 1  the file system's device              metadata 'unclaimed' (allocated or not, but no file's data)
 *   layer 2  the file system's own space map:      ext4/XFS: GETFSMAP (free, superblocks, bitmaps, inode tables, log …)
 *                                                   btrfs: chunk tree (unallocated, data chunks, metadata/system chunks)
 *   layer 3  btrfs superblocks and reserved first MiB (metadata)
 *   layer 4  every regular file's FIEMAP extents   data of that file (shared extents: data of every sharer)
 * A higher layer wins. Without a space map (other file systems) everything that is not file data is metadata.
 *
 * The truth is the FINAL state. Space freed during the run (a deleted file's data, a truncated tail, freed metadata)
 * is 'free' at the end where the file system reports free space; the scorer counts requests there separately
 * instead of calling them right or wrong. Space reused during the run is scored against its final owner.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { FileSystemVolume } from './volume-map.js';
import { FsmapFlag, readFsmap, type FsmapRecord } from './fsmap.js';
import { chunkKind, type BtrfsChunk } from './btrfs.js';
import { IntervalMap, type LayeredInterval, type Segment } from './interval-map.js';
import { readMountInfo } from './mountinfo.js';
import { decodeKernelDev, localHost, sameDev } from './host.js';

export type TruthOrigin = 'data' | 'metadata' | 'free';

export interface TruthOwner {
  path: string;
  sizeBytes: number;
  ino: number;
}

export interface TruthLabel {
  origin: TruthOrigin;
  /** 'file' for data; for metadata and free space, where it came from (e.g. 'inodes', 'log', 'unclaimed'). */
  kind: string;
  /** Data only: the file(s) whose bytes these are (several for shared/reflinked extents). */
  owners?: TruthOwner[];
}

export interface Classification {
  origin: TruthOrigin;
  kind: string;
  /** Data only: the first owner's size and path. */
  fileSize?: number;
  path?: string;
  owners?: TruthOwner[];
  /** Bytes of the asked range that carry this classification (the one covering most bytes). */
  bytes: number;
}

export interface GroundTruthStats {
  files: number;
  fileBytesMapped: number;
  /** Files whose data is inline (inside metadata) or not placed; their bytes count as metadata. */
  filesUnplaced: number;
  /** Cross-checks against the file system's space map: file extents on space it calls free or static metadata. */
  fileBytesOnFreeSpace: number;
  fileBytesOnStaticMetadata: number;
  /** XFS with reverse mapping: file extents the space map gives to the same inode, and to another one. */
  fileBytesOwnerConfirmed: number;
  fileBytesOwnerMismatch: number;
}

export interface GroundTruthParts {
  volumeBytes: number;
  fsType: string;
  offsetInExport: number;
  deviceBytes: number;
  spaceMap: 'fsmap' | 'btrfs-chunks' | 'none';
  /** Layer-2/3 intervals in volume offsets (already shifted by offsetInExport). */
  spaceIntervals: LayeredInterval<TruthLabel>[];
  files: Array<{ owner: TruthOwner; extents: Array<{ volumeOffset: number; length: number }> }>;
  filesUnplaced?: number;
  warnings?: string[];
}

export interface GroundTruthOptions {
  /** Size of the whole export; default: the file system device's end. */
  volumeBytes?: number;
  /** FIEMAP_FLAG_SYNC while mapping (default false: the file system should be remounted read-only first). */
  sync?: boolean;
  /** Bound on regular files walked. */
  filesMax?: number;
}

const LAYER_EXPORT = 0;
const LAYER_DEVICE = 1;
const LAYER_SPACE = 2;
const LAYER_RESERVED = 3;
const LAYER_FILES = 4;
const FILES_MAX_DEFAULT = 10_000_000;
const MiB = 1024 * 1024;
/** btrfs superblock copies (64 KiB, 64 MiB, 256 GiB) and the first MiB it never allocates. */
const BTRFS_SUPERBLOCKS = [64 * 1024, 64 * MiB, 256 * 1024 * MiB];
const BTRFS_SUPERBLOCK_BYTES = 4096;
const STATIC_KINDS_NOT_FILE = new Set(['fs-static', 'log', 'ag-metadata', 'inode-btree', 'inodes', 'refcount-btree', 'group-descriptors', 'reserved-gdt', 'block-bitmap', 'inode-bitmap']);

const labelCache = new Map<string, TruthLabel>();
function shared(origin: TruthOrigin, kind: string): TruthLabel {
  const key = `${origin}:${kind}`;
  let label = labelCache.get(key);
  if (label === undefined) {
    label = Object.freeze({ origin, kind }) as TruthLabel;
    labelCache.set(key, label);
  }
  return label;
}

function labelKey(label: TruthLabel): string {
  return `${label.origin}:${label.kind}:${(label.owners ?? []).map((owner) => owner.ino).join(',')}`;
}

function mergeLabels(a: TruthLabel, b: TruthLabel): TruthLabel {
  if (a.origin !== 'data' || b.origin !== 'data') return a;
  const owners = [...(a.owners ?? [])];
  for (const owner of b.owners ?? []) if (!owners.some((known) => known.ino === owner.ino)) owners.push(owner);
  return { origin: 'data', kind: 'file', owners };
}

export class GroundTruth {
  private constructor(
    private readonly map: IntervalMap<TruthLabel>,
    readonly volumeBytes: number,
    readonly fsType: string,
    readonly offsetInExport: number,
    readonly deviceBytes: number,
    readonly spaceMap: GroundTruthParts['spaceMap'],
    readonly stats: GroundTruthStats,
    readonly warnings: readonly string[],
  ) {}

  /** Builds the truth from parts (unit tests, or other sources of extents). */
  static fromParts(parts: GroundTruthParts): GroundTruth {
    assert.ok(parts.offsetInExport + parts.deviceBytes <= parts.volumeBytes, 'the file system lies inside the volume');
    const intervals: LayeredInterval<TruthLabel>[] = [
      { start: 0, end: parts.volumeBytes, layer: LAYER_EXPORT, label: shared('metadata', 'outside-file-system') },
      { start: parts.offsetInExport, end: parts.offsetInExport + parts.deviceBytes, layer: LAYER_DEVICE, label: shared('metadata', 'unclaimed') },
      ...parts.spaceIntervals,
    ];
    let fileBytesMapped = 0;
    for (const file of parts.files) {
      const label: TruthLabel = { origin: 'data', kind: 'file', owners: [file.owner] };
      for (const extent of file.extents) {
        intervals.push({ start: extent.volumeOffset, end: extent.volumeOffset + extent.length, layer: LAYER_FILES, label });
        fileBytesMapped += extent.length;
      }
    }
    const map = IntervalMap.build(intervals, mergeLabels, (a, b) => a === b || labelKey(a) === labelKey(b));
    const stats: GroundTruthStats = {
      files: parts.files.length,
      fileBytesMapped,
      filesUnplaced: parts.filesUnplaced ?? 0,
      ...crossCheck(parts.spaceIntervals, parts.files),
    };
    return new GroundTruth(map, parts.volumeBytes, parts.fsType, parts.offsetInExport, parts.deviceBytes, parts.spaceMap, stats, parts.warnings ?? []);
  }

  /**
   * Walks a mounted file system (remount it read-only first) and builds its truth. The mount must be the file
   * system's root for the space map to be complete; nested mounts of other file systems are skipped.
   */
  static fromMount(mountPoint: string, options: GroundTruthOptions = {}): GroundTruth {
    const volume = FileSystemVolume.open(mountPoint);
    const root = volume.mount.mountPoint;
    const warnings: string[] = [];
    if (volume.mount.root !== '/') warnings.push(`mount shows ${volume.mount.root} of the file system, not its root: files outside it count as metadata`);
    const space = spaceIntervals(volume, warnings);
    const walked = walkFiles(root, volume, options, warnings);
    return GroundTruth.fromParts({
      volumeBytes: options.volumeBytes ?? volume.volume.offsetInExport + volume.deviceBytes,
      fsType: volume.fsType,
      offsetInExport: volume.volume.offsetInExport,
      deviceBytes: volume.deviceBytes,
      spaceMap: space.kind,
      spaceIntervals: space.intervals,
      files: walked.files,
      filesUnplaced: walked.unplaced,
      warnings,
    });
  }

  /** The labelled parts of a range, clipped to it. */
  segments(offset: number, length: number): Segment<TruthLabel>[] {
    this.checkRange(offset, length);
    return this.map.query(offset, length);
  }

  /** What most bytes of [offset, offset+length) are. */
  classify(offset: number, length: number): Classification {
    const totals = new Map<string, { label: TruthLabel; bytes: number }>();
    for (const segment of this.segments(offset, length)) {
      const key = labelKey(segment.label);
      const entry = totals.get(key) ?? { label: segment.label, bytes: 0 };
      entry.bytes += segment.end - segment.start;
      totals.set(key, entry);
    }
    let best: { label: TruthLabel; bytes: number } | null = null;
    for (const entry of totals.values()) if (best === null || entry.bytes > best.bytes) best = entry;
    assert.ok(best !== null, 'every byte of the volume has a label');
    return classificationOf(best.label, best.bytes);
  }

  toJSON(): GroundTruthJson {
    const labels: TruthLabel[] = [];
    const index = new Map<string, number>();
    const segments: Array<[number, number, number]> = [];
    for (const segment of this.map.all()) {
      const key = labelKey(segment.label);
      let at = index.get(key);
      if (at === undefined) {
        at = labels.push(segment.label) - 1;
        index.set(key, at);
      }
      segments.push([segment.start, segment.end, at]);
    }
    return {
      version: 1,
      volumeBytes: this.volumeBytes,
      fsType: this.fsType,
      offsetInExport: this.offsetInExport,
      deviceBytes: this.deviceBytes,
      spaceMap: this.spaceMap,
      stats: this.stats,
      warnings: [...this.warnings],
      labels,
      segments,
    };
  }

  static fromJSON(json: GroundTruthJson): GroundTruth {
    assert.equal(json.version, 1, 'ground truth format version');
    const map = IntervalMap.fromSegments(json.segments.map(([start, end, label]) => ({ start, end, label: json.labels[label]! })));
    return new GroundTruth(map, json.volumeBytes, json.fsType, json.offsetInExport, json.deviceBytes, json.spaceMap, json.stats, json.warnings);
  }

  /** Bytes per origin over the whole volume. */
  totals(): Record<TruthOrigin, number> {
    const totals: Record<TruthOrigin, number> = { data: 0, metadata: 0, free: 0 };
    for (const segment of this.map.all()) totals[segment.label.origin] += segment.end - segment.start;
    return totals;
  }

  private checkRange(offset: number, length: number): void {
    assert.ok(Number.isSafeInteger(offset) && Number.isSafeInteger(length) && offset >= 0 && length > 0, 'a byte range');
    if (offset + length > this.volumeBytes) throw new RangeError(`range ${offset}+${length} is beyond the volume (${this.volumeBytes} bytes)`);
  }
}

export interface GroundTruthJson {
  version: 1;
  volumeBytes: number;
  fsType: string;
  offsetInExport: number;
  deviceBytes: number;
  spaceMap: GroundTruthParts['spaceMap'];
  stats: GroundTruthStats;
  warnings: string[];
  labels: TruthLabel[];
  segments: Array<[number, number, number]>;
}

function classificationOf(label: TruthLabel, bytes: number): Classification {
  const first = label.owners?.[0];
  const result: Classification = { origin: label.origin, kind: label.kind, bytes };
  if (first !== undefined) Object.assign(result, { fileSize: first.sizeBytes, path: first.path, owners: label.owners });
  return result;
}

function crossCheck(space: readonly LayeredInterval<TruthLabel>[], files: GroundTruthParts['files']): Omit<GroundTruthStats, 'files' | 'fileBytesMapped' | 'filesUnplaced'> {
  const result = { fileBytesOnFreeSpace: 0, fileBytesOnStaticMetadata: 0, fileBytesOwnerConfirmed: 0, fileBytesOwnerMismatch: 0 };
  if (space.length === 0) return result;
  const spaceMap = IntervalMap.build(space, (a) => a, (a, b) => a === b);
  // A reflinked (shared) extent has several owners; XFS's reverse map names one of them per record.
  const extentsByIno = new Map<number, GroundTruthParts['files'][number]['extents']>();
  for (const file of files) extentsByIno.set(file.owner.ino, [...(extentsByIno.get(file.owner.ino) ?? []), ...file.extents]);
  const alsoOwns = (ino: number, start: number, end: number) =>
    extentsByIno.get(ino)?.some((extent) => extent.volumeOffset < end && start < extent.volumeOffset + extent.length) ?? false;
  for (const file of files) {
    for (const extent of file.extents) {
      for (const segment of spaceMap.query(extent.volumeOffset, extent.length)) {
        const bytes = segment.end - segment.start;
        if (segment.label.origin === 'free' && segment.label.kind !== 'btrfs-data-unreferenced') result.fileBytesOnFreeSpace += bytes;
        const staticKind = STATIC_KINDS_NOT_FILE.has(segment.label.kind) || segment.label.kind.startsWith('btrfs-');
        if (segment.label.origin === 'metadata' && staticKind) result.fileBytesOnStaticMetadata += bytes;
        const inode = /^inode-(\d+)$/.exec(segment.label.kind);
        if (inode && (Number(inode[1]) === file.owner.ino || alsoOwns(Number(inode[1]), segment.start, segment.end))) result.fileBytesOwnerConfirmed += bytes;
        else if (inode) result.fileBytesOwnerMismatch += bytes;
      }
    }
  }
  return result;
}

/** Layer 2 (and 3): what the file system says about its own space, in volume offsets. */
function spaceIntervals(volume: FileSystemVolume, warnings: string[]): { kind: GroundTruthParts['spaceMap']; intervals: LayeredInterval<TruthLabel>[] } {
  if (volume.fsType === 'btrfs') return { kind: 'btrfs-chunks', intervals: btrfsSpace(volume) };
  const fd = fs.openSync(volume.mount.mountPoint, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
  let result: ReturnType<typeof readFsmap>;
  try {
    result = readFsmap(fd);
  } finally {
    fs.closeSync(fd);
  }
  if ('error' in result) {
    warnings.push(`${volume.fsType}: ${result.error}; without a space map everything that is not file data counts as metadata`);
    return { kind: 'none', intervals: [] };
  }
  const device = volume.volume.blockDeviceNumber;
  const records = result.records.filter((record) => record.device === 0 || sameDev(decodeKernelDev(record.device), device));
  return { kind: 'fsmap', intervals: records.map((record) => fsmapInterval(record, volume.volume.offsetInExport)) };
}

export function fsmapLabel(record: FsmapRecord): TruthLabel {
  if (record.special === 'free') return shared('free', 'free');
  if (record.special === 'unknown-owner') return shared('metadata', 'allocated');
  if (record.special !== null) return shared('metadata', record.special);
  if (record.flags & FsmapFlag.ATTR_FORK) return shared('metadata', 'attribute-fork');
  if (record.flags & FsmapFlag.EXTENT_MAP) return shared('metadata', 'extent-map');
  return shared('metadata', `inode-${record.owner}`);
}

function fsmapInterval(record: FsmapRecord, offsetInExport: number): LayeredInterval<TruthLabel> {
  const start = offsetInExport + record.physical;
  return { start, end: start + record.length, layer: LAYER_SPACE, label: fsmapLabel(record) };
}

export function btrfsSpaceIntervals(chunks: readonly BtrfsChunk[], deviceBytes: number, offsetInExport: number): LayeredInterval<TruthLabel>[] {
  const at = (offset: number) => offsetInExport + offset;
  const intervals: LayeredInterval<TruthLabel>[] = [{ start: at(0), end: at(deviceBytes), layer: LAYER_SPACE, label: shared('free', 'btrfs-unallocated') }];
  for (const chunk of chunks) {
    const kind = chunkKind(chunk);
    const label = kind === 'data' ? shared('free', 'btrfs-data-unreferenced') : shared('metadata', `btrfs-${kind}`);
    for (const stripe of chunk.stripes) intervals.push({ start: at(stripe.offset), end: at(stripe.offset + chunk.length), layer: LAYER_SPACE + 0.5, label });
  }
  intervals.push({ start: at(0), end: at(Math.min(MiB, deviceBytes)), layer: LAYER_RESERVED, label: shared('metadata', 'btrfs-reserved') });
  for (const superblock of BTRFS_SUPERBLOCKS) {
    if (superblock + BTRFS_SUPERBLOCK_BYTES > deviceBytes) continue;
    intervals.push({ start: at(superblock), end: at(superblock + BTRFS_SUPERBLOCK_BYTES), layer: LAYER_RESERVED + 0.5, label: shared('metadata', 'btrfs-superblock') });
  }
  return intervals;
}

function btrfsSpace(volume: FileSystemVolume): LayeredInterval<TruthLabel>[] {
  return btrfsSpaceIntervals(volume.btrfsChunks(), volume.deviceBytes, volume.volume.offsetInExport);
}

/** Every regular file under the mount (one entry per inode), mapped to the volume. Other mounts are skipped. */
function walkFiles(root: string, volume: FileSystemVolume, options: GroundTruthOptions, warnings: string[]): { files: GroundTruthParts['files']; unplaced: number } {
  const otherMounts = new Set(readMountInfo(localHost).map((mount) => mount.mountPoint).filter((point) => point !== root && point.startsWith(root === '/' ? '/' : root + '/')));
  const filesMax = options.filesMax ?? FILES_MAX_DEFAULT;
  const seen = new Set<string>();
  const files: GroundTruthParts['files'] = [];
  let unplaced = 0;
  const pending = [root];
  while (pending.length > 0) {
    const directory = pending.pop()!;
    for (const entry of fs.readdirSync(directory, { withFileTypes: true })) {
      const full = path.join(directory, entry.name);
      if (entry.isDirectory()) {
        if (!otherMounts.has(full)) pending.push(full);
        continue;
      }
      if (!entry.isFile()) continue;
      const stat = fs.lstatSync(full, { bigint: true });
      const identity = `${stat.dev}:${stat.ino}`;
      if (seen.has(identity)) continue;
      seen.add(identity);
      if (files.length >= filesMax) throw new Error(`more than ${filesMax} files under ${root}`);
      const mapped = mapFile(volume, full, stat, options, warnings);
      if (mapped === null) continue;
      files.push(mapped.file);
      if (mapped.unplaced) unplaced++;
    }
  }
  return { files, unplaced };
}

function mapFile(
  volume: FileSystemVolume,
  file: string,
  stat: fs.BigIntStats,
  options: GroundTruthOptions,
  warnings: string[],
): { file: GroundTruthParts['files'][number]; unplaced: boolean } | null {
  let map;
  try {
    map = volume.fileMap(file, { sync: options.sync ?? false });
  } catch (error) {
    warnings.push(`${file}: ${(error as Error).message}`);
    return null;
  }
  const owner: TruthOwner = { path: file, sizeBytes: Number(stat.size), ino: Number(stat.ino) };
  const extents = map.extents.map((extent) => ({ volumeOffset: extent.volumeOffset, length: extent.length }));
  return { file: { owner, extents }, unplaced: map.unplaced.length > 0 };
}
