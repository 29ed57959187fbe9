import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { MemoryDevice } from '../../../src/device/index.js';
import {
  ClassifyLayer, SemanticIndex, SemanticRegistry, alignedBlocks, parseSemanticMessage, createClassifyFactory, encodeFingerprintHex, fingerprintHex, quickKey, quickKeysOf,
  type RetagCause, type RetagRange, type RetagSink, type SemanticIndexOptions, type SemanticMessage,
} from '../../../src/semantics/index.js';
import { buildStack, describeStack, findLayer, newIoRequest, PassthroughLayer, statsFactory, type BlockLayer, type IoRequest, type IoTag } from '../../../src/volume/index.js';

const KiB = 1024;
const MiB = 1024 * KiB;

/** Sits under classify and records what it passes down, like iCache or iDedup would see it. */
class Recorder extends PassthroughLayer implements RetagSink {
  /** Like a dedup layer: asks classify for every written block's fingerprint. */
  wantsFingerprints = false;
  readonly tags: (IoTag | null)[] = [];
  readonly fingerprints: (Uint8Array | null)[] = [];
  readonly retags: { ranges: RetagRange[]; cause: RetagCause }[] = [];
  constructor(next: BlockLayer) {
    super(next, 'recorder');
  }
  override read(req: IoRequest, into: Buffer): Promise<void> {
    this.tags.push(req.tag);
    return super.read(req, into);
  }
  override write(req: IoRequest, data: Buffer): Promise<void> {
    this.tags.push(req.tag);
    this.fingerprints.push(req.fingerprints);
    return super.write(req, data);
  }
  override trim(req: IoRequest): Promise<void> {
    this.tags.push(req.tag);
    return super.trim(req);
  }
  applyRetag(ranges: readonly RetagRange[], cause: RetagCause): void {
    this.retags.push({ ranges: [...ranges], cause });
  }
  get last(): IoTag {
    return this.tags[this.tags.length - 1]!;
  }
}

async function setup(options: Omit<SemanticIndexOptions, 'clock'> = {}, below: { wantsFingerprints?: boolean; sampleBlocks?: number } = {}) {
  let now = 1000;
  const index = new SemanticIndex({ ...options, clock: () => now });
  const recorder = new Recorder(new MemoryDevice({ size: 256 * MiB }));
  recorder.wantsFingerprints = below.wantsFingerprints ?? false;
  const layer = new ClassifyLayer(recorder, { index, retagGranularity: 64 * KiB, sampleBlocks: below.sampleBlocks });
  await layer.open();
  const apply = (message: SemanticMessage) => expect(index.apply(message)).toEqual({ ok: true });
  const read = async (offset: number, length: number) => {
    await layer.read(newIoRequest(offset, length), Buffer.alloc(length));
    return recorder.last;
  };
  const write = async (offset: number, data: Buffer) => {
    await layer.write(newIoRequest(offset, data.length), data);
    return recorder.last;
  };
  return { index, layer, recorder, apply, read, write, advance: (ms: number) => (now += ms) };
}

/** 4 KiB blocks with distinct content per seed. */
function blocks(count: number, seed: number): Buffer {
  const data = Buffer.alloc(count * 4096);
  for (let i = 0; i < data.length; i += 4) data.writeUInt32LE((i * 2654435761 + seed * 97 + 1) >>> 0, i);
  return data;
}

function hexes(data: Buffer): string[] {
  const out: string[] = [];
  for (let at = 0; at < data.length; at += 4096) out.push(fingerprintHex(data.subarray(at, at + 4096)));
  return out;
}

const extentsOf = (fileId: string, size: number, ...ranges: [number, number][]): SemanticMessage => ({
  type: 'FileExtents', fileId, path: `/data/${fileId}`, size, extents: ranges.map(([volumeOffset, length]) => ({ volumeOffset, length })),
});

describe('classify: reads', () => {
  it('says unknown before any insight, then data inside known extents and metadata outside', async () => {
    const { apply, read } = await setup();
    expect(await read(0, 4096)).toMatchObject({ origin: 'unknown', ioClass: 0 });
    apply(extentsOf('A', 100 * KiB, [1 * MiB, 128 * KiB]));
    expect(await read(1 * MiB, 4096)).toEqual({ origin: 'data', ioClass: 4, fileId: 'A', path: '/data/A', fileSize: 100 * KiB, hints: new Set() });
    expect(await read(1 * MiB + 124 * KiB, 4096)).toMatchObject({ origin: 'data', fileId: 'A' });
    expect(await read(1 * MiB + 128 * KiB, 4096)).toEqual({ origin: 'metadata', ioClass: 5, hints: new Set() });
    expect(await read(0, 4096)).toMatchObject({ origin: 'metadata', ioClass: 5 });
  });

  it('tags a request spanning several files by the owner of the most bytes', async () => {
    const { apply, read } = await setup();
    apply(extentsOf('A', 3 * MiB, [0, 8 * KiB]));
    apply(extentsOf('B', 20 * MiB, [8 * KiB, 8 * KiB], [20 * KiB, 4 * KiB]));
    expect(await read(4 * KiB, 12 * KiB)).toMatchObject({ fileId: 'B', ioClass: 0 }); // 4K of A, 8K of B
    expect(await read(0, 16 * KiB)).toMatchObject({ fileId: 'A', ioClass: 2 }); // 8K each: the first wins
    expect(await read(12 * KiB, 12 * KiB)).toMatchObject({ fileId: 'B' }); // 4K B, 4K gap, 4K B
    expect(await read(14 * KiB, 10 * KiB)).toMatchObject({ fileId: 'B' }); // 2K B, 4K gap, 4K B: 6K of B beat 4K of gap
    expect(await read(15 * KiB, 7 * KiB)).toMatchObject({ origin: 'metadata' }); // 1K B, 4K gap, 2K B
  });

  it('hands out shared, frozen tags', async () => {
    const { apply, read } = await setup();
    apply(extentsOf('A', 10, [0, 4096]));
    const first = await read(0, 4096);
    expect(await read(0, 512)).toBe(first);
    expect(Object.isFrozen(first)).toBe(true);
  });
});

