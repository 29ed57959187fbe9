/**
 * btrfs places data in its own logical address space: FIEMAP's "physical" offsets are btrfs logical addresses, and
 * the chunk tree maps each logical chunk onto stripes on devices. This module reads the chunk tree (the
 * BTRFS_IOC_TREE_SEARCH ioctl on any file of the mounted file system, or `btrfs inspect-internal dump-tree -t chunk`
 * as a fallback) and translates logical ranges into device offsets.
 *
 * Profiles whose copies are whole (SINGLE, DUP, RAID1, RAID1C3, RAID1C4) are mapped: every copy is returned. Striped
 * profiles (RAID0, RAID10, RAID5, RAID6) are refused, as are multi-device file systems (we follow one device).
 */
import assert from 'node:assert/strict';
import { ioctl, errnoName, readSafeU64 } from './ioctl.js';

export const BTRFS_IOC_TREE_SEARCH = 0xd0009411;
const SEARCH_ARGS_BYTES = 4096;
const SEARCH_KEY_BYTES = 104;
const SEARCH_HEADER_BYTES = 32;
const CHUNK_TREE_ID = 3n;
const FIRST_CHUNK_TREE_OBJECTID = 256n;
const CHUNK_ITEM_KEY = 228;
const CHUNK_HEADER_BYTES = 48;
const STRIPE_BYTES = 32;
const SEARCH_CALLS_MAX = 1 << 16;

export const BlockGroupType = {
  DATA: 0x1,
  SYSTEM: 0x2,
  METADATA: 0x4,
  RAID0: 0x8,
  RAID1: 0x10,
  DUP: 0x20,
  RAID10: 0x40,
  RAID5: 0x80,
  RAID6: 0x100,
  RAID1C3: 0x200,
  RAID1C4: 0x400,
} as const;

const STRIPED = BlockGroupType.RAID0 | BlockGroupType.RAID10 | BlockGroupType.RAID5 | BlockGroupType.RAID6;

export interface BtrfsStripe {
  devid: number;
  /** Byte offset on that device. */
  offset: number;
}

export interface BtrfsChunk {
  /** Start in btrfs's logical address space. */
  logical: number;
  length: number;
  /** BlockGroupType bits. */
  type: number;
  stripes: BtrfsStripe[];
}

export interface DeviceRange {
  deviceOffset: number;
  length: number;
  /** Where in the btrfs logical range this piece starts. */
  logical: number;
  devid: number;
}

export function chunkKind(chunk: BtrfsChunk): 'data' | 'metadata' | 'system' {
  if (chunk.type & BlockGroupType.DATA) return 'data';
  if (chunk.type & BlockGroupType.SYSTEM) return 'system';
  return 'metadata';
}

/** Reads the chunk tree of the btrfs that `fd` (any file or directory on it) belongs to. Needs CAP_SYS_ADMIN. */
export function readChunksByIoctl(fd: number): BtrfsChunk[] {
  const buffer = Buffer.alloc(SEARCH_ARGS_BYTES);
  const chunks: BtrfsChunk[] = [];
  let nextOffset = 0n;
  for (let call = 0; call < SEARCH_CALLS_MAX; call++) {
    writeChunkSearchKey(buffer, nextOffset);
    const result = ioctl(fd, BTRFS_IOC_TREE_SEARCH, buffer);
    if (result === null) throw new Error('BTRFS_IOC_TREE_SEARCH: no libc binding (koffi)');
    if (result.rc !== 0) throw new Error(`BTRFS_IOC_TREE_SEARCH failed: ${errnoName(result.errno)}`);
    const batch = parseChunkSearchBuffer(buffer);
    if (batch.length === 0) return chunks;
    chunks.push(...batch);
    nextOffset = BigInt(batch[batch.length - 1]!.logical) + 1n;
  }
  throw new Error('BTRFS_IOC_TREE_SEARCH: chunk tree larger than the search bound');
}

export function writeChunkSearchKey(buffer: Buffer, minOffset: bigint): void {
  assert.equal(buffer.length, SEARCH_ARGS_BYTES);
  buffer.fill(0);
  const all = 0xffffffffffffffffn;
  buffer.writeBigUInt64LE(CHUNK_TREE_ID, 0); // tree_id
  buffer.writeBigUInt64LE(FIRST_CHUNK_TREE_OBJECTID, 8); // min_objectid
  buffer.writeBigUInt64LE(FIRST_CHUNK_TREE_OBJECTID, 16); // max_objectid
  buffer.writeBigUInt64LE(minOffset, 24); // min_offset
  buffer.writeBigUInt64LE(all, 32); // max_offset
  buffer.writeBigUInt64LE(0n, 40); // min_transid
  buffer.writeBigUInt64LE(all, 48); // max_transid
  buffer.writeUInt32LE(CHUNK_ITEM_KEY, 56); // min_type
  buffer.writeUInt32LE(CHUNK_ITEM_KEY, 60); // max_type
  buffer.writeUInt32LE(4096, 64); // nr_items: as many as fit
}

