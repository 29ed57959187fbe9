import { describe, expect, it } from 'vitest';
import { ByteQueue } from '../../../src/nbd/byte-queue.js';
import { BufferPool } from '../../../src/nbd/buffer-pool.js';

describe('ByteQueue', () => {
  it('returns a view, not a copy, when the bytes sit in one chunk', () => {
    const q = new ByteQueue();
    const chunk = Buffer.from([1, 2, 3, 4, 5, 6]);
    q.push(chunk);
    const view = q.take(4, Buffer.alloc(4));
    expect([...view]).toEqual([1, 2, 3, 4]);
    expect(view.buffer).toBe(chunk.buffer);
    expect(q.length).toBe(2);
  });

  it('copies into scratch when a field straddles chunks', () => {
    const q = new ByteQueue();
    q.push(Buffer.from([1, 2]));
    q.push(Buffer.from([3]));
    q.push(Buffer.from([4, 5]));
    const scratch = Buffer.alloc(8);
    const got = q.take(4, scratch);
    expect([...got]).toEqual([1, 2, 3, 4]);
    expect(got.buffer).toBe(scratch.buffer);
    expect(q.length).toBe(1);
  });

  it('skips and copies across many chunks and reports what it did', () => {
    const q = new ByteQueue();
    for (let i = 0; i < 10; i++) q.push(Buffer.from([i, i]));
    expect(q.skip(3)).toBe(3);
    const target = Buffer.alloc(20);
    expect(q.copyInto(target, 1, 100)).toBe(17);
    expect(target[1]).toBe(1);
    expect(target[17]).toBe(9);
    expect(q.length).toBe(0);
    expect(q.skip(5)).toBe(0);
  });

  it('refuses to take more than it holds', () => {
    const q = new ByteQueue();
    q.push(Buffer.alloc(3));
    expect(() => q.take(4, Buffer.alloc(4))).toThrow(/beyond/);
  });
});

describe('BufferPool', () => {
  it('rounds up to a power of two and reuses released buffers', () => {
    const pool = new BufferPool(2);
    const a = pool.acquire(5000);
    expect(a.length).toBe(8192);
    pool.release(a);
    expect(pool.acquire(8000)).toBe(a);
    expect(pool.acquire(1).length).toBe(4096);
  });

  it('keeps at most keepPerClass idle buffers', () => {
    const pool = new BufferPool(1);
    const a = pool.acquire(4096);
    const b = pool.acquire(4096);
    pool.release(a);
    pool.release(b);
    expect(pool.acquire(4096)).toBe(a);
    expect(pool.acquire(4096)).not.toBe(b);
  });
});

describe('BufferPool budget', () => {
  it('keeps no more idle bytes than its budget', () => {
    const pool = new BufferPool(16, 3 * 4096);
    const buffers = [0, 1, 2, 3].map(() => pool.acquire(4096));
    buffers.forEach((b) => pool.release(b));
    expect(pool.acquire(4096)).toBe(buffers[2]);
    expect(pool.acquire(4096)).toBe(buffers[1]);
    expect(pool.acquire(4096)).toBe(buffers[0]);
    expect(buffers).not.toContain(pool.acquire(4096));
  });
});