describe('classify: data regions (btrfs data block groups)', () => {
  it('tags what no described file owns inside a data region as data of no file; extents re-tag it; an empty list withdraws', async () => {
    const { apply, read, write, index, recorder } = await setup();
    apply({ type: 'Tracing' });
    apply({ type: 'DataRegions', regions: [{ volumeOffset: 8 * MiB, length: 8 * MiB }, { volumeOffset: 32 * MiB, length: 4 * MiB }], source: 'test' });
    expect(index.stats().dataRegionBytes).toBe(12 * MiB);
    const anonymous = await write(9 * MiB, blocks(4, 1));
    expect(anonymous).toMatchObject({ origin: 'data', hints: new Set() });
    expect(anonymous.fileId).toBeUndefined();
    expect(anonymous.fileSize).toBeUndefined();
    expect(await read(33 * MiB, 4096)).toMatchObject({ origin: 'data' });
    // A zero-fill there is data as well, with its run's size (the zero-fill rule below).
    expect(await write(12 * MiB, Buffer.alloc(2 * MiB))).toMatchObject({ origin: 'data', fileSize: 2 * MiB, ioClass: 2, hints: new Set(['zero-fill']) });
    // Outside every region, and across a region's end, it is metadata as before.
    expect(await read(16 * MiB, 4096)).toMatchObject({ origin: 'metadata', ioClass: 5 });
    expect(await read(16 * MiB - 4096, 8192)).toMatchObject({ origin: 'metadata' });
    expect(await read(7 * MiB, 4096)).toMatchObject({ origin: 'metadata' });
    // A described file's extents inside the region win, and re-tag what was seen there.
    apply(extentsOf('A', 16 * KiB, [9 * MiB, 16 * KiB]));
    expect(await read(9 * MiB, 4096)).toMatchObject({ origin: 'data', fileId: 'A', ioClass: 4 });
    expect(recorder.retags.at(-1)?.ranges[0]).toMatchObject({ offset: 9 * MiB, tag: { fileId: 'A' } });
    apply({ type: 'DataRegions', regions: [] });
    expect(await read(33 * MiB, 4096)).toMatchObject({ origin: 'metadata' });
  });

  it('refuses a region of no bytes and more regions than it keeps', () => {
    const index = new SemanticIndex();
    expect(index.accept({ type: 'DataRegions', regions: [{ volumeOffset: 0, length: 0 }] })).toMatchObject({ ok: false, error: expect.stringMatching(/DataRegions.regions.0.length/) });
    const many = Array.from({ length: 4097 }, (_, k) => ({ volumeOffset: k * 4096, length: 4096 }));
    expect(index.accept({ type: 'DataRegions', regions: many })).toMatchObject({ ok: false });
  });
});

