import { describe, expect, it } from 'vitest';
import { newIoRequest, type BlockLayer } from '../../../src/volume/types.js';
import {
  HddTimingLayer, ManualClock, MemoryDevice, SeededRandom, SsdTimingLayer, fitSeekExponent, wrapTiming,
  type HddTimingOptions,
} from '../../../src/device/index.js';

/** 6000 rpm (10 ms a turn) at 1 MB/s: 10 000-byte tracks, 100 of them on a 1 MB disk; round numbers throughout. */
const ROUND_HDD: HddTimingOptions = {
  rpm: 6000, transferMBps: 1, seekTrackToTrackMs: 1, seekAverageMs: 5, seekFullStrokeMs: 10,
};
const TRACK = 10_000;

async function hdd(options: HddTimingOptions, clock: ManualClock, size = 100 * TRACK): Promise<HddTimingLayer> {
  const layer = new HddTimingLayer(new MemoryDevice({ size }), options, clock);
  await layer.open();
  return layer;
}

function read(layer: BlockLayer, offset: number, length: number): Promise<void> {
  return layer.read(newIoRequest(offset, length), Buffer.alloc(length));
}

/** Records the clock time at which each promise settles. */
function completionTimes(clock: ManualClock, promises: Record<string, Promise<void>>): Record<string, number> {
  const times: Record<string, number> = {};
  for (const [name, promise] of Object.entries(promises)) void promise.then(() => (times[name] = clock.nowMs()));
  return times;
}

const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('HDD seek curve', () => {
  it('fits the exponent so the mean random seek equals the average seek time', () => {
    expect(fitSeekExponent(0.5, 8.5, 15)).toBeCloseTo((-3 + Math.sqrt(15.5)) / 2, 12);
    expect(fitSeekExponent(1, 5, 10)).toBeCloseTo((-3 + Math.sqrt(19)) / 2, 12);
  });

  it('costs track-to-track for one track, full stroke end to end, and averages 8.5 ms by default', async () => {
    const layer = await hdd({ mode: 'account' }, new ManualClock(), 2 ** 40);
    const track = 150_000 * (60_000 / 7200);
    expect(layer.seekMs(0, 100)).toBe(0);
    expect(layer.seekMs(0, track)).toBeCloseTo(0.5, 12);
    expect(layer.seekMs(2 ** 40 - 1, 0)).toBeCloseTo(15, 12);
    const random = new SeededRandom(99);
    let sum = 0;
    const samples = 200_000;
    for (let i = 0; i < samples; i++) sum += layer.seekMs(random.nextFloat() * 2 ** 40, random.nextFloat() * 2 ** 40);
    expect(Math.abs(sum / samples - 8.5)).toBeLessThan(0.05);
  });
});

describe('HddTimingLayer', () => {
  it('accounts seek, rotation and transfer per request without delaying anything', async () => {
    const clock = new ManualClock();
    const layer = await hdd({ ...ROUND_HDD, mode: 'account' }, clock);
    await read(layer, 0, 1000); // continues at the head: transfer only, 1 ms
    await read(layer, 99 * TRACK, 1000); // full stroke 10 + half turn 5 + 1
    await read(layer, TRACK * 98, 1000); // one track back: 1 + 5 + 1
    await layer.write(newIoRequest(98 * TRACK + 1000, 2000), Buffer.alloc(2000)); // sequential: 2
    await layer.trim(newIoRequest(0, 5000)); // free
    expect(clock.pendingSleepers()).toBe(0);
    expect(layer.modelTimeMs()).toBeCloseTo(1 + 16 + 7 + 2, 9);
    const stats = layer.stats();
    expect(stats).toMatchObject({ model: 'hdd', mode: 'account', seeks: 2, emulatedWaitMs: 0 });
    expect(stats.seekTimeMs).toBeCloseTo(11, 9);
    expect(stats.rotationTimeMs).toBeCloseTo(10, 9);
    expect(stats.transferTimeMs).toBeCloseTo(5, 9);
    expect(stats.ops.read).toEqual({ count: 3, bytes: 3000, modelTimeMs: expect.closeTo(24, 9) });
    expect(stats.ops.trim).toEqual({ count: 1, bytes: 5000, modelTimeMs: 0 });
  });

  it('emulates one request at a time in arrival order', async () => {
    const clock = new ManualClock();
    const layer = await hdd({ ...ROUND_HDD, mode: 'emulate' }, clock);
    const times = completionTimes(clock, {
      a: read(layer, 0, 1000), // 0 → 1
      b: read(layer, 99 * TRACK, 1000), // 1 → 17
      c: read(layer, 0, 1000), // 17 → 33
      d: layer.write(newIoRequest(1000, 1000), Buffer.alloc(1000)), // 33 → 34
      f: layer.flush(), // after the queue: 34
    });
    await settle();
    expect(times).toEqual({}); // even a owes 1 ms, which is the sleep granularity
    await clock.advance(100);
    expect(times).toEqual({ a: 1, b: 17, c: 33, d: 34, f: 34 });
    expect(layer.stats().emulatedWaitMs).toBe(1 + 17 + 33 + 34 + 34);
  });

  it('models rotation from the platter angle when asked', async () => {
    const clock = new ManualClock();
    const layer = await hdd({ ...ROUND_HDD, mode: 'account', rotation: 'angular' }, clock);
    await read(layer, 5000, 1000); // half a turn to angle 0.5, then 1 ms: done at 6
    await read(layer, 6000, 1000); // the platter is exactly there: 1 ms, done at 7
    await read(layer, 2000, 1000); // from angle 0.7 to 0.2: half a turn + 1
    expect(layer.stats().rotationTimeMs).toBeCloseTo(10, 9);
    expect(layer.modelTimeMs()).toBeCloseTo(13, 9);
  });

  it('keeps sub-millisecond debt on the timeline and sleeps only whole milliseconds', async () => {
    const clock = new ManualClock();
    const layer = await hdd({ mode: 'emulate' }, clock, 1 << 30);
    const loop = (async () => {
      for (let i = 0; i < 100; i++) await read(layer, i * 4096, 4096);
    })();
    await settle();
    await clock.advance(10);
    await loop;
    const stats = layer.stats();
    expect(stats.modelTimeMs).toBeCloseTo((100 * 4096) / 150_000, 9);
    expect(stats.emulatedWaitMs).toBe(2);
    expect(clock.pendingSleepers()).toBe(0);
  });
});