/** Decodes the items a TREE_SEARCH left in the buffer, keeping chunk items only. */
export function parseChunkSearchBuffer(buffer: Buffer): BtrfsChunk[] {
  const items = buffer.readUInt32LE(64);
  const chunks: BtrfsChunk[] = [];
  let at = SEARCH_KEY_BYTES;
  for (let index = 0; index < items; index++) {
    assert.ok(at + SEARCH_HEADER_BYTES <= buffer.length, 'search item header inside the buffer');
    const logical = readSafeU64(buffer, at + 16, 'chunk logical');
    const type = buffer.readUInt32LE(at + 24);
    const length = buffer.readUInt32LE(at + 28);
    const item = at + SEARCH_HEADER_BYTES;
    assert.ok(item + length <= buffer.length, 'search item inside the buffer');
    if (type === CHUNK_ITEM_KEY) chunks.push(parseChunkItem(buffer.subarray(item, item + length), logical));
    at = item + length;
  }
  return chunks;
}

/** struct btrfs_chunk: length, owner, stripe_len, type, io_align, io_width, sector_size, num_stripes, sub_stripes, stripes. */
export function parseChunkItem(item: Buffer, logical: number): BtrfsChunk {
  assert.ok(item.length >= CHUNK_HEADER_BYTES, 'chunk item header');
  const stripeCount = item.readUInt16LE(44);
  assert.ok(item.length >= CHUNK_HEADER_BYTES + stripeCount * STRIPE_BYTES, 'chunk item stripes');
  const stripes: BtrfsStripe[] = [];
  for (let index = 0; index < stripeCount; index++) {
    const at = CHUNK_HEADER_BYTES + index * STRIPE_BYTES;
    stripes.push({ devid: readSafeU64(item, at, 'devid'), offset: readSafeU64(item, at + 8, 'stripe offset') });
  }
  return { logical, length: readSafeU64(item, 0, 'chunk length'), type: Number(item.readBigUInt64LE(24)), stripes };
}

const TYPE_WORDS: Readonly<Record<string, number>> = {
  DATA: BlockGroupType.DATA,
  SYSTEM: BlockGroupType.SYSTEM,
  METADATA: BlockGroupType.METADATA,
  RAID0: BlockGroupType.RAID0,
  RAID1: BlockGroupType.RAID1,
  DUP: BlockGroupType.DUP,
  RAID10: BlockGroupType.RAID10,
  RAID5: BlockGroupType.RAID5,
  RAID6: BlockGroupType.RAID6,
  RAID1C3: BlockGroupType.RAID1C3,
  RAID1C4: BlockGroupType.RAID1C4,
  single: 0,
};

/**
 * Parses `btrfs inspect-internal dump-tree -t chunk DEVICE`:
 *   item 1 key (FIRST_CHUNK_TREE CHUNK_ITEM 13631488) itemoff 16105 itemsize 80
 *     length 8388608 owner 2 stripe_len 65536 type DATA|single
 *     …
 *       stripe 0 devid 1 offset 13631488
 */
export function parseDumpTreeChunks(text: string): BtrfsChunk[] {
  const chunks: BtrfsChunk[] = [];
  let current: BtrfsChunk | null = null;
  for (const line of text.split('\n')) {
    const key = /key \(FIRST_CHUNK_TREE CHUNK_ITEM (\d+)\)/.exec(line);
    if (key) {
      current = { logical: Number(key[1]), length: 0, type: 0, stripes: [] };
      chunks.push(current);
      continue;
    }
    if (/^\s*item \d+ key/.test(line)) current = null;
    if (current === null) continue;
    const header = /^\s*length (\d+) owner \d+ stripe_len \d+ type (\S+)/.exec(line);
    if (header) {
      current.length = Number(header[1]);
      current.type = header[2]!.split('|').reduce((bits, word) => bits | (TYPE_WORDS[word] ?? 0), 0);
    }
    const stripe = /^\s*stripe \d+ devid (\d+) offset (\d+)/.exec(line);
    if (stripe) current.stripes.push({ devid: Number(stripe[1]), offset: Number(stripe[2]) });
  }
  return chunks.sort((a, b) => a.logical - b.logical);
}

/** Every device a chunk list uses; the caller refuses more than one (multi-device btrfs is not mapped). */
export function chunkDevids(chunks: readonly BtrfsChunk[]): number[] {
  return [...new Set(chunks.flatMap((chunk) => chunk.stripes.map((stripe) => stripe.devid)))].sort((a, b) => a - b);
}

/** Translates [logical, logical+length) into device ranges: one per copy, split where chunks end. */
export function logicalToDevice(chunks: readonly BtrfsChunk[], logical: number, length: number): DeviceRange[] {
  const ranges: DeviceRange[] = [];
  let at = logical;
  const end = logical + length;
  while (at < end) {
    const chunk = findChunk(chunks, at);
    if (chunk === null) throw new Error(`btrfs logical ${at} is in no chunk`);
    if (chunk.type & STRIPED) throw new Error(`btrfs chunk at ${chunk.logical} is striped (type 0x${chunk.type.toString(16)}); not mapped`);
    const piece = Math.min(end, chunk.logical + chunk.length) - at;
    assert.ok(piece > 0, 'each chunk step makes progress');
    for (const stripe of chunk.stripes) {
      ranges.push({ deviceOffset: stripe.offset + (at - chunk.logical), length: piece, logical: at, devid: stripe.devid });
    }
    at += piece;
  }
  return ranges;
}

/** Binary search over chunks sorted by logical start. */
export function findChunk(chunks: readonly BtrfsChunk[], logical: number): BtrfsChunk | null {
  let low = 0;
  let high = chunks.length - 1;
  while (low <= high) {
    const middle = (low + high) >>> 1;
    const chunk = chunks[middle]!;
    if (logical < chunk.logical) high = middle - 1;
    else if (logical >= chunk.logical + chunk.length) low = middle + 1;
    else return chunk;
  }
  return null;
}