describe('classify: writes of zeroes (preallocation)', () => {
  it('tags an unclaimed write of nothing but zeroes as data of no file; extents re-tag it; claimed writes keep their owner', async () => {
    const { apply, write, index, recorder } = await setup();
    apply({ type: 'Tracing' });
    const zeroes = await write(8 * MiB, Buffer.alloc(64 * KiB));
    expect(zeroes).toMatchObject({ origin: 'data', fileSize: 64 * KiB, ioClass: 4, hints: new Set(['zero-fill']) });
    expect(zeroes.fileId).toBeUndefined();
    expect(index.stats().zeroWrites).toBe(1);
    // Every byte must be zero: btrfs writes 16 KiB tree nodes whose free middle is whole 4 KiB blocks of zeroes.
    const node = Buffer.alloc(16 * KiB);
    node.write('btrfs node header', 0);
    node.write('items', 16 * KiB - 5);
    expect(await write(12 * MiB, node)).toMatchObject({ origin: 'metadata' });
    expect(await write(12 * MiB, Buffer.concat([Buffer.alloc(12 * KiB), blocks(1, 3)]))).toMatchObject({ origin: 'metadata' });
    // 4 KiB or more, aligned or not; a smaller one is metadata as before.
    expect(await write(16 * MiB + 1 * KiB, Buffer.alloc(6 * KiB))).toMatchObject({ origin: 'data' });
    expect(await write(16 * MiB, Buffer.alloc(2 * KiB))).toMatchObject({ origin: 'metadata' });
    // A known file's extent keeps the write its own, zeroes or not (a hole punched by writing zeroes).
    apply(extentsOf('A', 20 * MiB, [20 * MiB, 1 * MiB]));
    expect(await write(20 * MiB, Buffer.alloc(8 * KiB))).toMatchObject({ origin: 'data', fileId: 'A', ioClass: 0 });
    // The file's extents, when they come, re-tag the anonymous zeroes.
    apply(extentsOf('W', 16 * MiB, [8 * MiB, 64 * KiB]));
    expect(recorder.retags.at(-1)?.ranges[0]).toMatchObject({ offset: 8 * MiB, tag: { origin: 'data', fileId: 'W' } });
    expect(index.stats().zeroWrites).toBe(2);
  });

  it('takes zero writes that touch as one file being zero-filled: the size grows with the run, earlier bytes re-tagged at each new class', async () => {
    const { apply, write, recorder, advance } = await setup();
    apply({ type: 'Tracing' });
    // A 16 MiB WAL segment written back in 1 MiB requests, in order.
    const sizes: number[] = [];
    const classes: number[] = [];
    for (let k = 0; k < 16; k++) {
      const tag = await write(64 * MiB + k * MiB, Buffer.alloc(MiB));
      sizes.push(tag.fileSize!);
      classes.push(tag.ioClass);
      advance(5);
    }
    expect(sizes).toEqual(Array.from({ length: 16 }, (_, k) => (k + 1) * MiB));
    expect(classes).toEqual([3, 2, 2, 2, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0]);
    // Re-tags at each change of class cover the run's earlier bytes, so it ends as one 16 MiB file's.
    const classRetags = recorder.retags.filter((r) => r.cause === 'class');
    expect(classRetags.map((r) => r.ranges[0]!.tag.ioClass)).toEqual([2, 1, 0]);
    expect(classRetags.at(-1)!.ranges).toEqual([{ offset: 64 * MiB, length: 9 * MiB, tag: expect.objectContaining({ fileSize: 10 * MiB, ioClass: 0 }) }]);
    // Out of order within the run (a request before its start) still belongs to it.
    expect(await write(63 * MiB, Buffer.alloc(MiB))).toMatchObject({ fileSize: 17 * MiB, ioClass: 0 });
    // Written back out of order: a piece further on, then what lies between, joins the two runs into one.
    expect(await write(200 * MiB, Buffer.alloc(256 * KiB))).toMatchObject({ fileSize: 256 * KiB });
    expect(await write(200 * MiB + 1280 * KiB, Buffer.alloc(256 * KiB))).toMatchObject({ fileSize: 256 * KiB });
    expect(await write(200 * MiB + 256 * KiB, Buffer.alloc(MiB))).toMatchObject({ fileSize: 1536 * KiB, ioClass: 3 });
    // Both pieces written before take the joint tag.
    expect(recorder.retags.at(-1)).toMatchObject({
      cause: 'class',
      ranges: [
        { offset: 200 * MiB, length: 256 * KiB, tag: { fileSize: 1536 * KiB, ioClass: 3 } },
        { offset: 200 * MiB + 1280 * KiB, length: 256 * KiB, tag: { fileSize: 1536 * KiB, ioClass: 3 } },
      ],
    });
    expect(await write(200 * MiB + 1536 * KiB, Buffer.alloc(512 * KiB))).toMatchObject({ fileSize: 2 * MiB, ioClass: 2 });
    // A join that leaves the larger run's class as it was still re-tags the smaller one's bytes.
    await write(230 * MiB, Buffer.alloc(MiB));
    await write(230 * MiB + 1280 * KiB, Buffer.alloc(128 * KiB));
    const retagsBefore = recorder.retags.length;
    expect(await write(230 * MiB + MiB, Buffer.alloc(256 * KiB))).toMatchObject({ fileSize: 1408 * KiB, ioClass: 3 });
    expect(recorder.retags.slice(retagsBefore).flatMap((r) => r.ranges)).toContainEqual({ offset: 230 * MiB + 1280 * KiB, length: 128 * KiB, tag: expect.objectContaining({ ioClass: 3 }) });
    // Not touching, or after a pause: another file.
    expect(await write(100 * MiB, Buffer.alloc(64 * KiB))).toMatchObject({ fileSize: 64 * KiB, ioClass: 4 });
    advance(3000);
    expect(await write(80 * MiB, Buffer.alloc(64 * KiB))).toMatchObject({ fileSize: 64 * KiB, ioClass: 4 });
  });

  it('can be turned off: zero writes are metadata as the fingerprints say', async () => {
    const { apply, write, index } = await setup({ zeroWritesAreData: false });
    apply({ type: 'Tracing' });
    expect(await write(8 * MiB, Buffer.alloc(64 * KiB))).toMatchObject({ origin: 'metadata' });
    expect(index.stats().zeroWrites).toBe(0);
  });

  it('is a classify option in the volume config (default on)', () => {
    const factory = createClassifyFactory({ registry: new SemanticRegistry() });
    expect(factory.schema.parse({ type: 'classify' })).toMatchObject({ zeroWritesAreData: true });
    expect(factory.schema.parse({ type: 'classify', zeroWritesAreData: false })).toMatchObject({ zeroWritesAreData: false });
    expect(() => factory.schema.parse({ type: 'classify', zeroWritesAreData: 'yes' })).toThrow();
  });
});

