import assert from 'node:assert/strict';

/**
 * Reusable buffers in power-of-two size classes, so steady-state I/O allocates nothing per request.
 * Bounded twice: each class keeps at most `keepPerClass` idle buffers, and all idle buffers together at most
 * `idleBytesMax` (so a burst of 32 MiB requests does not pin half a gigabyte); the rest are left to the GC.
 */
export class BufferPool {
  private readonly classes: Buffer[][] = [];
  private readonly keepPerClass: number;
  private readonly minimumShift = 12;

  private readonly idleBytesMax: number;
  private idleBytes = 0;

  constructor(keepPerClass = 16, idleBytesMax = 64 * 1024 * 1024) {
    this.keepPerClass = keepPerClass;
    this.idleBytesMax = idleBytesMax;
  }

  /** A buffer of at least `size` bytes (its length is the size class; use subarray(0, size)). */
  acquire(size: number): Buffer {
    assert.ok(Number.isSafeInteger(size) && size >= 0, 'bad buffer size');
    const shift = this.classOf(size);
    const idle = this.classes[shift];
    if (idle !== undefined && idle.length > 0) {
      const buffer = idle.pop()!;
      this.idleBytes -= buffer.length;
      return buffer;
    }
    return Buffer.allocUnsafeSlow(2 ** shift);
  }

  release(buffer: Buffer): void {
    const shift = Math.log2(buffer.length);
    if (!Number.isInteger(shift) || shift < this.minimumShift) return;
    const idle = (this.classes[shift] ??= []);
    if (idle.length >= this.keepPerClass || this.idleBytes + buffer.length > this.idleBytesMax) return;
    idle.push(buffer);
    this.idleBytes += buffer.length;
    assert.ok(this.idleBytes <= this.idleBytesMax, 'idle bytes over budget');
  }

  private classOf(size: number): number {
    let shift = this.minimumShift;
    while (2 ** shift < size) shift++;
    return shift;
  }
}
