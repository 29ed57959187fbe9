import { describe, expect, it } from 'vitest';
import { DueQueue } from '../../../src/agent/due-queue.js';

describe('DueQueue', () => {
  it('keeps keys in the order they were last scheduled', () => {
    const queue = new DueQueue<string>();
    queue.set('a', 10);
    queue.set('b', 20);
    queue.set('a', 30); // re-scheduled: to the back
    expect(queue.size).toBe(2);
    expect(queue.first()).toMatchObject({ key: 'b', due: 20 });
    expect(queue.shift()).toMatchObject({ key: 'b' });
    expect(queue.shift()).toMatchObject({ key: 'a', due: 30 });
    expect(queue.shift()).toBeUndefined();
    expect(queue.size).toBe(0);
  });

  it('skips deleted keys and keeps the live entry of a key deleted and set again', () => {
    const queue = new DueQueue<number>();
    for (let k = 0; k < 10; k++) queue.set(k, k);
    queue.delete(0);
    queue.delete(1);
    queue.delete(5);
    queue.set(2, 99);
    expect(queue.has(5)).toBe(false);
    expect([...drain(queue)]).toEqual([3, 4, 6, 7, 8, 9, 2]);
  });

  it('stays compact when a bounded queue is full for a long time (every entry moved or skipped a bounded number of times)', () => {
    const queue = new DueQueue<number>();
    const bound = 1000;
    for (let k = 0; k < 50 * bound; k++) {
      queue.delete(k - 7); // some re-scheduled, as files closed again
      queue.set(k - 7, k);
      queue.set(k, k);
      if (queue.size > bound) queue.shift();
    }
    expect(queue.size).toBe(bound);
    // What the array holds stays within a constant factor of the live keys.
    expect((queue as unknown as { entries: unknown[] }).entries.length).toBeLessThanOrEqual(2 * bound + 2);
    const keys = [...drain(queue)];
    expect(new Set(keys).size).toBe(keys.length);
    expect(keys).toHaveLength(bound);
  });

  it('clears', () => {
    const queue = new DueQueue<string>();
    queue.set('a', 1);
    queue.clear();
    expect(queue.first()).toBeUndefined();
    expect([...queue.keys()]).toEqual([]);
  });
});

function* drain<K>(queue: DueQueue<K>): Generator<K> {
  for (let entry = queue.shift(); entry !== undefined; entry = queue.shift()) yield entry.key;
}
