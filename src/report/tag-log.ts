/**
 * The tag-log layer: records every block request's tag (req.tag, set by the classify layer above it) and every
 * re-tag, one JSON object per line, for `sky report` (the paper's case study 1, information gathering).
 *
 *   header:  {"sky":"tag-log","v":1,"volume":NAME,"size":N,"started":"ISO date"}
 *   request: {"t":MS,"op":"read"|"write"|"trim"|"zero"|"cache","offset":N,"length":N,"tag":{...}|null}
 *   retag:   {"t":MS,"op":"retag","cause":"extents"|"class"|"gone","offset":N,"length":N,"tag":{...}}
 *   end:     {"t":MS,"op":"end","dropped":N,"lines":N}          (lines = request and retag lines written)
 * t is milliseconds since the log started, with microsecond resolution.
 *
 * It never slows or fails a request: a line is encoded straight into a 1 MiB chunk (tags are shared objects, so
 * each tag's JSON is encoded once and cached; numbers are written digit by digit — no allocation per request), and
 * full chunks are written by one fs.write each, in the background, one at a time; a timer pushes a partial chunk out
 * every 100 ms. If the writer falls behind by more than `maxQueuedBytes`, lines are dropped and counted. A log that
 * cannot be opened fails the volume's start; a write that fails later (disk full) gives one warning and logging
 * stops; requests go on.
 */
import fs from 'node:fs';
import { z } from 'zod';
import { SizeSchema } from '../device/size-schema.js';
import { PassthroughLayer } from '../volume/passthrough.js';
import type { LayerContext, LayerFactory } from '../volume/stack.js';
import type { BlockLayer, IoRequest, IoTag } from '../volume/types.js';
import type { RetagCause, RetagRange, RetagSink } from '../semantics/index-store.js';

export const TAG_LOG_FORMAT = 'tag-log';
export const TAG_LOG_VERSION = 1;
export const TAG_LOG_CHUNK_BYTES = 1024 * 1024;
export const TAG_LOG_FLUSH_INTERVAL_MS = 100;
export const TAG_LOG_MAX_QUEUED_BYTES_DEFAULT = 64 * 1024 * 1024;
/** Chunks kept for reuse once written (the rest are left to the garbage collector). */
const SPARE_CHUNKS_MAX = 4;
/** Longest line the fixed parts of a record take, beyond the tag's JSON: keys, op, cause and four numbers. */
const LINE_FIXED_BYTES_MAX = 160;

export interface TagLogOptions {
  path: string;
  /** Bound on bytes waiting for the writer; beyond it lines are dropped (and counted). */
  maxQueuedBytes?: number;
  /** Where the one warning goes (open failure, write failure). Default: stderr. */
  onWarning?: (message: string) => void;
  /** Milliseconds, monotonic (tests inject one). Default performance.now. */
  clock?: () => number;
  /** Wall-clock start for the header (tests inject one). */
  startedAt?: Date;
}

export interface TagLogStats {
  lines: number;
  dropped: number;
  bytesWritten: number;
  failed: boolean;
}

interface Chunk {
  buffer: Buffer;
  length: number;
}

const encoder = (text: string): Buffer => Buffer.from(text, 'utf8');
const OP_PREFIX: Record<'read' | 'write' | 'trim' | 'zero' | 'cache', Buffer> = {
  read: encoder(',"op":"read","offset":'),
  write: encoder(',"op":"write","offset":'),
  trim: encoder(',"op":"trim","offset":'),
  zero: encoder(',"op":"zero","offset":'),
  cache: encoder(',"op":"cache","offset":'),
};
const RETAG_PREFIX: Record<RetagCause, Buffer> = {
  extents: encoder(',"op":"retag","cause":"extents","offset":'),
  class: encoder(',"op":"retag","cause":"class","offset":'),
  gone: encoder(',"op":"retag","cause":"gone","offset":'),
};
const T_PREFIX = encoder('{"t":');
const LENGTH_KEY = encoder(',"length":');
const TAG_KEY = encoder(',"tag":');
const LINE_END = encoder('}\n');
const NULL_TAG = encoder('null');

