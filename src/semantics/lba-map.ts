/**
 * The LBA → owner map: sorted, non-overlapping half-open byte intervals [start, end) of the volume, each owned by a
 * file (an index ≥ 0 into the file table) or marked UNKNOWN. Bytes outside every interval are a GAP: nothing is
 * known there, which the classify layer reads as metadata once the volume has any insight.
 *
 * Layout: a two-level sorted array (a B+-tree of height two). Intervals live in chunks of CHUNK_ENTRIES typed-array
 * slots; the chunk list is ordered. Lookup is two binary searches, O(log n); assignment moves at most one chunk's
 * slots (memmove of ≤ 5 KiB) plus O(k) for k overlapped intervals. Adjacent intervals of one owner coalesce.
 *
 * dominant() answers which owner has the most bytes of a request (ties: the owner met first), exactly for up to
 * 64 distinct files in the request (further files are not counted), in O(log n + k) for k intervals.
 *
 * Bound: at most `maxEntries` intervals (≈ 40 bytes each at worst, chunks half full). When an assignment goes over,
 * the least recently used chunk collapses into one UNKNOWN interval spanning it: lookups there answer UNKNOWN
 * instead of a wrong file or "metadata". That is the only way knowledge is lost, and it is counted.
 */
import assert from 'node:assert/strict';

/** Owner code: an interval whose owner was forgotten (evicted). */
export const UNKNOWN = -1;
/** Owner code: no interval covers the bytes. */
export const GAP = -2;

export const CHUNK_ENTRIES = 256;
/** Distinct files tracked when picking the dominant owner of a request; later ones are ignored. */
const DOMINANT_OWNERS_MAX = 64;
/** A direct-mapped index (owner & mask → scratch slot) makes each interval O(1) in dominant(). */
const DOMINANT_HASH_MASK = 127;

class Chunk {
  readonly starts = new Float64Array(CHUNK_ENTRIES);
  readonly ends = new Float64Array(CHUNK_ENTRIES);
  readonly owners = new Int32Array(CHUNK_ENTRIES);
  count = 0;
  lastUsed = 0;
}

export interface LbaMapStats {
  entries: number;
  chunks: number;
  maxEntries: number;
  evictions: number;
  evictedEntries: number;
}

export interface LbaInterval {
  start: number;
  end: number;
  owner: number;
}

export class LbaMap {
  readonly maxEntries: number;
  private chunks: Chunk[] = [];
  /** chunks[c].starts[0] for every chunk, contiguous: the chunk-level binary search stays in cache. */
  private firstStarts = new Float64Array(64);
  private entries = 0;
  private tick = 0;
  private evictions = 0;
  private evictedEntries = 0;
  // Cursor written by locate(), insertAt() and advance(): (chunk index, slot index). Avoids allocating tuples.
  private ci = 0;
  private ii = 0;
  // Scratch for dominant(): distinct owners and their byte counts.
  private readonly scratchOwners = new Int32Array(DOMINANT_OWNERS_MAX);
  private readonly scratchBytes = new Float64Array(DOMINANT_OWNERS_MAX);
  private readonly scratchRanks = new Int32Array(DOMINANT_OWNERS_MAX);
  private readonly hashStamps = new Int32Array(DOMINANT_HASH_MASK + 1);
  private readonly hashSlots = new Int32Array(DOMINANT_HASH_MASK + 1);
  private generation = 0;
  /** Bytes of the winning owner in the last dominant() call. */
  dominantBytes = 0;

  constructor(maxEntries: number) {
    assert.ok(Number.isSafeInteger(maxEntries) && maxEntries >= 4 * CHUNK_ENTRIES, `an LBA map holds at least ${4 * CHUNK_ENTRIES} intervals`);
    this.maxEntries = maxEntries;
  }

  get size(): number {
    return this.entries;
  }

  stats(): LbaMapStats {
    return { entries: this.entries, chunks: this.chunks.length, maxEntries: this.maxEntries, evictions: this.evictions, evictedEntries: this.evictedEntries };
  }

  /** Owner of the byte at `offset` (GAP when no interval covers it). */
  ownerAt(offset: number): number {
    if (!this.locate(offset)) return GAP;
    const chunk = this.chunks[this.ci]!;
    return chunk.ends[this.ii]! > offset ? chunk.owners[this.ii]! : GAP;
  }

