import assert from 'node:assert/strict';
import type { input } from 'zod';
import type { BlockLayer } from '../../volume/types.js';
import { systemClock, type Clock } from './clock.js';
import { TimingLayer, type TimedOp, type TimingStats } from './layer.js';
import { SsdTimingSchema, type SsdTimingSpec } from './schema.js';

export type SsdTimingOptions = Partial<Omit<input<typeof SsdTimingSchema>, 'model'>>;

export interface SsdTimingStats extends TimingStats {
  channels: number;
  transferTimeMs: number;
}

/**
 * A SATA SSD by default: each request takes a flash latency on the channel that frees up first (N requests
 * overlap), then crosses the host link, which all channels share at the link's rate. A flush is a barrier,
 * as FLUSH CACHE is outside SATA's command queue.
 */
export class SsdTimingLayer extends TimingLayer {
  readonly params: SsdTimingSpec;
  private readonly channelFreeMs: Float64Array;
  private linkFreeMs = 0;
  private transferTimeMs = 0;
  private readonly bytesPerMs: number;

  constructor(next: BlockLayer, options: SsdTimingOptions = {}, clock: Clock = systemClock) {
    const params = SsdTimingSchema.parse({ ...options, model: 'ssd' });
    super(next, 'ssd', params.mode, clock);
    this.params = params;
    this.channelFreeMs = new Float64Array(params.channels);
    this.bytesPerMs = params.bandwidthMBps * 1000;
  }

  override stats(): SsdTimingStats {
    return { ...super.stats(), channels: this.params.channels, transferTimeMs: this.transferTimeMs };
  }

  protected admit(op: TimedOp, _offset: number, length: number, nowMs: number): void {
    if (op === 'flush') return this.barrier(nowMs);
    const channel = this.freestChannel();
    const startMs = Math.max(nowMs, this.channelFreeMs[channel]!);
    const latencyMs = this.latencyUs(op) / 1000;
    const transferMs = op === 'trim' || op === 'zero' ? 0 : length / this.bytesPerMs;
    const linkStartMs = Math.max(startMs + latencyMs, this.linkFreeMs);
    const doneAtMs = linkStartMs + transferMs;
    if (transferMs > 0) this.linkFreeMs = doneAtMs;
    this.channelFreeMs[channel] = doneAtMs;
    this.transferTimeMs += transferMs;
    this.admission.doneAtMs = doneAtMs;
    this.admission.serviceMs = latencyMs + transferMs;
  }

  private latencyUs(op: TimedOp): number {
    if (op === 'read' || op === 'cache') return this.params.readLatencyUs;
    if (op === 'write') return this.params.writeLatencyUs;
    return this.params.trimLatencyUs;
  }

  private freestChannel(): number {
    let best = 0;
    for (let channel = 1; channel < this.channelFreeMs.length; channel++) {
      if (this.channelFreeMs[channel]! < this.channelFreeMs[best]!) best = channel;
    }
    return best;
  }

  private barrier(nowMs: number): void {
    let drainedMs = Math.max(nowMs, this.linkFreeMs);
    for (const freeMs of this.channelFreeMs) drainedMs = Math.max(drainedMs, freeMs);
    const flushMs = this.params.flushLatencyUs / 1000;
    const doneAtMs = drainedMs + flushMs;
    this.channelFreeMs.fill(doneAtMs);
    this.linkFreeMs = doneAtMs;
    assert.ok(doneAtMs >= nowMs);
    this.admission.doneAtMs = doneAtMs;
    this.admission.serviceMs = flushMs;
  }
}
