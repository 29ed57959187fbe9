import { describe, expect, it } from 'vitest';
import { SeededRandom } from '../../../src/device/prng.js';
import {
  FINGERPRINT_BLOCK_BYTES, FINGERPRINT_IMPLEMENTATION, ZERO_BLOCK_FINGERPRINT_HEX, decodeFingerprintHex, encodeFingerprintHex,
  fingerprintBlocks, fingerprintBlocksHex, fingerprintHex, nodeRsBlockHasher, quickKey, zeroBlockFingerprintHex,
} from '../../../src/semantics/fingerprint.js';
import { WASM_BLOCKS_PER_CALL, createWasmBlockHasher } from '../../../src/semantics/xxh3-wasm.js';
import { FingerprintTable, NO_OWNER } from '../../../src/semantics/fingerprint-table.js';
import { parseSemanticMessage } from '../../../src/semantics/messages.js';

function key(n: number): Uint8Array {
  const bytes = new Uint8Array(16);
  const view = new DataView(bytes.buffer);
  // Spread n over all words so that keys collide in the low bits of the first word now and then.
  view.setUint32(0, Math.imul(n, 2654435761) >>> 0);
  view.setUint32(4, n);
  view.setUint32(8, n ^ 0x5a5a5a5a);
  view.setUint32(12, 7);
  return bytes;
}

describe('fingerprints', () => {
  it('are XXH3-128 in canonical hex (known test vector) and round-trip through bytes', () => {
    expect(fingerprintHex(new Uint8Array(0))).toBe('99aa06d3014798d86001c324468d497f');
    const block = new Uint8Array(FINGERPRINT_BLOCK_BYTES).map((_, i) => (i * 7) & 0xff);
    const hex = fingerprintHex(block);
    const out = new Uint8Array(32);
    fingerprintBlocks(block, 0, 1, out, 16);
    expect(encodeFingerprintHex(out, 16)).toBe(hex);
    const back = new Uint8Array(16);
    expect(decodeFingerprintHex(hex.toUpperCase(), back, 0)).toBe(true);
    expect(encodeFingerprintHex(back, 0)).toBe(hex);
    expect(decodeFingerprintHex('zz' + hex.slice(2), back, 0)).toBe(false);
    expect(ZERO_BLOCK_FINGERPRINT_HEX).toBe(fingerprintHex(new Uint8Array(4096)));
  });
});

describe('quick keys', () => {
  it('are a fixed function of the block (agent and engine must agree: known vector), wherever the block sits', () => {
    const block = new Uint8Array(FINGERPRINT_BLOCK_BYTES).map((_, i) => (i * 7) & 0xff);
    expect(quickKey(block, 0)).toBe(3448725081);
    const shifted = new Uint8Array(FINGERPRINT_BLOCK_BYTES + 3);
    shifted.set(block, 3);
    expect(quickKey(shifted, 3)).toBe(3448725081);
    expect(quickKey(Buffer.from(shifted.buffer, 3, FINGERPRINT_BLOCK_BYTES), 0)).toBe(3448725081);
    expect(() => quickKey(shifted, 4)).toThrow(/beyond the data/);
  });

  it('spread random blocks over all 32 bits, and see a change in any 256-byte stripe', () => {
    const random = new SeededRandom(5);
    const keys = new Set<number>();
    const block = new Uint8Array(FINGERPRINT_BLOCK_BYTES);
    const words = new Uint32Array(block.buffer);
    for (let n = 0; n < 20_000; n++) {
      for (let i = 0; i < words.length; i++) words[i] = random.nextU32();
      const k = quickKey(block, 0);
      expect(Number.isInteger(k) && k >= 0 && k <= 0xffffffff).toBe(true);
      keys.add(k);
    }
    expect(keys.size).toBeGreaterThan(19_990); // ~0.05 collisions expected among 20k random 32-bit keys
    // One word is sampled in each 256-byte stripe: flipping that stripe entirely changes the key.
    for (let stripe = 0; stripe < 16; stripe++) {
      const before = quickKey(block, 0);
      for (let i = stripe * 256; i < (stripe + 1) * 256; i++) block[i] ^= 0xff;
      expect(quickKey(block, 0)).not.toBe(before);
    }
  });
});

