/**
 * Write fingerprints the tracer registered: 128-bit fingerprint → (owner, expiresAt). An open-addressing hash
 * table with linear probing and backward-shift deletion in one ArrayBuffer sized at construction, so a lookup on
 * the write path allocates nothing. A slot is 32 bytes (half a cache line): the key as four big-endian u32 words
 * of the fingerprint, owner + 1 (0 = empty), and the expiry time as a float64. One probe touches one line.
 *
 * Bounds: at most `maxEntries` live entries (capacity is the next power of two ≥ maxEntries / 0.75). Expired
 * entries read as absent and are swept when the table fills; if a sweep frees too little, the entries closest to
 * expiry are evicted (a sampled threshold, so eviction is O(capacity) once per ~maxEntries/4 insertions).
 * Evicting a fingerprint only loses a match (the write then falls back to the LBA map), it never makes one wrong.
 *
 * A presence filter sits in front: one saturating 8-bit counter per slot, indexed by the key's second word (the
 * home slot comes from the first), counting live entries with that word. Most writes carry blocks nobody
 * registered; a zero counter answers "absent" from a table 32× smaller than the slots (512 KiB by default, cache
 * resident), so a miss costs no cache miss in the 16 MiB of slots. A counter that reached 255 stays there (it can
 * only say "maybe" too often, never "absent" wrongly).
 *
 * A second filter answers before any hashing: counters over the entries' quick keys (fingerprint.ts quickKey, sent
 * by the tracer with each fingerprint), four per slot. The classify layer hashes a written block only if its quick
 * key may be held (`mayHold`). An entry registered without a quick key makes `mayHold` say yes to everything while
 * it lives (`unkeyed` counts them): a sender that does not send keys costs speed, never a match.
 */
import assert from 'node:assert/strict';

export const NO_OWNER = -1;
const SLOT_BYTES = 32;
const LOAD_FACTOR_MAX = 0.75;
/** A sweep that leaves the table fuller than this evicts by expiry until it is below. */
const AFTER_SWEEP_FILL_MAX = 0.75;
const EVICTION_SAMPLE = 256;
/** Quick-key counters per slot: at most 3/4 × capacity entries over 4 × capacity counters, ≤ 17% of them non-zero. */
const QUICK_COUNTERS_PER_SLOT = 4;

export interface FingerprintTableStats {
  entries: number;
  /** Entries registered without a quick key; while any lives, every written block is hashed. */
  unkeyed: number;
  capacity: number;
  maxEntries: number;
  inserted: number;
  expired: number;
  evicted: number;
  sweeps: number;
}

export class FingerprintTable {
  readonly maxEntries: number;
  private readonly mask: number;
  /** Slot s: words[8s..8s+3] key, words[8s+4] owner + 1 (0 = empty), words[8s+5] quick counter + 1 (0 = no key); times[4s+3] expiresAt. */
  private readonly words: Int32Array;
  private readonly times: Float64Array;
  /** Live entries per (second key word & mask), saturating at 255. */
  private readonly present: Uint8Array;
  /** Live entries per (quick key & quickMask), saturating at 255. */
  private readonly quick: Uint8Array;
  private readonly quickMask: number;
  private unkeyed = 0;
  /** No entry without a quick key lives past this time (the latest such expiry). */
  private unkeyedExpiry = 0;
  private count = 0;
  private readonly counters = { inserted: 0, expired: 0, evicted: 0, sweeps: 0 };

  constructor(maxEntries: number) {
    assert.ok(Number.isSafeInteger(maxEntries) && maxEntries >= 16, 'a fingerprint table holds at least 16 entries');
    let capacity = 16;
    while (capacity * LOAD_FACTOR_MAX < maxEntries) capacity *= 2;
    assert.ok(capacity <= 2 ** 30, 'fingerprint table too large');
    this.maxEntries = maxEntries;
    this.mask = capacity - 1;
    const buffer = new ArrayBuffer(capacity * SLOT_BYTES);
    this.words = new Int32Array(buffer);
    this.times = new Float64Array(buffer);
    this.present = new Uint8Array(capacity);
    this.quick = new Uint8Array(capacity * QUICK_COUNTERS_PER_SLOT);
    this.quickMask = capacity * QUICK_COUNTERS_PER_SLOT - 1;
  }

  get size(): number {
    return this.count;
  }

  stats(): FingerprintTableStats {
    return { entries: this.count, unkeyed: this.unkeyed, capacity: this.mask + 1, maxEntries: this.maxEntries, ...this.counters };
  }

  /** Entries registered without a quick key (while any lives, mayHold says yes to every key). */
  get unkeyedEntries(): number {
    return this.unkeyed;
  }

