/** The pieces between a backend and the consumer: line splitting, the bounded event queue, ordering, validation. */
import { describe, expect, it } from 'vitest';
import type { SyscallEvent } from '../../../src/trace/events.js';
import { LineSplitter } from '../../../src/trace/lines.js';
import { OrderedRelease } from '../../../src/trace/order.js';
import { EventQueue } from '../../../src/trace/queue.js';
import { syscallEventError } from '../../../src/trace/validate.js';

function close(ts: number, fd = 3): SyscallEvent {
  return { kind: 'close', ts, pid: 1, tid: 1, fd, ret: 0 };
}

describe('LineSplitter', () => {
  it('hands out lines inside a chunk as views and joins a line that spans chunks once', () => {
    const lines: string[] = [];
    const views: boolean[] = [];
    let chunk: Buffer | null = null;
    const splitter = new LineSplitter((buffer, start, end) => {
      lines.push(buffer.toString('utf8', start, end));
      views.push(buffer === chunk);
    });
    for (const text of ['a\nbb', 'b\ncc', 'c', 'c\n\nd']) {
      chunk = Buffer.from(text);
      splitter.push(chunk);
    }
    splitter.end();
    expect(lines).toEqual(['a', 'bbb', 'cccc', '', 'd']);
    expect(views).toEqual([true, false, false, true, false]);
  });

  it('refuses a line beyond its bound', () => {
    const splitter = new LineSplitter(() => undefined, 4);
    expect(() => splitter.push(Buffer.from('abcdef'))).toThrow('line longer than 4 bytes');
  });
});

describe('EventQueue', () => {
  it('delivers pushed events in order, to a waiting or a late consumer, then ends', async () => {
    const queue = new EventQueue();
    queue.push(close(1));
    const seen: number[] = [];
    const loop = (async () => {
      for await (const event of queue) seen.push(event.ts);
    })();
    await new Promise((resolve) => setImmediate(resolve));
    queue.push(close(2));
    queue.push(close(3));
    queue.end();
    await loop;
    expect(seen).toEqual([1, 2, 3]);
  });

  it('throws the end error after the queued events', async () => {
    const queue = new EventQueue();
    queue.push(close(1));
    queue.end(new Error('tracer died'));
    const seen: number[] = [];
    await expect((async () => {
      for await (const event of queue) seen.push(event.ts);
    })()).rejects.toThrow('tracer died');
    expect(seen).toEqual([1]);
  });

  it('drops beyond its capacity, counts the drops, and tells the consumer with a lost event', async () => {
    const queue = new EventQueue(2);
    for (let ts = 1; ts <= 5; ts++) queue.push(close(ts));
    expect(queue.dropped).toBe(3);
    const iterator = queue[Symbol.asyncIterator]();
    expect((await iterator.next()).value).toMatchObject({ ts: 1 });
    expect((await iterator.next()).value).toMatchObject({ ts: 2 });
    queue.push(close(6));
    expect((await iterator.next()).value).toEqual({ kind: 'lost', ts: 6, pid: 0, tid: 0, count: 3 });
    expect((await iterator.next()).value).toMatchObject({ ts: 6 });
  });

  it('has one consumer', () => {
    const queue = new EventQueue();
    queue[Symbol.asyncIterator]();
    expect(() => queue[Symbol.asyncIterator]()).toThrow('one consumer');
  });
});

describe('OrderedRelease', () => {
  it('holds events until the watermark passes them, then releases them sorted (stable for equal times)', () => {
    const out: SyscallEvent[] = [];
    const order = new OrderedRelease((event) => out.push(event));
    for (const event of [close(30), close(10), close(20, 4), close(20, 5), close(50)]) order.push(event);
    order.release(25);
    expect(out.map((event) => [event.ts, event.kind === 'close' ? event.fd : 0])).toEqual([[10, 3], [20, 4], [20, 5]]);
    order.push(close(40));
    order.release(45);
    order.drain();
    expect(out.map((event) => event.ts)).toEqual([10, 20, 20, 30, 40, 50]);
    expect(order.size).toBe(0);
  });
});

describe('syscallEventError', () => {
  it('accepts every kind with its fields and optional fields', () => {
    const good: SyscallEvent[] = [
      { kind: 'exec', ts: 1, pid: 1, tid: 1, path: '/bin/sh', argv: ['sh'], ret: 0, closedFds: [3], comm: 'sh' },
      { kind: 'rw', ts: 1, pid: 1, tid: 1, op: 'write', fd: 3, offset: null, count: 5, ret: 5, hint: { magic: 1, ioClass: 2 }, position: 5 },
      { kind: 'copy', ts: 1, pid: 1, tid: 1, call: 'FICLONE', fdIn: 3, fdOut: 4, offsetIn: null, offsetOut: null, length: 0, ret: 0 },
      { kind: 'exit', ts: 1, pid: 1, tid: 1, group: true, signal: 9 },
      { kind: 'lost', ts: 1, pid: 0, tid: 0, count: 7 },
    ];
    for (const event of good) expect(syscallEventError(event)).toBeNull();
    expect(syscallEventError({ ...good[0], futureField: 'ok' })).toBeNull();
  });

  it('says what is wrong', () => {
    expect(syscallEventError('x')).toBe('not a JSON object');
    expect(syscallEventError({ kind: 'teleport', ts: 1, pid: 1, tid: 1 })).toBe('unknown event kind "teleport"');
    expect(syscallEventError({ kind: 'close', ts: 1, pid: 1, tid: 1, fd: 3 })).toBe('close event: field "ret" is missing');
    expect(syscallEventError({ kind: 'close', ts: 1.5, pid: 1, tid: 1, fd: 3, ret: 0 })).toBe('close event: field "ts" must be an integer');
    expect(syscallEventError({ kind: 'rw', ts: 1, pid: 1, tid: 1, op: 'seek', fd: 3, offset: null, count: 1, ret: 1 })).toBe(
      'rw event: field "op" must be one of read, write',
    );
    expect(syscallEventError({ kind: 'open', ts: 1, pid: 1, tid: 1, dirfd: -100, path: 'a', flags: 0, mode: 0, ret: 3, ino: 'x' })).toBe(
      'open event: field "ino" must be an integer',
    );
  });
});
