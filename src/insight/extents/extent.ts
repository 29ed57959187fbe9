/**
 * One extent of a file as FIEMAP reports it, its flag bits and what they mean for the extent's location. Shared by
 * the ioctl path (fiemap.ts) and the filefrag parser (filefrag.ts).
 */
import assert from 'node:assert/strict';

/** FIEMAP_EXTENT_* bits, and the names filefrag prints for them. */
export const ExtentFlag = {
  LAST: 0x1,
  UNKNOWN: 0x2,
  DELALLOC: 0x4,
  ENCODED: 0x8,
  DATA_ENCRYPTED: 0x80,
  NOT_ALIGNED: 0x100,
  DATA_INLINE: 0x200,
  DATA_TAIL: 0x400,
  UNWRITTEN: 0x800,
  MERGED: 0x1000,
  SHARED: 0x2000,
} as const;

export const FILEFRAG_FLAG_NAMES: Readonly<Record<string, number>> = {
  last: ExtentFlag.LAST,
  unknown_loc: ExtentFlag.UNKNOWN,
  delalloc: ExtentFlag.DELALLOC,
  encoded: ExtentFlag.ENCODED,
  encrypted: ExtentFlag.DATA_ENCRYPTED,
  not_aligned: ExtentFlag.NOT_ALIGNED,
  inline: ExtentFlag.DATA_INLINE,
  tail_packed: ExtentFlag.DATA_TAIL,
  unwritten: ExtentFlag.UNWRITTEN,
  merged: ExtentFlag.MERGED,
  shared: ExtentFlag.SHARED,
};

/**
 * Whether `physical` says where the file's bytes are:
 * - `mapped`: yes (also for unwritten, shared and encrypted extents: the place is right, the bytes may differ);
 * - `encoded`: the place holds an encoded form (compressed…); its on-disk length may differ from `length`;
 * - `inline`: the data sits inside a metadata block (inode, b-tree leaf); `physical` is that block or 0;
 * - `delalloc`: not allocated yet (FIEMAP_FLAG_SYNC forces allocation); `physical` is meaningless;
 * - `unknown`: the file system does not know or will not say; `physical` is meaningless.
 */
export type ExtentLocation = 'mapped' | 'encoded' | 'inline' | 'delalloc' | 'unknown';

export interface FileExtent {
  /** Byte offset in the file. */
  logical: number;
  /** Byte offset on the file system's device; null when `location` is delalloc or unknown. */
  physical: number | null;
  /** Bytes; whole blocks, so the last extent usually reaches past the end of the file. */
  length: number;
  /** FIEMAP_EXTENT_* bits. */
  flags: number;
  location: ExtentLocation;
}

export function extentLocation(flags: number): ExtentLocation {
  if (flags & ExtentFlag.DELALLOC) return 'delalloc';
  if (flags & ExtentFlag.DATA_INLINE) return 'inline';
  if (flags & ExtentFlag.UNKNOWN) return 'unknown';
  if (flags & ExtentFlag.ENCODED) return 'encoded';
  return 'mapped';
}

export function flagNames(flags: number): string[] {
  const names: string[] = [];
  for (const [name, bit] of Object.entries(FILEFRAG_FLAG_NAMES)) if (flags & bit) names.push(name);
  return names;
}

/** Builds a FileExtent from raw fields, nulling `physical` where it carries no place. */
export function makeExtent(logical: number, physical: number, length: number, flags: number): FileExtent {
  assert.ok(Number.isSafeInteger(logical) && logical >= 0, 'extent logical offset');
  assert.ok(Number.isSafeInteger(length) && length >= 0, 'extent length');
  const location = extentLocation(flags);
  const known = location !== 'delalloc' && location !== 'unknown';
  return { logical, physical: known ? physical : null, length, flags, location };
}

