/**
 * FS_IOC_GETFSMAP: the file system's own map of its device — free space, static metadata (superblocks, group
 * descriptors, bitmaps, inode tables, the log), and allocated space with its owner when the file system keeps
 * reverse mappings (XFS with rmapbt; ext4 says "unknown owner" for every allocated block). ext4 and XFS answer it;
 * btrfs does not.
 *
 * struct fsmap_head { u32 iflags, oflags, count, entries; u64 reserved[6]; struct fsmap keys[2]; struct fsmap recs[]; }
 * struct fsmap { u32 device, flags; u64 physical, owner, offset, length; u64 reserved[3]; }
 */
import assert from 'node:assert/strict';
import { ioctl, errnoName, readSafeU64 } from './ioctl.js';

export const FS_IOC_GETFSMAP = 0xc0c0583b;
const HEAD_BYTES = 192;
const RECORD_BYTES = 64;
const KEYS_AT = 64;
const RECORDS_PER_CALL = 1024;
const CALLS_MAX = 1 << 20;

export const FsmapFlag = {
  PREALLOC: 0x1,
  ATTR_FORK: 0x2,
  EXTENT_MAP: 0x4,
  SHARED: 0x8,
  SPECIAL_OWNER: 0x10,
  LAST: 0x20,
} as const;

const special = (type: number, code: number): bigint => (BigInt(type) << 32n) | BigInt(code);
const X = 'X'.charCodeAt(0);
const F = 'f'.charCodeAt(0);

/** Special owners (linux/fsmap.h, XFS and ext4) and the names we give them. */
export const SPECIAL_OWNER_NAMES: ReadonlyMap<bigint, string> = new Map([
  [special(0, 1), 'free'],
  [special(0, 2), 'unknown-owner'],
  [special(0, 3), 'metadata'],
  [special(X, 1), 'fs-static'],
  [special(X, 2), 'log'],
  [special(X, 3), 'ag-metadata'],
  [special(X, 4), 'inode-btree'],
  [special(X, 5), 'inodes'],
  [special(X, 6), 'refcount-btree'],
  [special(X, 7), 'cow-staging'],
  [special(X, 8), 'defective'],
  [special(F, 1), 'group-descriptors'],
  [special(F, 2), 'reserved-gdt'],
  [special(F, 3), 'block-bitmap'],
  [special(F, 4), 'inode-bitmap'],
]);

export interface FsmapRecord {
  /** fmr_device (kernel dev_t encoding when the head's FMH_OF_DEV_T is set). */
  device: number;
  flags: number;
  /** Bytes on that device. */
  physical: number;
  length: number;
  /** Inode number, or a special owner (then `special` names it). */
  owner: bigint;
  special: string | null;
  /** Offset in the owner's file, for inode owners. */
  offset: number;
}

export function writeFsmapRequest(buffer: Buffer, count: number, after: Buffer | null): void {
  assert.ok(buffer.length >= HEAD_BYTES + count * RECORD_BYTES, 'GETFSMAP buffer too small');
  buffer.fill(0, 0, HEAD_BYTES);
  buffer.writeUInt32LE(count, 8); // fmh_count
  if (after !== null) after.copy(buffer, KEYS_AT, 0, RECORD_BYTES); // keys[0]: continue after the last record
  const high = KEYS_AT + RECORD_BYTES; // keys[1]: everything (reserved fields must stay zero)
  buffer.writeUInt32LE(0xffffffff, high);
  buffer.writeUInt32LE(0xffffffff, high + 4);
  buffer.writeBigUInt64LE(0xffffffffffffffffn, high + 8);
  buffer.writeBigUInt64LE(0xffffffffffffffffn, high + 16);
  buffer.writeBigUInt64LE(0xffffffffffffffffn, high + 24);
}

export function parseFsmapBuffer(buffer: Buffer): FsmapRecord[] {
  const entries = buffer.readUInt32LE(12);
  assert.ok(entries <= buffer.readUInt32LE(8), 'never more records than asked for');
  const records: FsmapRecord[] = [];
  for (let index = 0; index < entries; index++) {
    const at = HEAD_BYTES + index * RECORD_BYTES;
    const flags = buffer.readUInt32LE(at + 4);
    const owner = buffer.readBigUInt64LE(at + 16);
    records.push({
      device: buffer.readUInt32LE(at),
      flags,
      physical: readSafeU64(buffer, at + 8, 'fmr_physical'),
      owner,
      special: flags & FsmapFlag.SPECIAL_OWNER ? (SPECIAL_OWNER_NAMES.get(owner) ?? `owner-0x${owner.toString(16)}`) : null,
      offset: readSafeU64(buffer, at + 24, 'fmr_offset'),
      length: readSafeU64(buffer, at + 32, 'fmr_length'),
    });
  }
  return records;
}

/** The whole map of the file system `fd` (any file or directory on it) belongs to; null when it does not answer. */
export function readFsmap(fd: number): { records: FsmapRecord[] } | { error: string } {
  const buffer = Buffer.alloc(HEAD_BYTES + RECORDS_PER_CALL * RECORD_BYTES);
  const records: FsmapRecord[] = [];
  let after: Buffer | null = null;
  for (let call = 0; call < CALLS_MAX; call++) {
    writeFsmapRequest(buffer, RECORDS_PER_CALL, after);
    const result = ioctl(fd, FS_IOC_GETFSMAP, buffer);
    if (result === null) return { error: 'GETFSMAP: no libc binding (koffi)' };
    if (result.rc !== 0) return { error: `GETFSMAP failed: ${errnoName(result.errno)}` };
    const batch = parseFsmapBuffer(buffer);
    records.push(...batch);
    const last = batch[batch.length - 1];
    if (last === undefined || last.flags & FsmapFlag.LAST) return { records };
    const lastAt = HEAD_BYTES + (batch.length - 1) * RECORD_BYTES;
    after = Buffer.from(buffer.subarray(lastAt, lastAt + RECORD_BYTES));
  }
  return { error: 'GETFSMAP: more calls than the bound' };
}