describe('classify: writes', () => {
  it('fingerprints each whole aligned 4 KiB block once into req.fingerprints (for a layer below that wants them)', async () => {
    const { write, recorder } = await setup({}, { wantsFingerprints: true });
    const data = blocks(3, 1);
    await write(8192, data);
    const fps = recorder.fingerprints[0]!;
    expect(fps.length).toBe(48);
    expect([0, 16, 32].map((at) => encodeFingerprintHex(fps, at))).toEqual(hexes(data));
    // Unaligned: only the whole blocks inside are fingerprinted, counted from the first boundary.
    const odd = blocks(3, 2).subarray(0, 10_000);
    await write(1000, odd);
    expect(alignedBlocks(1000, 10_000)).toEqual({ firstBlockOffset: 4096, blocks: 1 });
    expect(encodeFingerprintHex(recorder.fingerprints[1]!, 0)).toBe(fingerprintHex(odd.subarray(3096, 3096 + 4096)));
    expect(recorder.fingerprints[1]!.length).toBe(16);
    await write(512, Buffer.alloc(1024, 7));
    expect(recorder.fingerprints[2]).toBeNull();
  });

  it('hashes nothing while no fingerprint is registered, and every block of a small write once one is', async () => {
    const { write, apply, recorder, index } = await setup();
    apply(extentsOf('A', 100 * KiB, [1 * MiB, 128 * KiB]));
    expect(await write(0, blocks(4, 1))).toMatchObject({ origin: 'metadata' });
    expect(recorder.fingerprints[0]).toBeNull();
    expect(await write(1 * MiB, blocks(4, 1))).toMatchObject({ origin: 'data', fileId: 'A' });
    expect(index.stats().blocks).toEqual({ matched: 0, unmatched: 0 });
    const data = blocks(16, 7);
    apply({ type: 'WriteFingerprints', fileId: 'B', blockSize: 4096, fingerprints: hexes(data), ttlMs: 30_000, size: 64 * KiB });
    expect(await write(32 * MiB, data)).toMatchObject({ origin: 'data', fileId: 'B' });
    expect(recorder.fingerprints[2]!.length).toBe(16 * 16);
    expect(index.stats().blocks).toEqual({ matched: 16, unmatched: 0 });
  });

  it('matches a large write on evenly spaced samples, and learns its range only when every sample is one file\'s', async () => {
    const { write, read, apply, recorder, index } = await setup();
    const data = blocks(256, 11); // 1 MiB: 16 samples, one every 16 blocks
    apply({ type: 'WriteFingerprints', fileId: 'C', blockSize: 4096, fingerprints: hexes(data), ttlMs: 30_000, size: 20 * MiB });
    expect(await write(64 * MiB, data)).toMatchObject({ origin: 'data', fileId: 'C' });
    expect(recorder.fingerprints[0]).toBeNull(); // samples are not every fingerprint: nothing is handed down
    expect(index.stats().blocks).toEqual({ matched: 16, unmatched: 0 });
    expect(await read(64 * MiB + 4096, 4096)).toMatchObject({ origin: 'data', fileId: 'C' }); // between two samples
    expect(await read(65 * MiB - 4096, 4096)).toMatchObject({ origin: 'data', fileId: 'C' });
    // Only blocks 16, 32 … of this write are registered to D (6 of its 16 samples): D does not have the majority,
    // the write is tagged by the map (metadata here), and nothing is learnt.
    const mixed = blocks(256, 12);
    const registered = hexes(mixed).filter((_, block) => block % 16 === 0 && block > 0 && block <= 96);
    apply({ type: 'WriteFingerprints', fileId: 'D', blockSize: 4096, fingerprints: registered, ttlMs: 30_000, size: 20 * MiB });
    expect(await write(80 * MiB, mixed)).toMatchObject({ origin: 'metadata' });
    expect(index.stats().blocks).toEqual({ matched: 22, unmatched: 10 });
    expect(await read(80 * MiB + 16 * 4096, 4096)).toMatchObject({ origin: 'metadata' });
  });

  it('reuses each IoRequest\'s fingerprint storage, with exact lengths, and never shares it between requests', async () => {
    const { layer, recorder } = await setup({}, { wantsFingerprints: true });
    // The NBD server reuses one IoRequest per request slot: the same storage serves every write on it.
    const slot = newIoRequest(0, 0);
    const writeOn = async (req: IoRequest, offset: number, data: Buffer) => {
      req.offset = offset;
      req.length = data.length;
      req.fingerprints = null;
      await layer.write(req, data);
      return recorder.fingerprints[recorder.fingerprints.length - 1]!;
    };
    const first = await writeOn(slot, 0, blocks(4, 1));
    const again = await writeOn(slot, 64 * KiB, blocks(4, 2));
    expect(again).toBe(first);
    expect([0, 16, 32, 48].map((at) => encodeFingerprintHex(again, at))).toEqual(hexes(blocks(4, 2)));
    const smaller = await writeOn(slot, 0, blocks(1, 3));
    expect(smaller.length).toBe(16);
    expect(smaller.buffer).toBe(first.buffer);
    expect(encodeFingerprintHex(smaller, 0)).toBe(hexes(blocks(1, 3))[0]);
    // Larger than the first storage (256 blocks): grows, and the exact length holds.
    const large = await writeOn(slot, 0, blocks(300, 4));
    expect(large.length).toBe(300 * 16);
    expect(encodeFingerprintHex(large, 299 * 16)).toBe(hexes(blocks(300, 4))[299]);
    // Requests in flight together (two slots) get separate storage: neither overwrites the other's fingerprints.
    const other = newIoRequest(0, 0);
    slot.offset = 0;
    slot.length = 8 * KiB;
    other.offset = 8 * KiB;
    other.length = 8 * KiB;
    const a = blocks(2, 5);
    const b = blocks(2, 6);
    await Promise.all([layer.write(slot, a), layer.write(other, b)]);
    expect(slot.fingerprints).not.toBe(other.fingerprints);
    expect(slot.fingerprints!.buffer).not.toBe(other.fingerprints!.buffer);
    expect([0, 16].map((at) => encodeFingerprintHex(slot.fingerprints!, at))).toEqual(hexes(a));
    expect([0, 16].map((at) => encodeFingerprintHex(other.fingerprints!, at))).toEqual(hexes(b));
  });

  it('matches registered fingerprints: a match is data of that file, no match is metadata', async () => {
    const { apply, write, read, index } = await setup();
    const content = blocks(4, 3);
    expect(await write(64 * MiB, content)).toMatchObject({ origin: 'unknown' }); // no insight yet
    apply({ type: 'WriteFingerprints', fileId: 'B', blockSize: 4096, fingerprints: hexes(content), ttlMs: 30_000, path: '/home/b.txt', size: 16 * KiB });
    expect(await write(32 * MiB, content)).toEqual({ origin: 'data', ioClass: 4, fileId: 'B', path: '/home/b.txt', fileSize: 16 * KiB, hints: new Set() });
    expect(await write(33 * MiB, blocks(4, 4))).toMatchObject({ origin: 'metadata', ioClass: 5 });
    // The matched write taught the map where B's blocks are.
    expect(await read(32 * MiB + 4096, 4096)).toMatchObject({ fileId: 'B' });
    expect(index.file('B')?.learned).toEqual([{ volumeOffset: 32 * MiB, length: 16 * KiB }]);
    expect(index.stats().blocks).toEqual({ matched: 4, unmatched: 4 }); // blocks before any insight are not looked up
    expect(index.stats().writes).toEqual({ data: 1, metadata: 1, unknown: 1 });
  });

  it('decides by the majority of blocks; without a majority of matches, by the LBA map', async () => {
    const { apply, write } = await setup();
    const b = blocks(2, 5);
    const c = blocks(1, 6);
    apply({ type: 'WriteFingerprints', fileId: 'B', blockSize: 4096, fingerprints: hexes(b), ttlMs: 30_000 });
    apply({ type: 'WriteFingerprints', fileId: 'C', blockSize: 4096, fingerprints: hexes(c), ttlMs: 30_000 });
    expect(await write(0, Buffer.concat([c, b]))).toMatchObject({ fileId: 'B' }); // 2 of B, 1 of C
    expect(await write(MiB, Buffer.concat([c, blocks(1, 7)]))).toMatchObject({ fileId: 'C' }); // 1 match, 1 none: ties go to the match
    expect(await write(2 * MiB, Buffer.concat([c, blocks(2, 8)]))).toMatchObject({ origin: 'metadata' }); // 1 match, 2 none
    // An in-place overwrite inside a known extent stays data of its file even without a fingerprint.
    apply(extentsOf('A', 50 * MiB, [4 * MiB, 1 * MiB]));
    expect(await write(4 * MiB, blocks(2, 9))).toMatchObject({ fileId: 'A', ioClass: 0 });
    // Sub-block writes have no fingerprint: the map decides.
    expect(await write(4 * MiB + 512, Buffer.alloc(512))).toMatchObject({ fileId: 'A' });
    expect(await write(8 * MiB + 512, Buffer.alloc(512))).toMatchObject({ origin: 'metadata' });
  });

  it('forgets fingerprints after their TTL', async () => {
    const { apply, write, advance } = await setup();
    const content = blocks(1, 10);
    apply({ type: 'WriteFingerprints', fileId: 'B', blockSize: 4096, fingerprints: hexes(content), ttlMs: 1000 });
    advance(999);
    expect(await write(0, content)).toMatchObject({ fileId: 'B' });
    advance(1);
    expect(await write(MiB, content)).toMatchObject({ origin: 'metadata' });
  });

  it('never registers the zero block (every sparse file has it)', async () => {
    const { apply, write } = await setup();
    apply({ type: 'WriteFingerprints', fileId: 'B', blockSize: 4096, fingerprints: hexes(Buffer.alloc(4096)), ttlMs: 30_000 });
    // Not B's: zeroes are data of no described file (zeroWritesAreData), whoever registered them.
    const zeroes = await write(0, Buffer.alloc(4096));
    expect(zeroes).toMatchObject({ origin: 'data' });
    expect(zeroes.fileId).toBeUndefined();
  });

  it('never attributes a forgotten file\'s fingerprints to the file that reuses its slot', async () => {
    const { apply, write, index } = await setup({ maxFingerprints: 16 });
    const a = blocks(12, 21);
    apply({ type: 'WriteFingerprints', fileId: 'A', blockSize: 4096, fingerprints: hexes(a).slice(0, 8), ttlMs: 30_000 });
    apply({ type: 'WriteFingerprints', fileId: 'A', blockSize: 4096, fingerprints: hexes(a).slice(8), ttlMs: 30_000 });
    apply({ type: 'WriteFingerprints', fileId: 'C', blockSize: 4096, fingerprints: hexes(blocks(8, 22)), ttlMs: 30_000 });
    expect(index.fingerprints.size).toBeLessThanOrEqual(16);
    apply({ type: 'FileGone', fileId: 'A', cause: 'unlink' });
    apply(extentsOf('B', 10, [64 * MiB, 4096])); // takes A's index
    for (let k = 0; k < 12; k++) expect(await write(k * 4096, a.subarray(k * 4096, (k + 1) * 4096))).toMatchObject({ origin: 'metadata' });
  });

  it('registers a copy source\'s fingerprints for the target', async () => {
    const { apply, write, index } = await setup();
    const content = blocks(3, 11);
    apply({ type: 'WriteFingerprints', fileId: 'S', blockSize: 4096, fingerprints: hexes(content), ttlMs: 30_000, size: 12 * KiB });
    const copies: string[] = [];
    index.onCopy((event) => copies.push(`${event.sourceFileId}->${event.targetFileId}:${event.fingerprints.reduce((n, c) => n + c.length / 16, 0)}`));
    apply({ type: 'CopyFingerprints', sourceFileId: 'S', targetFileId: 'T' });
    expect(copies).toEqual(['S->T:3']);
    expect(await write(0, content)).toMatchObject({ origin: 'data', fileId: 'T', hints: new Set(['copy']) });
    expect(index.file('T')).toMatchObject({ copy: true, sourceFileId: 'S', fingerprints: 3 });
  });
});