  /**
   * The owner with the most bytes in [offset, offset + length): a file index, UNKNOWN or GAP. Ties go to the owner
   * met first (lowest offset). Allocates nothing; marks the chunk as used for LRU eviction.
   */
  dominant(offset: number, length: number): number {
    const end = offset + length;
    if (!this.locate(offset)) {
      // Before every interval: the first chunk's intervals may still start inside the request.
      if (this.chunks.length === 0) {
        this.dominantBytes = length;
        return GAP;
      }
      this.ci = 0;
      this.ii = 0;
    } else {
      const chunk = this.chunks[this.ci]!;
      chunk.lastUsed = ++this.tick;
      const first = chunk.ends[this.ii]!;
      if (first >= end) {
        this.dominantBytes = length;
        return chunk.owners[this.ii]!;
      }
      if (first <= offset && !this.advance()) {
        this.dominantBytes = length;
        return GAP;
      }
    }
    return this.dominantFromCursor(offset, end);
  }

  private dominantFromCursor(offset: number, end: number): number {
    // Gaps and UNKNOWN have their own counters; files go to the scratch list (first DOMINANT_OWNERS_MAX of them).
    // The order of first appearance decides ties, so it is recorded for gaps and UNKNOWN too.
    const owners = this.scratchOwners;
    const bytes = this.scratchBytes;
    let distinct = 0;
    let gapBytes = 0;
    let gapRank = -1;
    let unknownBytes = 0;
    let unknownRank = -1;
    let rank = 0;
    let position = offset;
    const stamps = this.hashStamps;
    const slots = this.hashSlots;
    const generation = (this.generation = (this.generation + 1) | 0);
    // Walk with local cursor variables (the fields are for the other operations).
    let c = this.ci;
    let i = this.ii;
    let chunk = this.chunks[c]!;
    let starts = chunk.starts;
    let ends = chunk.ends;
    let chunkOwners = chunk.owners;
    let count = chunk.count;
    for (;;) {
      const start = starts[i]!;
      if (start >= end) break;
      if (start > position) {
        if (gapRank < 0) gapRank = rank++;
        gapBytes += start - position;
      }
      const intervalEnd = ends[i]!;
      const stop = intervalEnd < end ? intervalEnd : end;
      const covered = stop - (start > position ? start : position);
      const owner = chunkOwners[i]!;
      if (owner === UNKNOWN) {
        if (unknownRank < 0) unknownRank = rank++;
        unknownBytes += covered;
      } else {
        const h = owner & DOMINANT_HASH_MASK;
        let k = -1;
        if (stamps[h] === generation) {
          k = slots[h]!;
          if (owners[k] !== owner) {
            // Two files share the hash slot: look the long way.
            k = distinct - 1;
            while (k >= 0 && owners[k] !== owner) k--;
          }
        }
        if (k >= 0) bytes[k] += covered;
        else if (distinct < DOMINANT_OWNERS_MAX) {
          if (stamps[h] !== generation) {
            stamps[h] = generation;
            slots[h] = distinct;
          }
          owners[distinct] = owner;
          bytes[distinct] = covered;
          this.scratchRanks[distinct++] = rank++;
        }
      }
      position = stop;
      if (position >= end) break;
      if (++i === count) {
        if (++c === this.chunks.length) break;
        chunk = this.chunks[c]!;
        starts = chunk.starts;
        ends = chunk.ends;
        chunkOwners = chunk.owners;
        count = chunk.count;
        i = 0;
      }
    }
    if (position < end) {
      if (gapRank < 0) gapRank = rank++;
      gapBytes += end - position;
    }
    return this.pickDominant(distinct, gapBytes, gapRank, unknownBytes, unknownRank);
  }

  /** The owner with the most bytes (ties: the lowest rank, i.e. met first); sets dominantBytes. */
  private pickDominant(distinct: number, gapBytes: number, gapRank: number, unknownBytes: number, unknownRank: number): number {
    let bestOwner = GAP;
    let bestBytes = -1;
    let bestRank = 0x7fffffff;
    if (gapRank >= 0) {
      bestBytes = gapBytes;
      bestRank = gapRank;
    }
    if (unknownRank >= 0 && (unknownBytes > bestBytes || (unknownBytes === bestBytes && unknownRank < bestRank))) {
      bestOwner = UNKNOWN;
      bestBytes = unknownBytes;
      bestRank = unknownRank;
    }
    for (let k = 0; k < distinct; k++) {
      const count = this.scratchBytes[k]!;
      const rank = this.scratchRanks[k]!;
      if (count > bestBytes || (count === bestBytes && rank < bestRank)) {
        bestOwner = this.scratchOwners[k]!;
        bestBytes = count;
        bestRank = rank;
      }
    }
    this.dominantBytes = bestBytes;
    return bestOwner;
  }