  /** False when no entry has this quick key: a block with it matches nothing, and need not be hashed. */
  mayHold(quickKey: number): boolean {
    return this.unkeyed > 0 || this.quick[quickKey & this.quickMask] !== 0;
  }

  /**
   * True when entries without a quick key are counted but every one has expired by `now`: then a sweep (O(capacity),
   * once) ends the hashing of every block they forced. Expired keyed entries only cost a hash now and then.
   */
  unkeyedExpired(now: number): boolean {
    return this.unkeyed > 0 && now >= this.unkeyedExpiry;
  }

  /** Owner of the fingerprint at `bytes[offset..+16)`, or NO_OWNER when absent or expired at `now`. */
  lookup(bytes: Uint8Array, offset: number, now: number): number {
    const slot = this.probe(bytes, offset);
    return slot < 0 ? NO_OWNER : this.ownerIfAlive(slot, now);
  }

  /** The slot holding the fingerprint at `bytes[offset..+16)`, or -1. Valid until the table next changes. */
  probe(bytes: Uint8Array, offset: number): number {
    const w1 = readWord(bytes, offset + 4);
    if (this.present[w1 & this.mask] === 0) return -1;
    return this.find(readWord(bytes, offset), w1, readWord(bytes, offset + 8), readWord(bytes, offset + 12));
  }

  /** The owner of a slot from probe(), or NO_OWNER (and the entry is dropped) if it expired by `now`. */
  ownerIfAlive(slot: number, now: number): number {
    if (this.times[slot * 4 + 3]! <= now) {
      this.removeSlot(slot);
      this.counters.expired++;
      return NO_OWNER;
    }
    return this.words[slot * 8 + 4]! - 1;
  }

  /** Adds or replaces the fingerprint at `bytes[offset..+16)`; `quickKey` is its block's quick key, null if unknown. */
  insert(bytes: Uint8Array, offset: number, owner: number, expiresAt: number, now: number, quickKey: number | null): void {
    assert.ok(owner >= 0, 'fingerprint owners are file indexes');
    const w0 = readWord(bytes, offset);
    const w1 = readWord(bytes, offset + 4);
    const w2 = readWord(bytes, offset + 8);
    const w3 = readWord(bytes, offset + 12);
    const existing = this.find(w0, w1, w2, w3);
    if (existing >= 0) {
      this.words[existing * 8 + 4] = owner + 1;
      this.times[existing * 4 + 3] = expiresAt;
      // Equal blocks have equal quick keys, so a key the entry has stays right; one it lacked is learnt.
      if (this.words[existing * 8 + 5] !== 0) return;
      if (quickKey === null) this.unkeyedExpiry = Math.max(this.unkeyedExpiry, expiresAt);
      else {
        this.unkeyed--;
        this.words[existing * 8 + 5] = this.countQuick(quickKey);
      }
      return;
    }
    if (this.count >= this.maxEntries) this.makeRoom(now);
    let slot = w0 & this.mask;
    while (this.words[slot * 8 + 4] !== 0) slot = (slot + 1) & this.mask;
    const w = slot * 8;
    this.words[w] = w0;
    this.words[w + 1] = w1;
    this.words[w + 2] = w2;
    this.words[w + 3] = w3;
    this.words[w + 4] = owner + 1;
    if (quickKey === null) {
      this.words[w + 5] = 0;
      this.unkeyed++;
      this.unkeyedExpiry = Math.max(this.unkeyedExpiry, expiresAt);
    } else this.words[w + 5] = this.countQuick(quickKey);
    this.times[slot * 4 + 3] = expiresAt;
    const p = w1 & this.mask;
    if (this.present[p]! < 255) this.present[p]!++;
    this.count++;
    this.counters.inserted++;
    assert.ok(this.count <= this.maxEntries, 'fingerprint table over its bound');
  }

  /** Removes the fingerprint if it is owned by `owner` (any owner when `owner` is NO_OWNER). */
  remove(bytes: Uint8Array, offset: number, owner: number): boolean {
    const slot = this.find(readWord(bytes, offset), readWord(bytes, offset + 4), readWord(bytes, offset + 8), readWord(bytes, offset + 12));
    if (slot < 0 || (owner !== NO_OWNER && this.words[slot * 8 + 4] !== owner + 1)) return false;
    this.removeSlot(slot);
    return true;
  }

  /** Removes every expired entry; returns how many. O(capacity). */
  sweep(now: number): number {
    this.counters.sweeps++;
    return this.removeWhere((slot) => this.expiry(slot) <= now, 'expired');
  }

