import { describe, expect, it } from 'vitest';
import { newIoRequest } from '../../../src/volume/types.js';
import { FaultInjectionLayer, MemoryDevice, SeededRandom } from '../../../src/device/index.js';

async function stack(options: ConstructorParameters<typeof FaultInjectionLayer>[1]): Promise<FaultInjectionLayer> {
  const layer = new FaultInjectionLayer(new MemoryDevice({ size: 1 << 20 }), options);
  await layer.open();
  return layer;
}

async function outcomes(layer: FaultInjectionLayer, count: number): Promise<string> {
  let result = '';
  for (let i = 0; i < count; i++) {
    try {
      await layer.read(newIoRequest(i * 512, 512), Buffer.alloc(512));
      result += '.';
    } catch (error) {
      result += (error as { errno: string }).errno === 'EIO' ? 'x' : '?';
    }
  }
  return result;
}

describe('SeededRandom', () => {
  it('is deterministic per seed and roughly uniform', () => {
    const a = new SeededRandom(42);
    const b = new SeededRandom(42);
    const c = new SeededRandom(43);
    const first = [a.nextU32(), a.nextU32(), a.nextU32()];
    expect([b.nextU32(), b.nextU32(), b.nextU32()]).toEqual(first);
    expect(c.nextU32()).not.toBe(first[0]);
    let sum = 0;
    for (let i = 0; i < 100_000; i++) sum += a.nextFloat();
    expect(Math.abs(sum / 100_000 - 0.5)).toBeLessThan(0.01);
  });
});

describe('FaultInjectionLayer', () => {
  it('fails reads at the given rate, replaying exactly from the seed', async () => {
    const first = await outcomes(await stack({ seed: 7, readErrorRate: 0.25 }), 400);
    const again = await outcomes(await stack({ seed: 7, readErrorRate: 0.25 }), 400);
    expect(again).toBe(first);
    const failures = first.split('x').length - 1;
    expect(failures).toBeGreaterThan(70);
    expect(failures).toBeLessThan(130);
    expect(first).not.toContain('?');
  });

  it('fails requests overlapping a given range, per op and errno', async () => {
    const layer = await stack({ seed: 1, failAt: [{ offset: 4096, length: 512, op: 'write', errno: 'ENOSPC' }, { offset: 10_000, op: 'read' }] });
    const data = Buffer.alloc(512, 9);
    await layer.write(newIoRequest(3584, 512), data);
    await expect(layer.write(newIoRequest(3585, 512), data)).rejects.toMatchObject({ errno: 'ENOSPC' });
    await expect(layer.write(newIoRequest(4600, 100), data)).rejects.toMatchObject({ errno: 'ENOSPC' });
    await layer.write(newIoRequest(4608, 512), data);
    await layer.read(newIoRequest(4096, 512), Buffer.alloc(512));
    await expect(layer.read(newIoRequest(9999, 2), Buffer.alloc(2))).rejects.toMatchObject({ errno: 'EIO' });
    await layer.read(newIoRequest(10_001, 2), Buffer.alloc(2));
    expect(layer.stats()).toEqual({ readsFailed: 1, writesFailed: 2, bytesWritten: 1024 });
  });

  it('acts as a full device after N bytes, leaving the data below untouched', async () => {
    const layer = await stack({ seed: 1, fullAfterBytes: 8192 });
    const data = Buffer.alloc(4096, 0xab);
    await layer.write(newIoRequest(0, 4096), data);
    await layer.write(newIoRequest(4096, 4096), data);
    await expect(layer.write(newIoRequest(8192, 1), data)).rejects.toMatchObject({ errno: 'ENOSPC' });
    await expect(layer.zero(newIoRequest(8192, 1))).rejects.toMatchObject({ errno: 'ENOSPC' });
    layer.enabled = false;
    const back = Buffer.alloc(1, 0xff);
    await layer.read(newIoRequest(8192, 1), back);
    expect(back[0]).toBe(0);
  });
});
