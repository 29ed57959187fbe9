/**
 * Per-4 KiB-block state for the report, stored in pages allocated on first touch, so memory follows what the log
 * wrote, not the volume's size: 12 bytes per block of a touched 16 MiB page (4096 blocks), i.e. 0.07% of the bytes
 * written at worst.
 *
 *  - epoch: the line of the last write, trim or zero that touched the block (0: none in the log). Re-tags apply to
 *    the requests of the block's current epoch.
 *  - born: t (ms) of the write that started the block's current life; NaN when it is not alive (never written in
 *    the log, trimmed, zeroed, or its file is gone).
 */
import assert from 'node:assert/strict';

export const REPORT_BLOCK_BYTES = 4096;
const PAGE_BLOCKS = 4096;
const PAGE_SHIFT = 12;

interface Page {
  epoch: Float64Array;
  born: Float32Array;
}

export class BlockMap {
  private readonly pages: (Page | undefined)[];
  readonly blocks: number;

  constructor(volumeBytes: number) {
    assert.ok(Number.isSafeInteger(volumeBytes) && volumeBytes > 0, 'volume size');
    this.blocks = Math.ceil(volumeBytes / REPORT_BLOCK_BYTES);
    assert.ok(this.blocks < 2 ** 32, 'volumes up to 16 TiB (block numbers are 32-bit)');
    this.pages = new Array(Math.ceil(this.blocks / PAGE_BLOCKS));
  }

  /** Blocks [first, last] touched by [offset, offset + length), clipped to the volume; last < first when none. */
  range(offset: number, length: number): { first: number; last: number } {
    const first = Math.floor(offset / REPORT_BLOCK_BYTES);
    const last = Math.min(this.blocks - 1, Math.floor((offset + length - 1) / REPORT_BLOCK_BYTES));
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