describe('SsdTimingLayer', () => {
  it('overlaps requests on channels and serialises the shared link', async () => {
    const clock = new ManualClock();
    const layer = new SsdTimingLayer(new MemoryDevice({ size: 1 << 20 }), {
      mode: 'emulate', readLatencyUs: 2000, writeLatencyUs: 3000, bandwidthMBps: 1, channels: 2, flushLatencyUs: 500,
    }, clock);
    await layer.open();
    const times = completionTimes(clock, {
      a: read(layer, 0, 1000), // channel 0: 2 ms flash, link 2-3
      b: read(layer, 50_000, 1000), // channel 1: 2 ms flash, link busy until 3, 3-4
      c: read(layer, 90_000, 1000), // channel 0 again from 3: flash to 5, link 5-6
      f: layer.flush(), // barrier: 6 + 0.5
    });
    await settle();
    await clock.advance(50);
    expect(times).toEqual({ a: 3, b: 4, c: 6, f: 6 });
    expect(layer.modelTimeMs()).toBeCloseTo(3 * 3 + 0.5, 9);
    expect(layer.stats()).toMatchObject({ channels: 2, transferTimeMs: 3 });
  });

  it('chains a queue-depth-1 client: each request starts after the completion it waited for', async () => {
    const clock = new ManualClock();
    const layer = new SsdTimingLayer(new MemoryDevice({ size: 1 << 20 }), { mode: 'emulate' }, clock);
    await layer.open();
    const loop = (async () => {
      for (let i = 0; i < 20; i++) await read(layer, i * 8192, 4096);
    })();
    await settle();
    await clock.advance(5);
    await loop;
    // 20 x 88.192 µs = 1.76 ms on one timeline although 8 channels were free: one whole millisecond slept.
    expect(layer.modelTimeMs()).toBeCloseTo(20 * (0.08 + 4096 / 500_000), 9);
    expect(layer.stats().emulatedWaitMs).toBe(1);
  });

  it('defaults to a SATA SSD: 4 KiB random reads at queue depth 1 take latency plus link time', async () => {
    const clock = new ManualClock();
    const layer = new SsdTimingLayer(new MemoryDevice({ size: 1 << 20 }), { mode: 'account' }, clock);
    await layer.open();
    for (let i = 0; i < 10; i++) await read(layer, i * 8192, 4096);
    await layer.write(newIoRequest(0, 4096), Buffer.alloc(4096));
    await layer.zero(newIoRequest(0, 1 << 20));
    expect(layer.modelTimeMs()).toBeCloseTo(10 * (0.08 + 4096 / 500_000) + (0.1 + 4096 / 500_000) + 0.1, 9);
    expect(clock.pendingSleepers()).toBe(0);
  });
});

describe('wrapTiming', () => {
  it('returns the layer itself when off and a model otherwise', async () => {
    const device = new MemoryDevice({ size: 1 << 20 });
    expect(wrapTiming(device, { model: 'hdd', mode: 'off' })).toBe(device);
    const hddLayer = wrapTiming(device, { model: 'hdd', mode: 'account', rpm: 5400 });
    expect(hddLayer).toBeInstanceOf(HddTimingLayer);
    expect((hddLayer as HddTimingLayer).params.rpm).toBe(5400);
    const ssdLayer = wrapTiming(device, { model: 'ssd', channels: 4 });
    expect(ssdLayer).toBeInstanceOf(SsdTimingLayer);
    expect((ssdLayer as SsdTimingLayer).mode).toBe('emulate');
    expect(() => wrapTiming(device, { model: 'hdd', seekAverageMs: 99 })).toThrow(/seek times/);
  });
});
