import type { BlockLayer, IoRequest } from './types.js';
import { PassthroughLayer } from './passthrough.js';

export type OpName = 'read' | 'write' | 'flush' | 'trim' | 'zero' | 'cache' | 'blockStatus';
export const OP_NAMES: readonly OpName[] = ['read', 'write', 'flush', 'trim', 'zero', 'cache', 'blockStatus'];

/** Latency histogram bucket upper bounds in microseconds (powers of 4 from 4 µs to ~17 s), plus +Inf. */
export const LATENCY_BUCKETS_US: readonly number[] = [4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216];

export interface OpStats {
  count: number;
  errors: number;
  bytes: number;
  latencySumUs: number;
  /** Counts per bucket of LATENCY_BUCKETS_US; the last slot counts everything above the last bound. */
  latencyBuckets: number[];
}

export interface VolumeStatsSnapshot {
  volume: string;
  ops: Record<OpName, OpStats>;
}

function emptyOp(): OpStats {
  return { count: 0, errors: 0, bytes: 0, latencySumUs: 0, latencyBuckets: new Array(LATENCY_BUCKETS_US.length + 1).fill(0) };
}

/** Per-volume counters of operations, bytes and latency. Preallocated; recording does not allocate. */
export class StatsLayer extends PassthroughLayer {
  readonly volume: string;
  private readonly ops: Record<OpName, OpStats>;

  constructor(next: BlockLayer, volume: string) {
    super(next, 'stats');
    this.volume = volume;
    this.ops = { read: emptyOp(), write: emptyOp(), flush: emptyOp(), trim: emptyOp(), zero: emptyOp(), cache: emptyOp(), blockStatus: emptyOp() };
  }

  snapshot(): VolumeStatsSnapshot {
    return { volume: this.volume, ops: structuredClone(this.ops) };
  }

  private record(op: OpName, bytes: number, startMs: number, failed: boolean): void {
    const s = this.ops[op];
    const us = (performance.now() - startMs) * 1000;
    s.count++;
    if (failed) s.errors++;
    else s.bytes += bytes;
    s.latencySumUs += us;
    let i = 0;
    while (i < LATENCY_BUCKETS_US.length && us > LATENCY_BUCKETS_US[i]!) i++;
    s.latencyBuckets[i]!++;
  }

  private async timed<T>(op: OpName, bytes: number, run: Promise<T>): Promise<T> {
    const start = performance.now();
    try {
      const r = await run;
      this.record(op, bytes, start, false);
      return r;
    } catch (e) {
      this.record(op, bytes, start, true);
      throw e;
    }
  }

  override read(req: IoRequest, into: Buffer): Promise<void> {
    return this.timed('read', req.length, this.next.read(req, into));
  }
  override write(req: IoRequest, data: Buffer): Promise<void> {
    return this.timed('write', req.length, this.next.write(req, data));
  }
  override flush(): Promise<void> {
    return this.timed('flush', 0, this.next.flush());
  }
  override trim(req: IoRequest): Promise<void> {
    return this.timed('trim', req.length, this.next.trim(req));
  }
  override zero(req: IoRequest): Promise<void> {
    return this.timed('zero', req.length, this.next.zero(req));
  }
  override cache(req: IoRequest): Promise<void> {
    return this.timed('cache', req.length, this.next.cache(req));
  }
}
