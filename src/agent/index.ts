/**
 * src/agent: the tracer side of Sky's semantics. Traced workload → insights → SemanticMessages for the engine,
 * for the files that live on one volume. In-process (`sky run`: the sink is the volume's SemanticIndex.accept) or
 * over the hint channel (`sky agent`: the sink is HintClient.send).
 */
export { Informer, insertRange, takeRanges } from './informer.js';
export type { InformerOptions, InformerStats, SemanticSink } from './informer.js';
export { LocalFileSystem, isGone, mergeExtents } from './fs.js';
export type { AgentFileSystem, DirectoryEntry, OpenedFile, VolumePlacement, VolumeRoute } from './fs.js';
export type { PrefetchOptions, PrefetchStats } from './prefetch.js';
export { startAgent, startAgentWorker } from './agent.js';
export type { AgentOptions, AgentSession, AgentStats, InformerTuning } from './agent.js';
export { renderAgentSummary } from './summary.js';
