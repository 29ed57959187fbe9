/**
 * Where files live on a Sky volume, checked against the volume itself. For ext4, XFS and btrfs: `sky serve` on a
 * temp sparse file, attach through nbdfuse + loop, mkfs, mount, write files of 1 KiB, 100 KiB, 3 MB and 20 MB with
 * fsync, then
 * - traceVolume(st_dev) must name the loop device, the nbdfuse process, Sky's socket and the export;
 * - every extent fileVolumeExtents reports must hold the file's bytes when READ THROUGH THE NBD EXPORT (libnbd), and
 *   in Sky's backing file at the same offset; together the extents must cover the whole file (btrfs keeps the 1 KiB
 *   file inline in metadata: reported as unplaced, not as a range);
 * - a file written and deleted during the run must be free space in the ground truth, and scored apart;
 * - after umount and a read-only mount, GroundTruth must classify those ranges as data of the right file and size,
 *   the superblock as metadata (XFS is made with rmapbt=1, so GETFSMAP's owner of every file byte must be that file);
 * - the mapping must agree with the file system's own tools: ext4 dumpe2fs (inode tables, free blocks) and debugfs
 *   icheck; XFS xfs_bmap (GETBMAPX, not FIEMAP); btrfs btrfs-map-logical.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, openSync, readSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  attachLoop,
  haveLibnbdPython,
  makeTempDir,
  run,
  runOk,
  sha256,
  startFileServer,
  useIntegrationCleanup,
  type LoopAttachment,
  type NbdServer,
} from '../../helpers/index.js';
import { FileSystemVolume, fileVolumeMap, traceVolume, type FileVolumeMap } from '../../../src/insight/extents/volume-map.js';
import { GroundTruth } from '../../../src/insight/extents/ground-truth.js';
import { fileExtents } from '../../../src/insight/extents/fiemap.js';
import { scoreTags, type TaggedRequest } from '../../../src/insight/extents/score.js';
import { PAPER_IOCLASS_TABLE, sizeRule } from '../../../src/insight/ioclass.js';
import { readThroughNbd } from './nbd-read.js';

useIntegrationCleanup();

const KiB = 1024;
const MiB = 1024 * KiB;
const FILES = [
  { name: 'one-kib.bin', size: 1 * KiB },
  { name: 'hundred-kib.bin', size: 100 * KiB },
  { name: 'dir/three-mb.bin', size: 3 * 1000 * 1000 },
  { name: 'dir/twenty-mb.bin', size: 20 * 1000 * 1000 },
];

type FsType = 'ext4' | 'xfs' | 'btrfs';

function readBacking(path: string, offset: number, length: number): Buffer {
  const fd = openSync(path, 'r');
  try {
    const buffer = Buffer.alloc(length);
    expect(readSync(fd, buffer, 0, length, offset)).toBe(length);
    return buffer;
  } finally {
    closeSync(fd);
  }
}

function writeSynced(path: string, content: Buffer): void {
  const fd = openSync(path, 'w');
  try {
    writeSync(fd, content);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** The file bytes an extent holds: its length, clipped at the end of the file. */
function fileBytesOf(extent: { fileOffset: number; length: number }, size: number): number {
  return Math.max(0, Math.min(extent.length, size - extent.fileOffset));
}

async function mkfs(attachment: LoopAttachment, type: FsType): Promise<void> {
  if (type === 'btrfs') await runOk('mkfs.btrfs', ['-q', '-f', attachment.device]);
  // Reverse mapping lets GETFSMAP name each extent's inode, which the ground truth cross-checks against FIEMAP.
  else if (type === 'xfs') await runOk('mkfs.xfs', ['-q', '-f', '-m', 'rmapbt=1', attachment.device]);
  else await attachment.mkfs(type);
}

