/**
 * Tagging overhead: what the classify layer costs the engine's throughput. In-process, the volume stack is driven
 * directly (no NBD, no sockets) over a MemoryDevice, so the layer's cost is not hidden behind I/O: this is the
 * harshest setting. Each round runs every configuration in turn (order alternating between rounds):
 *
 *   plain        stats → memory                       (what an export without tracing runs)
 *   classify     stats → classify → memory            (tags every request, fingerprints every written block)
 *   fingerprint  stats → fingerprint-only → memory    (only the XXH3-128 of each written 4 KiB block; the part of
 *                                                      classify that iDedup would otherwise pay itself)
 *
 * The index is populated as a busy volume's would be: 100k file extents (20k files × 5) over a 1 GiB volume and
 * 1M registered write fingerprints. Half the written blocks carry registered content (data), half do not
 * (metadata). Workloads: 4 KiB random reads and writes, 1 MiB sequential reads and writes, queue depth 4.
 *
 * Throughput is operations per second of process CPU time (user + system), see measure().
 *
 * Build and run:  npx tsc -p bench/tagging && node bench/tagging/.build/bench/tagging/run.js [--seconds 1] [--rounds 5]
 * Options: --workloads 4k-randread,… --configs plain,classify,… --no-learn (learnFromWrites off), --unregistered (write
 * only content nobody registered), --pool-blocks N (distinct written contents; default 8192 = 32 MiB).
 * SKY_FINGERPRINT_IMPL=node-rs measures with the @node-rs/xxhash fallback instead of the WebAssembly hasher.
 */
import { randomFillSync } from 'node:crypto';
import { MemoryDevice, SeededRandom } from '../../src/device/index.js';
import {
  ClassifyLayer, FINGERPRINT_BLOCK_BYTES, FINGERPRINT_BYTES, FINGERPRINT_IMPLEMENTATION, SemanticIndex, fingerprintBlocks, fingerprintHex, quickKey,
  type SemanticMessage,
} from '../../src/semantics/index.js';
import { PassthroughLayer, StatsLayer, newIoRequest, type BlockLayer, type IoRequest } from '../../src/volume/index.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const VOLUME_BYTES = 1024 * MiB;
const FILES = argument('files', 20_000);
const EXTENTS_PER_FILE = 5;
const FINGERPRINTS = argument('fingerprints', 1_000_000);
/** Distinct block contents written (8192: 32 MiB, mostly out of cache), half registered; --pool-blocks 1024 keeps them cached, as a write just received from a socket is. */
const POOL_BLOCKS = Math.max(1024, argument('pool-blocks', 8192));
const QUEUE_DEPTH = 4;

type Config = 'plain' | 'classify' | 'fingerprint';
const UNREGISTERED_ONLY = process.argv.includes('--unregistered');
type Workload = '4k-randread' | '4k-randwrite' | '1m-seqread' | '1m-seqwrite';
const WORKLOADS: Workload[] = ['4k-randread', '4k-randwrite', '1m-seqread', '1m-seqwrite'];

function argument(name: string, fallback: number): number {
  const at = process.argv.indexOf(`--${name}`);
  return at > 0 ? Number(process.argv[at + 1]) : fallback;
}

function listArgument<T extends string>(name: string, all: readonly T[]): T[] {
  const at = process.argv.indexOf(`--${name}`);
  if (at < 0) return [...all];
  const wanted = process.argv[at + 1]!.split(',') as T[];
  for (const w of wanted) if (!all.includes(w)) throw new Error(`--${name}: unknown "${w}" (known: ${all.join(', ')})`);
  return wanted;
}

/** Computes fingerprints like classify, tags nothing. */
class FingerprintOnlyLayer extends PassthroughLayer {
  constructor(next: BlockLayer) {
    super(next, 'fingerprint-only');
  }
  override write(req: IoRequest, data: Buffer): Promise<void> {
    const first = Math.ceil(req.offset / FINGERPRINT_BLOCK_BYTES) * FINGERPRINT_BLOCK_BYTES;
    const end = Math.floor((req.offset + req.length) / FINGERPRINT_BLOCK_BYTES) * FINGERPRINT_BLOCK_BYTES;
    const blocks = Math.max(0, (end - first) / FINGERPRINT_BLOCK_BYTES);
    if (blocks > 0) {
      const out = new Uint8Array(blocks * FINGERPRINT_BYTES);
      fingerprintBlocks(data, first - req.offset, blocks, out, 0);
      req.fingerprints = out;
    }
    return this.next.write(req, data);
  }
}

