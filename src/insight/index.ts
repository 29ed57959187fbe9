/**
 * src/insight: the process table, insight calls and detectors that turn a SyscallEvent stream into Insights.
 * Public face: feed `InsightEngine.handle(ev)`, read insights from its return value or `onInsight`, and
 * `summary()` / `renderSummary()` at the end of a run.
 */
export { InsightEngine } from './engine.js';
export type { InsightEngineOptions, ProcessView, FileView } from './engine.js';
export type {
  Insight,
  InsightKind,
  FileRef,
  ByteRange,
  CopyMethod,
  HintSource,
  LifetimeCause,
  SizeChangeCause,
  CloseCause,
  WritebackTrigger,
  FileOpenedInsight,
  FileClosedInsight,
  FileSizeChangedInsight,
  CopyDetectedInsight,
  EncryptionDetectedInsight,
  LifetimeEndedInsight,
  AppHintInsight,
  MmapWritebackInsight,
  DataWrittenInsight,
  FileSyncedInsight,
  UncertaintyInsight,
} from './types.js';
export { INSIGHT_VERSION } from './types.js';
export { renderSummary, formatBytes } from './summary.js';
export type { InsightSummary, FileSummary, HintSummary } from './summary.js';
export { PAPER_IOCLASS_TABLE, classifyFile, sizeRule, validateIoClassTable, FADVISE_CLASS, RW_HINT_CLASS, ioprioClass } from './ioclass.js';
export type { IoClass, IoClassTable, SizeClassRule } from './ioclass.js';
export { NullInspector, ProcInspector } from './inspector.js';
export type { SystemInspector, FileStat, FdInfo } from './inspector.js';
export { entropyBitsPerByte, fingerprint, BLOCK_BYTES } from './content.js';
export { encryptionEvidence, ENCRYPTING_EXES, ENCRYPTED_EXTENSIONS, ENTROPY_THRESHOLD_BITS } from './detectors.js';
export { HINT_MAGIC } from './hint-magic.js';
export { opensExistingForReading } from '../trace/linux.js';
