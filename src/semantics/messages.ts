/**
 * What the engine learns about a volume, one message at a time: the payloads of the hint channel (tracer or guest
 * agent → engine). Each message names its `type`; `v` is the message format version (absent means 1). Like
 * SyscallEvent and Insight this is a wire shape: add optional fields freely, never change an existing meaning.
 * Unknown extra fields are ignored, so an older engine accepts a newer sender's messages of the same version.
 *
 * Offsets are bytes in the *volume* (the NBD export), not in the guest file system: the sender adds the
 * partition's start (and the file system's offset within it) to FIEMAP's physical offsets. The engine cannot
 * know the guest's partition table, so that mapping is the sender's, and it is explicit.
 *
 * `fileId` is the sender's stable name for a file (e.g. "dev:ino"); paths change with renames, ids do not.
 */
import { z } from 'zod';
import { FINGERPRINT_BLOCK_BYTES, isFingerprintHex, type FingerprintBlockBytes } from './fingerprint.js';
import { IO_CLASS_ID_MAX } from './ioclass.js';

export const SEMANTIC_MESSAGE_VERSION = 1;
/** Largest number of fingerprints in one WriteFingerprints message (32 MiB of writes; ≤ 390 KB of JSON with quick keys). */
export const FINGERPRINTS_PER_MESSAGE_MAX = 8192;
/** Largest number of extents in one FileExtents message. */
export const EXTENTS_PER_MESSAGE_MAX = 65536;
/** Largest number of regions in one DataRegions message (a btrfs data block group is 1 GiB: 4 PiB of them). */
export const DATA_REGIONS_MAX = 4096;
/** Longest fingerprint lifetime the engine accepts; longer TTLs are clamped by the index. */
export const FINGERPRINT_TTL_MS_MAX = 24 * 60 * 60 * 1000;

interface MessageBase {
  /** Message format version; absent means 1. */
  v?: number;
}

export interface VolumeExtent {
  /** Byte offset in the volume. */
  volumeOffset: number;
  length: number;
}

/** Where a file's bytes are, as FIEMAP said. Replaces everything known about this file's location. */
export interface FileExtentsMessage extends MessageBase {
  type: 'FileExtents';
  fileId: string;
  path: string;
  size: number;
  /** The sender's opinion of the class; recorded, but the engine's rules decide. */
  ioClass?: number;
  extents: VolumeExtent[];
  /** The process the sender saw using the file (for process_name / pid rules). */
  pid?: number;
  process?: string;
}

/**
 * Fingerprints of the 4 KiB-aligned blocks a write() covered, in any order, for matching the block writes that
 * follow (delayed allocation). Each is 32 hex digits: XXH3-128 (seed 0) of the block, canonical big-endian.
 * `blockSize` is 4096 unless the file's file system has smaller blocks (1024 or 2048): its blocks of that size then,
 * aligned in the file, and the quick keys of those.
 */
export interface WriteFingerprintsMessage extends MessageBase {
  type: 'WriteFingerprints';
  fileId: string;
  blockSize: FingerprintBlockBytes;
  fingerprints: string[];
  /** How long to wait for the block writes (the file system's write-back delay plus slack). */
  ttlMs: number;
  /**
   * The quick key (fingerprint.ts quickKey) of each block, in the order of `fingerprints`. Optional for older
   * senders, but an engine holding any fingerprint without its key must hash every written block.
   */
  quickKeys?: number[];
  path?: string;
  size?: number;
  pid?: number;
  process?: string;
}

/** The file's size changed (and with it, under the default rules, its class). */
export interface FileClassMessage extends MessageBase {
  type: 'FileClass';
  fileId: string;
  size: number;
  /** The sender's opinion of the class; recorded, but the engine's rules decide. */
  ioClass: number;
}

/** A detected access pattern: a copy (of `sourceFileId` when known) or encrypted (high-entropy, unique) data. */
export interface FilePatternMessage extends MessageBase {
  type: 'FilePattern';
  fileId: string;
  pattern: 'copy' | 'encrypted';
  sourceFileId?: string;
}

/** The file's blocks ended their life (unlink, truncate to zero, renamed over). */
export interface FileGoneMessage extends MessageBase {
  type: 'FileGone';
  fileId: string;
  cause: string;
}

/** An application-supplied class for the file; overrides the rules (the default rules' first rule). */
export interface AppHintMessage extends MessageBase {
  type: 'AppHint';
  fileId: string;
  ioClass: number;
}

/**
 * A tracer now describes this volume (sent first by `sky agent`): from here on, a block outside every file the
 * index knows is metadata, not unknown — even before the first file is described (a `find` opens none).
 */
export interface TracingMessage extends MessageBase {
  type: 'Tracing';
  /** The tracer, e.g. "ebpf (bpftrace)"; informative. */
  tracer?: string;
}

/**
 * Volume ranges where the file system keeps nothing but file data (btrfs data block groups): a block there that no
 * known file owns is data of a file not described yet, not metadata. Replaces the previous set; an empty list
 * withdraws it. Only for file systems that separate the two by construction: a wrong region tags metadata as data.
 */
export interface DataRegionsMessage extends MessageBase {
  type: 'DataRegions';
  regions: VolumeExtent[];
  /** Where the regions come from, e.g. "btrfs data block groups"; informative. */
  source?: string;
}

