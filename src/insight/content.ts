/**
 * Content sampling for the copy and encryption detectors: 4 KiB block fingerprints and byte entropy. Reading a
 * whole file back would double the I/O of the workload we are meant to watch cheaply, so both work on a bounded,
 * evenly spread sample of blocks.
 */
import assert from 'node:assert/strict';
import { hash } from 'node:crypto';

export const BLOCK_BYTES = 4096;
/** Upper bound of blocks read back per file for one check (256 KiB). */
export const SAMPLE_BLOCKS_MAX = 64;

export function fingerprint(block: Buffer): Buffer {
  assert.ok(block.length <= BLOCK_BYTES, 'a fingerprint covers at most one block');
  return hash('sha256', block, 'buffer');
}

/** Offsets of up to `limit` blocks spread evenly over [0, lengthBytes), always including the first and last. */
export function sampleBlockOffsets(lengthBytes: number, limit = SAMPLE_BLOCKS_MAX): number[] {
  assert.ok(lengthBytes >= 0 && limit >= 2);
  const blocks = Math.ceil(lengthBytes / BLOCK_BYTES);
  if (blocks <= limit) return Array.from({ length: blocks }, (_, i) => i * BLOCK_BYTES);
  const offsets = new Set<number>();
  for (let i = 0; i < limit; i++) offsets.add(Math.round((i * (blocks - 1)) / (limit - 1)) * BLOCK_BYTES);
  return [...offsets].sort((a, b) => a - b);
}

export type BlockReader = (offset: number, length: number) => Buffer | null;

/**
 * True when every sampled block of the first `lengthBytes` holds the same bytes in both files; null when a block
 * could not be read (the file vanished or shrank), which is not evidence either way.
 */
export function sameBlocks(source: BlockReader, target: BlockReader, lengthBytes: number): boolean | null {
  for (const offset of sampleBlockOffsets(lengthBytes)) {
    const length = Math.min(BLOCK_BYTES, lengthBytes - offset);
    const a = source(offset, length);
    const b = target(offset, length);
    if (!a || !b || a.length !== length || b.length !== length) return null;
    if (!a.equals(b)) return false;
  }
  return true;
}

/**
 * Shannon entropy in bits per byte with the Miller–Madow correction: the plain estimate is biased low on small
 * samples (4 KiB of random bytes reads ~7.95), which would put honest ciphertext near the 7.9 threshold.
 */
export function entropyBitsPerByte(data: Buffer): number {
  if (data.length === 0) return 0;
  const counts = new Uint32Array(256);
  for (const byte of data) counts[byte]++;
  let bits = 0;
  let seen = 0;
  for (const count of counts) {
    if (count === 0) continue;
    seen++;
    const p = count / data.length;
    bits -= p * Math.log2(p);
  }
  const correction = (seen - 1) / (2 * data.length * Math.LN2);
  return Math.min(8, bits + correction);
}

const ARMOR = /^-----BEGIN (PGP MESSAGE|AGE ENCRYPTED FILE|ENCRYPTED [A-Z ]+)-----\r?\n/;
/** Bare base64 lines (`openssl enc -a`, `age -a` bodies): every line at most 76 characters of the alphabet. */
const BASE64_LINES = /^(?:[A-Za-z0-9+/]{0,76}={0,2}\r?\n)+(?:[A-Za-z0-9+/]{0,76}={0,2})?$/;

/**
 * ASCII armour hides ciphertext behind base64 (6 bits/byte); measure what it encodes instead: a PGP/age/PEM armour
 * block, or text that is nothing but base64 lines. Returns `sample` itself when it is neither.
 */
export function unarmor(sample: Buffer): Buffer {
  const text = sample.toString('latin1');
  if (ARMOR.test(text)) {
    const body = text
      .split(/\r?\n/)
      .filter((line) => line.length > 0 && !line.startsWith('-----') && !/^[\w-]+: /.test(line) && !line.startsWith('='));
    return Buffer.from(body.join(''), 'base64');
  }
  // A cut-off sample may end inside a line: only whole lines are judged and decoded.
  const whole = text.slice(0, text.lastIndexOf('\n') + 1);
  if (whole.length >= 64 && BASE64_LINES.test(whole)) return Buffer.from(whole.replace(/\r?\n/g, ''), 'base64');
  return sample;
}

/** Reads an evenly spread sample of up to SAMPLE_BLOCKS_MAX blocks of a file of `sizeBytes`. */
export function readSample(read: BlockReader, sizeBytes: number): Buffer | null {
  const parts: Buffer[] = [];
  for (const offset of sampleBlockOffsets(sizeBytes)) {
    const block = read(offset, Math.min(BLOCK_BYTES, sizeBytes - offset));
    if (!block) return null;
    parts.push(block);
  }
  return Buffer.concat(parts);
}
