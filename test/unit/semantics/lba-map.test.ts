import { describe, expect, it } from 'vitest';
import { SeededRandom } from '../../../src/device/prng.js';
import { CHUNK_ENTRIES, GAP, LbaMap, UNKNOWN } from '../../../src/semantics/lba-map.js';

/** The naive model: one owner per unit of UNIT bytes over a small volume. */
const UNIT = 512;

class Model {
  readonly owners: Int32Array;
  constructor(units: number) {
    this.owners = new Int32Array(units).fill(GAP);
  }
  assign(start: number, end: number, owner: number): void {
    this.owners.fill(owner, start / UNIT, end / UNIT);
  }
  reassign(start: number, end: number, owner: number, replacement: number): void {
    for (let u = start / UNIT; u < end / UNIT; u++) if (this.owners[u] === owner) this.owners[u] = replacement;
  }
  /** Most bytes wins; ties go to the owner met first. */
  dominant(start: number, end: number): { owner: number; bytes: number } {
    const order: number[] = [];
    const bytes = new Map<number, number>();
    for (let u = start / UNIT; u < end / UNIT; u++) {
      const o = this.owners[u]!;
      if (!bytes.has(o)) order.push(o);
      bytes.set(o, (bytes.get(o) ?? 0) + UNIT);
    }
    let best = order[0]!;
    for (const o of order) if (bytes.get(o)! > bytes.get(best)!) best = o;
    return { owner: best, bytes: bytes.get(best)! };
  }
}

function int(random: SeededRandom, below: number): number {
  return Math.floor(random.nextFloat() * below);
}

function randomRange(random: SeededRandom, units: number, maxUnits: number): [number, number] {
  const start = int(random, units);
  const length = 1 + int(random, Math.min(maxUnits, units - start));
  return [start * UNIT, (start + length) * UNIT];
}