/** A copy without data through user space (copy_file_range, sendfile, FICLONE…): the target's blocks will carry the source's content. */
export interface CopyFingerprintsMessage extends MessageBase {
  type: 'CopyFingerprints';
  sourceFileId: string;
  targetFileId: string;
  /** TTL for the target's registered fingerprints; the index's default when absent. */
  ttlMs?: number;
}

export type SemanticMessage =
  | FileExtentsMessage
  | WriteFingerprintsMessage
  | FileClassMessage
  | FilePatternMessage
  | FileGoneMessage
  | AppHintMessage
  | CopyFingerprintsMessage
  | TracingMessage
  | DataRegionsMessage;

export type SemanticMessageType = SemanticMessage['type'];

export const SEMANTIC_MESSAGE_TYPES: readonly SemanticMessageType[] = [
  'FileExtents', 'WriteFingerprints', 'FileClass', 'FilePattern', 'FileGone', 'AppHint', 'CopyFingerprints', 'Tracing', 'DataRegions',
];

// ---------------------------------------------------------------------------------------------------------------
// Validation at the edge (the hint channel hands us parsed JSON).

const u64 = z.number().int().nonnegative().refine(Number.isSafeInteger, 'must be a safe integer');
const fileId = z.string().min(1).max(4096);
const ioClass = z.number().int().min(0).max(IO_CLASS_ID_MAX);
const version = z.number().int().min(1).max(SEMANTIC_MESSAGE_VERSION, `this engine speaks message version ${SEMANTIC_MESSAGE_VERSION}`).optional();
const pid = z.number().int().nonnegative().optional();
const process = z.string().max(4096).optional();

const schemas = {
  FileExtents: z.object({
    v: version,
    type: z.literal('FileExtents'),
    fileId,
    path: z.string().max(4096),
    size: u64,
    ioClass: ioClass.optional(),
    extents: z.array(z.object({ volumeOffset: u64, length: u64.refine((n) => n > 0, 'extents are not empty') })).max(EXTENTS_PER_MESSAGE_MAX),
    pid,
    process,
  }),
  WriteFingerprints: z.object({
    v: version,
    type: z.literal('WriteFingerprints'),
    fileId,
    blockSize: z.union([z.literal(1024), z.literal(2048), z.literal(FINGERPRINT_BLOCK_BYTES)]),
    fingerprints: z.array(z.string().refine(isFingerprintHex, 'a fingerprint is 32 hex digits')).max(FINGERPRINTS_PER_MESSAGE_MAX),
    ttlMs: z.number().positive().max(FINGERPRINT_TTL_MS_MAX),
    quickKeys: z.array(z.number().int().min(0).max(0xffffffff)).max(FINGERPRINTS_PER_MESSAGE_MAX).optional(),
    path: z.string().max(4096).optional(),
    size: u64.optional(),
    pid,
    process,
  }).refine((m) => m.quickKeys === undefined || m.quickKeys.length === m.fingerprints.length, {
    message: 'one quick key per fingerprint',
    path: ['quickKeys'],
  }),
  FileClass: z.object({ v: version, type: z.literal('FileClass'), fileId, size: u64, ioClass }),
  FilePattern: z.object({ v: version, type: z.literal('FilePattern'), fileId, pattern: z.enum(['copy', 'encrypted']), sourceFileId: fileId.optional() }),
  FileGone: z.object({ v: version, type: z.literal('FileGone'), fileId, cause: z.string().max(256) }),
  AppHint: z.object({ v: version, type: z.literal('AppHint'), fileId, ioClass }),
  Tracing: z.object({ v: version, type: z.literal('Tracing'), tracer: z.string().max(256).optional() }),
  DataRegions: z.object({
    v: version,
    type: z.literal('DataRegions'),
    regions: z.array(z.object({ volumeOffset: u64, length: u64.refine((n) => n > 0, 'regions are not empty') })).max(DATA_REGIONS_MAX),
    source: z.string().max(256).optional(),
  }),
  CopyFingerprints: z.object({
    v: version,
    type: z.literal('CopyFingerprints'),
    sourceFileId: fileId,
    targetFileId: fileId,
    ttlMs: z.number().positive().max(FINGERPRINT_TTL_MS_MAX).optional(),
  }),
} as const;

export type ParseResult = { ok: true; message: SemanticMessage } | { ok: false; error: string };

/** Validates one decoded message. Errors are values naming the field: `FileExtents.extents.3.length: …`. */
export function parseSemanticMessage(raw: unknown): ParseResult {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return { ok: false, error: 'a message is a JSON object' };
  const type = (raw as { type?: unknown }).type;
  if (typeof type !== 'string' || !(type in schemas)) {
    return { ok: false, error: `unknown message type ${JSON.stringify(type)} (known: ${SEMANTIC_MESSAGE_TYPES.join(', ')})` };
  }
  const result = schemas[type as SemanticMessageType].safeParse(raw);
  if (!result.success) {
    const why = result.error.issues.map((issue) => `${[type, ...issue.path].join('.')}: ${issue.message}`).join('; ');
    return { ok: false, error: why };
  }
  return { ok: true, message: result.data as SemanticMessage };
}
