/**
 * Engine-side semantics: the messages the engine learns from, the per-volume SemanticIndex (LBA → file map, write
 * fingerprints, file table), the I/O class rules, and the classify layer that tags every request.
 */
export {
  SEMANTIC_MESSAGE_VERSION, SEMANTIC_MESSAGE_TYPES, FINGERPRINTS_PER_MESSAGE_MAX, EXTENTS_PER_MESSAGE_MAX, FINGERPRINT_TTL_MS_MAX,
  parseSemanticMessage,
  type SemanticMessage, type SemanticMessageType, type ParseResult, type VolumeExtent,
  type FileExtentsMessage, type WriteFingerprintsMessage, type FileClassMessage, type FilePatternMessage,
  type FileGoneMessage, type AppHintMessage, type CopyFingerprintsMessage, type TracingMessage,
} from './messages.js';
export {
  SemanticIndex, SEMANTIC_DEFAULTS, isRetagSink,
  type SemanticIndexOptions, type SemanticIndexStats, type ApplyResult, type FileSnapshot, type RetagRange, type RetagCause,
  type RetagListener, type RetagSink, type CopyListener,
} from './index-store.js';
export {
  ClassifyLayer, ClassifyOptionsSchema, SemanticRegistry, classifyFactory, createClassifyFactory, defaultSemanticRegistry,
  alignedBlocks, loadIoClassRules, RETAG_GRANULARITY_DEFAULT, SAMPLE_BLOCKS_DEFAULT, wantsFingerprints,
  type ClassifyLayerOptions, type ClassifyOptions,
} from './classify.js';
export {
  IoClassRules, IoClassRulesError, PAPER_IOCLASS_RULES_YAML, paperIoClassRules, parseIoClassRules, parseIoClassRulesYaml,
  formatIoClassRulesYaml, importOpenCasCsv, parseComparison, compare, fileFacts,
  IOCLASS_RULES_VERSION, IO_CLASS_ID_MAX, EVICTION_PRIORITY_MAX, OPEN_CAS_CLASS_ID_MAX, OPEN_CAS_PREFETCH_CLASS_ID,
  type IoClassDefinition, type IoClassRule, type IoClassRulesSpec, type RuleConditions, type Comparison,
  type ComparisonOperator, type ClassifyFacts, type FileFacts, type OpenCasImport, type IoDirection, type FilePatternName,
} from './ioclass.js';
export {
  FINGERPRINT_BLOCK_BYTES, FINGERPRINT_BYTES, FINGERPRINT_HEX_CHARS, ZERO_BLOCK_FINGERPRINT_HEX,
  fingerprint128, fingerprintHex, fingerprintBlocks, fingerprintBlocksHex, decodeFingerprintHex, encodeFingerprintHex, isFingerprintHex,
  FINGERPRINT_IMPLEMENTATION, nodeRsBlockHasher, quickKey, quickKeysOf, QUICK_KEY_WORDS,
} from './fingerprint.js';
export { LbaMap, GAP, UNKNOWN, type LbaInterval, type LbaMapStats } from './lba-map.js';
export { FingerprintTable, NO_OWNER, type FingerprintTableStats } from './fingerprint-table.js';
export { createWasmBlockHasher, WASM_BLOCKS_PER_CALL, type Xxh3BlockHasher } from './xxh3-wasm.js';
