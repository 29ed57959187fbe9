import assert from 'node:assert/strict';
import type { SyscallEvent } from './events.js';

/**
 * Holds events that may arrive out of order (per-CPU buffers, map batches) until a watermark says no earlier
 * event can still come, then hands them out sorted by time. The sort is stable, so events with equal
 * timestamps keep the order in which the backend produced them.
 */
export class OrderedRelease {
  private pending: SyscallEvent[] = [];
  private released = -Infinity;

  constructor(private readonly sink: (event: SyscallEvent) => void) {}

  get size(): number {
    return this.pending.length;
  }

  push(event: SyscallEvent): void {
    this.pending.push(event);
  }

  /** Hands out every held event older than `watermark` (ns, same clock as `ts`). */
  release(watermark: number): void {
    if (watermark <= this.released || this.pending.length === 0) return;
    this.pending.sort(byTime);
    let split = 0;
    while (split < this.pending.length && this.pending[split].ts < watermark) split++;
    for (let i = 0; i < split; i++) this.sink(this.pending[i]);
    this.pending = split === this.pending.length ? [] : this.pending.slice(split);
    this.released = watermark;
  }

  /** The source ended: hand out everything. */
  drain(): void {
    this.pending.sort(byTime);
    const events = this.pending;
    this.pending = [];
    for (const event of events) this.sink(event);
    assert.equal(this.pending.length, 0, 'the sink must not push while draining');
  }
}

function byTime(a: SyscallEvent, b: SyscallEvent): number {
  return a.ts - b.ts;
}
