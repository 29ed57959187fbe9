import assert from 'node:assert/strict';

/** Once this many consumed chunk slots pile up at the front, they are dropped in one splice. */
const COMPACT_AFTER = 64;

/**
 * The bytes a socket has delivered and the parser has not consumed, kept as the chunks they arrived in.
 * Nothing is concatenated: headers that straddle two chunks are copied into a caller's small scratch buffer,
 * payloads are copied once, straight into their destination.
 */
export class ByteQueue {
  private chunks: Buffer[] = [];
  private head = 0;
  private headOffset = 0;
  private available = 0;
  /** Where the bytes returned by the last `take` start inside the returned buffer. */
  takenOffset = 0;

  get length(): number {
    return this.available;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.available += chunk.length;
  }

  /** Big-endian u32 at `at` bytes from the front, without consuming. */
  peekUInt32BE(at: number): number {
    assert.ok(at + 4 <= this.available, 'peek past the queued bytes');
    let value = 0;
    for (let i = 0; i < 4; i++) value = value * 256 + this.byteAt(at + i);
    return value;
  }

  /**
   * Consumes `n` bytes and returns a buffer holding them from `takenOffset`: the arrival chunk itself when they
   * lie in one chunk, otherwise `scratch` (or, if it is too small, a new buffer) with the bytes copied in.
   */
  take(n: number, scratch: Buffer): Buffer {
    assert.ok(n <= this.available, 'take past the queued bytes');
    const chunk = this.chunks[this.head];
    if (chunk !== undefined && chunk.length - this.headOffset >= n) {
      this.takenOffset = this.headOffset;
      this.consume(n);
      return chunk;
    }
    const target = scratch.length >= n ? scratch : Buffer.allocUnsafe(n);
    this.copyTo(target, 0, n);
    this.takenOffset = 0;
    return target;
  }

  /** Consumes `n` bytes by copying them into `target` at `targetOffset`. */
  copyTo(target: Buffer, targetOffset: number, n: number): void {
    assert.ok(n <= this.available && targetOffset + n <= target.length, 'copy out of bounds');
    let copied = 0;
    while (copied < n) {
      const chunk = this.chunks[this.head]!;
      const count = Math.min(chunk.length - this.headOffset, n - copied);
      chunk.copy(target, targetOffset + copied, this.headOffset, this.headOffset + count);
      copied += count;
      this.consume(count);
    }
  }

  /** Drops everything (the connection is gone). */
  clear(): void {
    this.chunks = [];
    this.head = 0;
    this.headOffset = 0;
    this.available = 0;
  }

  private byteAt(at: number): number {
    let index = this.head;
    let position = this.headOffset + at;
    while (position >= this.chunks[index]!.length) {
      position -= this.chunks[index]!.length;
      index++;
    }
    return this.chunks[index]![position]!;
  }

  /** Advances within the head chunk only; callers never consume across a chunk boundary in one call. */
  private consume(n: number): void {
    const chunk = this.chunks[this.head]!;
    assert.ok(this.headOffset + n <= chunk.length);
    this.headOffset += n;
    this.available -= n;
    if (this.headOffset < chunk.length) return;
    this.head++;
    this.headOffset = 0;
    if (this.head === this.chunks.length) {
      this.chunks.length = 0;
      this.head = 0;
    } else if (this.head >= COMPACT_AFTER) {
      this.chunks.splice(0, this.head);
      this.head = 0;
    }
  }
}
