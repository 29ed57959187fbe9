import { describe, expect, it } from 'vitest';
import { ExtentFlags, IoFlags, newIoRequest } from '../../../src/volume/types.js';
import { MEMORY_CHUNK_BYTES, MemoryDevice } from '../../../src/device/index.js';

const CHUNK = MEMORY_CHUNK_BYTES;
const HOLE = ExtentFlags.HOLE | ExtentFlags.ZERO;

function pattern(length: number, seed: number): Buffer {
  const buffer = Buffer.alloc(length);
  for (let i = 0; i < length; i++) buffer[i] = (i * 31 + seed) & 0xff;
  return buffer;
}

async function opened(size: number): Promise<MemoryDevice> {
  const device = new MemoryDevice({ size });
  await device.open();
  return device;
}

describe('MemoryDevice', () => {
  it('round-trips data across chunk boundaries and reads holes as zeroes', async () => {
    const device = await opened(4 * CHUNK);
    const data = pattern(CHUNK + 1000, 7);
    await device.write(newIoRequest(CHUNK - 500, data.length), data);
    const back = Buffer.alloc(data.length);
    await device.read(newIoRequest(CHUNK - 500, data.length), back);
    expect(back.equals(data)).toBe(true);
    const hole = Buffer.alloc(100, 0xff);
    await device.read(newIoRequest(3 * CHUNK, 100), hole);
    expect(hole.equals(Buffer.alloc(100))).toBe(true);
    expect(device.allocatedBytes()).toBe(3 * CHUNK);
  });

  it('reports allocation through block status, merging neighbours', async () => {
    const device = await opened(8 * CHUNK);
    await device.write(newIoRequest(2 * CHUNK + 10, 1), Buffer.from([1]));
    await device.write(newIoRequest(3 * CHUNK, 1), Buffer.from([1]));
    expect(await device.blockStatus(0, 8 * CHUNK)).toEqual([
      { length: 2 * CHUNK, flags: HOLE },
      { length: 2 * CHUNK, flags: 0 },
      { length: 4 * CHUNK, flags: HOLE },
    ]);
    expect(await device.blockStatus(CHUNK + 5, CHUNK)).toEqual([
      { length: CHUNK - 5, flags: HOLE },
      { length: 5, flags: 0 },
    ]);
  });

  it('frees whole chunks on trim and zero, zero-fills partial ones', async () => {
    const device = await opened(4 * CHUNK);
    await device.write(newIoRequest(0, 4 * CHUNK), pattern(4 * CHUNK, 3));
    await device.trim(newIoRequest(100, 2 * CHUNK));
    expect(device.allocatedBytes()).toBe(3 * CHUNK);
    const back = Buffer.alloc(4 * CHUNK);
    await device.read(newIoRequest(0, 4 * CHUNK), back);
    const expected = pattern(4 * CHUNK, 3).fill(0, 100, 100 + 2 * CHUNK);
    expect(back.equals(expected)).toBe(true);
    await device.zero(newIoRequest(3 * CHUNK, CHUNK));
    expect(device.allocatedBytes()).toBe(2 * CHUNK);
    expect(await device.blockStatus(0, 4 * CHUNK)).toEqual([
      { length: CHUNK, flags: 0 },
      { length: CHUNK, flags: HOLE },
      { length: CHUNK, flags: 0 },
      { length: CHUNK, flags: HOLE },
    ]);
  });

  it('keeps chunks allocated when zeroing with NO_HOLE', async () => {
    const device = await opened(4 * CHUNK);
    await device.zero(newIoRequest(0, 2 * CHUNK, IoFlags.NO_HOLE));
    expect(device.allocatedBytes()).toBe(2 * CHUNK);
    expect(await device.blockStatus(0, 4 * CHUNK)).toEqual([
      { length: 2 * CHUNK, flags: 0 },
      { length: 2 * CHUNK, flags: HOLE },
    ]);
  });

  it('trims a huge sparse device without walking every chunk', async () => {
    const size = 2 ** 50;
    const device = await opened(size);
    await device.write(newIoRequest(2 ** 45, 4), Buffer.from([1, 2, 3, 4]));
    const started = performance.now();
    await device.trim(newIoRequest(0, size));
    expect(performance.now() - started).toBeLessThan(100);
    expect(device.allocatedBytes()).toBe(0);
    const extents = await device.blockStatus(0, size);
    expect(extents).toEqual([{ length: 65536 * CHUNK, flags: HOLE }]);
  });

  it('fails requests after close with ESHUTDOWN', async () => {
    const device = await opened(CHUNK);
    await device.close();
    await expect(device.read(newIoRequest(0, 1), Buffer.alloc(1))).rejects.toMatchObject({ errno: 'ESHUTDOWN' });
  });
});
