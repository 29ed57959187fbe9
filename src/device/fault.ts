import assert from 'node:assert/strict';
import { BlockError, type BlockErrno, type BlockLayer, type IoRequest } from '../volume/types.js';
import { PassthroughLayer } from '../volume/passthrough.js';
import { SeededRandom } from './prng.js';

export type FaultOp = 'read' | 'write';

/** Fails every request of `op` (both ops if omitted) that overlaps [offset, offset+length). */
export interface FaultAtRange {
  offset: number;
  length?: number;
  op?: FaultOp;
  errno?: BlockErrno;
}

export interface FaultInjectionOptions {
  seed: number;
  /** Probability in [0, 1] that a read fails. */
  readErrorRate?: number;
  /** Probability in [0, 1] that a write (or zero) fails. */
  writeErrorRate?: number;
  /** Errno for rate-based failures; EIO by default. */
  errno?: BlockErrno;
  failAt?: FaultAtRange[];
  /** A "full device": once this many bytes have been written, further writes and zeroes fail with ENOSPC. */
  fullAfterBytes?: number;
}

export interface FaultStats {
  readsFailed: number;
  writesFailed: number;
  bytesWritten: number;
}

/**
 * Fails requests on purpose, for tests of the layers above. Failed requests never reach the layer below, so
 * the device keeps its old content, like a write lost before it reached the medium. Seeded: a run replays.
 */
export class FaultInjectionLayer extends PassthroughLayer {
  private readonly options: FaultInjectionOptions;
  private readonly random: SeededRandom;
  private readonly counters: FaultStats = { readsFailed: 0, writesFailed: 0, bytesWritten: 0 };
  /** Tests switch injection off to check the data underneath, then on again. */
  enabled = true;

  constructor(next: BlockLayer, options: FaultInjectionOptions) {
    super(next, 'fault');
    for (const rate of [options.readErrorRate, options.writeErrorRate]) {
      assert.ok(rate === undefined || (rate >= 0 && rate <= 1), 'error rates are probabilities');
    }
    assert.ok(options.fullAfterBytes === undefined || options.fullAfterBytes >= 0, 'fullAfterBytes is a byte count');
    this.options = options;
    this.random = new SeededRandom(options.seed);
  }

  stats(): FaultStats {
    return { ...this.counters };
  }

  override async read(req: IoRequest, into: Buffer): Promise<void> {
    const errno = this.readFault(req);
    if (errno !== null) {
      this.counters.readsFailed++;
      throw new BlockError(errno, `injected read fault at ${req.offset}+${req.length}`);
    }
    return this.next.read(req, into);
  }

  override async write(req: IoRequest, data: Buffer): Promise<void> {
    this.beforeWrite(req);
    await this.next.write(req, data);
    this.counters.bytesWritten += req.length;
  }

  override async zero(req: IoRequest): Promise<void> {
    this.beforeWrite(req);
    await this.next.zero(req);
    this.counters.bytesWritten += req.length;
  }

  private beforeWrite(req: IoRequest): void {
    const errno = this.writeFault(req);
    if (errno === null) return;
    this.counters.writesFailed++;
    throw new BlockError(errno, `injected write fault at ${req.offset}+${req.length}`);
  }

  private readFault(req: IoRequest): BlockErrno | null {
    if (!this.enabled) return null;
    return this.rangeFault(req, 'read') ?? this.rateFault(this.options.readErrorRate);
  }

  private writeFault(req: IoRequest): BlockErrno | null {
    if (!this.enabled) return null;
    const full = this.options.fullAfterBytes;
    if (full !== undefined && this.counters.bytesWritten + req.length > full) return 'ENOSPC';
    return this.rangeFault(req, 'write') ?? this.rateFault(this.options.writeErrorRate);
  }

  /** Draws a number only when a rate is set, so adding an offset rule does not shift a seeded sequence. */
  private rateFault(rate: number | undefined): BlockErrno | null {
    if (rate === undefined || rate === 0) return null;
    return this.random.nextFloat() < rate ? (this.options.errno ?? 'EIO') : null;
  }

  private rangeFault(req: IoRequest, op: FaultOp): BlockErrno | null {
    for (const rule of this.options.failAt ?? []) {
      if (rule.op !== undefined && rule.op !== op) continue;
      const end = rule.offset + (rule.length ?? 1);
      if (req.offset < end && rule.offset < req.offset + req.length) return rule.errno ?? 'EIO';
    }
    return null;
  }
}
