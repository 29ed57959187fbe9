/**
 * Worker-thread entry of ThreadedPrefetcher (prefetch-thread.ts): an ExtentPrefetcher over the real file system,
 * told of opens and listed directories by the agent's thread and posting back what it mapped, in batches.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { LocalFileSystem, type VolumePlacement } from './fs.js';
import { ExtentPrefetcher, type PrefetchedFile } from './prefetch.js';
import type { PrefetchThreadData, PrefetchThreadReport, PrefetchThreadRequest } from './prefetch-thread.js';

const port = parentPort!;
const data = workerData as PrefetchThreadData;
const fs = new LocalFileSystem(data.route);
const post = (report: PrefetchThreadReport) => port.postMessage(report);

const BATCH_MAX = 256;
let outbox: PrefetchedFile[] = [];
let scheduled = false;

function flush(): void {
  scheduled = false;
  if (outbox.length === 0) return;
  const files = outbox;
  outbox = [];
  post({ type: 'files', files, stats: prefetcher.stats() });
}

const prefetcher = new ExtentPrefetcher(
  {
    fs,
    // The agent's thread knows what its informer described: it drops those on arrival.
    described: () => false,
    send: (file) => {
      outbox.push(file);
      if (outbox.length >= BATCH_MAX) flush();
      else if (!scheduled) {
        scheduled = true;
        setImmediate(flush);
      }
    },
    extentsMax: data.extentsMax,
    fail: (error, what) => post({ type: 'error', message: (error as Error)?.message ?? String(error), what }),
  },
  { ...data.options, thread: false },
);

/** Placements by the tracer's device number; a failed lookup is asked again at the next open. */
const placements = new Map<number, VolumePlacement | null>();

function placementOf(tracerDev: number, file: string): VolumePlacement | null {
  const known = placements.get(tracerDev);
  if (known !== undefined) return known;
  try {
    const placement = fs.locate(tracerDev, file);
    placements.set(tracerDev, placement);
    return placement;
  } catch {
    return null;
  }
}

port.on('message', (request: PrefetchThreadRequest) => {
  switch (request.type) {
    case 'opened': {
      const placement = placementOf(request.tracerDev, request.file);
      if (placement) prefetcher.opened(request.file, request.tracerDev, placement);
      return;
    }
    case 'listed':
      prefetcher.listed(request.dir);
      return;
  }
});