describe.each<FsType>(['ext4', 'xfs', 'btrfs'])('%s on a Sky volume through nbdfuse + loop', (type) => {
  let server: NbdServer;
  let attachment: LoopAttachment | null = null;
  let dir: string;
  let root: string;
  const contents = new Map<string, Buffer>();
  const maps = new Map<string, FileVolumeMap>();
  /** Where a file lived before it was deleted during the "workload". */
  let deletedRanges: Array<{ volumeOffset: number; length: number }> = [];

  beforeAll(async () => {
    dir = makeTempDir(`sky-it-extents-${type}-`);
    // XFS refuses file systems under 300 MB.
    server = await startFileServer({ dir, size: '512M' });
    attachment = await attachLoop(server.uri(), dir);
    await mkfs(attachment, type);
    root = await attachment.mount();
    for (const file of FILES) {
      const content = randomBytes(file.size);
      const path = join(root, file.name);
      await runOk('mkdir', ['-p', join(path, '..')]);
      writeSynced(path, content);
      contents.set(file.name, content);
    }
    const doomed = join(root, 'deleted-later.bin');
    writeSynced(doomed, randomBytes(2 * MiB));
    deletedRanges = fileVolumeMap(doomed).extents;
    await runOk('rm', [doomed]);
    await runOk('sync', ['-f', root]);
  });

  afterAll(async () => {
    try {
      await attachment?.detach();
    } finally {
      await server?.stop();
    }
  });

  it('traces the file system device to the loop device, nbdfuse and the Sky export', () => {
    const trace = traceVolume(statSync(join(root, FILES[0]!.name)).dev);
    expect(trace.problem).toBeUndefined();
    const resolution = trace.resolution!;
    expect(resolution.blockDevice).toBe(attachment!.device);
    expect(resolution.offsetInExport).toBe(0);
    expect(resolution.socket).toBe(server.socket);
    expect(resolution.exportName).toBe('disk');
    expect(resolution.chain.map((link) => link.kind)).toEqual(['loop', 'nbdfuse']);
    expect(resolution.chain[0]).toMatchObject({ kind: 'loop', backingFile: attachment!.imagePath, offsetBytes: 0 });
    expect(resolution.chain[1]).toMatchObject({ kind: 'nbdfuse', mountPoint: attachment!.fuseDir });
  });

  it('maps every file to volume ranges that hold its bytes, read through the NBD export', async () => {
    const ranges: Array<{ offset: number; length: number; expected: string }> = [];
    for (const file of FILES) {
      const content = contents.get(file.name)!;
      const map = fileVolumeMap(join(root, file.name));
      maps.set(file.name, map);
      expect(map.sizeBytes).toBe(file.size);
      if (type === 'btrfs' && file.size === KiB) {
        // btrfs stores small files inline in a metadata leaf: no range of their own.
        expect(map.extents).toEqual([]);
        expect(map.unplaced.map((extent) => extent.location)).toEqual(['inline']);
        continue;
      }
      expect(map.unplaced, file.name).toEqual([]);
      let covered = 0;
      for (const extent of map.extents) {
        const bytes = fileBytesOf(extent, file.size);
        covered += bytes;
        const expected = sha256(content.subarray(extent.fileOffset, extent.fileOffset + bytes));
        ranges.push({ offset: extent.volumeOffset, length: bytes, expected });
        // Sky's file device maps export offset N to file offset N: the backing file must agree too.
        expect(sha256(readBacking(join(dir, 'disk.img'), extent.volumeOffset, bytes)), `${file.name} @${extent.fileOffset} in disk.img`).toBe(expected);
      }
      expect(covered, `${file.name}: extents cover the file`).toBe(file.size);
    }
    expect(ranges.length).toBeGreaterThan(0);
    if (!(await haveLibnbdPython())) throw new Error('python3-libnbd is needed to read through the export');
    const digests = await readThroughNbd(server.uri(), ranges);
    expect(digests).toEqual(ranges.map((range) => range.expected));
  });

  it('after a read-only remount, the ground truth calls those ranges data of the right file, the superblock metadata', async () => {
    expect(maps.size, 'previous step failed').toBe(FILES.length);
    await attachment!.unmount();
    await runOk('mount', ['-o', 'ro', attachment!.device, attachment!.mountPoint]);
    const truth = GroundTruth.fromMount(root);
    expect(truth.fsType).toBe(type);
    expect(truth.spaceMap).toBe(type === 'btrfs' ? 'btrfs-chunks' : 'fsmap');
    expect(truth.volumeBytes).toBe(512 * MiB);
    expect(truth.stats).toMatchObject({ fileBytesOnFreeSpace: 0, fileBytesOnStaticMetadata: 0, fileBytesOwnerMismatch: 0 });
    expect(truth.stats.files).toBe(FILES.length);
    expect(truth.stats.filesUnplaced).toBe(type === 'btrfs' ? 1 : 0);
    if (type === 'xfs') expect(truth.stats.fileBytesOwnerConfirmed).toBe(truth.stats.fileBytesMapped);

    const records: TaggedRequest[] = [];
    for (const file of FILES) {
      // Remounting must not move anything: map again read-only and compare.
      const again = fileVolumeMap(join(root, file.name), { sync: false });
      expect(again.extents).toEqual(maps.get(file.name)!.extents);
      for (const extent of again.extents) {
        const verdict = truth.classify(extent.volumeOffset, extent.length);
        expect(verdict, file.name).toMatchObject({ origin: 'data', path: join(root, file.name), fileSize: file.size, bytes: extent.length });
        const ioClass = sizeRule(file.size).ioClass;
        records.push({ offset: extent.volumeOffset, length: extent.length, direction: 'write', tag: { origin: 'data', ioClass, fileSize: file.size } });
      }
    }
    const superblock = type === 'ext4' ? { offset: 1024, length: 1024 } : type === 'xfs' ? { offset: 0, length: 512 } : { offset: 64 * KiB, length: 4 * KiB };
    expect(truth.classify(superblock.offset, superblock.length)).toMatchObject({ origin: 'metadata' });
    records.push({ ...superblock, direction: 'read', tag: { origin: 'metadata', ioClass: 5 } });

    // The deleted file's blocks are free at the end: requests there are counted apart, neither right nor wrong.
    expect(deletedRanges.length).toBeGreaterThan(0);
    for (const range of deletedRanges) {
      expect(truth.classify(range.volumeOffset, range.length), `deleted file @${range.volumeOffset}`).toMatchObject({ origin: 'free' });
      records.push({ offset: range.volumeOffset, length: range.length, direction: 'write', tag: { origin: 'data', ioClass: 3, fileSize: 2 * MiB } });
    }

    const report = scoreTags(records, truth, PAPER_IOCLASS_TABLE);
    expect(report.origin.wrong.requests + report.origin.unknown.requests).toBe(0);
    expect(report.ioClass.right.requests).toBe(records.length - deletedRanges.length);
    expect(report.freed.requests).toBe(deletedRanges.length);
    expect(report.freed.bytes).toBe(deletedRanges.reduce((sum, range) => sum + range.length, 0));
  });

  it("agrees with the file system's own tools", async () => {
    expect(maps.size, 'previous step failed').toBe(FILES.length);
    if (type === 'ext4') await checkExt4(attachment!.device, GroundTruth.fromMount(root), maps.get('hundred-kib.bin')!, statSync(join(root, 'hundred-kib.bin')).ino);
    if (type === 'xfs') for (const file of FILES) await checkXfsBmap(join(root, file.name), maps.get(file.name)!);
    if (type === 'btrfs') for (const name of ['dir/three-mb.bin', 'dir/twenty-mb.bin']) await checkBtrfsMapLogical(attachment!.device, join(root, name), maps.get(name)!);
    if (type === 'btrfs') checkBtrfsDataRegions(FileSystemVolume.open(root), GroundTruth.fromMount(root), [...maps.values()]);
  });
});

