/**
 * The volume stack's contract. A volume is a chain of `BlockLayer`s ending in a device; each layer wraps `next`
 * like an nbdkit filter. The NBD server talks to the top layer only (through `BlockTarget` in src/nbd), so a new
 * layer drops in without touching the protocol code.
 *
 * Requests reaching a layer have already been validated at the protocol edge (range, alignment, read-only):
 * layers assert invariants instead of re-checking client input.
 */

/** Where a block request came from, as far as Sky can tell. Filled by the classify layer (src/semantics). */
export type IoOrigin = 'metadata' | 'data' | 'unknown';

/** Paper's I/O classes: metadata 5, file <1 MB 4, <2 MB 3, <5 MB 2, <10 MB 1, larger 0. Applications may override. */
export type IoClass = number;

export interface IoTag {
  origin: IoOrigin;
  ioClass: IoClass;
  fileId?: string;
  /** The file's latest known path (informative: reports and logs; layers decide by class, not by name). */
  path?: string;
  fileSize?: number;
  pid?: number;
  exe?: string;
  /** Pattern and application hints, e.g. 'unique' (encrypted), 'copy'. */
  hints: Set<string>;
}

/** Request flags that layers may care about (subset of NBD command flags, protocol-independent). */
export const IoFlags = {
  /** Force unit access: the data must be durable before the request completes. */
  FUA: 1 << 0,
  /** For zero(): the layer must not punch a hole (NBD_CMD_FLAG_NO_HOLE). */
  NO_HOLE: 1 << 1,
  /** For zero(): fail with ENOTSUP rather than zeroing slowly (NBD_CMD_FLAG_FAST_ZERO). */
  FAST_ZERO: 1 << 2,
} as const;

/**
 * One block request on its way down the stack. The NBD connection owns a bounded table of these and reuses them,
 * so layers must not keep a reference after the returned promise settles.
 */
export interface IoRequest {
  /** Byte offset in the volume. */
  offset: number;
  /** Length in bytes. */
  length: number;
  /** Bitwise OR of IoFlags. */
  flags: number;
  /** Semantic tag; null until a classify layer (or a test) fills it. */
  tag: IoTag | null;
  /**
   * Per-4KiB-block fingerprints computed once by the classify layer and reused below (iDedup): set when a layer
   * below declares `wantsFingerprints`. Valid until the request's promise settles (the storage is reused for the
   * next request in the same slot): a layer that keeps fingerprints longer copies them.
   */
  fingerprints: Uint8Array | null;
}

export function newIoRequest(offset = 0, length = 0, flags = 0): IoRequest {
  return { offset, length, flags, tag: null, fingerprints: null };
}

/** Flags in a block-status extent (same meaning as NBD base:allocation). */
export const ExtentFlags = {
  HOLE: 1 << 0,
  ZERO: 1 << 1,
} as const;

export interface Extent {
  /** Length in bytes; extents returned for a query are contiguous from the query's offset. */
  length: number;
  /** Bitwise OR of ExtentFlags. */
  flags: number;
}

export interface BlockSizeLimits {
  minimum: number;
  preferred: number;
  maximum: number;
}

/** What a layer (and everything under it) can do. Computed once per volume at open, cached by the caller. */
export interface Capabilities {
  readOnly: boolean;
  canFlush: boolean;
  canFua: boolean;
  canTrim: boolean;
  canZero: boolean;
  canFastZero: boolean;
  canCache: boolean;
  /**
   * True only if a flush through any handle makes every write completed on any handle durable. All Sky layers
   * share one stack per volume, so this holds unless a device says otherwise.
   */
  canMultiConn: boolean;
  blockSize: BlockSizeLimits;
}

/**
 * Errors a layer reports. `errno` uses Linux names; the NBD edge maps them to NBD error codes.
 * Thrown (or rejected) only for device/layer failures; client mistakes never reach layers.
 */
export type BlockErrno = 'EIO' | 'ENOSPC' | 'EINVAL' | 'EPERM' | 'ENOTSUP' | 'ENOMEM' | 'EOVERFLOW' | 'ESHUTDOWN';

export class BlockError extends Error {
  readonly errno: BlockErrno;
  constructor(errno: BlockErrno, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'BlockError';
    this.errno = errno;
  }
}

/**
 * A layer of the volume stack. Devices are layers with `next === null`.
 * Lifecycle: open() runs from the device upwards (a layer works out its limits from the one below),
 * close() from the top downwards. Callers serialise nothing: requests may arrive concurrently.
 */
export interface BlockLayer {
  readonly name: string;
  readonly next: BlockLayer | null;
  open(): Promise<void>;
  /** Size in bytes; valid after open(). */
  size(): number;
  capabilities(): Capabilities;
  /** Fill `into` (exactly req.length bytes) with the data at req.offset. */
  read(req: IoRequest, into: Buffer): Promise<void>;
  /** Write `data` (exactly req.length bytes) at req.offset; honour IoFlags.FUA. */
  write(req: IoRequest, data: Buffer): Promise<void>;
  /** Make every completed write durable. */
  flush(): Promise<void>;
  /** Discard a range; reads of it afterwards may return anything until written (we return zeroes). */
  trim(req: IoRequest): Promise<void>;
  /** Zero a range; may punch holes unless IoFlags.NO_HOLE; with IoFlags.FAST_ZERO fail ENOTSUP if slow. */
  zero(req: IoRequest): Promise<void>;
  /** Advisory prefetch (NBD_CMD_CACHE). */
  cache(req: IoRequest): Promise<void>;
  /** Allocation status of [offset, offset+length); returned extents cover at least one byte from offset. */
  blockStatus(offset: number, length: number): Promise<Extent[]>;
  close(): Promise<void>;
}