  /** Calls `visit` for every interval overlapping [start, end), clipped to it, in order. */
  forEachIn(start: number, end: number, visit: (start: number, end: number, owner: number) => void): void {
    if (!this.locate(start)) {
      if (this.chunks.length === 0) return;
      this.ci = 0;
      this.ii = 0;
    } else if (this.chunks[this.ci]!.ends[this.ii]! <= start && !this.advance()) return;
    // Collect first: `visit` may change the map.
    const found: number[] = [];
    for (;;) {
      const chunk = this.chunks[this.ci]!;
      const s = chunk.starts[this.ii]!;
      if (s >= end) break;
      found.push(Math.max(s, start), Math.min(chunk.ends[this.ii]!, end), chunk.owners[this.ii]!);
      if (!this.advance()) break;
    }
    for (let k = 0; k < found.length; k += 3) visit(found[k]!, found[k + 1]!, found[k + 2]!);
  }

  /** Every interval, in order (for tests and snapshots). */
  intervals(): LbaInterval[] {
    const out: LbaInterval[] = [];
    for (const chunk of this.chunks) {
      for (let i = 0; i < chunk.count; i++) out.push({ start: chunk.starts[i]!, end: chunk.ends[i]!, owner: chunk.owners[i]! });
    }
    return out;
  }

  /**
   * Makes [start, end) belong to `owner` (a file index or UNKNOWN), or forgets it (GAP). Whatever covered those
   * bytes before loses them. May evict (see the file comment).
   */
  assign(start: number, end: number, owner: number): void {
    assert.ok(Number.isSafeInteger(start) && Number.isSafeInteger(end) && start >= 0 && start < end, 'assign needs a non-empty range');
    assert.ok(owner >= UNKNOWN || owner === GAP, 'owner is a file index, UNKNOWN or GAP');
    this.tick++;
    if (this.chunks.length === 0) {
      if (owner === GAP) return;
      this.chunks.push(new Chunk());
      this.insertAt(0, 0, start, end, owner);
      this.rebuildFirsts();
      return;
    }
    if (this.locate(start)) {
      const chunk = this.chunks[this.ci]!;
      const s = chunk.starts[this.ii]!;
      const e = chunk.ends[this.ii]!;
      const o = chunk.owners[this.ii]!;
      if (e > start && s < start) {
        if (o === owner && e >= end) return; // already so
        chunk.ends[this.ii] = start;
        if (e > end) {
          // The new interval lies strictly inside an old one: keep its right remainder, then insert between.
          this.insertAt(this.ci, this.ii + 1, end, e, o);
          if (owner !== GAP) this.insertAt(this.ci, this.ii, start, end, owner);
          this.enforceBound();
          return;
        }
        this.ii++;
      } else if (e <= start) {
        this.ii++;
      }
    } else {
      this.ci = 0;
      this.ii = 0;
    }
    this.normalize();
    // (ci, ii) is now the first interval starting at or after `start`, or the end position.
    while (this.valid() && this.chunks[this.ci]!.starts[this.ii]! < end && this.chunks[this.ci]!.ends[this.ii]! <= end) this.removeAt();
    if (this.valid() && this.chunks[this.ci]!.starts[this.ii]! < end) {
      this.chunks[this.ci]!.starts[this.ii] = end;
      if (this.ii === 0) this.firstStarts[this.ci] = end;
    }
    if (owner !== GAP) {
      if (!this.valid()) {
        this.ci = this.chunks.length - 1;
        this.ii = this.chunks[this.ci]!.count;
      }
      this.insertAt(this.ci, this.ii, start, end, owner);
      this.coalesceAtCursor();
    }
    if (this.chunks.length === 1 && this.chunks[0]!.count === 0) {
      this.chunks = [];
      this.rebuildFirsts();
    }
    this.enforceBound();
  }

  /** Makes the parts of [start, end) owned by `owner` belong to `replacement` instead (GAP forgets them). */
  reassignOwner(start: number, end: number, owner: number, replacement: number): void {
    const pieces: number[] = [];
    this.forEachIn(start, end, (s, e, o) => {
      if (o === owner) pieces.push(s, e);
    });
    for (let k = 0; k < pieces.length; k += 2) this.assign(pieces[k]!, pieces[k + 1]!, replacement);
  }

  /** Checks every invariant (tests call this after each step). */
  checkInvariants(): void {
    let total = 0;
    let previousEnd = -1;
    for (const [c, chunk] of this.chunks.entries()) {
      assert.ok(chunk.count > 0 && chunk.count <= CHUNK_ENTRIES, 'chunks are never empty or over-full');
      assert.equal(this.firstStarts[c], chunk.starts[0], 'the chunk index is in sync');
      for (let i = 0; i < chunk.count; i++) {
        assert.ok(chunk.starts[i]! < chunk.ends[i]!, 'intervals are non-empty');
        assert.ok(chunk.starts[i]! >= previousEnd, 'intervals are sorted and disjoint');
        previousEnd = chunk.ends[i]!;
      }
      total += chunk.count;
    }
    assert.equal(total, this.entries, 'entry count matches');
    assert.ok(this.entries <= this.maxEntries, 'bounded');
  }