/** ext4: dumpe2fs's inode tables are metadata and its free blocks free; debugfs icheck names the file's inode. */
async function checkExt4(device: string, truth: GroundTruth, file: FileVolumeMap, ino: number): Promise<void> {
  const dump = await runOk('dumpe2fs', [device]);
  const blockSize = Number(/^Block size:\s+(\d+)/m.exec(dump.stdout)![1]);
  const tables = [...dump.stdout.matchAll(/Inode table at (\d+)-(\d+)/g)].map((match) => ({ first: Number(match[1]), last: Number(match[2]) }));
  expect(tables.length).toBeGreaterThan(0);
  for (const table of tables) {
    expect(truth.classify(table.first * blockSize, (table.last - table.first + 1) * blockSize)).toMatchObject({ origin: 'metadata', kind: 'inodes' });
  }
  const free = [...dump.stdout.matchAll(/^\s+Free blocks: (.+)$/gm)].flatMap((match) => match[1]!.split(', ').filter((item) => /^\d/.test(item)));
  expect(free.length).toBeGreaterThan(0);
  for (const item of free.slice(0, 20)) {
    const [first, last = first] = item.split('-').map(Number) as [number, number?];
    expect(truth.classify(first * blockSize, (last! - first + 1) * blockSize), `free blocks ${item}`).toMatchObject({ origin: 'free' });
  }
  const block = Math.floor(file.extents[0]!.volumeOffset / blockSize);
  const icheck = await runOk('debugfs', ['-R', `icheck ${block}`, device]);
  expect(Number(new RegExp(`^${block}\\s+(\\d+)`, 'm').exec(icheck.stdout)![1])).toBe(ino);
}

