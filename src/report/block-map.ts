/**
 * Per-block state for the report, stored in pages allocated on first touch, so memory follows what the log wrote,
 * not the volume's size. Each map keeps one thing:
 *
 *  - EpochMap (per re-tag grain, see retagGrainBytes): the line of the last write, trim or zero that touched the
 *    grain (0: none in the log). Re-tags apply to the requests of the grain's current epoch. 8 bytes per grain of a
 *    touched page: 0.8% of the bytes written at worst with 1 KiB grains.
 *  - BirthMap (per 4 KiB block, lifetimes): t (ms) of the write that started the block's current life; NaN when it
 *    is not alive (never written in the log, trimmed, zeroed, or its file is gone). 4 bytes per block.
 */
import assert from 'node:assert/strict';

export const REPORT_BLOCK_BYTES = 4096;

/**
 * The unit re-tags are resolved to: 1 KiB where block numbers allow (volumes under 4 TiB), else 4 KiB. A file system
 * with 1 KiB blocks puts a small file's data in part of a 4 KiB block and metadata in the rest, and a re-tag of the
 * file's bytes must not re-tag the metadata beside it.
 */
export function retagGrainBytes(volumeBytes: number): number {
  return Math.ceil(volumeBytes / 1024) < 2 ** 32 ? 1024 : REPORT_BLOCK_BYTES;
}

const PAGE_BLOCKS = 4096;
const PAGE_SHIFT = 12;

/** Blocks of `blockBytes` over a volume, one number each, in pages made on first write. */
abstract class PagedBlocks<Page extends Float64Array | Float32Array> {
  protected readonly pages: (Page | undefined)[];
  readonly blocks: number;

  constructor(volumeBytes: number, readonly blockBytes: number) {
    assert.ok(Number.isSafeInteger(volumeBytes) && volumeBytes > 0, 'volume size');
    this.blocks = Math.ceil(volumeBytes / blockBytes);
    assert.ok(this.blocks < 2 ** 32, 'up to 2^32 blocks (16 TiB of 4 KiB blocks): block numbers are 32-bit');
    this.pages = new Array(Math.ceil(this.blocks / PAGE_BLOCKS));
  }

  /** Blocks [first, last] touched by [offset, offset + length), clipped to the volume; last < first when none. */
  range(offset: number, length: number): { first: number; last: number } {
    const first = Math.floor(offset / this.blockBytes);
    const last = Math.min(this.blocks - 1, Math.floor((offset + length - 1) / this.blockBytes));
    return { first, last: length > 0 ? last : first - 1 };
  }

  protected abstract newPage(): Page;

  protected read(block: number, absent: number): number {
    const page = this.pages[block >>> PAGE_SHIFT];
    return page === undefined ? absent : page[block & (PAGE_BLOCKS - 1)]!;
  }

  protected write(block: number, value: number): void {
    const at = block >>> PAGE_SHIFT;
    const page = (this.pages[at] ??= this.newPage());
    page[block & (PAGE_BLOCKS - 1)] = value;
  }
}

export class EpochMap extends PagedBlocks<Float64Array> {
  constructor(volumeBytes: number, grainBytes = retagGrainBytes(volumeBytes)) {
    super(volumeBytes, grainBytes);
  }

  protected newPage(): Float64Array {
    return new Float64Array(PAGE_BLOCKS);
  }

  epoch(block: number): number {
    return this.read(block, 0);
  }

  setEpoch(block: number, line: number): void {
    this.write(block, line);
  }
}

export class BirthMap extends PagedBlocks<Float32Array> {
  constructor(volumeBytes: number) {
    super(volumeBytes, REPORT_BLOCK_BYTES);
  }

  protected newPage(): Float32Array {
    return new Float32Array(PAGE_BLOCKS).fill(NaN);
  }

  born(block: number): number {
    return this.read(block, NaN);
  }

  setBorn(block: number, t: number): void {
    this.write(block, t);
  }

  /** Calls `visit` with the birth time of every block alive now. */
  forEachAlive(visit: (block: number, born: number) => void): void {
    this.pages.forEach((page, p) => {
      if (page === undefined) return;
      for (let k = 0; k < PAGE_BLOCKS; k++) if (!Number.isNaN(page[k]!)) visit(p * PAGE_BLOCKS + k, page[k]!);
    });
  }
}
