import assert from 'node:assert/strict';
import type { BlockLayer, IoRequest } from '../../volume/types.js';
import { PassthroughLayer } from '../../volume/passthrough.js';
import type { Clock } from './clock.js';
import type { TimingMode } from './schema.js';

export type TimedOp = 'read' | 'write' | 'trim' | 'zero' | 'cache' | 'flush';
const TIMED_OPS: readonly TimedOp[] = ['read', 'write', 'trim', 'zero', 'cache', 'flush'];

/** Below this much time owed, a request completes at once; the rest stays owed on the model's timeline. */
export const EMULATION_GRANULARITY_MS = 1;

export interface TimedOpStats {
  count: number;
  bytes: number;
  modelTimeMs: number;
}

export interface TimingStats {
  model: string;
  mode: TimingMode;
  /** Sum of per-request service times (queueing excluded): what the modelled device spent busy. */
  modelTimeMs: number;
  /** Sum over requests of the time each was held back in emulate mode (waits of parallel requests add up). */
  emulatedWaitMs: number;
  ops: Record<TimedOp, TimedOpStats>;
}

/** What a model's `admit` reports for one request; one reused object, so admitting allocates nothing. */
export interface Admission {
  /** When the request completes on the model's timeline (clock milliseconds). */
  doneAtMs: number;
  /** Time the device spends on this request alone. */
  serviceMs: number;
}

/**
 * Base of the timing models. A model keeps its own timeline of when its resources (a head, flash channels)
 * are busy; `admit` places a request on it. The timeline is absolute, so time owed below the sleep
 * granularity is not lost: the next request starts after it.
 */
export abstract class TimingLayer extends PassthroughLayer {
  readonly mode: TimingMode;
  protected readonly clock: Clock;
  protected readonly admission: Admission = { doneAtMs: 0, serviceMs: 0 };
  private readonly counters: Record<TimedOp, TimedOpStats>;
  private modelTimeTotalMs = 0;
  private emulatedWaitTotalMs = 0;
  /**
   * Latest model completion time already reported to a caller. A caller may react to a completion at once (a
   * queue-depth-1 client sends its next request), so no later request may arrive before it on the timeline:
   * otherwise requests finished early, each owing less than the sleep granularity, would never add up.
   */
  private reportedMs = 0;

  constructor(next: BlockLayer, name: string, mode: TimingMode, clock: Clock) {
    super(next, name);
    this.mode = mode;
    this.clock = clock;
    this.counters = Object.fromEntries(TIMED_OPS.map((op) => [op, { count: 0, bytes: 0, modelTimeMs: 0 }])) as Record<
      TimedOp,
      TimedOpStats
    >;
  }

  /** Fills `this.admission` for a request arriving at `nowMs` and advances the model's state. */
  protected abstract admit(op: TimedOp, offset: number, length: number, nowMs: number): void;

  modelTimeMs(): number {
    return this.modelTimeTotalMs;
  }

  stats(): TimingStats {
    return {
      model: this.name,
      mode: this.mode,
      modelTimeMs: this.modelTimeTotalMs,
      emulatedWaitMs: this.emulatedWaitTotalMs,
      ops: structuredClone(this.counters),
    };
  }

  override async read(req: IoRequest, into: Buffer): Promise<void> {
    if (this.mode === 'off') return this.next.read(req, into);
    const doneAtMs = this.place('read', req.offset, req.length);
    await this.next.read(req, into);
    await this.holdUntil(doneAtMs);
  }

  override async write(req: IoRequest, data: Buffer): Promise<void> {
    if (this.mode === 'off') return this.next.write(req, data);
    const doneAtMs = this.place('write', req.offset, req.length);
    await this.next.write(req, data);
    await this.holdUntil(doneAtMs);
  }

  override async trim(req: IoRequest): Promise<void> {
    if (this.mode === 'off') return this.next.trim(req);
    const doneAtMs = this.place('trim', req.offset, req.length);
    await this.next.trim(req);
    await this.holdUntil(doneAtMs);
  }

  override async zero(req: IoRequest): Promise<void> {
    if (this.mode === 'off') return this.next.zero(req);
    const doneAtMs = this.place('zero', req.offset, req.length);
    await this.next.zero(req);
    await this.holdUntil(doneAtMs);
  }

  override async cache(req: IoRequest): Promise<void> {
    if (this.mode === 'off') return this.next.cache(req);
    const doneAtMs = this.place('cache', req.offset, req.length);
    await this.next.cache(req);
    await this.holdUntil(doneAtMs);
  }

  override async flush(): Promise<void> {
    if (this.mode === 'off') return this.next.flush();
    const doneAtMs = this.place('flush', 0, 0);
    await this.next.flush();
    await this.holdUntil(doneAtMs);
  }

  private place(op: TimedOp, offset: number, length: number): number {
    this.admit(op, offset, length, Math.max(this.clock.nowMs(), this.reportedMs));
    const { doneAtMs, serviceMs } = this.admission;
    assert.ok(serviceMs >= 0 && Number.isFinite(doneAtMs), 'a model produced an impossible time');
    const counter = this.counters[op];
    counter.count++;
    counter.bytes += length;
    counter.modelTimeMs += serviceMs;
    this.modelTimeTotalMs += serviceMs;
    return doneAtMs;
  }

  /** setTimeout has ~1 ms resolution: sleep whole milliseconds and leave the fraction on the timeline. */
  private async holdUntil(doneAtMs: number): Promise<void> {
    const owedMs = doneAtMs - this.clock.nowMs();
    if (this.mode === 'emulate' && owedMs >= EMULATION_GRANULARITY_MS) {
      const sleepMs = Math.floor(owedMs);
      this.emulatedWaitTotalMs += sleepMs;
      await this.clock.sleepMs(sleepMs);
    }
    this.reportedMs = Math.max(this.reportedMs, doneAtMs);
  }
}
