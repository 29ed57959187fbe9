import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BlockError, ExtentFlags, IoFlags, newIoRequest } from '../../../src/volume/types.js';
import { ByteQueue } from '../../../src/device/nbd/byte-queue.js';
import { NbdClientDevice, createDevice } from '../../../src/device/index.js';
import { fakeByte, startFakeServer } from './fake-nbd-server.js';
import { nbdkit, nbdkitTcp, pattern, startServer } from './nbd-helpers.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const HOLE = ExtentFlags.HOLE | ExtentFlags.ZERO;

function hasCommand(name: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Everything a test starts, stopped afterwards even when the test fails. */
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function connect(socket: string, options: Partial<ConstructorParameters<typeof NbdClientDevice>[0]> = {}): Promise<NbdClientDevice> {
  const device = new NbdClientDevice({ socket, ...options });
  await device.open();
  cleanups.push(() => device.close());
  return device;
}

async function server(...args: string[]): Promise<string> {
  const started = await nbdkit(...args);
  cleanups.push(started.stop);
  return started.socket;
}

async function readBack(device: NbdClientDevice, offset: number, length: number): Promise<Buffer> {
  const buffer = Buffer.alloc(length, 0xee);
  await device.read(newIoRequest(offset, length), buffer);
  return buffer;
}

describe('ByteQueue', () => {
  it('reads headers and payloads across any chunking without losing a byte', () => {
    const data = pattern(1000, 1);
    for (const pieceSize of [1, 3, 7, 64, 999, 1000]) {
      const queue = new ByteQueue();
      for (let at = 0; at < data.length; at += pieceSize) queue.push(data.subarray(at, at + pieceSize));
      const scratch = Buffer.alloc(20);
      expect(queue.peekUInt32BE(0)).toBe(data.readUInt32BE(0));
      const header = queue.take(20, scratch);
      expect(header.subarray(queue.takenOffset, queue.takenOffset + 20).equals(data.subarray(0, 20))).toBe(true);
      const body = Buffer.alloc(900);
      queue.copyTo(body, 0, 900);
      expect(body.equals(data.subarray(20, 920))).toBe(true);
      const tail = queue.take(80, scratch);
      expect(tail.subarray(queue.takenOffset, queue.takenOffset + 80).equals(data.subarray(920))).toBe(true);
      expect(queue.length).toBe(0);
    }
  });
});

describe('NbdClientDevice against nbdkit', () => {
  it('negotiates structured replies, block status and the export flags', async () => {
    const device = await connect(await server('memory', '64M'));
    expect(device.size()).toBe(64 * MiB);
    expect(device.negotiation()).toMatchObject({ size: 64 * MiB, structuredReplies: true, baseAllocationId: expect.any(Number) });
    expect(device.capabilities()).toMatchObject({
      readOnly: false, canFlush: true, canFua: true, canTrim: true, canZero: true, canFastZero: true, canMultiConn: true,
    });
  });

  it('round-trips many concurrent requests, more than the in-flight table holds', async () => {
    const device = await connect(await server('memory', '64M'), { maxInFlight: 8 });
    const blocks = Array.from({ length: 100 }, (_, i) => ({ offset: i * 300 * KiB + i, data: pattern(64 * KiB + i * 7, i) }));
    await Promise.all(blocks.map(({ offset, data }) => device.write(newIoRequest(offset, data.length, i(offset)), data)));
    await device.flush();
    const back = await Promise.all(blocks.map(({ offset, data }) => readBack(device, offset, data.length)));
    for (let n = 0; n < blocks.length; n++) expect(back[n]!.equals(blocks[n]!.data)).toBe(true);
    function i(offset: number): number {
      return offset % 2 === 0 ? IoFlags.FUA : 0;
    }
  });

  it('reports holes through base:allocation, and trim and zero make them', async () => {
    const device = await connect(await server('memory', '16M'));
    await device.write(newIoRequest(MiB, 256 * KiB), pattern(256 * KiB, 2));
    expect(await device.blockStatus(0, 16 * MiB)).toEqual([
      { length: MiB, flags: HOLE }, { length: 256 * KiB, flags: 0 }, { length: 15 * MiB - 256 * KiB, flags: HOLE },
    ]);
    await device.trim(newIoRequest(MiB, 128 * KiB));
    await device.zero(newIoRequest(MiB + 128 * KiB, 64 * KiB, IoFlags.FAST_ZERO));
    expect(await device.blockStatus(0, 2 * MiB)).toEqual([
      { length: MiB + 192 * KiB, flags: HOLE }, { length: 64 * KiB, flags: 0 }, { length: MiB - 256 * KiB, flags: HOLE },
    ]);
    const expected = pattern(256 * KiB, 2).fill(0, 0, 192 * KiB);
    expect((await readBack(device, MiB, 256 * KiB)).equals(expected)).toBe(true);
  });

  it('maps server errors to BlockError and keeps the connection usable', async () => {
    const device = await connect(await server('--filter=error', 'memory', '16M', 'error=ENOSPC', 'error-pwrite-rate=100%'));
    const failure = device.write(newIoRequest(0, 4096), Buffer.alloc(4096, 1));
    await expect(failure).rejects.toBeInstanceOf(BlockError);
    await expect(failure).rejects.toMatchObject({ errno: 'ENOSPC' });
    expect((await readBack(device, 0, 4096)).equals(Buffer.alloc(4096))).toBe(true);
  });

  it('works with simple replies only, reporting everything as data', async () => {
    const device = await connect(await server('--no-sr', '--filter=error', 'memory', '16M', 'error=EIO', 'error-pread-rate=100%'));
    expect(device.negotiation()).toMatchObject({ structuredReplies: false, baseAllocationId: null });
    await device.write(newIoRequest(4096, 4096), pattern(4096, 3));
    await expect(device.read(newIoRequest(4096, 4096), Buffer.alloc(4096))).rejects.toMatchObject({ errno: 'EIO' });
    await device.zero(newIoRequest(0, 4096));
    await device.flush();
    expect(await device.blockStatus(0, 16 * MiB)).toEqual([{ length: 16 * MiB, flags: 0 }]);
  });

  it('honours a read-only export', async () => {
    const device = await connect(await server('-r', 'memory', '1M'));
    expect(device.capabilities()).toMatchObject({ readOnly: true, canTrim: false, canZero: false, canFlush: false });
    await expect(device.write(newIoRequest(0, 1), Buffer.alloc(1))).rejects.toMatchObject({ errno: 'EPERM' });
  });

  it('refuses an export the server does not have', async () => {
    const socket = await server('--filter=exportname', 'memory', '1M', 'exportname=disk', 'exportname-strict=true');
    const device = new NbdClientDevice({ socket, export: 'nope' });
    const opened = device.open();
    await expect(opened).rejects.toMatchObject({ errno: 'EIO' });
    await expect(opened).rejects.toThrow(/"nope" refused/);
    expect((await connect(socket, { export: 'disk' })).size()).toBe(MiB);
  });

  it('fails requests in flight with EIO when the server dies, and never hangs', async () => {
    const started = await nbdkit('--filter=delay', 'memory', '16M', 'rdelay=5');
    cleanups.push(started.stop);
    const device = await connect(started.socket);
    const reads = Array.from({ length: 5 }, (_, n) => device.read(newIoRequest(n * 4096, 4096), Buffer.alloc(4096)));
    const settled = Promise.allSettled(reads);
    await new Promise((resolve) => setTimeout(resolve, 200));
    started.child.kill('SIGKILL');
    const outcomes = await settled;
    for (const outcome of outcomes) {
      expect(outcome.status).toBe('rejected');
      expect((outcome as PromiseRejectedResult).reason).toMatchObject({ errno: 'EIO' });
    }
    await expect(device.read(newIoRequest(0, 1), Buffer.alloc(1))).rejects.toMatchObject({ errno: 'EIO' });
  });

  it('connects over TCP', async () => {
    const started = await nbdkitTcp('memory', '2M');
    cleanups.push(started.stop);
    const device = createDevice({ type: 'nbd', host: '127.0.0.1', port: started.port }) as NbdClientDevice;
    await device.open();
    cleanups.push(() => device.close());
    await device.write(newIoRequest(MiB, 4096, IoFlags.FUA), pattern(4096, 9));
    expect((await readBack(device, MiB, 4096)).equals(pattern(4096, 9))).toBe(true);
  });

  it('serves a sparse file through createDevice and the file plugin', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sky-nbd-file-'));
    cleanups.push(async () => fs.rmSync(dir, { recursive: true, force: true }));
    const image = path.join(dir, 'disk.img');
    fs.writeFileSync(image, '');
    fs.truncateSync(image, 8 * MiB);
    const fd = fs.openSync(image, 'r+');
    fs.writeSync(fd, pattern(64 * KiB, 4), 0, 64 * KiB, 2 * MiB);
    fs.closeSync(fd);
    const socket = await server('file', image);
    const device = createDevice({ type: 'nbd', socket }) as NbdClientDevice;
    await device.open();
    cleanups.push(() => device.close());
    expect(await device.blockStatus(0, 8 * MiB)).toEqual([
      { length: 2 * MiB, flags: HOLE }, { length: 64 * KiB, flags: 0 }, { length: 6 * MiB - 64 * KiB, flags: HOLE },
    ]);
    expect((await readBack(device, 2 * MiB, 64 * KiB)).equals(pattern(64 * KiB, 4))).toBe(true);
  });
});

