/**
 * Information gathering (the paper's case study 1): the tag-log layer records every tagged block request and
 * re-tag of a volume; the reader and buildReport turn such a log into figures (origin, class, file size, process,
 * block lifetimes, top files, and tag accuracy against a ground truth); render writes them as markdown, JSON and SVG.
 */
export {
  TagLogLayer, TagLogOptionsSchema, createTagLogFactory, tagLogFactory, tagJson,
  TAG_LOG_FORMAT, TAG_LOG_VERSION, TAG_LOG_CHUNK_BYTES, TAG_LOG_FLUSH_INTERVAL_MS, TAG_LOG_MAX_QUEUED_BYTES_DEFAULT,
  type TagLogOptions, type TagLogConfig, type TagLogStats,
} from './tag-log.js';
export {
  readTagLog, readTagLogHeader, TagLogError, TAG_LOG_OPS, RETAG_CAUSES,
  type TagLogHeader, type TagLogRecord, type TagLogReadSummary, type TagLogOp, type LoggedTag,
} from './reader.js';
export {
  buildReport, addReport, emptyOpRow, sizeBucket, lifetimeBucket, ORIGINS, SIZE_BUCKETS, LIFETIME_BUCKETS, LIFETIME_ENDS,
  type TagLogReport, type ReportOptions, type OpRow, type Tally, type ProcessRow, type FileRow, type AccuracySection,
  type LifetimeBucket, type LifetimeEnd, type OriginKey, type AfterRetagMisses,
} from './report.js';
export { renderBrief, renderMarkdown, renderPlots, writeReport, PLOT_NAMES } from './render.js';
export { stackedBarChart, niceAxis, formatBytes, formatCount, escapeXml, PALETTE, type StackedBarChart, type BarSeries } from './svg.js';
export { BirthMap, EpochMap, REPORT_BLOCK_BYTES } from './block-map.js';