describe('blocks under 4 KiB (file systems with 1 or 2 KiB blocks)', () => {
  it('fingerprint each block of that size as XXH3-128 of its bytes; 4 KiB goes to the block hasher', () => {
    const data = new Uint8Array(8192).map((_, i) => (i * 13 + 5) & 0xff);
    for (const unit of [1024, 2048, 4096] as const) {
      const count = data.length / unit;
      const out = new Uint8Array(count * 16);
      fingerprintBlocks(data, 0, count, out, 0, unit);
      for (let k = 0; k < count; k++) expect(encodeFingerprintHex(out, k * 16)).toBe(fingerprintHex(data.subarray(k * unit, (k + 1) * unit)));
      expect(zeroBlockFingerprintHex(unit)).toBe(fingerprintHex(new Uint8Array(unit)));
    }
    expect(zeroBlockFingerprintHex(4096)).toBe(ZERO_BLOCK_FINGERPRINT_HEX);
    expect(() => fingerprintBlocks(data, 7 * 1024 + 1, 1, new Uint8Array(16), 0, 1024)).toThrow(/beyond the data/);
  });

  it('have quick keys sampled within the block (the 4 KiB key is unchanged) that see a change in any 1/16th of it', () => {
    const block = new Uint8Array(FINGERPRINT_BLOCK_BYTES).map((_, i) => (i * 7) & 0xff);
    expect(quickKey(block, 0, 4096)).toBe(3448725081);
    for (const unit of [1024, 2048] as const) {
      const small = block.subarray(0, unit).slice();
      const stripe = unit / 16;
      for (let k = 0; k < 16; k++) {
        const before = quickKey(small, 0, unit);
        for (let i = k * stripe; i < (k + 1) * stripe; i++) small[i] ^= 0xff;
        expect(quickKey(small, 0, unit)).not.toBe(before);
      }
      expect(() => quickKey(small, 1, unit)).toThrow(/beyond the data/);
    }
  });
});

describe('the WebAssembly XXH3-128 block hasher', () => {
  it('is what Node 20 uses', () => {
    expect(FINGERPRINT_IMPLEMENTATION).toBe(process.env.SKY_FINGERPRINT_IMPL === 'node-rs' ? 'node-rs' : 'wasm-simd');
  });

  it('agrees bit for bit with @node-rs/xxhash, across call windows and at any offsets', () => {
    const wasm = createWasmBlockHasher()!;
    const random = new SeededRandom(9);
    const count = WASM_BLOCKS_PER_CALL + 44;
    const data = new Uint8Array(count * FINGERPRINT_BLOCK_BYTES + 100);
    for (let i = 0; i < data.length; i++) data[i] = Math.floor(random.nextFloat() * 256);
    data.fill(0, 100, 100 + FINGERPRINT_BLOCK_BYTES); // a zero block
    data.fill(0xff, 100 + FINGERPRINT_BLOCK_BYTES, 100 + 2 * FINGERPRINT_BLOCK_BYTES);
    const fromWasm = new Uint8Array(count * 16 + 8);
    const fromNodeRs = new Uint8Array(count * 16 + 8);
    wasm.hashBlocks(data, 100, count, fromWasm, 8);
    nodeRsBlockHasher.hashBlocks(data, 100, count, fromNodeRs, 8);
    expect(Buffer.from(fromWasm).equals(Buffer.from(fromNodeRs))).toBe(true);
    expect(encodeFingerprintHex(fromWasm, 8)).toBe(ZERO_BLOCK_FINGERPRINT_HEX);
    expect(encodeFingerprintHex(fromWasm, 8 + 16 * 7)).toBe(fingerprintHex(data.subarray(100 + 7 * 4096, 100 + 8 * 4096)));
    expect(fingerprintBlocksHex(data.subarray(100, 100 + 3 * 4096 + 5))).toEqual([0, 1, 2].map((k) => fingerprintHex(data.subarray(100 + k * 4096, 100 + (k + 1) * 4096))));
  });

  it('built for 1 and 2 KiB blocks, agrees with @node-rs/xxhash too, across its (larger) call windows', () => {
    const random = new SeededRandom(11);
    for (const unit of [1024, 2048] as const) {
      const wasm = createWasmBlockHasher(unit)!;
      const count = (WASM_BLOCKS_PER_CALL * 4096) / unit + 9;
      const data = new Uint8Array(count * unit + 3);
      for (let i = 0; i < data.length; i++) data[i] = Math.floor(random.nextFloat() * 256);
      const out = new Uint8Array(count * 16);
      wasm.hashBlocks(data, 3, count, out, 0);
      for (const k of [0, 1, count / 2 | 0, count - 1]) {
        expect(encodeFingerprintHex(out, k * 16)).toBe(fingerprintHex(data.subarray(3 + k * unit, 3 + (k + 1) * unit)));
      }
    }
    expect(() => createWasmBlockHasher(512 as 1024)).toThrow(/512-byte blocks/);
  });
});

