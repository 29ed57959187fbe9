/**
 * The classify layer: first in every stack that has tracing. It tags each request (req.tag) from the volume's
 * SemanticIndex, and for writes computes the XXH3-128 fingerprint of each whole 4 KiB-aligned block once, into
 * req.fingerprints (16 bytes per block, canonical big-endian), for the index to match and for iDedup to reuse.
 * req.fingerprints is valid until the write's promise settles (its storage is reused by the next write on the same
 * IoRequest, see fingerprintBuffer): a layer that keeps fingerprints longer copies them.
 *
 * Which blocks are fingerprinted: those wholly inside the write, counted from the first 4 KiB boundary at or after
 * req.offset. Block k of req.fingerprints covers volume bytes [alignedStart + 4096 k, +4096), where
 * alignedStart = ceil(offset / 4096) * 4096 (see alignedBlocks). A write with no whole block gets no fingerprints
 * (req.fingerprints stays null) and is tagged by the LBA map alone.
 *
 * What tagging needs is cheaper than hashing every block, and hashing is most of the layer's cost (XXH3-128 of a
 * MiB takes ~80 µs, a quarter of what the whole engine spends on a 1 MiB write), so unless a layer below wants
 * every fingerprint (`wantsFingerprints`, e.g. dedup):
 *  - nothing is hashed while no write fingerprint is registered (no match is possible; the tag is the same);
 *  - a block is hashed only if its quick key (fingerprint.ts quickKey: 16 sampled words, ~30 ns) is one a registered
 *    fingerprint has; most written blocks are metadata or come from untraced writers, and they cost no hash;
 *  - a write of more than `sampleBlocks` blocks is matched on that many evenly spaced sample blocks (a file
 *    system's large write is one file's run of blocks, or a merge of a few files' runs; the request gets one tag
 *    either way), and req.fingerprints stays null: a layer that needs them computes them itself, once.
 *
 * How a request is tagged is described in index-store.ts. Tags are shared and frozen; layers below read them.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { SizeSchema } from '../device/size-schema.js';
import { PassthroughLayer } from '../volume/passthrough.js';
import type { LayerContext, LayerFactory } from '../volume/stack.js';
import type { BlockLayer, IoRequest, IoTag } from '../volume/types.js';
import { FINGERPRINT_BLOCK_BYTES, FINGERPRINT_BYTES, fingerprintBlocks, quickKey } from './fingerprint.js';
import { SEMANTIC_DEFAULTS, SemanticIndex, isRetagSink, type SemanticIndexOptions, type SmallBlockPrints, type WriteContent } from './index-store.js';
import { importOpenCasCsv, IoClassRulesError, parseIoClassRules, parseIoClassRulesYaml, type IoClassRules } from './ioclass.js';

export const RETAG_GRANULARITY_DEFAULT = 64 * 1024;

export interface ClassifyLayerOptions {
  /** The volume's index (shared with the hint channel that feeds it). */
  index: SemanticIndex;
  /** Forget file ownership of trimmed ranges. Default true. */
  forgetOnTrim?: boolean;
  /** Granularity of the seen-bitmap behind re-tags (power of two ≥ 4 KiB). Default 64 KiB. */
  retagGranularity?: number;
  /** Most blocks of one write hashed to tag it (0: every block). Default SAMPLE_BLOCKS_DEFAULT. */
  sampleBlocks?: number;
}

/** A write of up to 64 KiB is matched block by block; larger ones on 16 samples. */
export const SAMPLE_BLOCKS_DEFAULT = 16;

/** A layer below classify that needs every written block's fingerprint in req.fingerprints (dedup). */
export function wantsFingerprints(layer: unknown): boolean {
  return (layer as { wantsFingerprints?: unknown } | null)?.wantsFingerprints === true;
}

/** First aligned block of a request and how many whole 4 KiB blocks it covers. */
export function alignedBlocks(offset: number, length: number): { firstBlockOffset: number; blocks: number } {
  const firstBlockOffset = Math.ceil(offset / FINGERPRINT_BLOCK_BYTES) * FINGERPRINT_BLOCK_BYTES;
  const endBlockOffset = Math.floor((offset + length) / FINGERPRINT_BLOCK_BYTES) * FINGERPRINT_BLOCK_BYTES;
  return { firstBlockOffset, blocks: Math.max(0, (endBlockOffset - firstBlockOffset) / FINGERPRINT_BLOCK_BYTES) };
}

