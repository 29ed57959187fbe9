import assert from 'node:assert/strict';
import type { input } from 'zod';
import type { BlockLayer } from '../../volume/types.js';
import { systemClock, type Clock } from './clock.js';
import { TimingLayer, type TimedOp, type TimingStats } from './layer.js';
import { HddTimingSchema, type HddTimingSpec } from './schema.js';

export type HddTimingOptions = Partial<Omit<input<typeof HddTimingSchema>, 'model'>>;

/** Derived once from the parameters and the disk's capacity. */
export interface HddGeometry {
  rotationMs: number;
  /** Media rate in bytes per millisecond; one track passes under the head per rotation at this rate. */
  bytesPerMs: number;
  trackBytes: number;
  tracks: number;
  /** Exponent p of the seek curve t(d) = trackToTrack + (fullStroke - trackToTrack) * d^p, d in [0, 1]. */
  seekExponent: number;
}

/**
 * Fits p so that the mean seek over uniformly random start and end positions equals seekAverageMs. For such
 * positions the distance d has density 2(1-d), so E[d^p] = 2/((p+1)(p+2)); solve the quadratic for p > 0.
 */
export function fitSeekExponent(trackToTrackMs: number, averageMs: number, fullStrokeMs: number): number {
  assert.ok(trackToTrackMs < averageMs && averageMs < fullStrokeMs, 'seek times out of order');
  const product = (2 * (fullStrokeMs - trackToTrackMs)) / (averageMs - trackToTrackMs);
  const exponent = (-3 + Math.sqrt(1 + 4 * product)) / 2;
  assert.ok(exponent > 0);
  return exponent;
}

export function hddGeometry(params: HddTimingSpec, capacityBytes: number): HddGeometry {
  assert.ok(capacityBytes > 0, 'a disk needs a capacity');
  const rotationMs = 60_000 / params.rpm;
  const bytesPerMs = params.transferMBps * 1000;
  const trackBytes = bytesPerMs * rotationMs;
  return {
    rotationMs,
    bytesPerMs,
    trackBytes,
    tracks: Math.max(1, Math.ceil(capacityBytes / trackBytes)),
    seekExponent: fitSeekExponent(params.seekTrackToTrackMs, params.seekAverageMs, params.seekFullStrokeMs),
  };
}

export interface HddTimingStats extends TimingStats {
  seeks: number;
  seekTimeMs: number;
  rotationTimeMs: number;
  transferTimeMs: number;
}

/** Floating-point slack when a request continues exactly where the platter is. */
const ANGLE_EPSILON_MS = 1e-6;

/**
 * A 7200 rpm disk by default: one request at a time in arrival order (FIFO, no reordering), each paying a seek
 * from where the head stopped, a rotational delay and the media transfer. Trim costs nothing (disks lack it).
 */
export class HddTimingLayer extends TimingLayer {
  readonly params: HddTimingSpec;
  private geometry: HddGeometry | null = null;
  private headByte = 0;
  private busyUntilMs = 0;
  private seeks = 0;
  private seekTimeMs = 0;
  private rotationTimeMs = 0;
  private transferTimeMs = 0;

  constructor(next: BlockLayer, options: HddTimingOptions = {}, clock: Clock = systemClock) {
    const params = HddTimingSchema.parse({ ...options, model: 'hdd' });
    super(next, 'hdd', params.mode, clock);
    this.params = params;
  }

  override async open(): Promise<void> {
    await this.next.open();
    const capacity = this.params.capacity ?? this.next.size();
    assert.ok(capacity >= this.next.size(), 'the modelled disk is smaller than the device under it');
    this.geometry = hddGeometry(this.params, capacity);
  }

  override stats(): HddTimingStats {
    return {
      ...super.stats(),
      seeks: this.seeks,
      seekTimeMs: this.seekTimeMs,
      rotationTimeMs: this.rotationTimeMs,
      transferTimeMs: this.transferTimeMs,
    };
  }

  /** Model time for a seek between two byte positions; exported through the class for tests and reports. */
  seekMs(fromByte: number, toByte: number): number {
    const g = this.requireGeometry();
    const distance = Math.abs(Math.floor(toByte / g.trackBytes) - Math.floor(fromByte / g.trackBytes));
    if (distance === 0) return 0;
    // One track over costs exactly track-to-track, the last track from the first exactly a full stroke.
    const fraction = g.tracks > 2 ? Math.min(1, (distance - 1) / (g.tracks - 2)) : 0;
    const { seekTrackToTrackMs, seekFullStrokeMs } = this.params;
    return seekTrackToTrackMs + (seekFullStrokeMs - seekTrackToTrackMs) * fraction ** g.seekExponent;
  }

  protected admit(op: TimedOp, offset: number, length: number, nowMs: number): void {
    const startMs = Math.max(nowMs, this.busyUntilMs);
    if (op === 'trim') return this.settle(nowMs, 0);
    if (op === 'flush') {
      this.busyUntilMs = startMs + this.params.flushMs;
      return this.settle(this.busyUntilMs, this.params.flushMs);
    }
    const serviceMs = this.mechanicalMs(offset, length, startMs);
    this.busyUntilMs = startMs + serviceMs;
    this.headByte = offset + length;
    this.settle(this.busyUntilMs, serviceMs);
  }

  private mechanicalMs(offset: number, length: number, startMs: number): number {
    const g = this.requireGeometry();
    const seekMs = this.seekMs(this.headByte, offset);
    const rotationMs = this.rotationalDelayMs(offset, startMs + seekMs, g);
    const transferMs = length / g.bytesPerMs;
    if (seekMs > 0) this.seeks++;
    this.seekTimeMs += seekMs;
    this.rotationTimeMs += rotationMs;
    this.transferTimeMs += transferMs;
    return seekMs + rotationMs + transferMs;
  }

  /** The platter turns from time 0 of the clock; a byte's angle is its place within its track. */
  private rotationalDelayMs(offset: number, atMs: number, g: HddGeometry): number {
    if (this.params.rotation === 'average') return offset === this.headByte ? 0 : g.rotationMs / 2;
    const platterTurns = atMs / g.rotationMs;
    const targetTurns = (offset % g.trackBytes) / g.trackBytes;
    const waitMs = (((targetTurns - platterTurns) % 1) + 1) % 1 * g.rotationMs;
    return waitMs >= g.rotationMs - ANGLE_EPSILON_MS ? 0 : waitMs;
  }

  private settle(doneAtMs: number, serviceMs: number): void {
    this.admission.doneAtMs = doneAtMs;
    this.admission.serviceMs = serviceMs;
  }

  private requireGeometry(): HddGeometry {
    assert.ok(this.geometry !== null, 'HddTimingLayer used before open()');
    return this.geometry;
  }
}