/** The JSON a tag is logged as (also what the reader expects). Hints are a sorted array, left out when empty. */
export function tagJson(tag: IoTag): string {
  const out: Record<string, unknown> = { origin: tag.origin, ioClass: tag.ioClass };
  if (tag.fileId !== undefined) out.fileId = tag.fileId;
  if (tag.path !== undefined) out.path = tag.path;
  if (tag.fileSize !== undefined) out.fileSize = tag.fileSize;
  if (tag.pid !== undefined) out.pid = tag.pid;
  if (tag.exe !== undefined) out.exe = tag.exe;
  if (tag.hints !== undefined && tag.hints.size > 0) out.hints = [...tag.hints].sort();
  return JSON.stringify(out);
}

export class TagLogLayer extends PassthroughLayer implements RetagSink {
  readonly path: string;
  private readonly volume: string;
  private readonly maxQueuedBytes: number;
  private readonly warn: (message: string) => void;
  private readonly clock: () => number;
  private readonly startedAt: Date | undefined;
  private fd: number | null = null;
  /** False until open succeeded, and again after a failure or close: then nothing is encoded. */
  private active = false;
  private failed = false;
  private start = 0;
  private chunk: Chunk = { buffer: Buffer.allocUnsafe(TAG_LOG_CHUNK_BYTES), length: 0 };
  private readonly queue: Chunk[] = [];
  private readonly spare: Chunk[] = [];
  private queuedBytes = 0;
  private writing = false;
  private idle: (() => void) | null = null;
  private timer: NodeJS.Timeout | null = null;
  /** Each tag's JSON, encoded once (tags are shared, frozen objects). */
  private readonly tagBytes = new WeakMap<IoTag, Buffer>();
  private readonly counts = { lines: 0, dropped: 0, bytesWritten: 0 };

  constructor(next: BlockLayer, options: TagLogOptions & { volume?: string }) {
    super(next, 'tag-log');
    this.path = options.path;
    this.volume = options.volume ?? '';
    this.maxQueuedBytes = options.maxQueuedBytes ?? TAG_LOG_MAX_QUEUED_BYTES_DEFAULT;
    this.warn = options.onWarning ?? ((message) => process.stderr.write(`sky tag-log: warning: ${message}\n`));
    this.clock = options.clock ?? (() => performance.now());
    this.startedAt = options.startedAt;
  }

  /**
   * Opens the layers below, then the log (truncating it). A log that cannot be opened is a configuration error
   * (a mistyped path must not go unnoticed); once open, write failures only stop the logging.
   */
  override async open(): Promise<void> {
    await this.next.open();
    try {
      this.fd = await new Promise<number>((resolve, reject) => fs.open(this.path, 'w', 0o644, (err, fd) => (err ? reject(err) : resolve(fd))));
    } catch (err) {
      this.failed = true;
      await this.next.close();
      throw new Error(`tag-log: cannot open ${this.path}: ${(err as Error).message}`);
    }
    this.start = this.clock();
    const header = { sky: TAG_LOG_FORMAT, v: TAG_LOG_VERSION, volume: this.volume, size: this.next.size(), started: (this.startedAt ?? new Date()).toISOString() };
    this.append(encoder(`${JSON.stringify(header)}\n`));
    this.active = true;
    this.timer = setInterval(() => this.sealAndWrite(), TAG_LOG_FLUSH_INTERVAL_MS);
    this.timer.unref();
  }

  override read(req: IoRequest, into: Buffer): Promise<void> {
    if (this.active) this.logRequest(OP_PREFIX.read, req);
    return this.next.read(req, into);
  }

  override write(req: IoRequest, data: Buffer): Promise<void> {
    if (this.active) this.logRequest(OP_PREFIX.write, req);
    return this.next.write(req, data);
  }

  override trim(req: IoRequest): Promise<void> {
    if (this.active) this.logRequest(OP_PREFIX.trim, req);
    return this.next.trim(req);
  }

  override zero(req: IoRequest): Promise<void> {
    if (this.active) this.logRequest(OP_PREFIX.zero, req);
    return this.next.zero(req);
  }

  override cache(req: IoRequest): Promise<void> {
    if (this.active) this.logRequest(OP_PREFIX.cache, req);
    return this.next.cache(req);
  }

  /** Re-tags arrive from the index (the classify layer subscribed this layer at open); one line per range. */
  applyRetag(ranges: readonly RetagRange[], cause: RetagCause): void {
    if (!this.active) return;
    for (const range of ranges) this.logLine(RETAG_PREFIX[cause], range.offset, range.length, range.tag);
  }

  /** Writes what is buffered, the end line, and closes the log; then closes the layers below. */
  override async close(): Promise<void> {
    await this.finish();
    await this.next.close();
  }

  stats(): TagLogStats {
    return { ...this.counts, failed: this.failed };
  }

