/** A small hand-made ground truth shared by the ground-truth and scorer tests. */
import type { GroundTruthParts, TruthLabel } from '../../../src/insight/extents/ground-truth.js';

const KiB = 1024;
const MiB = 1024 * KiB;

const free: TruthLabel = { origin: 'free', kind: 'free' };
const inodes: TruthLabel = { origin: 'metadata', kind: 'inodes' };

/** A 16 MiB export with a file system at 1 MiB: a few files, an inode table, free space. */
export function sampleParts(): GroundTruthParts {
  return {
    volumeBytes: 16 * MiB,
    fsType: 'ext4',
    offsetInExport: 1 * MiB,
    deviceBytes: 14 * MiB,
    spaceMap: 'fsmap',
    spaceIntervals: [
      { start: 1 * MiB + 64 * KiB, end: 1 * MiB + 128 * KiB, layer: 2, label: inodes },
      { start: 10 * MiB, end: 15 * MiB, layer: 2, label: free },
    ],
    files: [
      { owner: { path: '/m/small', sizeBytes: 1000, ino: 12 }, extents: [{ volumeOffset: 2 * MiB, length: 4 * KiB }] },
      {
        owner: { path: '/m/big', sizeBytes: 12 * MiB, ino: 13 },
        extents: [
          { volumeOffset: 3 * MiB, length: 1 * MiB },
          { volumeOffset: 5 * MiB, length: 2 * MiB },
        ],
      },
      // A reflink: shares its first MiB with /m/big.
      { owner: { path: '/m/clone', sizeBytes: 1.5 * MiB, ino: 14 }, extents: [{ volumeOffset: 3 * MiB, length: 1 * MiB }] },
    ],
  };
}

