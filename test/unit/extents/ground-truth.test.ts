import { describe, expect, it } from 'vitest';
import { GroundTruth, btrfsSpaceIntervals } from '../../../src/insight/extents/ground-truth.js';
import { sampleParts } from './sample-truth.js';
import { BlockGroupType } from '../../../src/insight/extents/btrfs.js';

const KiB = 1024;
const MiB = 1024 * KiB;

describe('GroundTruth', () => {
  const truth = GroundTruth.fromParts(sampleParts());

  it('labels every byte of the volume', () => {
    const totals = truth.totals();
    expect(totals.data + totals.metadata + totals.free).toBe(16 * MiB);
    expect(totals.data).toBe(4 * KiB + 3 * MiB);
    expect(totals.free).toBe(5 * MiB);
    expect(truth.stats).toMatchObject({ files: 3, fileBytesOnFreeSpace: 0, fileBytesOnStaticMetadata: 0 });
  });

  it('classifies file ranges as data with the file size and path', () => {
    expect(truth.classify(2 * MiB, 4 * KiB)).toEqual({ origin: 'data', kind: 'file', fileSize: 1000, path: '/m/small', owners: [{ path: '/m/small', sizeBytes: 1000, ino: 12 }], bytes: 4 * KiB });
    expect(truth.classify(5 * MiB + 4 * KiB, 8 * KiB)).toMatchObject({ origin: 'data', fileSize: 12 * MiB, path: '/m/big' });
  });

  it('keeps every owner of a shared extent', () => {
    const shared = truth.classify(3 * MiB, 4 * KiB);
    expect(shared.owners!.map((owner) => owner.path)).toEqual(['/m/big', '/m/clone']);
  });

  it('classifies everything else as metadata (or free where the file system says so)', () => {
    expect(truth.classify(0, 512)).toMatchObject({ origin: 'metadata', kind: 'outside-file-system' });
    expect(truth.classify(1 * MiB + 1024, 1024)).toMatchObject({ origin: 'metadata', kind: 'unclaimed' });
    expect(truth.classify(1 * MiB + 64 * KiB, 4 * KiB)).toMatchObject({ origin: 'metadata', kind: 'inodes' });
    expect(truth.classify(12 * MiB, 4 * KiB)).toMatchObject({ origin: 'free' });
    expect(truth.classify(15 * MiB + 4 * KiB, 4 * KiB)).toMatchObject({ origin: 'metadata', kind: 'outside-file-system' });
  });

  it('answers a mixed range with what covers most of it', () => {
    // 4 KiB of /m/small then 12 KiB of unclaimed space.
    expect(truth.classify(2 * MiB, 16 * KiB)).toMatchObject({ origin: 'metadata', kind: 'unclaimed', bytes: 12 * KiB });
    expect(truth.segments(2 * MiB - 4 * KiB, 12 * KiB).map((segment) => segment.label.origin)).toEqual(['metadata', 'data', 'metadata']);
  });

  it('refuses ranges beyond the volume', () => {
    expect(() => truth.classify(16 * MiB - 512, 1024)).toThrow(RangeError);
  });

  it('round-trips through JSON', () => {
    const again = GroundTruth.fromJSON(JSON.parse(JSON.stringify(truth.toJSON())));
    expect(again.toJSON()).toEqual(truth.toJSON());
    expect(again.classify(3 * MiB, 4 * KiB)).toEqual(truth.classify(3 * MiB, 4 * KiB));
  });

  it('counts file data the space map calls free or static metadata (a broken truth)', () => {
    const parts = sampleParts();
    parts.files.push({ owner: { path: '/m/odd', sizeBytes: 1, ino: 20 }, extents: [{ volumeOffset: 12 * MiB, length: 4 * KiB }, { volumeOffset: 1 * MiB + 64 * KiB, length: 4 * KiB }] });
    expect(GroundTruth.fromParts(parts).stats).toMatchObject({ fileBytesOnFreeSpace: 4 * KiB, fileBytesOnStaticMetadata: 4 * KiB });
  });
});

describe('btrfs space', () => {
  it('unallocated is free, data chunks free unless a file claims them, metadata chunks and superblocks metadata', () => {
    const chunks = [
      { logical: 13 * MiB, length: 8 * MiB, type: BlockGroupType.DATA, stripes: [{ devid: 1, offset: 13 * MiB }] },
      { logical: 30 * MiB, length: 32 * MiB, type: BlockGroupType.METADATA | BlockGroupType.DUP, stripes: [{ devid: 1, offset: 37 * MiB }, { devid: 1, offset: 69 * MiB }] },
    ];
    const truth = GroundTruth.fromParts({
      volumeBytes: 256 * MiB,
      fsType: 'btrfs',
      offsetInExport: 0,
      deviceBytes: 256 * MiB,
      spaceMap: 'btrfs-chunks',
      spaceIntervals: btrfsSpaceIntervals(chunks, 256 * MiB, 0),
      files: [{ owner: { path: '/b/f', sizeBytes: 5000, ino: 257 }, extents: [{ volumeOffset: 13 * MiB, length: 8 * KiB }] }],
    });
    expect(truth.classify(0, 4096)).toMatchObject({ origin: 'metadata', kind: 'btrfs-reserved' });
    expect(truth.classify(64 * KiB, 4096)).toMatchObject({ origin: 'metadata', kind: 'btrfs-superblock' });
    expect(truth.classify(64 * MiB, 4096)).toMatchObject({ origin: 'metadata', kind: 'btrfs-superblock' });
    expect(truth.classify(2 * MiB, 4096)).toMatchObject({ origin: 'free', kind: 'btrfs-unallocated' });
    expect(truth.classify(13 * MiB, 4096)).toMatchObject({ origin: 'data', path: '/b/f' });
    expect(truth.classify(14 * MiB, 4096)).toMatchObject({ origin: 'free', kind: 'btrfs-data-unreferenced' });
    expect(truth.classify(40 * MiB, 4096)).toMatchObject({ origin: 'metadata', kind: 'btrfs-metadata' });
    expect(truth.classify(70 * MiB, 4096)).toMatchObject({ origin: 'metadata', kind: 'btrfs-metadata' });
    expect(truth.classify(200 * MiB, 4096)).toMatchObject({ origin: 'free', kind: 'btrfs-unallocated' });
  });
});
