/**
 * Block fingerprints: XXH3-128 (seed 0) of each 4 KiB block, in the canonical big-endian byte order that xxhsum
 * prints. The tracer fingerprints the blocks a write() covered and sends them as hex; the classify layer computes
 * the same function over each whole 4 KiB block of an incoming block write and matches. iDedup reuses the bytes.
 *
 * Two implementations of the one function: a WebAssembly SIMD hasher for 4 KiB blocks (xxh3-wasm.ts: many blocks
 * per call, nothing allocated per block) and @node-rs/xxhash (a prebuilt native xxhash-rust; any length, but one
 * call and one BigInt per block, and its xxh3 runs at ~2 GB/s here). Blocks go to the first when the runtime has
 * WebAssembly SIMD (Node 20 does), otherwise to the second; both give the same bytes (tested).
 */
import assert from 'node:assert/strict';
import { xxh3 } from '@node-rs/xxhash';
import { createWasmBlockHasher, type Xxh3BlockHasher } from './xxh3-wasm.js';

/** Bytes covered by one fingerprint; also the dedup block size. */
export const FINGERPRINT_BLOCK_BYTES = 4096;
/**
 * Block sizes a tracer may fingerprint in. 4 KiB is the rule; a file system with smaller blocks (ext4 formats volumes
 * under 512 MiB with 1 KiB blocks) places a file's data at any multiple of its block size, so its 4 KiB pieces do not
 * fall on the volume's 4 KiB blocks and only fingerprints in its own block size can match what it writes.
 */
export const FINGERPRINT_BLOCK_SIZES = [1024, 2048, 4096] as const;
export type FingerprintBlockBytes = (typeof FINGERPRINT_BLOCK_SIZES)[number];
/** Bytes of one fingerprint (128 bits). */
export const FINGERPRINT_BYTES = 16;
/** Hex characters of one fingerprint. */
export const FINGERPRINT_HEX_CHARS = 32;

const MASK_64 = (1n << 64n) - 1n;

/** XXH3-128 of a whole buffer (any length) as a BigInt. */
export function fingerprint128(bytes: Uint8Array): bigint {
  return xxh3.xxh128(bytes);
}

/** Fingerprint of `block` (any length; the hint channel uses 4 KiB) as 32 lowercase hex digits. */
export function fingerprintHex(block: Uint8Array): string {
  return xxh3.xxh128(block).toString(16).padStart(FINGERPRINT_HEX_CHARS, '0');
}

/** The per-block fallback: @node-rs/xxhash, one call and one BigInt per block. */
export const nodeRsBlockHasher: Xxh3BlockHasher = nodeRsHasherOf(FINGERPRINT_BLOCK_BYTES);

/** SKY_FINGERPRINT_IMPL=node-rs forces the fallback (benchmarks, or a runtime where the WebAssembly path misbehaves). */
const wasmBlockHasher = process.env.SKY_FINGERPRINT_IMPL === 'node-rs' ? null : createWasmBlockHasher();
const blockHasher: Xxh3BlockHasher = wasmBlockHasher ?? nodeRsBlockHasher;

/** Which implementation hashes blocks in this process. */
export const FINGERPRINT_IMPLEMENTATION: 'wasm-simd' | 'node-rs' = wasmBlockHasher ? 'wasm-simd' : 'node-rs';

/**
 * Fingerprints `count` consecutive blocks of `blockBytes` (4 KiB unless the sender fingerprints smaller blocks) of
 * `data` starting at byte `dataOffset`, writing 16 bytes per block into `out` from `outOffset`.
 */
export function fingerprintBlocks(
  data: Uint8Array, dataOffset: number, count: number, out: Uint8Array, outOffset: number, blockBytes: FingerprintBlockBytes = FINGERPRINT_BLOCK_BYTES,
): void {
  assert.ok(dataOffset >= 0 && dataOffset + count * blockBytes <= data.length, 'blocks beyond the data');
  assert.ok(outOffset >= 0 && outOffset + count * FINGERPRINT_BYTES <= out.length, 'fingerprint buffer too short');
  (blockBytes === FINGERPRINT_BLOCK_BYTES ? blockHasher : smallBlockHasher(blockBytes)).hashBlocks(data, dataOffset, count, out, outOffset);
}

/** Hex fingerprints of the whole 4 KiB blocks of `data` (what a tracer sends in WriteFingerprints). */
export function fingerprintBlocksHex(data: Uint8Array): string[] {
  const count = Math.floor(data.length / FINGERPRINT_BLOCK_BYTES);
  const out = new Uint8Array(count * FINGERPRINT_BYTES);
  fingerprintBlocks(data, 0, count, out, 0);
  const hexes: string[] = [];
  for (let k = 0; k < count; k++) hexes.push(encodeFingerprintHex(out, k * FINGERPRINT_BYTES));
  return hexes;
}

const HEX_PATTERN = /^[0-9a-fA-F]{32}$/;

/** True when `text` is a well-formed fingerprint (32 hex digits). */
export function isFingerprintHex(text: string): boolean {
  return HEX_PATTERN.test(text);
}

function hexDigit(code: number): number {
  if (code >= 48 && code <= 57) return code - 48;
  if (code >= 97 && code <= 102) return code - 87;
  if (code >= 65 && code <= 70) return code - 55;
  return -1;
}

/** Decodes 32 hex digits into `out[outOffset..+16)`; returns false (and writes nothing useful) on a bad digit. */
export function decodeFingerprintHex(text: string, out: Uint8Array, outOffset: number): boolean {
  if (text.length !== FINGERPRINT_HEX_CHARS) return false;
  for (let i = 0; i < FINGERPRINT_BYTES; i++) {
    const high = hexDigit(text.charCodeAt(2 * i));
    const low = hexDigit(text.charCodeAt(2 * i + 1));
    if (high < 0 || low < 0) return false;
    out[outOffset + i] = (high << 4) | low;
  }
  return true;
}

