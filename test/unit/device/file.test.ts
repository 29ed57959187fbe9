import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BlockError, ExtentFlags, IoFlags, newIoRequest } from '../../../src/volume/types.js';
import { FILE_EXTENTS_MAX, FileDevice } from '../../../src/device/index.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const HOLE = ExtentFlags.HOLE | ExtentFlags.ZERO;
const isRoot = process.getuid?.() === 0;

function pattern(length: number, seed: number): Buffer {
  const buffer = Buffer.alloc(length);
  for (let i = 0; i < length; i++) buffer[i] = (i * 131 + seed) & 0xff;
  return buffer;
}

function hasCommand(name: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

async function openDevice(options: ConstructorParameters<typeof FileDevice>[0]): Promise<FileDevice> {
  const device = new FileDevice(options);
  await device.open();
  return device;
}

async function readBack(device: FileDevice, offset: number, length: number): Promise<Buffer> {
  const buffer = Buffer.alloc(length, 0xee);
  await device.read(newIoRequest(offset, length), buffer);
  return buffer;
}

let workDir = '';
const mounts: string[] = [];
const images: string[] = [];

function mount(args: string[], target: string): void {
  fs.mkdirSync(target);
  execFileSync('mount', [...args, target]);
  mounts.push(target);
}

beforeAll(() => {
  workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sky-file-'));
});

afterAll(() => {
  for (const target of mounts.reverse()) execFileSync('umount', [target]);
  for (const image of images) fs.rmSync(image, { force: true });
  fs.rmSync(workDir, { recursive: true, force: true });
});

describe('FileDevice basics', () => {
  it('creates a sparse file, round-trips data and keeps it across reopen', async () => {
    const file = path.join(workDir, 'new.img');
    const device = await openDevice({ path: file, size: 4 * MiB });
    expect(device.size()).toBe(4 * MiB);
    expect(fs.statSync(file).size).toBe(4 * MiB);
    const data = pattern(12_345, 1);
    await device.write(newIoRequest(MiB - 7, data.length, IoFlags.FUA), data);
    await device.flush();
    await device.close();
    const again = await openDevice({ path: file });
    expect(again.size()).toBe(4 * MiB);
    expect((await readBack(again, MiB - 7, data.length)).equals(data)).toBe(true);
    expect((await readBack(again, 0, 4096)).equals(Buffer.alloc(4096))).toBe(true);
    await again.close();
  });

  it('extends a smaller file and never truncates a larger one', async () => {
    const file = path.join(workDir, 'existing.img');
    const data = pattern(8 * KiB, 2);
    fs.writeFileSync(file, data);
    const grown = await openDevice({ path: file, size: MiB });
    expect(fs.statSync(file).size).toBe(MiB);
    expect((await readBack(grown, 0, data.length)).equals(data)).toBe(true);
    await grown.close();
    const window = await openDevice({ path: file, size: 4 * KiB });
    expect(window.size()).toBe(4 * KiB);
    expect(fs.statSync(file).size).toBe(MiB);
    await window.close();
  });

  it('refuses a missing file without a size and an empty file', async () => {
    await expect(openDevice({ path: path.join(workDir, 'missing.img') })).rejects.toThrow(/ENOENT/);
    const empty = path.join(workDir, 'empty.img');
    fs.writeFileSync(empty, '');
    await expect(openDevice({ path: empty })).rejects.toMatchObject({ errno: 'EINVAL' });
  });

  it('serves a read-only file, zero-filling past its end', async () => {
    const file = path.join(workDir, 'short.img');
    const data = pattern(8 * KiB, 3);
    fs.writeFileSync(file, data);
    const device = await openDevice({ path: file, size: 16 * KiB, readOnly: true });
    expect(device.capabilities()).toMatchObject({ readOnly: true, canTrim: false, canZero: false, canFlush: false });
    const back = await readBack(device, 4 * KiB, 8 * KiB);
    expect(back.subarray(0, 4 * KiB).equals(data.subarray(4 * KiB))).toBe(true);
    expect(back.subarray(4 * KiB).equals(Buffer.alloc(4 * KiB))).toBe(true);
    expect(await device.blockStatus(0, 16 * KiB)).toEqual([{ length: 8 * KiB, flags: 0 }, { length: 8 * KiB, flags: HOLE }]);
    await expect(device.write(newIoRequest(0, 1), Buffer.alloc(1))).rejects.toMatchObject({ errno: 'EPERM' });
    expect(fs.statSync(file).size).toBe(8 * KiB);
    await device.close();
  });

  it('bounds block status work per call', async () => {
    const file = path.join(workDir, 'striped.img');
    const device = await openDevice({ path: file, size: 16 * MiB });
    const block = pattern(4 * KiB, 4);
    for (let offset = 0; offset < 16 * MiB; offset += 8 * KiB) await device.write(newIoRequest(offset, 4 * KiB), block);
    const extents = await device.blockStatus(0, 16 * MiB);
    expect(extents.length).toBe(FILE_EXTENTS_MAX);
    expect(extents[0]).toEqual({ length: 4 * KiB, flags: 0 });
    expect(extents[1]).toEqual({ length: 4 * KiB, flags: HOLE });
    expect(extents.reduce((sum, extent) => sum + extent.length, 0)).toBe((FILE_EXTENTS_MAX / 2) * 8 * KiB);
    await device.close();
  });

  it('fails requests after close with ESHUTDOWN', async () => {
    const device = await openDevice({ path: path.join(workDir, 'closed.img'), size: MiB });
    await device.close();
    await expect(device.read(newIoRequest(0, 1), Buffer.alloc(1))).rejects.toMatchObject({ errno: 'ESHUTDOWN' });
  });
});

/** The same hole behaviour on each file system we can reach; `zeroRange` says whether FALLOC_FL_ZERO_RANGE exists. */
function holeTests(label: string, directory: () => string, zeroRange: boolean, available: boolean): void {
  describe.skipIf(!available)(`FileDevice holes on ${label}`, () => {
    it('punches holes on trim and zero, and finds them with SEEK_DATA/SEEK_HOLE', async () => {
      const file = path.join(directory(), 'holes.img');
      const device = await openDevice({ path: file, size: 4 * MiB });
      expect(device.capabilities()).toMatchObject({ canTrim: true, canZero: true, canFastZero: true, canMultiConn: true });
      expect(await device.blockStatus(0, 4 * MiB)).toEqual([{ length: 4 * MiB, flags: HOLE }]);
      const data = pattern(MiB, 5);
      await device.write(newIoRequest(0, MiB), data);
      await device.flush();
      expect(await device.blockStatus(0, 4 * MiB)).toEqual([{ length: MiB, flags: 0 }, { length: 3 * MiB, flags: HOLE }]);
      await device.trim(newIoRequest(256 * KiB, 512 * KiB));
      expect(await device.blockStatus(0, MiB)).toEqual([
        { length: 256 * KiB, flags: 0 }, { length: 512 * KiB, flags: HOLE }, { length: 256 * KiB, flags: 0 },
      ]);
      const expected = Buffer.from(data).fill(0, 256 * KiB, 768 * KiB);
      expect((await readBack(device, 0, MiB)).equals(expected)).toBe(true);
      await device.zero(newIoRequest(768 * KiB, 256 * KiB));
      expect(await device.blockStatus(0, 4 * MiB)).toEqual([{ length: 256 * KiB, flags: 0 }, { length: 3840 * KiB, flags: HOLE }]);
      await device.close();
    });

    it('zeroes without a hole when told NO_HOLE, and fails FAST_ZERO only where that is slow', async () => {
      const file = path.join(directory(), 'nohole.img');
      const device = await openDevice({ path: file, size: MiB });
      await device.write(newIoRequest(0, MiB), pattern(MiB, 6));
      await device.zero(newIoRequest(1000, 100_000, IoFlags.NO_HOLE | IoFlags.FUA));
      const expected = pattern(MiB, 6).fill(0, 1000, 101_000);
      expect((await readBack(device, 0, MiB)).equals(expected)).toBe(true);
      const fast = device.zero(newIoRequest(200 * KiB, 64 * KiB, IoFlags.NO_HOLE | IoFlags.FAST_ZERO));
      if (zeroRange) {
        await fast;
        expect((await readBack(device, 200 * KiB, 64 * KiB)).equals(Buffer.alloc(64 * KiB))).toBe(true);
      } else {
        await expect(fast).rejects.toMatchObject({ errno: 'ENOTSUP' });
        expect((await readBack(device, 200 * KiB, 64 * KiB)).equals(pattern(MiB, 6).subarray(200 * KiB, 264 * KiB))).toBe(true);
      }
      await device.close();
    });
  });
}

const tmpIsExt4 = hasCommand('stat') && execFileSync('stat', ['-f', '-c', '%T', os.tmpdir()]).toString().trim() === 'ext2/ext3';
holeTests('ext4 (the temp dir)', () => workDir, true, tmpIsExt4);

let tmpfsDir = '';
describe.skipIf(!isRoot)('tmpfs', () => {
  beforeAll(() => {
    tmpfsDir = path.join(workDir, 'tmpfs');
    mount(['-t', 'tmpfs', '-o', 'size=16M', 'tmpfs'], tmpfsDir);
  });
  holeTests('tmpfs', () => tmpfsDir, false, isRoot);
});

let xfsDir = '';
describe.skipIf(!isRoot || !hasCommand('mkfs.xfs'))('xfs', () => {
  beforeAll(() => {
    const image = path.join(os.tmpdir(), `sky-xfs-${process.pid}.img`);
    images.push(image);
    fs.writeFileSync(image, '');
    fs.truncateSync(image, 320 * MiB);
    execFileSync('mkfs.xfs', ['-q', '-f', image]);
    xfsDir = path.join(workDir, 'xfs');
    mount(['-o', 'loop', image], xfsDir);
  });
  holeTests('xfs', () => xfsDir, true, isRoot && hasCommand('mkfs.xfs'));
});

describe.skipIf(!isRoot)('FileDevice on a full file system', () => {
  it('reports ENOSPC, then recovers once trim frees space', async () => {
    const tiny = path.join(workDir, 'tiny');
    mount(['-t', 'tmpfs', '-o', 'size=1M', 'tmpfs'], tiny);
    const device = await openDevice({ path: path.join(tiny, 'full.img'), size: 4 * MiB });
    const chunk = pattern(256 * KiB, 7);
    let written = 0;
    let failure: unknown = null;
    for (; written < 4 * MiB; written += chunk.length) {
      try {
        await device.write(newIoRequest(written, chunk.length), chunk);
      } catch (error) {
        failure = error;
        break;
      }
    }
    expect(failure).toBeInstanceOf(BlockError);
    expect((failure as BlockError).errno).toBe('ENOSPC');
    expect(written).toBeLessThanOrEqual(MiB);
    await expect(device.zero(newIoRequest(2 * MiB, MiB, IoFlags.NO_HOLE))).rejects.toMatchObject({ errno: 'ENOSPC' });
    await device.trim(newIoRequest(0, MiB));
    await device.write(newIoRequest(0, chunk.length), chunk);
    expect((await readBack(device, 0, chunk.length)).equals(chunk)).toBe(true);
    await device.close();
  });
});