describe('classify: file systems with blocks under 4 KiB (ext4 with 1 KiB blocks)', () => {
  /** A file's blocks of `unit` bytes, fingerprinted and keyed as the agent sends them for such a file system. */
  const smallPrints = (fileId: string, data: Buffer, unit: 1024 | 2048): SemanticMessage => {
    const fingerprints: string[] = [];
    const quickKeys: number[] = [];
    for (let at = 0; at < data.length; at += unit) {
      fingerprints.push(fingerprintHex(data.subarray(at, at + unit)));
      quickKeys.push(quickKey(data, at, unit));
    }
    return { type: 'WriteFingerprints', fileId, blockSize: unit, fingerprints, quickKeys, ttlMs: 30_000, path: `/small/${fileId}`, size: data.length };
  };

  it('matches a write placed at any multiple of 1 KiB by its 1 KiB blocks, and learns where they are', async () => {
    const { apply, write, read, index } = await setup();
    const content = blocks(2, 7).subarray(0, 6 * KiB); // a 6 KiB file: its 4 KiB pieces never sit on 4 KiB boundaries here
    apply(smallPrints('S', content, 1024));
    expect(index.smallBlockBytes).toBe(1024);
    expect(await write(40 * MiB + 3 * KiB, content)).toMatchObject({ origin: 'data', fileId: 'S', fileSize: 6 * KiB });
    expect(await write(40 * MiB + 1 * KiB, Buffer.from(content.subarray(0, 2 * KiB)))).toMatchObject({ origin: 'data', fileId: 'S' }); // its first blocks again
    expect(await write(41 * MiB + 1 * KiB, blocks(1, 8).subarray(0, 2 * KiB))).toMatchObject({ origin: 'metadata' });
    expect(await read(40 * MiB + 5 * KiB, 1 * KiB)).toMatchObject({ fileId: 'S' });
    expect(index.file('S')?.learned).toContainEqual({ volumeOffset: 40 * MiB + 3 * KiB, length: 6 * KiB });
  });

  it('with 4 KiB fingerprints only, the same misplaced write is not matched (why the agent sends the small ones)', async () => {
    const { apply, write, index } = await setup();
    const content = blocks(2, 7);
    apply({ type: 'WriteFingerprints', fileId: 'F', blockSize: 4096, fingerprints: hexes(content), quickKeys: quickKeysOf(content), ttlMs: 30_000 });
    expect(index.smallBlockBytes).toBe(0);
    expect(await write(40 * MiB + 3 * KiB, content)).toMatchObject({ origin: 'metadata' });
  });

  it('matches a large write of small blocks on samples', async () => {
    const { apply, write } = await setup({}, { sampleBlocks: 4 });
    const content = blocks(16, 9); // 64 KiB = 64 blocks of 1 KiB, more than 4 × 4 KiB / 1 KiB = 16: sampled
    apply(smallPrints('L', content, 1024));
    expect(await write(50 * MiB + 1 * KiB, content)).toMatchObject({ origin: 'data', fileId: 'L' });
  });

  it('accepts fingerprints of 1, 2 and 4 KiB blocks on the wire, and no other size', () => {
    const message = (blockSize: number) => ({ v: 1, type: 'WriteFingerprints', fileId: 'X', blockSize, fingerprints: [], ttlMs: 1 });
    for (const size of [1024, 2048, 4096]) expect(parseSemanticMessage(message(size)).ok).toBe(true);
    for (const size of [512, 3072, 8192]) expect(parseSemanticMessage(message(size)).ok).toBe(false);
  });
});