const HEX_BYTE: readonly string[] = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

/** The hex form of the fingerprint at `bytes[offset..+16)`. */
export function encodeFingerprintHex(bytes: Uint8Array, offset: number): string {
  let text = '';
  for (let i = 0; i < FINGERPRINT_BYTES; i++) text += HEX_BYTE[bytes[offset + i]!];
  return text;
}

/**
 * Quick keys: a 32-bit digest of 16 words sampled across a 4 KiB block, ~30 ns in plain JavaScript against ~0.5 µs
 * for the XXH3-128 of the block (plus its copy into WebAssembly memory). A tracer sends each fingerprint's quick
 * key with it (WriteFingerprints.quickKeys); the engine keeps a counting filter of the keys it holds and hashes a
 * written block only when its key is in the filter. Equal blocks have equal keys, so the filter never hides a
 * match; different blocks may share one, which only costs a hash. Not a fingerprint: never trusted for equality.
 *
 * The sampled words sit one per 256-byte stripe at a different place in each, so that a 4 KiB block of repeated
 * 256-byte records (inodes, directory entries) is not sampled at the same field every time.
 */
export const QUICK_KEY_WORDS = 16;
/** Where the words are sampled in a block of each size: one per 1/16th stripe (256 bytes for 4 KiB). */
function quickKeyOffsets(blockBytes: number): readonly number[] {
  const stripe = blockBytes / QUICK_KEY_WORDS;
  return Array.from({ length: QUICK_KEY_WORDS }, (_, i) => i * stripe + ((i * 76 + 12) % (stripe - 4)));
}
const QUICK_KEY_OFFSETS_BY_SIZE = new Map<number, readonly number[]>(FINGERPRINT_BLOCK_SIZES.map((size) => [size, quickKeyOffsets(size)]));
/** The 4 KiB table, read without the map lookup on the engine's hot path. */
const QUICK_KEY_OFFSETS = QUICK_KEY_OFFSETS_BY_SIZE.get(FINGERPRINT_BLOCK_BYTES)!;

/** Quick key of the block at `data[offset..+blockBytes)` (4 KiB unless the sender fingerprints smaller blocks), an unsigned 32-bit integer. */
export function quickKey(data: Uint8Array, offset: number, blockBytes: FingerprintBlockBytes = FINGERPRINT_BLOCK_BYTES): number {
  assert.ok(offset >= 0 && offset + blockBytes <= data.length, 'quick key of a block beyond the data');
  const offsets = blockBytes === FINGERPRINT_BLOCK_BYTES ? QUICK_KEY_OFFSETS : QUICK_KEY_OFFSETS_BY_SIZE.get(blockBytes)!;
  let h = 0x9747b28c;
  for (let i = 0; i < QUICK_KEY_WORDS; i++) {
    const at = offset + offsets[i]!;
    // Words are read byte by byte: a Buffer from a socket has any alignment, and a view would allocate.
    let k = data[at]! | (data[at + 1]! << 8) | (data[at + 2]! << 16) | (data[at + 3]! << 24);
    // murmur3's block mix and finalizer: every sampled bit moves every key bit.
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    h ^= Math.imul(k, 0x1b873593);
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Quick keys of the whole 4 KiB blocks of `data` (what a tracer sends with fingerprintBlocksHex(data)). */
export function quickKeysOf(data: Uint8Array): number[] {
  const keys: number[] = [];
  for (let at = 0; at + FINGERPRINT_BLOCK_BYTES <= data.length; at += FINGERPRINT_BLOCK_BYTES) keys.push(quickKey(data, at));
  return keys;
}

/** Fingerprint of a 4 KiB block of zeroes: ambiguous (every sparse file has it), so never registered. */
export const ZERO_BLOCK_FINGERPRINT_HEX = fingerprintHex(new Uint8Array(FINGERPRINT_BLOCK_BYTES));

const ZERO_BLOCK_HEX = new Map<number, string>(FINGERPRINT_BLOCK_SIZES.map((size) => [size, fingerprintHex(new Uint8Array(size))]));

/** Fingerprint of a block of zeroes of that size (never registered, like ZERO_BLOCK_FINGERPRINT_HEX). */
export function zeroBlockFingerprintHex(blockBytes: FingerprintBlockBytes): string {
  return ZERO_BLOCK_HEX.get(blockBytes)!;
}

/** Hashers of blocks under 4 KiB, made when first needed (only volumes with such file systems need them). */
const smallBlockHashers = new Map<number, Xxh3BlockHasher>();

function smallBlockHasher(blockBytes: 1024 | 2048): Xxh3BlockHasher {
  let hasher = smallBlockHashers.get(blockBytes);
  if (hasher === undefined) {
    hasher = (wasmBlockHasher ? createWasmBlockHasher(blockBytes) : null) ?? nodeRsHasherOf(blockBytes);
    smallBlockHashers.set(blockBytes, hasher);
  }
  return hasher;
}

function nodeRsHasherOf(blockBytes: number): Xxh3BlockHasher {
  return {
    hashBlocks(data, dataOffset, count, out, outOffset) {
      const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
      for (let block = 0; block < count; block++) {
        const start = dataOffset + block * blockBytes;
        const hash = xxh3.xxh128(data.subarray(start, start + blockBytes));
        const at = outOffset + block * FINGERPRINT_BYTES;
        view.setBigUint64(at, hash >> 64n);
        view.setBigUint64(at + 8, hash & MASK_64);
      }
    },
  };
}
