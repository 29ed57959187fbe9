/**
 * How late the agent handles a system call: from the call (the event's CLOCK_MONOTONIC time stamp) to the moment
 * the insight engine sees it. A hint is worth most before the block write it describes, so this is the number that
 * says whether the agent keeps up. Power-of-two buckets of microseconds: constant memory, quantiles within 2×.
 */
const BUCKETS = 40;

export interface LagSummary {
  count: number;
  /** Upper bounds of the buckets holding the median, 90th and 99th percentile, in ms. */
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
}

export class LagHistogram {
  private readonly counts = new Float64Array(BUCKETS);
  private total = 0;
  private maxUs = 0;

  /** `eventNs` on the CLOCK_MONOTONIC scale (what the tracers stamp); `nowNs` likewise (process.hrtime). */
  add(eventNs: number, nowNs: number): void {
    const us = Math.max(0, (nowNs - eventNs) / 1000);
    if (us > this.maxUs) this.maxUs = us;
    const bucket = us < 1 ? 0 : Math.min(BUCKETS - 1, Math.ceil(Math.log2(us)));
    this.counts[bucket]!++;
    this.total++;
  }

  summary(): LagSummary {
    return { count: this.total, p50Ms: this.quantile(0.5), p90Ms: this.quantile(0.9), p99Ms: this.quantile(0.99), maxMs: this.maxUs / 1000 };
  }

  private quantile(q: number): number {
    if (this.total === 0) return 0;
    const rank = Math.ceil(q * this.total);
    let seen = 0;
    for (let bucket = 0; bucket < BUCKETS; bucket++) {
      seen += this.counts[bucket]!;
      if (seen >= rank) return Math.min(2 ** bucket, this.maxUs) / 1000;
    }
    return this.maxUs / 1000;
  }
}