describe('classify: quick keys decide what is hashed', () => {
  it('hashes only blocks whose quick key a registered fingerprint has, and still matches every registered block', async () => {
    const { write, apply, recorder, index } = await setup();
    const data = blocks(16, 21);
    apply({ type: 'WriteFingerprints', fileId: 'B', blockSize: 4096, fingerprints: hexes(data), quickKeys: quickKeysOf(data), ttlMs: 30_000 });
    expect(await write(8 * MiB, blocks(4, 22))).toMatchObject({ origin: 'metadata' });
    expect(recorder.fingerprints.at(-1)).toBeNull();
    expect(index.stats().blocks).toEqual({ matched: 0, unmatched: 0 }); // not hashed at all
    expect(await write(16 * MiB, data.subarray(0, 4 * 4096))).toMatchObject({ origin: 'data', fileId: 'B' });
    expect(await write(20 * MiB + 4096, data.subarray(8 * 4096, 9 * 4096))).toMatchObject({ origin: 'data', fileId: 'B' });
    expect(index.stats().blocks).toEqual({ matched: 5, unmatched: 0 });
    // A large write is matched on samples: unregistered samples cost no hash either.
    const big = blocks(256, 23);
    apply({ type: 'WriteFingerprints', fileId: 'C', blockSize: 4096, fingerprints: hexes(big), quickKeys: quickKeysOf(big), ttlMs: 30_000, size: 1 * MiB });
    expect(await write(64 * MiB, blocks(256, 24))).toMatchObject({ origin: 'metadata' });
    expect(index.stats().blocks).toEqual({ matched: 5, unmatched: 0 });
    expect(await write(96 * MiB, big)).toMatchObject({ origin: 'data', fileId: 'C' });
    expect(index.stats().blocks).toEqual({ matched: 21, unmatched: 0 });
    // A block that is not whole in the request (misaligned head) is not keyed or hashed; the rest still match.
    const misaligned = Buffer.concat([Buffer.alloc(512, 1), data.subarray(0, 2 * 4096)]);
    expect(await write(40 * MiB - 512, misaligned)).toMatchObject({ origin: 'data', fileId: 'B' });
  });

  it('hashes every block again while a fingerprint without a quick key lives (an older sender)', async () => {
    const { write, apply, index, advance } = await setup();
    const keyed = blocks(4, 31);
    const unkeyed = blocks(4, 32);
    apply({ type: 'WriteFingerprints', fileId: 'B', blockSize: 4096, fingerprints: hexes(keyed), quickKeys: quickKeysOf(keyed), ttlMs: 60_000 });
    apply({ type: 'WriteFingerprints', fileId: 'C', blockSize: 4096, fingerprints: hexes(unkeyed), ttlMs: 1000 });
    expect(index.stats().fingerprints.unkeyed).toBe(4);
    expect(await write(0, blocks(1, 33))).toMatchObject({ origin: 'metadata' });
    expect(index.stats().blocks).toEqual({ matched: 0, unmatched: 1 }); // hashed: C's entries could be anything
    expect(await write(4 * MiB, unkeyed)).toMatchObject({ origin: 'data', fileId: 'C' });
    advance(2000); // C's fingerprints expired: the next write sweeps them out, and is not hashed
    expect(await write(8 * MiB, blocks(1, 34))).toMatchObject({ origin: 'metadata' });
    expect(index.stats().fingerprints).toMatchObject({ unkeyed: 0, entries: 4 });
    expect(index.stats().blocks).toEqual({ matched: 4, unmatched: 1 });
    expect(await write(12 * MiB, keyed)).toMatchObject({ origin: 'data', fileId: 'B' });
  });

  it('carries quick keys over to a copy\'s target, and drops them with a gone file', async () => {
    const { apply, write, index } = await setup();
    const content = blocks(3, 41);
    apply({ type: 'WriteFingerprints', fileId: 'S', blockSize: 4096, fingerprints: hexes(content), quickKeys: quickKeysOf(content), ttlMs: 30_000 });
    apply({ type: 'CopyFingerprints', sourceFileId: 'S', targetFileId: 'T' });
    apply({ type: 'FileGone', fileId: 'S', cause: 'unlink' });
    expect(index.stats().fingerprints).toMatchObject({ entries: 3, unkeyed: 0 });
    expect(index.mayHoldBlock(quickKey(content, 4096))).toBe(true);
    expect(await write(0, content)).toMatchObject({ origin: 'data', fileId: 'T' });
    apply({ type: 'FileGone', fileId: 'T', cause: 'unlink' });
    expect(index.mayHoldBlock(quickKey(content, 4096))).toBe(false);
  });
});

