import assert from 'node:assert/strict';

/**
 * Reusable buffers in power-of-two size classes, so steady-state I/O allocates nothing per request.
 * Bounded: each class keeps at most `keepPerClass` idle buffers; the rest are left to the GC.
 */
export class BufferPool {
  private readonly classes: Buffer[][] = [];
  private readonly keepPerClass: number;
  private readonly minimumShift = 12;

  constructor(keepPerClass = 16) {
    this.keepPerClass = keepPerClass;
  }

  /** A buffer of at least `size` bytes (its length is the size class; use subarray(0, size)). */
  acquire(size: number): Buffer {
    assert.ok(Number.isSafeInteger(size) && size >= 0, 'bad buffer size');
    const shift = this.classOf(size);
    const idle = this.classes[shift];
    if (idle !== undefined && idle.length > 0) return idle.pop()!;
    return Buffer.allocUnsafeSlow(2 ** shift);
  }

  release(buffer: Buffer): void {
    const shift = Math.log2(buffer.length);
    if (!Number.isInteger(shift) || shift < this.minimumShift) return;
    const idle = (this.classes[shift] ??= []);
    if (idle.length < this.keepPerClass) idle.push(buffer);
  }

  private classOf(size: number): number {
    let shift = this.minimumShift;
    while (2 ** shift < size) shift++;
    return shift;
  }
}
