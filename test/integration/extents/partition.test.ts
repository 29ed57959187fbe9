/**
 * A partitioned Sky volume: an MBR with one partition starting at 1 MiB, attached through nbdfuse + a partition-
 * scanning loop device, ext4 on /dev/loopNp1. The chain must read partition (start 1 MiB) → loop → nbdfuse, so
 * volume offsets are file-system offsets + 1 MiB; file ranges read through the NBD export must hold the files'
 * bytes; the partition table itself is outside the file system (metadata in the ground truth).
 */
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { attachLoop, makeTempDir, mountsUnder, run, runOk, sha256, startFileServer, useIntegrationCleanup, waitUntil, type LoopAttachment, type NbdServer } from '../../helpers/index.js';
import { fileVolumeMap, traceVolume } from '../../../src/insight/extents/volume-map.js';
import { GroundTruth } from '../../../src/insight/extents/ground-truth.js';
import { readThroughNbd } from './nbd-read.js';

useIntegrationCleanup();

const MiB = 1024 * 1024;
const VOLUME_BYTES = 256 * MiB;
const PARTITION_START_SECTORS = 2048;

/** A DOS partition table with one Linux partition from sector 2048 to the end. */
function mbr(volumeBytes: number): Buffer {
  const sector = Buffer.alloc(512);
  const entry = 446;
  sector[entry + 4] = 0x83;
  sector.writeUInt32LE(PARTITION_START_SECTORS, entry + 8);
  sector.writeUInt32LE(volumeBytes / 512 - PARTITION_START_SECTORS, entry + 12);
  sector.writeUInt32LE(0x1234abcd, 440); // disk signature
  sector[510] = 0x55;
  sector[511] = 0xaa;
  return sector;
}

describe('ext4 on a partition of a Sky volume', () => {
  let server: NbdServer;
  let attachment: LoopAttachment | null = null;
  let partitionLoop: string | null = null;
  let dir: string;
  let mountPoint: string;

  beforeAll(async () => {
    dir = makeTempDir('sky-it-extents-part-');
    const image = join(dir, 'disk.img');
    await runOk('truncate', ['-s', String(VOLUME_BYTES), image]);
    const fd = openSync(image, 'r+');
    writeSync(fd, mbr(VOLUME_BYTES), 0, 512, 0);
    closeSync(fd);
    server = await startFileServer({ dir, size: '256M' });
    attachment = await attachLoop(server.uri(), dir);
    // A second loop device on the same nbdfuse file, this one scanning partitions (the helper's does not).
    partitionLoop = (await runOk('losetup', ['--direct-io=on', '--partscan', '--find', '--show', attachment.imagePath])).stdout.trim();
    // Some kernels (this one: no CONFIG_MSDOS_PARTITION) do not parse the table themselves; partx adds it by BLKPG.
    if (!existsSync(`${partitionLoop}p1`)) await runOk('partx', ['--add', partitionLoop]);
    await waitUntil('the partition device', () => existsSync(`${partitionLoop}p1`), 10_000);
    await runOk('mkfs.ext4', ['-q', '-F', `${partitionLoop}p1`]);
    mountPoint = join(dir, 'part');
    mkdirSync(mountPoint);
    await runOk('mount', [`${partitionLoop}p1`, mountPoint]);
  });

  afterAll(async () => {
    try {
      if (mountPoint && mountsUnder(mountPoint).length > 0) await run('umount', [mountPoint]);
      if (partitionLoop) await run('losetup', ['-d', partitionLoop]);
      await attachment?.detach();
    } finally {
      await server?.stop();
    }
  });

  it('traces partition → loop → nbdfuse and maps files 1 MiB into the export', async () => {
    const content = randomBytes(3 * MiB + 17);
    const path = join(mountPoint, 'three-mb.bin');
    const fd = openSync(path, 'w');
    writeSync(fd, content);
    fsyncSync(fd);
    closeSync(fd);

    const trace = traceVolume(statSync(path).dev);
    expect(trace.problem).toBeUndefined();
    const resolution = trace.resolution!;
    expect(resolution.blockDevice).toBe(`${partitionLoop}p1`);
    expect(resolution.chain.map((link) => link.kind)).toEqual(['partition', 'loop', 'nbdfuse']);
    expect(resolution.chain[0]).toMatchObject({ parent: partitionLoop, startBytes: PARTITION_START_SECTORS * 512 });
    expect(resolution.offsetInExport).toBe(PARTITION_START_SECTORS * 512);
    expect(resolution).toMatchObject({ socket: server.socket, exportName: 'disk' });

    const map = fileVolumeMap(path);
    expect(map.unplaced).toEqual([]);
    const ranges = map.extents.map((extent) => {
      const length = Math.min(extent.length, content.length - extent.fileOffset);
      return { offset: extent.volumeOffset, length, expected: sha256(content.subarray(extent.fileOffset, extent.fileOffset + length)) };
    });
    expect(ranges.reduce((sum, range) => sum + range.length, 0)).toBe(content.length);
    expect(await readThroughNbd(server.uri(), ranges)).toEqual(ranges.map((range) => range.expected));

    await runOk('mount', ['-o', 'remount,ro', mountPoint]);
    const truth = GroundTruth.fromMount(mountPoint);
    expect(truth.offsetInExport).toBe(MiB);
    expect(truth.volumeBytes).toBe(VOLUME_BYTES);
    // GETFSMAP's records name the partition's device; they must have been kept (free space is known).
    expect(truth.spaceMap).toBe('fsmap');
    expect(truth.totals().free).toBeGreaterThan(100 * MiB);
    expect(truth.classify(0, 512)).toMatchObject({ origin: 'metadata', kind: 'outside-file-system' });
    // ext4's primary superblock: 1024 bytes into the partition.
    expect(truth.classify(MiB + 1024, 1024)).toMatchObject({ origin: 'metadata' });
    for (const extent of map.extents) {
      expect(truth.classify(extent.volumeOffset, extent.length)).toMatchObject({ origin: 'data', fileSize: content.length, path });
    }
  });
});