describe('LbaMap', () => {
  it('answers GAP when empty and after forgetting everything', () => {
    const map = new LbaMap(4096);
    expect(map.ownerAt(0)).toBe(GAP);
    expect(map.dominant(0, 4096)).toBe(GAP);
    map.assign(4096, 8192, 3);
    expect(map.ownerAt(4095)).toBe(GAP);
    expect(map.ownerAt(4096)).toBe(3);
    expect(map.ownerAt(8191)).toBe(3);
    expect(map.ownerAt(8192)).toBe(GAP);
    map.assign(0, 1 << 20, GAP);
    expect(map.intervals()).toEqual([]);
    map.checkInvariants();
  });

  it('splits, trims and coalesces', () => {
    const map = new LbaMap(4096);
    map.assign(0, 100, 1);
    map.assign(100, 200, 1);
    expect(map.intervals()).toEqual([{ start: 0, end: 200, owner: 1 }]);
    map.assign(50, 150, 2);
    expect(map.intervals()).toEqual([
      { start: 0, end: 50, owner: 1 },
      { start: 50, end: 150, owner: 2 },
      { start: 150, end: 200, owner: 1 },
    ]);
    map.assign(40, 160, 1);
    expect(map.intervals()).toEqual([{ start: 0, end: 200, owner: 1 }]);
    map.reassignOwner(0, 1000, 1, UNKNOWN);
    expect(map.intervals()).toEqual([{ start: 0, end: 200, owner: UNKNOWN }]);
    map.checkInvariants();
  });

  it('picks the owner with the most bytes, ties to the lowest offset', () => {
    const map = new LbaMap(4096);
    map.assign(0, 4096, 1);
    map.assign(4096, 12288, 2);
    expect(map.dominant(0, 12288)).toBe(2);
    expect(map.dominantBytes).toBe(8192);
    expect(map.dominant(0, 8192)).toBe(1); // 4096 each: the first wins
    expect(map.dominant(8192, 16384)).toBe(GAP); // 4096 of 2, 12288 of nothing
    expect(map.dominantBytes).toBe(12288);
  });

  for (const seed of [1, 2, 3, 4, 5, 6]) {
    // Seed 6 spaces owners 128 apart so that they collide in dominant()'s direct-mapped index.
    const spread = seed === 6 ? 128 : 1;
    it(`matches a naive model under random assignments (seed ${seed}${seed === 6 ? ', colliding owners' : ''})`, () => {
      const random = new SeededRandom(seed);
      const units = 20_000;
      const map = new LbaMap(1_000_000);
      const model = new Model(units);
      for (let step = 0; step < 4000; step++) {
        const [start, end] = randomRange(random, units, step % 10 === 0 ? 2000 : 40);
        const roll = int(random, 10);
        if (roll < 7) {
          const owner = int(random, 50) * spread;
          map.assign(start, end, owner);
          model.assign(start, end, owner);
        } else if (roll < 8) {
          map.assign(start, end, GAP);
          model.assign(start, end, GAP);
        } else {
          const owner = int(random, 50) * spread;
          map.reassignOwner(start, end, owner, UNKNOWN);
          model.reassign(start, end, owner, UNKNOWN);
        }
        if (step % 200 === 0) map.checkInvariants();
        for (let probe = 0; probe < 4; probe++) {
          const [s, e] = randomRange(random, units, probe === 0 ? 4000 : 64);
          const expected = model.dominant(s, e);
          expect(map.dominant(s, e - s)).toBe(expected.owner);
          expect(map.dominantBytes).toBe(expected.bytes);
        }
      }
      map.checkInvariants();
      for (let u = 0; u < units; u++) expect(map.ownerAt(u * UNIT)).toBe(model.owners[u]);
      expect(map.stats().chunks).toBeGreaterThan(1);
      // The intervals cover exactly the model's non-gaps.
      let covered = 0;
      for (const interval of map.intervals()) covered += interval.end - interval.start;
      expect(covered).toBe(model.owners.reduce((n, o) => n + (o === GAP ? 0 : UNIT), 0));
    });
  }

  for (const seed of [11, 12, 13]) {
    it(`stays bounded and evicts to UNKNOWN, never to a wrong answer (seed ${seed})`, () => {
      const random = new SeededRandom(seed);
      const units = 200_000;
      const maxEntries = 4 * CHUNK_ENTRIES;
      const map = new LbaMap(maxEntries);
      const model = new Model(units);
      for (let step = 0; step < 6000; step++) {
        const [start, end] = randomRange(random, units, 8);
        const owner = int(random, 1000);
        map.assign(start, end, owner);
        model.assign(start, end, owner);
        if (step % 500 === 0) map.checkInvariants();
      }
      map.checkInvariants();
      expect(map.size).toBeLessThanOrEqual(maxEntries);
      expect(map.stats().evictions).toBeGreaterThan(0);
      let unknown = 0;
      for (let u = 0; u < units; u++) {
        const got = map.ownerAt(u * UNIT);
        if (got === UNKNOWN) unknown++;
        else expect(got).toBe(model.owners[u]);
      }
      expect(unknown).toBeGreaterThan(0);
      // The most recent assignments survive (LRU chunks are evicted first).
      const [start, end] = [12_345 * UNIT, 12_350 * UNIT];
      map.assign(start, end, 7);
      expect(map.dominant(start, end - start)).toBe(7);
    });
  }

  it('repacks degenerate chunks instead of failing', () => {
    const map = new LbaMap(4 * CHUNK_ENTRIES);
    // Fill, then delete all but one interval per chunk, then overfill again.
    for (let k = 0; k < 4 * CHUNK_ENTRIES; k++) map.assign(k * 1024, k * 1024 + 512, k % 7);
    for (let k = 0; k < 4 * CHUNK_ENTRIES; k++) if (k % 100 !== 0) map.assign(k * 1024, k * 1024 + 512, GAP);
    map.checkInvariants();
    for (let k = 0; k < 5 * CHUNK_ENTRIES; k++) map.assign(10_000_000 + k * 1024, 10_000_000 + k * 1024 + 512, k % 5);
    map.checkInvariants();
    expect(map.size).toBeLessThanOrEqual(4 * CHUNK_ENTRIES);
  });
});