  private async finish(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (this.active) {
      const end = { t: this.elapsedMs(), op: 'end', dropped: this.counts.dropped, lines: this.counts.lines };
      this.active = false;
      this.append(encoder(`${JSON.stringify(end)}\n`));
    }
    // The last chunk goes out whatever the bound says: it is at most one chunk, and it holds the end line.
    if (!this.failed && this.chunk.length > 0) {
      this.queue.push(this.chunk);
      this.queuedBytes += this.chunk.length;
      this.chunk = { buffer: Buffer.alloc(0), length: 0 };
    }
    this.kick();
    await this.drained();
    if (this.fd !== null) {
      const fd = this.fd;
      this.fd = null;
      await new Promise<void>((resolve) => fs.close(fd, () => resolve()));
    }
  }

  private logRequest(prefix: Buffer, req: IoRequest): void {
    this.logLine(prefix, req.offset, req.length, req.tag);
  }

  private logLine(prefix: Buffer, offset: number, length: number, tag: IoTag | null): void {
    const json = tag === null ? NULL_TAG : this.encodedTag(tag);
    const need = LINE_FIXED_BYTES_MAX + json.length;
    if (this.chunk.length + need > this.chunk.buffer.length && !this.seal(need)) {
      this.counts.dropped++;
      return;
    }
    // TypedArray.set is the cheapest copy for these few bytes (Buffer.copy and byte loops measured slower).
    const buffer = this.chunk.buffer;
    let at = this.chunk.length;
    buffer.set(T_PREFIX, at);
    at = writeMicros(buffer, at + T_PREFIX.length, Math.max(0, Math.round((this.clock() - this.start) * 1000)));
    buffer.set(prefix, at);
    at = writeUint(buffer, at + prefix.length, offset);
    buffer.set(LENGTH_KEY, at);
    at = writeUint(buffer, at + LENGTH_KEY.length, length);
    buffer.set(TAG_KEY, at);
    at += TAG_KEY.length;
    buffer.set(json, at);
    at += json.length;
    buffer.set(LINE_END, at);
    at += LINE_END.length;
    this.chunk.length = at;
    this.counts.lines++;
  }

  private encodedTag(tag: IoTag): Buffer {
    let bytes = this.tagBytes.get(tag);
    if (bytes === undefined) {
      bytes = encoder(tagJson(tag));
      this.tagBytes.set(tag, bytes);
    }
    return bytes;
  }

  private elapsedMs(): number {
    return Math.round((this.clock() - this.start) * 1000) / 1000;
  }

  /** Appends bytes outside the hot path (header, end line). */
  private append(bytes: Buffer): void {
    if (this.chunk.length + bytes.length > this.chunk.buffer.length && !this.seal(bytes.length)) {
      // Over the bound: the end line still has to be written, so it gets a chunk of its own.
      if (this.failed) return;
      this.queue.push(this.chunk);
      this.queuedBytes += this.chunk.length;
      this.chunk = this.spareChunk(bytes.length);
    }
    this.chunk.length += bytes.copy(this.chunk.buffer, this.chunk.length);
  }

  /**
   * Queues the current chunk and starts a fresh one with room for `need` bytes. False when the queue is over its
   * bound (the caller drops its line) or the log has failed.
   */
  private seal(need: number): boolean {
    if (this.failed) return false;
    if (this.chunk.length > 0) {
      if (this.queuedBytes + this.chunk.length > this.maxQueuedBytes) return false;
      this.queue.push(this.chunk);
      this.queuedBytes += this.chunk.length;
      this.chunk = this.spareChunk(need);
      this.kick();
    } else if (this.chunk.buffer.length < need) {
      this.chunk = { buffer: Buffer.allocUnsafe(need), length: 0 };
    }
    return true;
  }

  private spareChunk(need: number): Chunk {
    if (need > TAG_LOG_CHUNK_BYTES) return { buffer: Buffer.allocUnsafe(need), length: 0 };
    const chunk = this.spare.pop();
    if (chunk) {
      chunk.length = 0;
      return chunk;
    }
    return { buffer: Buffer.allocUnsafe(TAG_LOG_CHUNK_BYTES), length: 0 };
  }

  /** The timer's and close's push: the partial chunk goes out too. */
  private sealAndWrite(): void {
    if (this.chunk.length > 0 && !this.writing) this.seal(0);
    this.kick();
  }