describe('FingerprintTable', () => {
  it('finds, replaces and removes entries', () => {
    const table = new FingerprintTable(100);
    table.insert(key(1), 0, 5, 1000, 0, null);
    table.insert(key(2), 0, 6, 1000, 0, null);
    expect(table.lookup(key(1), 0, 10)).toBe(5);
    expect(table.lookup(key(2), 0, 10)).toBe(6);
    expect(table.lookup(key(3), 0, 10)).toBe(NO_OWNER);
    table.insert(key(1), 0, 9, 1000, 0, null);
    expect(table.lookup(key(1), 0, 10)).toBe(9);
    expect(table.size).toBe(2);
    expect(table.remove(key(1), 0, 5)).toBe(false); // owned by 9 now
    expect(table.remove(key(1), 0, 9)).toBe(true);
    expect(table.lookup(key(1), 0, 10)).toBe(NO_OWNER);
    expect(table.size).toBe(1);
  });

  it('expires entries at their deadline', () => {
    const table = new FingerprintTable(100);
    table.insert(key(1), 0, 1, 500, 0, null);
    table.insert(key(2), 0, 2, 1500, 0, null);
    expect(table.lookup(key(1), 0, 499)).toBe(1);
    expect(table.lookup(key(1), 0, 500)).toBe(NO_OWNER);
    expect(table.size).toBe(1); // removed on the failed lookup
    expect(table.sweep(2000)).toBe(1);
    expect(table.size).toBe(0);
    expect(table.stats()).toMatchObject({ expired: 2, inserted: 2 });
  });

  it('stays bounded: a full table sweeps expired entries, then evicts those expiring soonest', () => {
    const table = new FingerprintTable(1000);
    for (let n = 0; n < 1000; n++) table.insert(key(n), 0, 1, n < 100 ? 50 : 10_000 + n, 0, null);
    expect(table.size).toBe(1000);
    // The 100 expired at 50 are swept; a sweep that frees less than a quarter also evicts down to 3/4 full.
    table.insert(key(5000), 0, 2, 20_000, 100, null);
    expect(table.stats().expired).toBe(100);
    expect(table.stats().evicted).toBeGreaterThan(100);
    expect(table.stats().evicted).toBeLessThan(200);
    expect(table.size).toBeGreaterThan(700); // 3/4 full, give or take the sampled threshold
    expect(table.size).toBeLessThan(800);
    for (let n = 6000; n < 6200; n++) table.insert(key(n), 0, 3, 30_000, 100, null);
    expect(table.size).toBeLessThanOrEqual(1000);
    // Evicted first: the soonest-expiring (the lowest n); the newest and latest-expiring are kept.
    expect(table.lookup(key(100), 0, 100)).toBe(NO_OWNER);
    expect(table.lookup(key(999), 0, 100)).toBe(1);
    expect(table.lookup(key(6199), 0, 100)).toBe(3);
    expect(table.lookup(key(5000), 0, 100)).toBe(2);
  });

  it('evicts among equal deadlines without emptying the table', () => {
    const table = new FingerprintTable(1000);
    for (let n = 0; n < 1001; n++) table.insert(key(n), 0, 1, 10_000, 0, null);
    expect(table.size).toBeGreaterThan(700);
    expect(table.size).toBeLessThanOrEqual(1000);
    expect(table.lookup(key(1000), 0, 1)).toBe(1);
  });

  it('keeps its presence filter exact through saturation, removal and expiry', () => {
    // 512 keys share one second word, so their presence counter saturates at 255 (a wrapping counter would read 0
    // here); removing all but one must not make the last one look absent (a saturated counter stays "maybe").
    const sameSecondWord = (n: number) => {
      const bytes = key(n);
      new DataView(bytes.buffer).setUint32(4, 0xabcdef);
      return bytes;
    };
    const table = new FingerprintTable(1024);
    for (let n = 0; n < 512; n++) table.insert(sameSecondWord(n), 0, n % 7, 1e12, 0, null);
    for (let n = 0; n < 512; n += 97) expect(table.lookup(sameSecondWord(n), 0, 0)).toBe(n % 7);
    for (let n = 0; n < 511; n++) expect(table.remove(sameSecondWord(n), 0, NO_OWNER)).toBe(true);
    expect(table.lookup(sameSecondWord(511), 0, 0)).toBe(511 % 7);
    expect(table.lookup(sameSecondWord(1000), 0, 0)).toBe(NO_OWNER);
    // Below saturation the counter goes back to zero and up again: expiry removes through the same path.
    table.insert(key(5), 0, 3, 100, 0, null);
    expect(table.lookup(key(5), 0, 99)).toBe(3);
    expect(table.lookup(key(5), 0, 100)).toBe(NO_OWNER);
    expect(table.size).toBe(1);
    table.insert(key(5), 0, 4, 200, 100, null);
    expect(table.lookup(key(5), 0, 150)).toBe(4);
  });

  it('says a quick key is absent only when no live entry has it, through removal, expiry and eviction', () => {
    const table = new FingerprintTable(64);
    expect(table.mayHold(7)).toBe(false);
    table.insert(key(1), 0, 1, 100, 0, 7);
    table.insert(key(2), 0, 1, 200, 0, 7);
    table.insert(key(3), 0, 1, 200, 0, 9);
    expect([table.mayHold(7), table.mayHold(9), table.mayHold(8)]).toEqual([true, true, false]);
    expect(table.remove(key(2), 0, NO_OWNER)).toBe(true);
    expect(table.mayHold(7)).toBe(true); // key(1) still has it
    expect(table.lookup(key(1), 0, 100)).toBe(NO_OWNER); // expired, and dropped by the lookup
    expect(table.mayHold(7)).toBe(false);
    // An entry without a key makes every key "maybe" while it lives; given its key later, it counts under it.
    table.insert(key(4), 0, 2, 300, 0, null);
    expect(table.stats().unkeyed).toBe(1);
    expect(table.mayHold(12345)).toBe(true);
    table.insert(key(4), 0, 2, 300, 0, 11);
    expect(table.stats().unkeyed).toBe(0);
    expect([table.mayHold(11), table.mayHold(12345)]).toEqual([true, false]);
    expect(table.sweep(1000)).toBe(2);
    expect([table.mayHold(9), table.mayHold(11)]).toEqual([false, false]);
    // Eviction removes through the same path: after overfilling, exactly the live entries' keys are held.
    for (let n = 0; n < 200; n++) table.insert(key(100 + n), 0, 3, 10_000 + n, 2000, 1000 + n);
    const live = Array.from({ length: 200 }, (_, n) => n).filter((n) => table.lookup(key(100 + n), 0, 2000) !== NO_OWNER);
    expect(live.length).toBe(table.size);
    for (const n of live) expect(table.mayHold(1000 + n)).toBe(true);
    const gone = Array.from({ length: 200 }, (_, n) => n).filter((n) => !live.includes(n));
    expect(gone.length).toBeGreaterThan(100);
    // Keys map to counters modulo the filter's size (4 per slot, 128 slots here): 1000..1199 do not collide.
    for (const n of gone) expect(table.mayHold(1000 + n)).toBe(false);
  });

  it('matches a Map model under random inserts, removals and lookups (backward-shift deletion)', () => {
    const random = new SeededRandom(42);
    const table = new FingerprintTable(4096);
    const model = new Map<number, number>();
    for (let step = 0; step < 50_000; step++) {
      const n = Math.floor(random.nextFloat() * 3000);
      const roll = random.nextFloat();
      if (roll < 0.5) {
        const owner = Math.floor(random.nextFloat() * 100);
        // Entry n's quick key is n (equal blocks, equal keys), so the filter can be checked against the model.
        table.insert(key(n), 0, owner, 1e12, 0, n);
        model.set(n, owner);
      } else if (roll < 0.75) {
        expect(table.remove(key(n), 0, NO_OWNER)).toBe(model.delete(n));
      } else {
        expect(table.lookup(key(n), 0, 0)).toBe(model.get(n) ?? NO_OWNER);
      }
    }
    expect(table.size).toBe(model.size);
    for (const [n, owner] of model) expect(table.lookup(key(n), 0, 0)).toBe(owner);
    // 3000 keys over 4 × 8192 counters: none collide, so the filter holds exactly the model's keys.
    for (let n = 0; n < 3000; n++) expect(table.mayHold(n)).toBe(model.has(n));
  });
});

