import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { Registry, type Metric } from 'prom-client';
import { LATENCY_BUCKETS_US, OP_NAMES, type VolumeStatsSnapshot } from '../volume/index.js';

type SnapshotSource = () => VolumeStatsSnapshot[];

interface Sample {
  labels: Record<string, string | number>;
  value: number;
  metricName?: string;
}

/**
 * A prom-client metric whose samples are read from the volumes' stats layers at scrape time, so the data path
 * only bumps plain counters and pays nothing for exposition.
 */
function snapshotMetric(name: string, help: string, type: 'counter' | 'histogram', samples: () => Sample[]): Metric {
  return {
    name,
    help,
    type,
    aggregator: 'sum',
    get: async () => ({ name, help, type, aggregator: 'sum', values: samples() }),
    reset: () => undefined,
  } as unknown as Metric;
}

export function volumeRegistry(source: SnapshotSource): Registry {
  const registry = new Registry();
  const perOp = (pick: (s: VolumeStatsSnapshot['ops']['read']) => number) => () =>
    source().flatMap((v) => OP_NAMES.map((op) => ({ labels: { volume: v.volume, op }, value: pick(v.ops[op]) })));
  registry.registerMetric(snapshotMetric('sky_volume_requests_total', 'Requests completed per volume and operation', 'counter', perOp((s) => s.count)));
  registry.registerMetric(snapshotMetric('sky_volume_errors_total', 'Requests failed per volume and operation', 'counter', perOp((s) => s.errors)));
  registry.registerMetric(snapshotMetric('sky_volume_bytes_total', 'Bytes moved per volume and operation', 'counter', perOp((s) => s.bytes)));
  registry.registerMetric(
    snapshotMetric('sky_volume_latency_seconds', 'Request latency per volume and operation', 'histogram', () =>
      source().flatMap((v) => OP_NAMES.flatMap((op) => histogramSamples(v.volume, op, v.ops[op]))),
    ),
  );
  return registry;
}

function histogramSamples(volume: string, op: string, s: VolumeStatsSnapshot['ops']['read']): Sample[] {
  const samples: Sample[] = [];
  let cumulative = 0;
  LATENCY_BUCKETS_US.forEach((boundUs, i) => {
    cumulative += s.latencyBuckets[i]!;
    samples.push({ labels: { volume, op, le: boundUs / 1e6 }, value: cumulative, metricName: 'sky_volume_latency_seconds_bucket' });
  });
  cumulative += s.latencyBuckets[LATENCY_BUCKETS_US.length]!;
  samples.push({ labels: { volume, op, le: '+Inf' }, value: cumulative, metricName: 'sky_volume_latency_seconds_bucket' });
  samples.push({ labels: { volume, op }, value: s.latencySumUs / 1e6, metricName: 'sky_volume_latency_seconds_sum' });
  samples.push({ labels: { volume, op }, value: s.count, metricName: 'sky_volume_latency_seconds_count' });
  return samples;
}

/** HTTP endpoint: /metrics (Prometheus text), /stats (JSON snapshot), /healthz. */
export class MetricsServer {
  private readonly source: SnapshotSource;
  private readonly registry: Registry;
  private readonly log: Logger;
  private server: http.Server | null = null;
  address: string | null = null;

  constructor(source: SnapshotSource, logger: Logger) {
    this.source = source;
    this.registry = volumeRegistry(source);
    this.log = logger;
  }

  async listen(at: { host: string; port: number }): Promise<void> {
    const server = http.createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(at.port, at.host, () => resolve());
    });
    this.server = server;
    const bound = server.address() as AddressInfo;
    this.address = `${bound.address}:${bound.port}`;
    this.log.info({ address: this.address }, 'metrics listening (/metrics, /stats)');
  }

  close(): Promise<void> {
    const server = this.server;
    this.server = null;
    if (!server) return Promise.resolve();
    server.closeAllConnections();
    return new Promise((resolve) => server.close(() => resolve()));
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    try {
      const url = new URL(req.url ?? '/', 'http://localhost');
      if (req.method !== 'GET') return send(res, 405, 'text/plain', 'GET only\n');
      if (url.pathname === '/metrics') return send(res, 200, this.registry.contentType, await this.registry.metrics());
      if (url.pathname === '/stats') return send(res, 200, 'application/json', JSON.stringify({ volumes: this.source() }) + '\n');
      if (url.pathname === '/healthz') return send(res, 200, 'text/plain', 'ok\n');
      send(res, 404, 'text/plain', 'try /metrics or /stats\n');
    } catch (err) {
      this.log.error({ err }, 'metrics request failed');
      send(res, 500, 'text/plain', 'internal error\n');
    }
  }
}

function send(res: http.ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { 'content-type': type });
  res.end(body);
}
