export * from './types.js';
export { PassthroughLayer } from './passthrough.js';
export { StatsLayer, OP_NAMES, LATENCY_BUCKETS_US, type OpName, type OpStats, type VolumeStatsSnapshot } from './stats.js';
export { buildStack, describeStack, findLayer, passthroughFactory, statsFactory, type LayerContext, type LayerFactory, type LayerSpec } from './stack.js';
