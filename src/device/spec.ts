import { z } from 'zod';
import type { BlockLayer } from '../volume/types.js';
import { FileDevice } from './file.js';
import { MemoryDevice } from './memory.js';
import { NbdClientDevice } from './nbd/client.js';
import { SizeSchema } from './size-schema.js';
import { systemClock, type Clock } from './timing/clock.js';
import { HddTimingLayer } from './timing/hdd.js';
import { TimingSpecSchema, type TimingSpecInput } from './timing/schema.js';
import { SsdTimingLayer } from './timing/ssd.js';

export const FileDeviceSpecSchema = z.strictObject({
  type: z.literal('file'),
  path: z.string().min(1),
  /** Omitted: the existing file's size. A smaller file is extended sparsely. */
  size: SizeSchema.optional(),
  readOnly: z.boolean().optional(),
});

export const MemoryDeviceSpecSchema = z.strictObject({
  type: z.literal('memory'),
  size: SizeSchema.refine((bytes) => bytes > 0, 'a memory device needs a size above 0'),
});

export const NbdDeviceSpecSchema = z.strictObject({
  type: z.literal('nbd'),
  /** Unix socket path of the upstream server; or host and port. */
  socket: z.string().min(1).optional(),
  host: z.string().min(1).optional(),
  port: z.number().int().min(1).max(65535).optional(),
  export: z.string().max(4096).optional(),
  readOnly: z.boolean().optional(),
  maxInFlight: z.number().int().min(1).max(1024).optional(),
}).refine((spec) => (spec.socket === undefined) !== (spec.host === undefined), {
  message: 'an nbd device needs either socket or host (with optional port), not both',
}).refine((spec) => spec.port === undefined || spec.host !== undefined, { message: 'port needs a host' });

export const DeviceSpecSchema = z.discriminatedUnion('type', [
  FileDeviceSpecSchema,
  MemoryDeviceSpecSchema,
  NbdDeviceSpecSchema,
]);
export type DeviceSpec = z.output<typeof DeviceSpecSchema>;
export type DeviceSpecInput = z.input<typeof DeviceSpecSchema>;

/** Builds (does not open) the device a spec describes; the spec is validated here too, so sizes may be strings. */
export function createDevice(input: DeviceSpecInput): BlockLayer {
  const spec = DeviceSpecSchema.parse(input);
  switch (spec.type) {
    case 'file':
      return new FileDevice({ path: spec.path, size: spec.size, readOnly: spec.readOnly });
    case 'memory':
      return new MemoryDevice({ size: spec.size });
    case 'nbd':
      return new NbdClientDevice({
        socket: spec.socket, host: spec.host, port: spec.port, export: spec.export, readOnly: spec.readOnly,
        maxInFlight: spec.maxInFlight,
      });
  }
}

/**
 * Puts a timing model over a layer. Mode 'off' returns the layer itself: no model, no cost. The result is a
 * `TimingLayer` otherwise (HddTimingLayer or SsdTimingLayer), whose stats() a caller may read.
 */
export function wrapTiming(layer: BlockLayer, input: TimingSpecInput, clock: Clock = systemClock): BlockLayer {
  const { model, ...options } = TimingSpecSchema.parse(input);
  if (options.mode === 'off') return layer;
  return model === 'hdd' ? new HddTimingLayer(layer, options, clock) : new SsdTimingLayer(layer, options, clock);
}