/** Each request's fingerprint storage starts at 256 fingerprints (a 1 MiB write), so growth is rare. */
const FINGERPRINT_BACKING_BYTES_MIN = 256 * FINGERPRINT_BYTES;
/** Exact-length views are cached for writes of up to 4 MiB; larger ones (rare) get a fresh view each time. */
const VIEW_CACHE_BLOCKS_MAX = 1024;

interface FingerprintBuffers {
  backing: ArrayBuffer;
  /** views[n]: the first n fingerprints of backing. */
  views: (Uint8Array | undefined)[];
}

/** Compared against written blocks by allZero; never written into. */
const ZERO_BLOCK = Buffer.alloc(FINGERPRINT_BLOCK_BYTES);

export class ClassifyLayer extends PassthroughLayer implements WriteContent {
  readonly index: SemanticIndex;
  private readonly fingerprintBuffers = new WeakMap<IoRequest, FingerprintBuffers>();
  private readonly forgetOnTrim: boolean;
  private readonly retagGranularity: number;
  private readonly sampleBlocks: number;
  /** Set at open when a layer below wants every fingerprint: then nothing is skipped or sampled. */
  private fingerprintEveryBlock = false;
  /** The write being tagged, while the index may ask about its content (WriteContent). */
  private writeData: Buffer | null = null;
  /** Scratch for smallBlockPrints, reused by every write (its fingerprints are read before write() returns). */
  private readonly smallPrints: SmallBlockPrints = { fingerprints: new Uint8Array(0), firstBlockOffset: 0, blocks: 0, strideBlocks: 1, blockBytes: 1024 };
  private readonly unsubscribers: (() => void)[] = [];

  constructor(next: BlockLayer, options: ClassifyLayerOptions) {
    super(next, 'classify');
    this.index = options.index;
    this.forgetOnTrim = options.forgetOnTrim ?? true;
    this.retagGranularity = options.retagGranularity ?? RETAG_GRANULARITY_DEFAULT;
    this.sampleBlocks = options.sampleBlocks ?? SAMPLE_BLOCKS_DEFAULT;
  }

  /** Opens the layers below, then subscribes every one of them that wants re-tags (RetagSink). */
  override async open(): Promise<void> {
    await this.next.open();
    this.index.trackSeen(this.next.size(), this.retagGranularity);
    for (let layer: BlockLayer | null = this.next; layer; layer = layer.next) {
      if (wantsFingerprints(layer)) this.fingerprintEveryBlock = true;
      if (isRetagSink(layer)) {
        const sink = layer;
        this.unsubscribers.push(this.index.onRetag((ranges, cause) => sink.applyRetag(ranges, cause)));
      }
    }
  }

  override read(req: IoRequest, into: Buffer): Promise<void> {
    req.tag = this.index.tagRead(req.offset, req.length);
    return this.next.read(req, into);
  }