describe.skipIf(!hasCommand('qemu-nbd'))('NbdClientDevice against qemu-nbd', () => {
  it('assembles reads from data and hole chunks', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sky-qemu-nbd-'));
    cleanups.push(async () => fs.rmSync(dir, { recursive: true, force: true }));
    const image = path.join(dir, 'disk.img');
    fs.writeFileSync(image, '');
    fs.truncateSync(image, 4 * MiB);
    const fd = fs.openSync(image, 'r+');
    fs.writeSync(fd, pattern(64 * KiB, 5), 0, 64 * KiB, MiB);
    fs.closeSync(fd);
    const started = await startServer('qemu-nbd', (socket) => ['-f', 'raw', '-k', socket, '-x', 'disk', image]);
    cleanups.push(started.stop);
    const device = await connect(started.socket, { export: 'disk' });
    const expected = Buffer.alloc(2 * MiB);
    pattern(64 * KiB, 5).copy(expected, MiB);
    expect((await readBack(device, 0, 2 * MiB)).equals(expected)).toBe(true);
    const extents = await device.blockStatus(0, 4 * MiB);
    expect(extents[0]).toEqual({ length: MiB, flags: HOLE });
    expect(extents[1]).toEqual({ length: 64 * KiB, flags: 0 });
  });
});