  /** Sets the cursor to the last interval with start ≤ offset; false when there is none. */
  private locate(offset: number): boolean {
    const firsts = this.firstStarts;
    let low = 0;
    let high = this.chunks.length - 1;
    if (high < 0 || firsts[0]! > offset) return false;
    while (low < high) {
      const middle = (low + high + 1) >>> 1;
      if (firsts[middle]! <= offset) low = middle;
      else high = middle - 1;
    }
    const chunk = this.chunks[low]!;
    const starts = chunk.starts;
    let lo = 0;
    let hi = chunk.count - 1;
    while (lo < hi) {
      const middle = (lo + hi + 1) >>> 1;
      if (starts[middle]! <= offset) lo = middle;
      else hi = middle - 1;
    }
    this.ci = low;
    this.ii = lo;
    return true;
  }

  /** Moves the cursor to the next interval; false at the end (cursor unchanged then). */
  private advance(): boolean {
    if (this.ii + 1 < this.chunks[this.ci]!.count) {
      this.ii++;
      return true;
    }
    if (this.ci + 1 < this.chunks.length) {
      this.ci++;
      this.ii = 0;
      return true;
    }
    return false;
  }

  /** If the cursor is one past a chunk's last slot, moves it to the next chunk's first slot (when there is one). */
  private normalize(): void {
    if (this.ii >= this.chunks[this.ci]!.count && this.ci + 1 < this.chunks.length) {
      this.ci++;
      this.ii = 0;
    }
  }

  private valid(): boolean {
    return this.ci < this.chunks.length && this.ii < this.chunks[this.ci]!.count;
  }

  /** Removes the interval at the cursor; the cursor then points at the following one (or the end). */
  private removeAt(): void {
    const chunk = this.chunks[this.ci]!;
    const i = this.ii;
    chunk.starts.copyWithin(i, i + 1, chunk.count);
    chunk.ends.copyWithin(i, i + 1, chunk.count);
    chunk.owners.copyWithin(i, i + 1, chunk.count);
    chunk.count--;
    this.entries--;
    if (chunk.count === 0 && this.chunks.length > 1) {
      this.chunks.splice(this.ci, 1);
      this.rebuildFirsts();
      if (this.ci >= this.chunks.length) {
        this.ci = this.chunks.length - 1;
        this.ii = this.chunks[this.ci]!.count;
      } else this.ii = 0;
      return;
    }
    if (i === 0 && chunk.count > 0) this.firstStarts[this.ci] = chunk.starts[0]!;
    this.normalize();
  }

  /** Inserts before slot `ii` of chunk `ci` (ii may equal count); the cursor then points at the new interval. */
  private insertAt(ci: number, ii: number, start: number, end: number, owner: number): void {
    let chunk = this.chunks[ci]!;
    let split = false;
    if (chunk.count === CHUNK_ENTRIES) {
      split = true;
      const right = new Chunk();
      const half = CHUNK_ENTRIES >>> 1;
      right.starts.set(chunk.starts.subarray(half));
      right.ends.set(chunk.ends.subarray(half));
      right.owners.set(chunk.owners.subarray(half));
      right.count = CHUNK_ENTRIES - half;
      right.lastUsed = chunk.lastUsed;
      chunk.count = half;
      this.chunks.splice(ci + 1, 0, right);
      if (ii > half) {
        ci++;
        ii -= half;
        chunk = right;
      }
    }
    const count = chunk.count;
    chunk.starts.copyWithin(ii + 1, ii, count);
    chunk.ends.copyWithin(ii + 1, ii, count);
    chunk.owners.copyWithin(ii + 1, ii, count);
    chunk.starts[ii] = start;
    chunk.ends[ii] = end;
    chunk.owners[ii] = owner;
    chunk.count++;
    chunk.lastUsed = this.tick;
    this.entries++;
    this.ci = ci;
    this.ii = ii;
    if (split) this.rebuildFirsts();
    else if (ii === 0) this.firstStarts[ci] = start;
  }