  override write(req: IoRequest, data: Buffer): Promise<void> {
    const offset = req.offset;
    const firstBlockOffset = Math.ceil(offset / FINGERPRINT_BLOCK_BYTES) * FINGERPRINT_BLOCK_BYTES;
    const endBlockOffset = Math.floor((offset + req.length) / FINGERPRINT_BLOCK_BYTES) * FINGERPRINT_BLOCK_BYTES;
    const blocks = endBlockOffset > firstBlockOffset ? (endBlockOffset - firstBlockOffset) / FINGERPRINT_BLOCK_BYTES : 0;
    let fingerprints: Uint8Array | null = null;
    if (blocks > 0 && this.fingerprintEveryBlock) {
      fingerprints = this.fingerprintBuffer(req, blocks);
      fingerprintBlocks(data, firstBlockOffset - offset, blocks, fingerprints, 0);
    } else if (blocks > 0 && this.index.hasFingerprints()) {
      if (this.sampleBlocks === 0 || blocks <= this.sampleBlocks) {
        if (this.mayMatch(data, firstBlockOffset - offset, blocks, 1)) {
          fingerprints = this.fingerprintBuffer(req, blocks);
          fingerprintBlocks(data, firstBlockOffset - offset, blocks, fingerprints, 0);
        }
      } else {
        const stride = Math.ceil(blocks / this.sampleBlocks);
        const samples = Math.ceil(blocks / stride);
        if (!this.mayMatch(data, firstBlockOffset - offset, samples, stride)) {
          req.fingerprints = null;
          req.tag = this.tagWrite(data, offset, req.length, null, firstBlockOffset, 0);
          return this.next.write(req, data);
        }
        const sampled = this.fingerprintBuffer(req, samples);
        for (let k = 0; k < samples; k++) {
          fingerprintBlocks(data, firstBlockOffset - offset + k * stride * FINGERPRINT_BLOCK_BYTES, 1, sampled, k * FINGERPRINT_BYTES);
        }
        req.fingerprints = null;
        req.tag = this.tagWrite(data, offset, req.length, sampled, firstBlockOffset, samples, stride);
        return this.next.write(req, data);
      }
    }
    req.fingerprints = fingerprints;
    req.tag = this.tagWrite(data, offset, req.length, fingerprints, firstBlockOffset, fingerprints === null ? 0 : blocks);
    return this.next.write(req, data);
  }

  /** index.tagWrite, which may ask about the write's content (WriteContent) while it runs. */
  private tagWrite(data: Buffer, offset: number, length: number, fingerprints: Uint8Array | null, firstBlockOffset: number, blocks: number, stride = 1): IoTag {
    this.writeData = data;
    try {
      return this.index.tagWrite(offset, length, fingerprints, firstBlockOffset, blocks, stride, this);
    } finally {
      this.writeData = null;
    }
  }

  /**
   * Whether the write is at least one 4 KiB block long and every byte of it is zero. Not "mostly": btrfs writes its
   * 16 KiB tree nodes with the free space between items zeroed, whole 4 KiB blocks of it, so only a write with no
   * byte of a header anywhere says preallocation. Stops at the first non-zero block (a block of metadata or file data
   * differs from zeroes within its first bytes).
   */
  allZero(): boolean {
    const data = this.writeData;
    assert.ok(data !== null, 'the content of a write is asked about while it is tagged');
    if (data.length < FINGERPRINT_BLOCK_BYTES) return false;
    for (let at = 0; at < data.length; at += FINGERPRINT_BLOCK_BYTES) {
      const end = Math.min(at + FINGERPRINT_BLOCK_BYTES, data.length);
      if (data.compare(ZERO_BLOCK, 0, end - at, at, end) !== 0) return false;
    }
    return true;
  }

  /**
   * Fingerprints of the write's whole `blockBytes` blocks (a file system with blocks under 4 KiB is described on the
   * volume), for tagging only: the index uses them when no 4 KiB block matched. Sampled like 4 KiB blocks (at most
   * sampleBlocks × 4 KiB / blockBytes of them), and hashed only if some sampled block's quick key is held. Once a
   * volume has had such fingerprints it keeps paying the quick keys (an index does not forget a block size). The
   * buffer is the layer's own: tagWrite reads it synchronously. Asked by the index during tagWrite only.
   */
  smallBlockPrints(offset: number, length: number): SmallBlockPrints | null {
    const data = this.writeData;
    const blockBytes = this.index.smallBlockBytes;
    assert.ok(data !== null, 'small-block fingerprints are asked for while a write is tagged');
    if (blockBytes === 0) return null;
    const first = Math.ceil(offset / blockBytes) * blockBytes;
    const end = Math.floor((offset + length) / blockBytes) * blockBytes;
    const blocks = end > first ? (end - first) / blockBytes : 0;
    if (blocks === 0) return null;
    const most = this.sampleBlocks === 0 ? blocks : (this.sampleBlocks * FINGERPRINT_BLOCK_BYTES) / blockBytes;
    const stride = blocks <= most ? 1 : Math.ceil(blocks / most);
    const samples = Math.ceil(blocks / stride);
    const dataOffset = first - offset;
    let any = false;
    for (let k = 0; k < samples && !any; k++) any = this.index.mayHoldBlock(quickKey(data, dataOffset + k * stride * blockBytes, blockBytes));
    if (!any) return null;
    if (this.smallPrints.fingerprints.length < samples * FINGERPRINT_BYTES) this.smallPrints.fingerprints = new Uint8Array(samples * FINGERPRINT_BYTES * 2);
    const out = this.smallPrints.fingerprints;
    if (stride === 1) fingerprintBlocks(data, dataOffset, samples, out, 0, blockBytes);
    else for (let k = 0; k < samples; k++) fingerprintBlocks(data, dataOffset + k * stride * blockBytes, 1, out, k * FINGERPRINT_BYTES, blockBytes);
    this.smallPrints.firstBlockOffset = first;
    this.smallPrints.blocks = samples;
    this.smallPrints.strideBlocks = stride;
    this.smallPrints.blockBytes = blockBytes;
    return this.smallPrints;
  }

