/**
 * Extent read-ahead in a worker thread of its own. The walk (prefetch.ts) lists directories, opens files and asks
 * FIEMAP for each, all blocking calls, many of them reads through the very volume the workload is busy with. On the
 * agent's thread it took three quarters of the thread for the first 12 s of a `cp -r` of a kernel tree, events
 * waiting behind it (the lag from system call to agent reached seconds, so cp's first reads went untagged); here it
 * runs beside the event handling. The thread has its own LocalFileSystem and placements; the agent's thread keeps
 * what the informer needs synchronously (the signature of what was sent per file) and drops, on arrival, files its
 * informer described meanwhile.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { trimOldest } from '../util/bounded.js';
import type { VolumeRoute, VolumePlacement } from './fs.js';
import { PREFETCH_DEFAULTS, type PrefetchedFile, type PrefetchHost, type Prefetcher, type PrefetchOptions, type PrefetchStats } from './prefetch.js';

export interface PrefetchThreadData {
  route: VolumeRoute;
  options: PrefetchOptions;
  extentsMax: number;
}

export type PrefetchThreadRequest =
  | { type: 'opened'; file: string; tracerDev: number }
  | { type: 'listed'; dir: string };

export type PrefetchThreadReport =
  | { type: 'files'; files: PrefetchedFile[]; stats: PrefetchStats }
  | { type: 'error'; message: string; what: string };

const WORKER_URL = new URL('./prefetch-worker.js', import.meta.url);

/** Whether the worker's compiled entry is there (it is in dist/; not when the sources run under a test runner). */
export function prefetchThreadAvailable(): boolean {
  return existsSync(fileURLToPath(WORKER_URL));
}

export class ThreadedPrefetcher implements Prefetcher {
  private readonly worker: Worker;
  private readonly sent = new Map<string, string>();
  private readonly filesMax: number;
  private readonly rewalkMs: number;
  private latest: PrefetchStats = { walks: 0, directories: 0, files: 0, messages: 0, throttled: 0 };
  private messages = 0;
  private stopped = false;
  private lastDir = '';
  private lastDirAt = 0;

  constructor(route: VolumeRoute, private readonly host: Omit<PrefetchHost, 'fs'>, options: PrefetchOptions = {}) {
    this.filesMax = options.filesMax ?? PREFETCH_DEFAULTS.filesMax;
    this.rewalkMs = options.rewalkMs ?? PREFETCH_DEFAULTS.rewalkMs;
    const data: PrefetchThreadData = { route, options: { ...options, thread: false }, extentsMax: host.extentsMax };
    this.worker = new Worker(WORKER_URL, { workerData: data });
    // The agent ends when its trace does; a walk in progress must not hold it open.
    this.worker.unref();
    this.worker.on('message', (report: PrefetchThreadReport) => this.receive(report));
    this.worker.on('error', (error) => {
      if (this.stopped) return;
      this.stopped = true;
      this.host.fail(error, 'the read-ahead thread failed');
    });
    this.worker.on('exit', (code) => {
      if (this.stopped) return;
      this.stopped = true;
      this.host.fail(new Error(`exit code ${code}`), 'the read-ahead thread ended');
    });
  }

  opened(file: string, tracerDev: number, _placement: VolumePlacement): void {
    if (this.stopped) return;
    // A program reads a directory's files one after another: the thread would skip all but the first anyway.
    const dir = path.dirname(file);
    const now = performance.now();
    if (dir === this.lastDir && now - this.lastDirAt < this.rewalkMs) return;
    this.lastDir = dir;
    this.lastDirAt = now;
    this.post({ type: 'opened', file, tracerDev });
  }

  listed(dir: string): void {
    if (!this.stopped) this.post({ type: 'listed', dir });
  }

  signatureOf(fileId: string): string | undefined {
    return this.sent.get(fileId);
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    // Queued walks are dropped, as in the agent's thread: at the end, read-ahead would only delay the flush.
    void this.worker.terminate().catch(() => undefined);
  }

  stats(): PrefetchStats {
    return { ...this.latest, messages: this.messages, thread: true };
  }

  private post(request: PrefetchThreadRequest): void {
    this.worker.postMessage(request);
  }

  private receive(report: PrefetchThreadReport): void {
    if (this.stopped) return;
    switch (report.type) {
      case 'files':
        this.latest = report.stats;
        for (const file of report.files) {
          if (this.host.described(file.fileId) || this.sent.get(file.fileId) === file.signature) continue;
          this.sent.delete(file.fileId);
          this.sent.set(file.fileId, file.signature);
          trimOldest(this.sent, this.filesMax);
          this.messages++;
          this.host.send(file);
        }
        return;
      case 'error':
        this.host.fail(new Error(report.message), report.what);
        return;
    }
  }
}