describe('classify: classes, hints and lifetimes', () => {
  it('follows file size changes, application hints and detected patterns', async () => {
    const { apply, read, index } = await setup();
    apply(extentsOf('A', 100, [0, 4096]));
    expect(await read(0, 4096)).toMatchObject({ ioClass: 4 });
    apply({ type: 'FileClass', fileId: 'A', size: 6 * MiB, ioClass: 1 });
    expect(await read(0, 4096)).toMatchObject({ ioClass: 1, fileSize: 6 * MiB });
    apply({ type: 'AppHint', fileId: 'A', ioClass: 5 });
    expect(await read(0, 4096)).toEqual({ origin: 'data', ioClass: 5, fileId: 'A', path: '/data/A', fileSize: 6 * MiB, hints: new Set(['app']) });
    apply({ type: 'FilePattern', fileId: 'A', pattern: 'encrypted' });
    expect((await read(0, 4096)).hints).toEqual(new Set(['app', 'unique']));
    expect(index.apply({ type: 'AppHint', fileId: 'A', ioClass: 9 })).toEqual({ ok: false, error: 'AppHint.ioClass: class 9 is not defined in the active rules' });
    expect(index.file('A')).toMatchObject({ senderClass: 1, appClass: 5, encrypted: true });
  });

  it('treats a gone file\'s blocks as no one\'s, and replaces extents on a new FileExtents', async () => {
    const { apply, read, index } = await setup();
    apply(extentsOf('A', 100, [0, 8192]));
    apply(extentsOf('A', 100, [MiB, 8192]));
    expect(await read(0, 4096)).toMatchObject({ origin: 'metadata' });
    expect(await read(MiB, 4096)).toMatchObject({ fileId: 'A' });
    apply({ type: 'FileGone', fileId: 'A', cause: 'unlink' });
    expect(await read(MiB, 4096)).toMatchObject({ origin: 'metadata' });
    expect(index.file('A')).toBeUndefined();
    expect(index.stats().files).toBe(0);
  });

  it('forgets the least recently described file when the table is full: its blocks become unknown', async () => {
    const { apply, read, index } = await setup({ maxFiles: 2 });
    apply(extentsOf('A', 100, [0, 4096]));
    apply(extentsOf('B', 100, [MiB, 4096]));
    apply({ type: 'FileClass', fileId: 'A', size: 200, ioClass: 4 }); // A is now the more recent
    apply(extentsOf('C', 100, [2 * MiB, 4096]));
    expect(await read(MiB, 4096)).toMatchObject({ origin: 'unknown' });
    expect(await read(0, 4096)).toMatchObject({ fileId: 'A' });
    expect(await read(2 * MiB, 4096)).toMatchObject({ fileId: 'C' });
    expect(index.stats().filesEvicted).toBe(1);
  });

  it('forgets ownership of trimmed ranges', async () => {
    const { apply, read, layer } = await setup();
    apply(extentsOf('A', 100, [0, 64 * KiB]));
    await layer.trim(newIoRequest(0, 32 * KiB));
    expect(await read(0, 4096)).toMatchObject({ origin: 'metadata' });
    expect(await read(32 * KiB, 4096)).toMatchObject({ fileId: 'A' });
  });

  it('evaluates request conditions per request when the rules have them', async () => {
    const rules = (await import('../../../src/semantics/ioclass.js')).parseIoClassRulesYaml(`
default_class: 0
classes: [{ id: 0, name: rest, eviction_priority: 9 }, { id: 1, name: big reads, eviction_priority: 5 }, { id: 2, name: meta, eviction_priority: 0 }]
rules:
  - { class: 2, when: { metadata: true } }
  - { class: 1, when: { request_size: ">=64K", io_direction: read } }
`);
    const { apply, read, write } = await setup({ rules });
    apply(extentsOf('A', 100, [0, MiB]));
    expect(await read(0, 4096)).toMatchObject({ fileId: 'A', ioClass: 0 });
    const big = await read(0, 64 * KiB);
    expect(big).toMatchObject({ fileId: 'A', ioClass: 1 });
    expect(await read(0, 128 * KiB)).toBe(big); // cached per file and class
    expect(await write(0, blocks(16, 1))).toMatchObject({ fileId: 'A', ioClass: 0 });
    expect(await read(2 * MiB, 4096)).toMatchObject({ origin: 'metadata', ioClass: 2 });
  });
});