  /** Whether any of `count` blocks of `data` (from `dataOffset`, every `strideBlocks`-th) may match a registered fingerprint. */
  private mayMatch(data: Buffer, dataOffset: number, count: number, strideBlocks: number): boolean {
    for (let k = 0; k < count; k++) {
      if (this.index.mayHoldBlock(quickKey(data, dataOffset + k * strideBlocks * FINGERPRINT_BLOCK_BYTES))) return true;
    }
    return false;
  }

  /**
   * A buffer of exactly `blocks` fingerprints for this request, reused across requests on the same IoRequest.
   *
   * Why per request object: a request's fingerprints go down the stack and may be read by the layers below until
   * its promise settles, and a connection has up to 64 requests in flight, so one shared buffer would be
   * overwritten under them. The NBD server keeps one IoRequest per request slot and reuses it only once the
   * previous request on that slot has been answered; keyed by that object, the buffer is free whenever it is
   * asked for again, and a steady workload allocates nothing. Views are cached per block count (up to
   * VIEW_CACHE_BLOCKS_MAX) so that layers below get an exact-length array, as before. A caller that makes a new
   * IoRequest per write still gets a new buffer each time (the WeakMap lets it go with the request).
   * Contract for layers below: req.fingerprints is valid until the write's promise settles; copy what you keep.
   */
  private fingerprintBuffer(req: IoRequest, blocks: number): Uint8Array {
    const bytes = blocks * FINGERPRINT_BYTES;
    let buffers = this.fingerprintBuffers.get(req);
    if (buffers === undefined || buffers.backing.byteLength < bytes) {
      buffers = { backing: new ArrayBuffer(Math.max(bytes, FINGERPRINT_BACKING_BYTES_MIN)), views: [] };
      this.fingerprintBuffers.set(req, buffers);
    }
    if (blocks > VIEW_CACHE_BLOCKS_MAX) return new Uint8Array(buffers.backing, 0, bytes);
    return (buffers.views[blocks] ??= new Uint8Array(buffers.backing, 0, bytes));
  }

  override trim(req: IoRequest): Promise<void> {
    req.tag = this.index.tagRead(req.offset, req.length);
    if (this.forgetOnTrim) this.index.forgetRange(req.offset, req.length);
    return this.next.trim(req);
  }

  override zero(req: IoRequest): Promise<void> {
    req.tag = this.index.tagRead(req.offset, req.length);
    return this.next.zero(req);
  }

  override cache(req: IoRequest): Promise<void> {
    req.tag = this.index.tagRead(req.offset, req.length);
    return this.next.cache(req);
  }

