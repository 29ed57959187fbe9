import assert from 'node:assert/strict';
import type { SyscallEvent } from './events.js';

/**
 * The session's event stream: producers push, one consumer pulls with `for await`. The kernel cannot be slowed
 * down, so the buffer is bounded and events beyond the bound are dropped and counted (the consumer then sees a
 * `lost` event when it catches up). Items live in one array consumed from `head`, compacted rarely.
 */
export class EventQueue implements AsyncIterable<SyscallEvent> {
  private items: SyscallEvent[] = [];
  private head = 0;
  private waiter: ((result: IteratorResult<SyscallEvent>) => void) | null = null;
  private failer: ((error: Error) => void) | null = null;
  private ended = false;
  private error: Error | null = null;
  private iterated = false;
  private droppedPending = 0;
  private droppedTotal = 0;

  constructor(private readonly capacity: number = 1 << 20) {
    assert.ok(capacity > 0);
  }

  get dropped(): number {
    return this.droppedTotal;
  }

  get backlog(): number {
    return this.items.length - this.head;
  }

  push(event: SyscallEvent): void {
    if (this.ended) return;
    if (this.items.length - this.head >= this.capacity) {
      this.droppedPending++;
      this.droppedTotal++;
      return;
    }
    if (this.droppedPending > 0) {
      this.enqueue({ kind: 'lost', ts: event.ts, pid: 0, tid: 0, count: this.droppedPending });
      this.droppedPending = 0;
    }
    this.enqueue(event);
  }

  /** No more events. With an error, the consumer's loop throws it after the events already queued. */
  end(error?: Error): void {
    if (this.ended) return;
    this.ended = true;
    this.error = error ?? null;
    if (this.head < this.items.length) return;
    this.settleEnd();
  }

  [Symbol.asyncIterator](): AsyncIterator<SyscallEvent> {
    assert.ok(!this.iterated, 'a trace session has one consumer of its events');
    this.iterated = true;
    return { next: () => this.next(), return: async () => this.abandon() };
  }

  private next(): Promise<IteratorResult<SyscallEvent>> {
    if (this.head < this.items.length) return Promise.resolve({ value: this.take(), done: false });
    if (this.ended) return this.error ? Promise.reject(this.error) : Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => {
      this.waiter = resolve;
      this.failer = reject;
    });
  }

  private take(): SyscallEvent {
    const event = this.items[this.head++];
    if (this.head >= 4096 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return event;
  }

  private deliver(event: SyscallEvent): void {
    const waiter = this.waiter;
    assert.ok(waiter && this.head === this.items.length);
    this.waiter = null;
    this.failer = null;
    waiter({ value: event, done: false });
  }

  private enqueue(event: SyscallEvent): void {
    if (this.waiter) this.deliver(event);
    else this.items.push(event);
  }

  private settleEnd(): void {
    const waiter = this.waiter;
    const failer = this.failer;
    this.waiter = null;
    this.failer = null;
    if (this.error && failer) failer(this.error);
    else if (waiter) waiter({ value: undefined, done: true });
  }

  private abandon(): IteratorResult<SyscallEvent> {
    this.items = [];
    this.head = 0;
    this.ended = true;
    return { value: undefined, done: true };
  }
}
