import { z } from 'zod';
import { SizeSchema } from '../size-schema.js';

/**
 * off: no model at all. account: add up what the model says each request would take, complete at device speed.
 * emulate: complete each request no sooner than the model says (the slow device in benchmarks).
 */
export const TimingModeSchema = z.enum(['off', 'account', 'emulate']);
export type TimingMode = z.infer<typeof TimingModeSchema>;

/** Defaults describe a 7200 rpm SATA disk (e.g. a 1-2 TB desktop drive, outer-zone rate rounded down). */
export const HddTimingSchema = z.strictObject({
  model: z.literal('hdd'),
  mode: TimingModeSchema.default('emulate'),
  rpm: z.number().min(1000).max(20000).default(7200),
  seekTrackToTrackMs: z.number().nonnegative().default(0.5),
  /** Mean over uniformly random start and end positions; the seek curve is fitted to honour it. */
  seekAverageMs: z.number().positive().default(8.5),
  seekFullStrokeMs: z.number().positive().default(15),
  /** Media rate in MB/s (10^6 bytes). */
  transferMBps: z.number().positive().default(150),
  /** 'average': half a turn unless the request continues where the head stopped; 'angular': from platter angle. */
  rotation: z.enum(['average', 'angular']).default('average'),
  /** Physical disk size, when the volume is the first part of a larger disk; by default the volume's size. */
  capacity: SizeSchema.optional(),
  /** Cost of a cache flush after the queue drains; 0 models a write-through disk. */
  flushMs: z.number().nonnegative().default(0),
}).refine((p) => p.seekTrackToTrackMs < p.seekAverageMs && p.seekAverageMs < p.seekFullStrokeMs, {
  message: 'seek times must satisfy seekTrackToTrackMs < seekAverageMs < seekFullStrokeMs',
});
export type HddTimingSpec = z.output<typeof HddTimingSchema>;

/** Defaults describe a SATA SSD: ~80 µs reads, ~100 µs writes, the 6 Gb/s link at ~500 MB/s, 8 flash channels. */
export const SsdTimingSchema = z.strictObject({
  model: z.literal('ssd'),
  mode: TimingModeSchema.default('emulate'),
  readLatencyUs: z.number().nonnegative().default(80),
  writeLatencyUs: z.number().nonnegative().default(100),
  /** Link (host interface) rate in MB/s (10^6 bytes), shared by all channels. */
  bandwidthMBps: z.number().positive().default(500),
  channels: z.number().int().min(1).max(256).default(8),
  /** Trim and write-zeroes need no data transfer: only this latency on a channel. */
  trimLatencyUs: z.number().nonnegative().default(100),
  flushLatencyUs: z.number().nonnegative().default(0),
});
export type SsdTimingSpec = z.output<typeof SsdTimingSchema>;

export const TimingSpecSchema = z.discriminatedUnion('model', [HddTimingSchema, SsdTimingSchema]);
export type TimingSpec = z.output<typeof TimingSpecSchema>;
export type TimingSpecInput = z.input<typeof TimingSpecSchema>;
