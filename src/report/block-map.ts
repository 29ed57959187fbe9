/**
 * Per-block state for the report (4 KiB blocks for lifetimes; 1 KiB grains for re-tag epochs, see retagGrainBytes),
 * stored in pages allocated on first touch, so memory follows what the log wrote, not the volume's size: 12 bytes per
 * block of a touched page of 4096 blocks, i.e. 0.3% of the bytes written at worst (1 KiB grains).
 *
 *  - epoch: the line of the last write, trim or zero that touched the block (0: none in the log). Re-tags apply to
 *    the requests of the block's current epoch.
 *  - born: t (ms) of the write that started the block's current life; NaN when it is not alive (never written in
 *    the log, trimmed, zeroed, or its file is gone).
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

interface Page {
  epoch: Float64Array;
  born: Float32Array;
}

export class BlockMap {
  private readonly pages: (Page | undefined)[];
  readonly blocks: number;

  /** `blockBytes`: REPORT_BLOCK_BYTES, or smaller for re-tag epochs (retagGrainBytes). */
  constructor(volumeBytes: number, readonly blockBytes: number = REPORT_BLOCK_BYTES) {
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

  epoch(block: number): number {
    const page = this.pages[block >>> PAGE_SHIFT];
    return page === undefined ? 0 : page.epoch[block & (PAGE_BLOCKS - 1)]!;
  }

  born(block: number): number {
    const page = this.pages[block >>> PAGE_SHIFT];
    return page === undefined ? NaN : page.born[block & (PAGE_BLOCKS - 1)]!;
  }

  setEpoch(block: number, line: number): void {
    this.page(block).epoch[block & (PAGE_BLOCKS - 1)] = line;
  }

  setBorn(block: number, t: number): void {
    this.page(block).born[block & (PAGE_BLOCKS - 1)] = t;
  }

  /** Calls `visit` with the birth time of every block alive now. */
  forEachAlive(visit: (block: number, born: number) => void): void {
    this.pages.forEach((page, p) => {
      if (page === undefined) return;
      for (let k = 0; k < PAGE_BLOCKS; k++) if (!Number.isNaN(page.born[k]!)) visit(p * PAGE_BLOCKS + k, page.born[k]!);
    });
  }

  private page(block: number): Page {
    const at = block >>> PAGE_SHIFT;
    let page = this.pages[at];
    if (page === undefined) {
      page = { epoch: new Float64Array(PAGE_BLOCKS), born: new Float32Array(PAGE_BLOCKS).fill(NaN) };
      this.pages[at] = page;
    }
    return page;
  }
}
