import assert from 'node:assert/strict';

/** Binary multipliers, as qemu-img and nbdkit read them: "1K" is 1024 bytes, not 1000. */
const UNIT_SHIFT: Record<string, number> = { '': 0, b: 0, k: 10, m: 20, g: 30, t: 40, p: 50, e: 60 };

const SIZE_PATTERN = /^\s*(\d+(?:\.\d+)?)\s*([kmgtpe]?)(i?b?)\s*$/i;

/**
 * Parses a size given as bytes or as a string such as "512", "4K", "512M", "1G", "1.5GiB", "2TB".
 * Units are binary (K = 1024) whether or not an "i" is written, because disk sizes in configs mean that.
 * Throws RangeError for anything that is not a whole, non-negative, safe number of bytes.
 */
export function parseSize(value: number | string): number {
  if (typeof value === 'number') return checkedBytes(value, String(value));
  const match = SIZE_PATTERN.exec(value);
  if (match === null) throw new RangeError(`not a size: "${value}" (expected e.g. 4096, "512M", "1G")`);
  const unit = match[2]!.toLowerCase();
  if (match[3]!.toLowerCase() === 'i') throw new RangeError(`not a size: "${value}" ("i" must be followed by "B")`);
  const shift = UNIT_SHIFT[unit];
  assert.ok(shift !== undefined);
  return checkedBytes(Number(match[1]) * 2 ** shift, value);
}

function checkedBytes(bytes: number, shown: string): number {
  if (!Number.isSafeInteger(bytes) || bytes < 0) {
    throw new RangeError(`size "${shown}" is not a whole number of bytes between 0 and 2^53-1`);
  }
  return bytes;
}