describe('classify: late insights re-tag what was seen', () => {
  it('notifies layers below for seen ranges only, when extents or classes arrive', async () => {
    const { apply, read, recorder, index } = await setup();
    const listened: RetagCause[] = [];
    index.onRetag((_, cause) => listened.push(cause));
    apply(extentsOf('X', 1, [100 * MiB, 4096])); // some insight, so unseen ranges read as metadata
    expect(await read(MiB, 4096)).toMatchObject({ origin: 'metadata' });
    expect(await read(MiB + 256 * KiB, 4096)).toMatchObject({ origin: 'metadata' });
    // A file whose extents cover what was read as metadata: only the seen 64 KiB granules are re-tagged.
    apply(extentsOf('A', 300 * KiB, [MiB - 8 * KiB, 512 * KiB]));
    expect(recorder.retags).toHaveLength(1);
    const retag = recorder.retags[0]!;
    expect(retag.cause).toBe('extents');
    expect(retag.ranges.map((r) => [r.offset - MiB, r.length])).toEqual([[0, 64 * KiB], [256 * KiB, 64 * KiB]]);
    expect(retag.ranges[0]!.tag).toMatchObject({ origin: 'data', fileId: 'A', ioClass: 4 });
    // A class change re-tags the same ranges; a change that keeps the class does not.
    apply({ type: 'FileClass', fileId: 'A', size: 3 * MiB, ioClass: 2 });
    expect(recorder.retags).toHaveLength(2);
    expect(recorder.retags[1]).toMatchObject({ cause: 'class', ranges: [{ tag: { ioClass: 2 } }, { tag: { ioClass: 2 } }] });
    apply({ type: 'FileClass', fileId: 'A', size: 3 * MiB + 1, ioClass: 2 });
    expect(recorder.retags).toHaveLength(2);
    // Gone: the blocks are dead.
    apply({ type: 'FileGone', fileId: 'A', cause: 'unlink' });
    expect(recorder.retags[2]).toMatchObject({ cause: 'gone', ranges: [{ tag: { origin: 'unknown', hints: new Set(['gone']) } }, {}] });
    expect(listened).toEqual(['extents', 'class', 'gone']);
  });

  it('unsubscribes at close', async () => {
    const { apply, read, recorder, layer } = await setup();
    apply(extentsOf('X', 1, [100 * MiB, 4096]));
    await read(0, 4096);
    await layer.close();
    apply(extentsOf('A', 1, [0, 4096]));
    expect(recorder.retags).toEqual([]);
  });
});

describe('classify layer factory', () => {
  it('builds from config, registers the volume\'s index, and loads YAML or Open CAS CSV rules', async () => {
    const registry = new SemanticRegistry();
    const factory = createClassifyFactory({ registry });
    const factories = new Map([[factory.type, factory], [statsFactory.type, statsFactory]]);
    const dir = mkdtempSync(path.join(tmpdir(), 'sky-classify-'));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    const csv = path.join(dir, 'ioclass.csv');
    writeFileSync(csv, 'IO class id,IO class name,Eviction priority,Allocation\n0,unclassified,22,1\n1,metadata&done,0,1\n11,file_size:le:4096&done,9,1\n');
    const top = buildStack(new MemoryDevice({ size: 16 * MiB }), [{ type: 'stats' }, { type: 'classify', rules: csv, maxExtents: 4096 }], factories, { volume: 'disk' });
    await top.open();
    expect(describeStack(top)).toEqual(['stats', 'classify', 'memory']);
    const index = registry.get('disk')!;
    expect(findLayer(top, ClassifyLayer)!.index).toBe(index);
    expect(index.accept({ type: 'FileExtents', fileId: 'a', path: '/a', size: 100, extents: [{ volumeOffset: 0, length: 4096 }] })).toEqual({ ok: true });
    const req = newIoRequest(0, 4096);
    await top.read(req, Buffer.alloc(4096));
    expect(req.tag).toMatchObject({ origin: 'data', ioClass: 11 });
    const meta = newIoRequest(MiB, 4096);
    await top.read(meta, Buffer.alloc(4096));
    expect(meta.tag).toMatchObject({ origin: 'metadata', ioClass: 1 });
    expect(index.accept({ type: 'FileExtents', fileId: 'a' })).toMatchObject({ ok: false });
    expect(index.stats().rejected).toBe(1);

    const parsed = factory.schema.safeParse({ type: 'classify', maxExtents: 5, retagGranularity: '3K' });
    expect(parsed.success).toBe(false);
    expect(parsed.error!.issues.map((i) => `${i.path.join('.')}: ${i.message}`)).toEqual([
      'maxExtents: Too small: expected number to be >=1024',
      'retagGranularity: must be a power of two of at least 4K',
    ]);
    const yaml = path.join(dir, 'bad.yaml');
    writeFileSync(yaml, 'default_class: 0\nclasses: [{ id: 0, name: x, eviction_priority: 1 }]\nrules: [{ class: 3 }]\n');
    expect(() => buildStack(new MemoryDevice({ size: MiB }), [{ type: 'classify', rules: yaml }], factories, { volume: 'v' })).toThrow(
      `invalid ioclass rules in ${yaml}:\n  rules.0.class: class 3 is not defined`,
    );
  });
});