  private kick(): void {
    if (this.writing || this.fd === null) return;
    const chunk = this.queue.shift();
    if (!chunk) {
      this.idle?.();
      this.idle = null;
      return;
    }
    this.writing = true;
    this.writeAll(chunk, 0);
  }

  private writeAll(chunk: Chunk, from: number): void {
    fs.write(this.fd!, chunk.buffer, from, chunk.length - from, null, (err, written) => {
      if (err) return this.fail(err);
      this.counts.bytesWritten += written;
      if (from + written < chunk.length) return this.writeAll(chunk, from + written);
      this.queuedBytes -= chunk.length;
      if (chunk.buffer.length === TAG_LOG_CHUNK_BYTES && this.spare.length < SPARE_CHUNKS_MAX) this.spare.push(chunk);
      this.writing = false;
      this.kick();
    });
  }

  private fail(err: NodeJS.ErrnoException): void {
    this.warn(`writing tag log ${this.path} failed (${err.code ?? err.message}); logging stops, requests go on`);
    this.failed = true;
    this.active = false;
    this.writing = false;
    this.queue.length = 0;
    this.queuedBytes = 0;
    this.chunk.length = 0;
    this.idle?.();
    this.idle = null;
  }

  private drained(): Promise<void> {
    if (!this.writing && this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => {
      this.idle = resolve;
    });
  }
}

/** Writes a non-negative safe integer in decimal at `at`; returns the new position. */
function writeUint(buffer: Buffer, at: number, value: number): number {
  if (value < 0x80000000) return writeSmallUint(buffer, at, value);
  // Above 2^31: split off the low 9 digits so the rest is small integer arithmetic.
  const high = Math.floor(value / 1e9);
  const low = value - high * 1e9;
  at = writeUint(buffer, at, high);
  for (let k = at + 8, rest = low; k >= at; k--) {
    buffer[k] = 48 + (rest % 10);
    rest = (rest / 10) | 0;
  }
  return at + 9;
}

function writeSmallUint(buffer: Buffer, at: number, value: number): number {
  const digits = value < 10 ? 1 : value < 100 ? 2 : value < 1e3 ? 3 : value < 1e4 ? 4 : value < 1e5 ? 5 : value < 1e6 ? 6 : value < 1e7 ? 7 : value < 1e8 ? 8 : value < 1e9 ? 9 : 10;
  for (let k = at + digits - 1, rest = value; k >= at; k--) {
    buffer[k] = 48 + (rest % 10);
    rest = (rest / 10) | 0;
  }
  return at + digits;
}

/** Writes microseconds as milliseconds with three decimals ("12.345", "0.007"). */
function writeMicros(buffer: Buffer, at: number, micros: number): number {
  at = writeUint(buffer, at, Math.floor(micros / 1000));
  const fraction = micros % 1000;
  buffer[at] = 46; // '.'
  buffer[at + 1] = 48 + Math.floor(fraction / 100);
  buffer[at + 2] = 48 + (Math.floor(fraction / 10) % 10);
  buffer[at + 3] = 48 + (fraction % 10);
  return at + 4;
}

// ---------------------------------------------------------------------------------------------------------------
// Configuration

export const TagLogOptionsSchema = z
  .object({
    type: z.literal('tag-log'),
    /** The JSONL file; truncated at open. Its directory must exist. */
    path: z.string().min(1),
    /** Bound on lines waiting for the disk before lines are dropped. Default 64 MiB. */
    maxQueued: SizeSchema.refine((n) => n >= TAG_LOG_CHUNK_BYTES, 'must be at least 1M').default(TAG_LOG_MAX_QUEUED_BYTES_DEFAULT),
  })
  .strict();

export type TagLogConfig = z.output<typeof TagLogOptionsSchema>;

/** A tag-log factory whose warnings go to `onWarning` (the engine's default writes them to stderr). */
export function createTagLogFactory(settings: { onWarning?: (message: string) => void } = {}): LayerFactory<TagLogConfig> {
  return {
    type: 'tag-log',
    schema: TagLogOptionsSchema,
    create(next: BlockLayer, options: TagLogConfig, context: LayerContext): BlockLayer {
      return new TagLogLayer(next, { path: options.path, maxQueuedBytes: options.maxQueued, volume: context.volume, onWarning: settings.onWarning });
    },
  };
}

/** The `tag-log` layer type: `layers: [{ type: classify }, { type: tag-log, path: /var/log/sky/vol.jsonl }]`. */
export const tagLogFactory: LayerFactory<TagLogConfig> = createTagLogFactory();