describe('parseSemanticMessage', () => {
  const hex = 'a'.repeat(32);

  it('accepts every message type and ignores unknown fields', () => {
    const messages = [
      { type: 'FileExtents', fileId: 'f', path: '/a', size: 10, extents: [{ volumeOffset: 0, length: 4096 }], future: 1 },
      { type: 'WriteFingerprints', fileId: 'f', blockSize: 4096, fingerprints: [hex], ttlMs: 30000 },
      { type: 'FileClass', fileId: 'f', size: 10, ioClass: 4 },
      { type: 'FilePattern', fileId: 'f', pattern: 'copy', sourceFileId: 'g' },
      { type: 'FileGone', fileId: 'f', cause: 'unlink' },
      { type: 'AppHint', fileId: 'f', ioClass: 2, v: 1 },
      { type: 'CopyFingerprints', sourceFileId: 'f', targetFileId: 'g' },
    ];
    for (const m of messages) {
      const parsed = parseSemanticMessage(m);
      expect(parsed.ok, JSON.stringify(parsed)).toBe(true);
      if (parsed.ok) expect(parsed.message).not.toHaveProperty('future');
    }
  });

  it('names the field that is wrong', () => {
    expect(parseSemanticMessage({ type: 'Nope' })).toEqual({
      ok: false,
      error: 'unknown message type "Nope" (known: FileExtents, WriteFingerprints, FileClass, FilePattern, FileGone, AppHint, CopyFingerprints, Tracing, DataRegions)',
    });
    const bad = parseSemanticMessage({ type: 'FileExtents', fileId: 'f', path: '/a', size: 10, extents: [{ volumeOffset: 0, length: 0 }] });
    expect(bad).toEqual({ ok: false, error: 'FileExtents.extents.0.length: extents are not empty' });
    const badHex = parseSemanticMessage({ type: 'WriteFingerprints', fileId: 'f', blockSize: 4096, fingerprints: ['xyz'], ttlMs: 1 });
    expect(badHex).toEqual({ ok: false, error: 'WriteFingerprints.fingerprints.0: a fingerprint is 32 hex digits' });
    const fewerKeys = parseSemanticMessage({ type: 'WriteFingerprints', fileId: 'f', blockSize: 4096, fingerprints: [hex, hex], quickKeys: [1], ttlMs: 1 });
    expect(fewerKeys).toEqual({ ok: false, error: 'WriteFingerprints.quickKeys: one quick key per fingerprint' });
    const badKey = parseSemanticMessage({ type: 'WriteFingerprints', fileId: 'f', blockSize: 4096, fingerprints: [hex], quickKeys: [2 ** 32], ttlMs: 1 });
    expect(badKey.ok).toBe(false);
    expect(parseSemanticMessage({ type: 'WriteFingerprints', fileId: 'f', blockSize: 4096, fingerprints: [hex], quickKeys: [2 ** 32 - 1], ttlMs: 1 }).ok).toBe(true);
    const future = parseSemanticMessage({ type: 'FileGone', fileId: 'f', cause: 'unlink', v: 2 });
    expect(future.ok).toBe(false);
    expect(parseSemanticMessage([1])).toEqual({ ok: false, error: 'a message is a JSON object' });
  });
});