  override async close(): Promise<void> {
    for (const unsubscribe of this.unsubscribers.splice(0)) unsubscribe();
    await this.next.close();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Configuration

const count = (min: number, max: number) => z.number().int().min(min).max(max);

export const ClassifyOptionsSchema = z
  .object({
    type: z.literal('classify'),
    /** A rules file (.yaml/.yml, or .csv for an Open CAS ioclass file), or the rules inline. Default: the paper's table. */
    rules: z.union([z.string().min(1), z.record(z.string(), z.unknown())]).optional(),
    maxExtents: count(1024, 100_000_000).default(SEMANTIC_DEFAULTS.maxExtents),
    maxFingerprints: count(16, 100_000_000).default(SEMANTIC_DEFAULTS.maxFingerprints),
    maxFiles: count(1, 100_000_000).default(SEMANTIC_DEFAULTS.maxFiles),
    maxLearnedRangesPerFile: count(0, 1_000_000).default(SEMANTIC_DEFAULTS.maxLearnedRangesPerFile),
    fingerprintTtlMsMax: count(1, 24 * 60 * 60 * 1000).default(SEMANTIC_DEFAULTS.fingerprintTtlMsMax),
    copyTtlMs: count(1, 24 * 60 * 60 * 1000).default(SEMANTIC_DEFAULTS.copyTtlMs),
    learnFromWrites: z.boolean().default(SEMANTIC_DEFAULTS.learnFromWrites),
    zeroWritesAreData: z.boolean().default(SEMANTIC_DEFAULTS.zeroWritesAreData),
    forgetOnTrim: z.boolean().default(true),
    retagGranularity: SizeSchema.refine((n) => n >= FINGERPRINT_BLOCK_BYTES && (n & (n - 1)) === 0, 'must be a power of two of at least 4K').default(RETAG_GRANULARITY_DEFAULT),
    sampleBlocks: count(0, 1 << 20).default(SAMPLE_BLOCKS_DEFAULT),
  })
  .strict();

export type ClassifyOptions = z.output<typeof ClassifyOptionsSchema>;

/** Loads rules named by the layer config: a YAML file, an Open CAS CSV file, or an inline object. */
export function loadIoClassRules(rules: string | Record<string, unknown>): IoClassRules {
  if (typeof rules !== 'string') return parseIoClassRules(rules, 'the classify layer\'s inline rules');
  let text: string;
  try {
    text = readFileSync(rules, 'utf8');
  } catch (err) {
    throw new IoClassRulesError(`cannot read ioclass rules ${rules}: ${(err as Error).message}`);
  }
  return rules.toLowerCase().endsWith('.csv') ? importOpenCasCsv(text, rules).rules : parseIoClassRulesYaml(text, rules);
}

/** Where the hint channel finds each volume's index. One per engine; the default one serves `classifyFactory`. */
export class SemanticRegistry {
  private readonly indexes = new Map<string, SemanticIndex>();

  register(volume: string, index: SemanticIndex): void {
    this.indexes.set(volume, index);
  }

  get(volume: string): SemanticIndex | undefined {
    return this.indexes.get(volume);
  }

  delete(volume: string, index?: SemanticIndex): void {
    if (index === undefined || this.indexes.get(volume) === index) this.indexes.delete(volume);
  }

  volumes(): string[] {
    return [...this.indexes.keys()];
  }
}

export const defaultSemanticRegistry = new SemanticRegistry();

/** A classify factory whose indexes land in `registry` (tests and embedders pass their own; `clock` for tests). */
export function createClassifyFactory(settings: { registry?: SemanticRegistry; clock?: () => number } = {}): LayerFactory<ClassifyOptions> {
  const registry = settings.registry ?? defaultSemanticRegistry;
  return {
    type: 'classify',
    schema: ClassifyOptionsSchema,
    create(next: BlockLayer, options: ClassifyOptions, context: LayerContext): BlockLayer {
      const indexOptions: SemanticIndexOptions = {
        maxExtents: options.maxExtents,
        maxFingerprints: options.maxFingerprints,
        maxFiles: options.maxFiles,
        maxLearnedRangesPerFile: options.maxLearnedRangesPerFile,
        fingerprintTtlMsMax: options.fingerprintTtlMsMax,
        copyTtlMs: options.copyTtlMs,
        learnFromWrites: options.learnFromWrites,
        zeroWritesAreData: options.zeroWritesAreData,
        clock: settings.clock,
      };
      if (options.rules !== undefined) indexOptions.rules = loadIoClassRules(options.rules);
      const index = new SemanticIndex(indexOptions);
      registry.register(context.volume, index);
      return new ClassifyLayer(next, { index, forgetOnTrim: options.forgetOnTrim, retagGranularity: options.retagGranularity, sampleBlocks: options.sampleBlocks });
    },
  };
}

/** The `classify` layer type: `layers: [{ type: classify, rules: ioclass.yaml }]`. */
export const classifyFactory: LayerFactory<ClassifyOptions> = createClassifyFactory();
