import assert from 'node:assert/strict';

/**
 * The bytes a socket has delivered and the parser has not consumed, kept as the chunks they arrived in.
 * Never concatenates: a parser asks for a view when the bytes it needs sit in one chunk (the common case) and
 * copies only when a field straddles two chunks. Concatenating socket chunks cost 3× on 1 MiB writes.
 */
export class ByteQueue {
  private readonly chunks: Buffer[] = [];
  /** Offset of the first unconsumed byte in chunks[0]. */
  private headOffset = 0;
  private byteCount = 0;

  get length(): number {
    return this.byteCount;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.byteCount += chunk.length;
  }

  /**
   * The next `n` bytes, consumed. A view into the socket's chunk when contiguous, else copied into `scratch`
   * (which must hold n bytes). The view is valid until the caller lets go of it; chunks are never reused.
   */
  take(n: number, scratch: Buffer): Buffer {
    assert.ok(n <= this.byteCount, 'take beyond available bytes');
    const first = this.chunks[0]!;
    if (first.length - this.headOffset >= n) {
      const view = first.subarray(this.headOffset, this.headOffset + n);
      this.advance(n);
      return view;
    }
    assert.ok(scratch.length >= n, 'scratch too small');
    this.copyInto(scratch, 0, n);
    return scratch.subarray(0, n);
  }

  /** Copies up to `n` bytes into target[at..] and consumes them; returns how many were copied. */
  copyInto(target: Buffer, at: number, n: number): number {
    let copied = 0;
    while (copied < n && this.chunks.length > 0) {
      const first = this.chunks[0]!;
      const available = first.length - this.headOffset;
      const count = Math.min(available, n - copied);
      first.copy(target, at + copied, this.headOffset, this.headOffset + count);
      copied += count;
      this.advance(count);
    }
    return copied;
  }

  /** Drops up to `n` bytes; returns how many were dropped. */
  skip(n: number): number {
    let skipped = 0;
    while (skipped < n && this.chunks.length > 0) {
      const available = this.chunks[0]!.length - this.headOffset;
      const count = Math.min(available, n - skipped);
      skipped += count;
      this.advance(count);
    }
    return skipped;
  }

  /** Replaces every held view by one private copy, for callers whose chunks are about to be overwritten. */
  detach(): void {
    if (this.byteCount === 0) return;
    const copy = Buffer.allocUnsafe(this.byteCount);
    this.copyInto(copy, 0, this.byteCount);
    this.push(copy);
  }

  clear(): void {
    this.chunks.length = 0;
    this.headOffset = 0;
    this.byteCount = 0;
  }

  private advance(n: number): void {
    this.headOffset += n;
    this.byteCount -= n;
    if (this.headOffset === this.chunks[0]!.length) {
      this.chunks.shift();
      this.headOffset = 0;
    }
  }
}