  private makeRoom(now: number): void {
    this.sweep(now);
    if (this.count < this.maxEntries * AFTER_SWEEP_FILL_MAX) return;
    // Evict the soonest-expiring entries (≈ the oldest, since TTLs are similar) down to the fill target. The
    // threshold comes from a sample; ties at the threshold are evicted only until the target is reached.
    const target = this.count - Math.floor(this.maxEntries * AFTER_SWEEP_FILL_MAX) + 1;
    const sample = new Float64Array(EVICTION_SAMPLE);
    const capacity = this.mask + 1;
    let taken = 0;
    for (let i = 0; taken < EVICTION_SAMPLE && i < capacity * 4; i++) {
      const slot = mix32(i + 1) & this.mask;
      if (this.occupied(slot)) sample[taken++] = this.expiry(slot);
    }
    const sorted = sample.subarray(0, taken).sort();
    const threshold = sorted[Math.min(taken - 1, Math.floor((taken * target) / this.count))]!;
    let ties = target - this.removeWhere((slot) => this.expiry(slot) < threshold, 'evicted');
    this.removeWhere((slot) => {
      if (ties <= 0 || this.expiry(slot) !== threshold) return false;
      ties--;
      return true;
    }, 'evicted');
    while (this.count >= this.maxEntries) {
      // The sample underestimated the threshold: evict the next-soonest expiry value.
      let soonest = Infinity;
      for (let slot = 0; slot < capacity; slot++) if (this.occupied(slot) && this.expiry(slot) < soonest) soonest = this.expiry(slot);
      this.removeWhere((slot) => this.expiry(slot) <= soonest, 'evicted');
    }
    assert.ok(this.count < this.maxEntries, 'eviction made room');
  }

  /**
   * Removes matching entries in one pass. The scan starts at an empty slot so that every cluster is seen in probe
   * order; after a backward-shift deletion the same slot is examined again (an entry from later may have moved in).
   */
  private removeWhere(doomed: (slot: number) => boolean, counter: 'expired' | 'evicted'): number {
    const capacity = this.mask + 1;
    let start = 0;
    while (this.occupied(start)) start++;
    let removed = 0;
    for (let step = 0; step < capacity; step++) {
      const slot = (start + step) & this.mask;
      while (this.occupied(slot) && doomed(slot)) {
        this.removeSlot(slot);
        removed++;
      }
    }
    this.counters[counter] += removed;
    return removed;
  }

  /** Counts one more entry under `quickKey`; returns what its slot keeps (counter index + 1). */
  private countQuick(quickKey: number): number {
    const q = quickKey & this.quickMask;
    if (this.quick[q]! < 255) this.quick[q]!++;
    return q + 1;
  }

  private occupied(slot: number): boolean {
    return this.words[slot * 8 + 4] !== 0;
  }

  private expiry(slot: number): number {
    return this.times[slot * 4 + 3]!;
  }

  private find(w0: number, w1: number, w2: number, w3: number): number {
    const words = this.words;
    let slot = w0 & this.mask;
    for (;;) {
      const k = slot * 8;
      if (words[k + 4] === 0) return -1;
      if (words[k] === w0 && words[k + 1] === w1 && words[k + 2] === w2 && words[k + 3] === w3) return slot;
      slot = (slot + 1) & this.mask;
    }
  }

  /** Backward-shift deletion: later entries of the cluster move into the hole if their home allows it. */
  private removeSlot(slot: number): void {
    const words = this.words;
    const p = words[slot * 8 + 1]! & this.mask;
    if (this.present[p]! < 255) this.present[p]!--;
    const q = words[slot * 8 + 5]!;
    if (q === 0) this.unkeyed--;
    else if (this.quick[q - 1]! < 255) this.quick[q - 1]!--;
    let hole = slot;
    let next = (hole + 1) & this.mask;
    while (words[next * 8 + 4] !== 0) {
      const home = words[next * 8]! & this.mask;
      // The entry at `next` may move to `hole` unless its home lies cyclically in (hole, next].
      const distanceHome = (next - home) & this.mask;
      const distanceHole = (next - hole) & this.mask;
      if (distanceHome >= distanceHole) {
        words.copyWithin(hole * 8, next * 8, next * 8 + 8); // key, owner and expiry: the whole slot
        hole = next;
      }
      next = (next + 1) & this.mask;
    }
    words[hole * 8 + 4] = 0;
    this.count--;
  }
}

/** A 32-bit integer mixer (murmur3 finalizer): sample positions unrelated to the keys' home slots. */
function mix32(n: number): number {
  let h = Math.imul(n, 0x27d4eb2d);
  h ^= h >>> 15;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  return h >>> 0;
}

function readWord(bytes: Uint8Array, offset: number): number {
  return (bytes[offset]! << 24) | (bytes[offset + 1]! << 16) | (bytes[offset + 2]! << 8) | bytes[offset + 3]!;
}