describe('NbdClientDevice against a scripted server', () => {
  for (const structured of [true, false]) {
    it(`matches ${structured ? 'structured' : 'simple'} replies sent in reverse order, split into tiny pieces`, async () => {
      const fake = await startFakeServer({ size: 8 * MiB, structured, batch: 6 });
      cleanups.push(fake.stop);
      const device = await connect(fake.socket);
      const ranges = [[0, 4096], [5000, 333], [MiB - 3, 70_000], [7 * MiB, 1], [12_345, 4097], [2 * MiB, 65_536]] as const;
      const reads = ranges.map(([offset, length]) => readBack(device, offset, length));
      const results = await Promise.all(reads);
      ranges.forEach(([offset, length], n) => {
        const expected = Buffer.alloc(length);
        for (let i = 0; i < length; i++) expected[i] = fakeByte(offset + i);
        expect(results[n]!.equals(expected)).toBe(true);
      });
    });
  }

  it('treats a reply for an unknown cookie as fatal: everything in flight fails with EIO', async () => {
    const fake = await startFakeServer({ size: MiB, structured: true, batch: 3, corruptCookie: true });
    cleanups.push(fake.stop);
    const device = await connect(fake.socket);
    const outcomes = await Promise.allSettled([0, 1, 2].map((n) => readBack(device, n * 512, 512)));
    for (const outcome of outcomes) expect((outcome as PromiseRejectedResult).reason).toMatchObject({ errno: 'EIO' });
  });
});
