import { describe, expect, it } from 'vitest';
import { DeviceSpecSchema, parseSize, TimingSpecSchema } from '../../../src/device/index.js';

describe('parseSize', () => {
  it('reads numbers and binary-unit strings', () => {
    expect(parseSize(4096)).toBe(4096);
    expect(parseSize('512')).toBe(512);
    expect(parseSize('4K')).toBe(4096);
    expect(parseSize('4k')).toBe(4096);
    expect(parseSize('512M')).toBe(536_870_912);
    expect(parseSize('1G')).toBe(1_073_741_824);
    expect(parseSize('1GiB')).toBe(1_073_741_824);
    expect(parseSize('1.5G')).toBe(1_610_612_736);
    expect(parseSize('2T')).toBe(2_199_023_255_552);
    expect(parseSize(' 64 MB ')).toBe(67_108_864);
    expect(parseSize('7B')).toBe(7);
  });

  it('rejects what is not a whole byte count', () => {
    expect(() => parseSize('1.5')).toThrow(RangeError);
    expect(() => parseSize('0.3K')).toThrow(RangeError);
    expect(() => parseSize('-1')).toThrow(RangeError);
    expect(() => parseSize(-1)).toThrow(RangeError);
    expect(() => parseSize('1X')).toThrow(RangeError);
    expect(() => parseSize('1Gi')).toThrow(RangeError);
    expect(() => parseSize('16E')).toThrow(RangeError);
    expect(() => parseSize('')).toThrow(RangeError);
  });
});

describe('DeviceSpecSchema', () => {
  it('parses each device type with sizes as strings', () => {
    expect(DeviceSpecSchema.parse({ type: 'file', path: '/d.img', size: '1G' })).toEqual({ type: 'file', path: '/d.img', size: 1_073_741_824 });
    expect(DeviceSpecSchema.parse({ type: 'memory', size: '64M' })).toEqual({ type: 'memory', size: 67_108_864 });
    expect(DeviceSpecSchema.parse({ type: 'nbd', socket: '/run/n.sock' })).toEqual({ type: 'nbd', socket: '/run/n.sock' });
    expect(DeviceSpecSchema.parse({ type: 'nbd', host: 'h', port: 10810, export: 'e' })).toEqual({ type: 'nbd', host: 'h', port: 10810, export: 'e' });
  });

  it('rejects bad specs with a reason', () => {
    const cases: unknown[] = [
      { type: 'memory', size: 0 },
      { type: 'memory', size: 'lots' },
      { type: 'file' },
      { type: 'file', path: '/x', sise: 1 },
      { type: 'nbd' },
      { type: 'nbd', socket: '/s', host: 'h' },
      { type: 'nbd', socket: '/s', port: 1 },
      { type: 'tape', size: 1 },
    ];
    for (const spec of cases) expect(DeviceSpecSchema.safeParse(spec).success, JSON.stringify(spec)).toBe(false);
  });
});

describe('TimingSpecSchema', () => {
  it('fills documented defaults', () => {
    expect(TimingSpecSchema.parse({ model: 'hdd' })).toEqual({
      model: 'hdd', mode: 'emulate', rpm: 7200, seekTrackToTrackMs: 0.5, seekAverageMs: 8.5, seekFullStrokeMs: 15,
      transferMBps: 150, rotation: 'average', flushMs: 0,
    });
    expect(TimingSpecSchema.parse({ model: 'ssd', mode: 'account' })).toEqual({
      model: 'ssd', mode: 'account', readLatencyUs: 80, writeLatencyUs: 100, bandwidthMBps: 500, channels: 8,
      trimLatencyUs: 100, flushLatencyUs: 0,
    });
    expect(TimingSpecSchema.parse({ model: 'hdd', mode: 'emulate', rpm: 5400, capacity: '1T' })).toMatchObject({ rpm: 5400, capacity: 1_099_511_627_776 });
  });

  it('rejects inconsistent or misspelt parameters', () => {
    expect(TimingSpecSchema.safeParse({ model: 'hdd', seekAverageMs: 20 }).success).toBe(false);
    expect(TimingSpecSchema.safeParse({ model: 'hdd', rmp: 7200 }).success).toBe(false);
    expect(TimingSpecSchema.safeParse({ model: 'ssd', channels: 0 }).success).toBe(false);
    expect(TimingSpecSchema.safeParse({ model: 'ssd', mode: 'fast' }).success).toBe(false);
  });
});