function populate(index: SemanticIndex, pool: Buffer): { messages: number; ms: number } {
  const started = performance.now();
  const random = new SeededRandom(7);
  let messages = 0;
  const apply = (m: SemanticMessage) => {
    const result = index.apply(m);
    if (!result.ok) throw new Error(result.error);
    messages++;
  };
  // 100k extents: the volume is cut into 100k slots; each slot holds one extent of 4–8 KiB (the rest of the slot
  // is metadata), and the slots are dealt to the 20k files at random, so files are fragmented.
  const slots = FILES * EXTENTS_PER_FILE;
  const slotBytes = Math.floor(VOLUME_BYTES / slots / 4096) * 4096;
  const order = Array.from({ length: slots }, (_, i) => i);
  for (let i = slots - 1; i > 0; i--) {
    const j = Math.floor(random.nextFloat() * (i + 1));
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  for (let f = 0; f < FILES; f++) {
    const extents = [];
    for (let e = 0; e < EXTENTS_PER_FILE; e++) {
      const slot = order[f * EXTENTS_PER_FILE + e]!;
      extents.push({ volumeOffset: slot * slotBytes, length: (1 + Math.floor(random.nextFloat() * 2)) * 4096 });
    }
    const size = Math.floor(random.nextFloat() * 20 * MiB);
    apply({ type: 'FileExtents', fileId: `f${f}`, path: `/data/dir${f % 100}/file${f}.bin`, size, extents });
  }
  // 1M fingerprints: the pool's first half (what the workload writes as "data") plus random ones.
  const batch = 8192;
  const bytes = Buffer.alloc(16);
  let registered = 0;
  let file = 0;
  while (registered < FINGERPRINTS) {
    const fingerprints: string[] = [];
    const quickKeys: number[] = [];
    for (let k = 0; k < batch && registered < FINGERPRINTS; k++, registered++) {
      if (registered < POOL_BLOCKS / 2) {
        fingerprints.push(fingerprintHex(pool.subarray(registered * 4096, registered * 4096 + 4096)));
        quickKeys.push(quickKey(pool, registered * 4096));
      } else {
        fingerprints.push(randomFillSync(bytes).toString('hex'));
        quickKeys.push(random.nextU32());
      }
    }
    apply({ type: 'WriteFingerprints', fileId: `f${file++ % FILES}`, blockSize: 4096, fingerprints, quickKeys, ttlMs: 3_600_000 });
  }
  return { messages, ms: performance.now() - started };
}

interface Stack {
  top: BlockLayer;
}

/** One device under every stack (opened once), so memory holds one volume, not three. */
class SharedDevice extends PassthroughLayer {
  override open(): Promise<void> {
    return Promise.resolve();
  }
}

async function buildStacks(index: SemanticIndex): Promise<Record<Config, Stack>> {
  const device = new MemoryDevice({ size: VOLUME_BYTES });
  await device.open();
  // Allocate the whole device once, so that no configuration pays for first-touch allocation.
  const fill = Buffer.alloc(MiB, 1);
  for (let at = 0; at < VOLUME_BYTES; at += MiB) await device.write(newIoRequest(at, MiB), fill);
  const make = async (config: Config): Promise<Stack> => {
    let below: BlockLayer = new SharedDevice(device);
    if (config === 'classify') below = new ClassifyLayer(below, { index });
    if (config === 'fingerprint') below = new FingerprintOnlyLayer(below);
    const top = new StatsLayer(below, 'bench');
    await top.open();
    return { top };
  };
  return { plain: await make('plain'), classify: await make('classify'), fingerprint: await make('fingerprint') };
}

/**
 * Runs one workload for `seconds` at QUEUE_DEPTH; returns operations per second of this process's CPU time. The
 * work is CPU-bound and single-threaded, so CPU time is what the layer costs; wall time on a shared machine mostly
 * measures the neighbours.
 */
async function measure(stack: Stack, workload: Workload, seconds: number, pool: Buffer, seed: number): Promise<number> {
  const size = workload.startsWith('4k') ? 4 * KiB : MiB;
  const write = workload.endsWith('write');
  const random = workload.includes('rand');
  const blocks = VOLUME_BYTES / size;
  const deadline = performance.now() + seconds * 1000;
  let ops = 0;
  let sequential = 0;
  const rng = new SeededRandom(seed);
  const worker = async () => {
    const req = newIoRequest(0, size);
    const into = Buffer.alloc(size);
    while (performance.now() < deadline) {
      // 64 operations between clock reads.
      for (let k = 0; k < 64; k++) {
        const block = random ? Math.floor(rng.nextFloat() * blocks) : sequential++ % blocks;
        req.offset = block * size;
        req.length = size;
        req.tag = null;
        req.fingerprints = null;
        if (write) {
          // Content: pool blocks in order (the first half registered, the second half not); --unregistered: only
          // the second half (every write is metadata to the layer, as most writes of a busy volume are).
          const span = UNREGISTERED_ONLY ? POOL_BLOCKS / 2 : POOL_BLOCKS;
          const start = ((UNREGISTERED_ONLY ? POOL_BLOCKS / 2 : 0) + ((block * (size / 4096)) % (span - size / 4096))) * 4096;
          await stack.top.write(req, pool.subarray(start, start + size));
        } else await stack.top.read(req, into);
        ops++;
      }
    }
  };
  const cpuBefore = process.cpuUsage();
  await Promise.all(Array.from({ length: QUEUE_DEPTH }, worker));
  const cpu = process.cpuUsage(cpuBefore);
  return ops / ((cpu.user + cpu.system) / 1e6);
}

function median(values: number[]): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

async function main(): Promise<void> {
  const seconds = argument('seconds', 1);
  const rounds = argument('rounds', 5);
  const pool = Buffer.alloc(POOL_BLOCKS * 4096);
  randomFillSync(pool);
  const learnFromWrites = !process.argv.includes('--no-learn');
  const index = new SemanticIndex({ maxFingerprints: FINGERPRINTS + POOL_BLOCKS, maxExtents: 1_000_000, maxFiles: FILES, learnFromWrites });
  const populated = populate(index, pool);
  const stats = index.stats();
  console.log(`index: ${stats.files} files, ${stats.lba.entries} extents, ${stats.fingerprints.entries} fingerprints (${populated.messages} messages in ${populated.ms.toFixed(0)} ms)`);
  const stacks = await buildStacks(index);
  console.log(`memory: rss ${(process.memoryUsage().rss / MiB).toFixed(0)} MiB; node ${process.version}; fingerprints by ${FINGERPRINT_IMPLEMENTATION}; learnFromWrites ${learnFromWrites}; ${seconds} s per run, ${rounds} rounds, queue depth ${QUEUE_DEPTH}`);
  const results: Record<Workload, Record<Config, number[]>> = Object.fromEntries(
    WORKLOADS.map((w) => [w, { plain: [] as number[], classify: [] as number[], fingerprint: [] as number[] }]),
  ) as Record<Workload, Record<Config, number[]>>;
  const configs = listArgument<Config>('configs', ['plain', 'classify', 'fingerprint']);
  for (const workload of listArgument('workloads', WORKLOADS)) {
    // Warm-up: JIT and caches for every configuration.
    for (const config of configs) await measure(stacks[config], workload, 0.3, pool, 1);
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 === 0 ? configs : [...configs].reverse();
      for (const config of order) results[workload][config].push(await measure(stacks[config], workload, seconds, pool, 100 + round));
    }
    const r = results[workload];
    const plain = median(r.plain);
    const classify = median(r.classify);
    const fingerprint = median(r.fingerprint);
    const spread = (values: number[]) => (values.length === 0 ? '-' : `${(Math.min(...values) / 1000).toFixed(1)}–${(Math.max(...values) / 1000).toFixed(1)}k`);
    console.log(
      `${workload.padEnd(13)} plain ${(plain / 1000).toFixed(1).padStart(7)}k ops/s (${spread(r.plain)})` +
        `  classify ${(classify / 1000).toFixed(1).padStart(7)}k (${spread(r.classify)})  ratio ${(classify / plain).toFixed(3)}  overhead ${((1 - classify / plain) * 100).toFixed(1)}%` +
        `  | fingerprint-only ${(fingerprint / 1000).toFixed(1)}k  ratio ${(fingerprint / plain).toFixed(3)}`,
    );
  }
  const after = index.stats();
  console.log(`tags: reads ${JSON.stringify(after.reads)} writes ${JSON.stringify(after.writes)} blocks ${JSON.stringify(after.blocks)} lba ${after.lba.entries} (evictions ${after.lba.evictions})`);
}

await main();