/** XFS: xfs_bmap (the GETBMAPX ioctl, not FIEMAP) must place every extent where we do. Units: 512-byte sectors. */
async function checkXfsBmap(path: string, map: FileVolumeMap): Promise<void> {
  const bmap = await runOk('xfs_bmap', [path]);
  const rows = [...bmap.stdout.matchAll(/^\s*\d+: \[(\d+)\.\.(\d+)\]: (\d+)\.\.(\d+)$/gm)];
  expect(rows.length, bmap.stdout).toBeGreaterThan(0);
  for (const row of rows) {
    const fileOffset = Number(row[1]) * 512;
    const deviceOffset = Number(row[3]) * 512;
    const ours = map.extents.find((extent) => extent.fileOffset <= fileOffset && fileOffset < extent.fileOffset + extent.length);
    expect(ours, `${path} @${fileOffset}`).toBeDefined();
    expect(ours!.volumeOffset + (fileOffset - ours!.fileOffset)).toBe(deviceOffset);
  }
}

/**
 * btrfs: the data regions the agent announces (data block groups) hold every file byte placed in the volume and
 * nothing the ground truth calls metadata (the superblock, metadata and system block groups).
 */
function checkBtrfsDataRegions(volume: FileSystemVolume, truth: GroundTruth, maps: FileVolumeMap[]): void {
  const regions = volume.btrfsDataRegions();
  expect(regions.length).toBeGreaterThan(0);
  const inside = (offset: number, length: number) => regions.some((r) => r.volumeOffset <= offset && offset + length <= r.volumeOffset + r.length);
  for (const map of maps) for (const extent of map.extents) expect(inside(extent.volumeOffset, extent.length), `${map.path} @${extent.fileOffset}`).toBe(true);
  expect(inside(64 * KiB, 4 * KiB), 'the superblock').toBe(false);
  for (const region of regions) {
    for (let offset = region.volumeOffset; offset < region.volumeOffset + region.length; offset += 4 * MiB) {
      const verdict = truth.classify(offset, 4 * KiB);
      expect(verdict.origin, `region byte ${offset}: ${verdict.kind}`).not.toBe('metadata');
    }
  }
}

/** btrfs: btrfs-map-logical translates each FIEMAP (logical) address to the device offset we computed. */
async function checkBtrfsMapLogical(device: string, path: string, map: FileVolumeMap): Promise<void> {
  for (const extent of fileExtents(path, { sync: false })) {
    const mapped = await run('btrfs-map-logical', ['-l', String(extent.physical), device]);
    const physical = Number(/physical (\d+)/.exec(mapped.stdout)?.[1]);
    const ours = map.extents.find((candidate) => candidate.fileOffset === extent.logical);
    expect(ours?.volumeOffset, `${path} @${extent.logical}: ${mapped.stdout}${mapped.stderr}`).toBe(physical);
  }
}