  /** Merges the interval at the cursor with touching neighbours of the same owner. */
  private coalesceAtCursor(): void {
    let chunk = this.chunks[this.ci]!;
    const owner = chunk.owners[this.ii]!;
    // Previous neighbour.
    const previousChunk = this.ii > 0 ? chunk : this.ci > 0 ? this.chunks[this.ci - 1]! : null;
    const previousIndex = this.ii > 0 ? this.ii - 1 : previousChunk ? previousChunk.count - 1 : -1;
    if (previousChunk && previousChunk.owners[previousIndex] === owner && previousChunk.ends[previousIndex] === chunk.starts[this.ii]) {
      previousChunk.ends[previousIndex] = chunk.ends[this.ii]!;
      this.removeAt();
      // Cursor now on the following interval; step back to the merged one.
      this.locate(previousChunk.starts[previousIndex]!);
      chunk = this.chunks[this.ci]!;
    }
    const end = chunk.ends[this.ii]!;
    const ci = this.ci;
    const ii = this.ii;
    if (this.advance() && this.chunks[this.ci]!.owners[this.ii] === owner && this.chunks[this.ci]!.starts[this.ii] === end) {
      const nextEnd = this.chunks[this.ci]!.ends[this.ii]!;
      this.removeAt();
      this.chunks[ci]!.ends[ii] = nextEnd;
    }
  }

  private enforceBound(): void {
    while (this.entries > this.maxEntries) this.evictChunk();
  }

  /** Collapses the least recently used chunk (of those with more than one interval) into one UNKNOWN interval. */
  private evictChunk(): void {
    let victim = -1;
    for (let c = 0; c < this.chunks.length; c++) {
      const chunk = this.chunks[c]!;
      if (chunk.count > 1 && (victim < 0 || chunk.lastUsed < this.chunks[victim]!.lastUsed)) victim = c;
    }
    if (victim < 0) {
      // Only single-interval chunks are left (a long history of deletions): pack them and retry.
      this.compact();
      return;
    }
    const chunk = this.chunks[victim]!;
    const start = chunk.starts[0]!;
    const end = chunk.ends[chunk.count - 1]!;
    this.evictions++;
    this.evictedEntries += chunk.count - 1;
    this.entries -= chunk.count - 1;
    chunk.starts[0] = start;
    chunk.ends[0] = end;
    chunk.owners[0] = UNKNOWN;
    chunk.count = 1;
    this.mergeSingleton(victim);
  }

  /** Repacks every interval into chunks filled to three quarters. O(n); only when chunks degenerate. */
  private compact(): void {
    const all = this.intervals();
    const fill = (CHUNK_ENTRIES * 3) >>> 2;
    const packed: Chunk[] = [];
    for (let k = 0; k < all.length; k++) {
      if (k % fill === 0) packed.push(new Chunk());
      const chunk = packed[packed.length - 1]!;
      chunk.starts[chunk.count] = all[k]!.start;
      chunk.ends[chunk.count] = all[k]!.end;
      chunk.owners[chunk.count] = all[k]!.owner;
      chunk.count++;
    }
    this.chunks = packed;
    this.rebuildFirsts();
  }

  /** A one-interval chunk joins a neighbouring chunk when there is room (or an UNKNOWN neighbour touching it). */
  private mergeSingleton(c: number): void {
    const chunk = this.chunks[c]!;
    const previous = c > 0 ? this.chunks[c - 1]! : null;
    const next = c + 1 < this.chunks.length ? this.chunks[c + 1]! : null;
    const s = chunk.starts[0]!;
    const e = chunk.ends[0]!;
    const o = chunk.owners[0]!;
    if (previous && previous.owners[previous.count - 1] === o && previous.ends[previous.count - 1] === s) {
      previous.ends[previous.count - 1] = e;
      this.entries--;
    } else if (previous && previous.count < CHUNK_ENTRIES) {
      previous.starts[previous.count] = s;
      previous.ends[previous.count] = e;
      previous.owners[previous.count] = o;
      previous.count++;
    } else if (next && next.count < CHUNK_ENTRIES) {
      next.starts.copyWithin(1, 0, next.count);
      next.ends.copyWithin(1, 0, next.count);
      next.owners.copyWithin(1, 0, next.count);
      next.starts[0] = s;
      next.ends[0] = e;
      next.owners[0] = o;
      next.count++;
    } else return;
    this.chunks.splice(c, 1);
    this.rebuildFirsts();
  }

  private rebuildFirsts(): void {
    if (this.firstStarts.length < this.chunks.length) {
      let capacity = this.firstStarts.length;
      while (capacity < this.chunks.length) capacity *= 2;
      this.firstStarts = new Float64Array(capacity);
    }
    for (let c = 0; c < this.chunks.length; c++) this.firstStarts[c] = this.chunks[c]!.starts[0]!;
  }
}
