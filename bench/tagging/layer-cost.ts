/**
 * What the classify layer itself costs per request, in µs of CPU, with the index `sky bench tagging` feeds its
 * `indexed` server (2000 files × 5 extents, 100k registered fingerprints of random blocks) and nothing below the
 * layer (a device that completes at once), so that the figure is the layer's own work and not the device's.
 * Written blocks are cached (as a write just received from a socket is) and match no registered fingerprint.
 *
 * Two indexes in one process, alternating: `keyed` registered with quick keys (what `sky agent` sends), `unkeyed`
 * without (an older sender: every written block is hashed). The difference is what quick keys save per write.
 *
 * Build and run:  npx tsc -p bench/tagging && node bench/tagging/.build/bench/tagging/layer-cost.js [--ops 400000] [--rounds 5]
 */
import { randomFillSync } from 'node:crypto';
import { taggingIndexMessages } from '../../src/cli/bench-tagging.js';
import { ClassifyLayer, SemanticIndex } from '../../src/semantics/index.js';
import { newIoRequest, type BlockLayer, type Capabilities, type Extent, type IoRequest } from '../../src/volume/index.js';

const MiB = 1024 * 1024;
const VOLUME_BYTES = 1024 * MiB;
const FILES = 2000;
const EXTENTS_PER_FILE = 5;
const FINGERPRINTS = 100_000;
const POOL_BYTES = 1 * MiB;

function argument(name: string, fallback: number): number {
  const at = process.argv.indexOf(`--${name}`);
  return at > 0 ? Number(process.argv[at + 1]) : fallback;
}

/** Completes every request at once: nothing below the layer costs anything. */
class NullDevice implements BlockLayer {
  readonly name = 'null';
  readonly next = null;
  private readonly done = Promise.resolve();
  size(): number {
    return VOLUME_BYTES;
  }
  open(): Promise<void> {
    return this.done;
  }
  close(): Promise<void> {
    return this.done;
  }
  read(): Promise<void> {
    return this.done;
  }
  write(): Promise<void> {
    return this.done;
  }
  trim(): Promise<void> {
    return this.done;
  }
  zero(): Promise<void> {
    return this.done;
  }
  cache(): Promise<void> {
    return this.done;
  }
  flush(): Promise<void> {
    return this.done;
  }
  blockStatus(_offset: number, length: number): Promise<Extent[]> {
    return Promise.resolve([{ length, flags: 0 }]);
  }
  capabilities(): Capabilities {
    return { readOnly: false, canFlush: true, canFua: true, canTrim: true, canZero: true, canFastZero: true, canCache: true, canMultiConn: true, blockSize: { minimum: 1, preferred: 4096, maximum: 32 * MiB } };
  }
}

/** The index `sky bench tagging` feeds its `indexed` server, applied directly; `unkeyed` drops the quick keys. */
function populate(index: SemanticIndex, withQuickKeys: boolean): void {
  const shape = { imageSizeBytes: VOLUME_BYTES, indexFiles: FILES, extentsPerFile: EXTENTS_PER_FILE, fingerprints: FINGERPRINTS };
  for (const message of taggingIndexMessages(shape)) {
    const result = index.apply(message.type === 'WriteFingerprints' && !withQuickKeys ? { ...message, quickKeys: undefined } : message);
    if (!result.ok) throw new Error(result.error);
  }
}

/** CPU µs per request of `ops` requests of `size` bytes at scattered offsets (writes of pool content, or reads). */
function measure(layer: BlockLayer, write: boolean, size: number, ops: number, pool: Buffer): number {
  const requests: IoRequest[] = Array.from({ length: 16 }, () => newIoRequest(0, size));
  const into = Buffer.alloc(size);
  const slots = VOLUME_BYTES / size;
  const started = process.cpuUsage();
  for (let i = 0; i < ops; i++) {
    const req = requests[i & 15]!;
    req.offset = ((i * 7919) % slots) * size;
    req.length = size;
    const at = ((i * 13) % (POOL_BYTES / 4096 - size / 4096 + 1)) * 4096;
    if (write) void layer.write(req, pool.subarray(at, at + size));
    else void layer.read(req, into);
  }
  const cpu = process.cpuUsage(started);
  return (cpu.user + cpu.system) / ops;
}

async function main(): Promise<void> {
  const ops = argument('ops', 400_000);
  const rounds = argument('rounds', 5);
  const pool = randomFillSync(Buffer.alloc(POOL_BYTES));
  const layers: Record<string, BlockLayer> = {};
  for (const name of ['keyed', 'unkeyed']) {
    const index = new SemanticIndex({});
    populate(index, name === 'keyed');
    const layer = new ClassifyLayer(new NullDevice(), { index });
    await layer.open();
    layers[name] = layer;
  }
  const bare = new NullDevice();
  const jobs = [
    { label: '4 KiB write', write: true, size: 4096, ops },
    { label: '4 KiB read', write: false, size: 4096, ops },
    { label: '1 MiB write', write: true, size: MiB, ops: Math.max(1000, ops / 64) },
  ];
  console.log(`index: ${FILES * EXTENTS_PER_FILE} extents, ${FINGERPRINTS} fingerprints; written content matches none; CPU µs per request, min of ${rounds} rounds`);
  for (const job of jobs) {
    const best: Record<string, number> = { none: Infinity, keyed: Infinity, unkeyed: Infinity };
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 === 0 ? ['none', 'keyed', 'unkeyed'] : ['unkeyed', 'keyed', 'none'];
      for (const name of order) best[name] = Math.min(best[name]!, measure(name === 'none' ? bare : layers[name]!, job.write, job.size, job.ops, pool));
    }
    const layerCost = (name: string) => (best[name]! - best.none!).toFixed(3);
    console.log(`${job.label.padEnd(12)} no layer ${best.none!.toFixed(3)} µs; classify adds ${layerCost('keyed')} µs with quick keys, ${layerCost('unkeyed')} µs without`);
  }
}

await main();
