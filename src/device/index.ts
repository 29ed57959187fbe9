/** Block devices (the bottom of every volume stack), timing models over them, and fault injection for tests. */
export { FileDevice, FILE_EXTENTS_MAX, DEVICE_BLOCK_SIZE_MAX, type FileDeviceOptions } from './file.js';
export { MemoryDevice, MEMORY_CHUNK_BYTES, MEMORY_EXTENTS_MAX, type MemoryDeviceOptions } from './memory.js';
export { NbdClientDevice, NBD_DEFAULT_PORT, type NbdClientOptions } from './nbd/client.js';
export type { NegotiatedExport } from './nbd/handshake.js';
export {
  FaultInjectionLayer, type FaultAtRange, type FaultInjectionOptions, type FaultOp, type FaultStats,
} from './fault.js';
export { SeededRandom } from './prng.js';
export { parseSize } from './size.js';
export { SizeSchema } from './size-schema.js';
export { ManualClock, systemClock, type Clock } from './timing/clock.js';
export {
  TimingLayer, EMULATION_GRANULARITY_MS, type TimedOp, type TimedOpStats, type TimingStats,
} from './timing/layer.js';
export {
  HddTimingLayer, fitSeekExponent, hddGeometry, type HddGeometry, type HddTimingOptions, type HddTimingStats,
} from './timing/hdd.js';
export { SsdTimingLayer, type SsdTimingOptions, type SsdTimingStats } from './timing/ssd.js';
export {
  HddTimingSchema, SsdTimingSchema, TimingModeSchema, TimingSpecSchema,
  type HddTimingSpec, type SsdTimingSpec, type TimingMode, type TimingSpec, type TimingSpecInput,
} from './timing/schema.js';
export {
  DeviceSpecSchema, FileDeviceSpecSchema, MemoryDeviceSpecSchema, NbdDeviceSpecSchema, createDevice, wrapTiming,
  type DeviceSpec, type DeviceSpecInput,
} from './spec.js';
