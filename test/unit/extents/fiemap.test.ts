import { execFileSync } from 'node:child_process';
import { closeSync, readFileSync, mkdtempSync, openSync, rmSync, writeFileSync, writeSync, fsyncSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  FIEMAP_EXTENT_BYTES,
  FIEMAP_HEADER_BYTES,
  ExtentMapError,
  fileExtentReport,
  fileExtents,
  fiemapExtents,
  parseFiemapBuffer,
  writeFiemapRequest,
} from '../../../src/insight/extents/fiemap.js';
import { ExtentFlag, extentLocation, flagNames } from '../../../src/insight/extents/extent.js';
import { parseFilefrag } from '../../../src/insight/extents/filefrag.js';

const dir = mkdtempSync(join(process.env.SKY_TEST_TMPDIR ?? tmpdir(), 'sky-fiemap-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function fiemapReply(extents: Array<[number, number, number, number]>, capacity = extents.length): Buffer {
  const buffer = Buffer.alloc(FIEMAP_HEADER_BYTES + FIEMAP_EXTENT_BYTES * capacity);
  writeFiemapRequest(buffer, 0, capacity, true);
  buffer.writeUInt32LE(extents.length, 20);
  extents.forEach(([logical, physical, length, flags], index) => {
    const at = FIEMAP_HEADER_BYTES + index * FIEMAP_EXTENT_BYTES;
    buffer.writeBigUInt64LE(BigInt(logical), at);
    buffer.writeBigUInt64LE(BigInt(physical), at + 8);
    buffer.writeBigUInt64LE(BigInt(length), at + 16);
    buffer.writeUInt32LE(flags, at + 40);
  });
  return buffer;
}

describe('struct fiemap', () => {
  it('writes the request header: start, whole length, sync flag, extent count', () => {
    const buffer = Buffer.alloc(FIEMAP_HEADER_BYTES + FIEMAP_EXTENT_BYTES * 4);
    writeFiemapRequest(buffer, 8192, 4, true);
    expect(buffer.readBigUInt64LE(0)).toBe(8192n);
    expect(buffer.readBigUInt64LE(8)).toBe(0xffffffffffffffffn);
    expect(buffer.readUInt32LE(16)).toBe(1);
    expect(buffer.readUInt32LE(24)).toBe(4);
    expect(() => writeFiemapRequest(buffer, 0, 5, false)).toThrow();
  });

  it('decodes mapped extents and their locations', () => {
    const buffer = fiemapReply(
      [
        [0, 1 << 20, 65536, 0],
        [65536, 0, 4096, ExtentFlag.UNKNOWN | ExtentFlag.DELALLOC],
        [69632, 7 << 20, 4096, ExtentFlag.ENCODED | ExtentFlag.LAST],
      ],
      8,
    );
    expect(parseFiemapBuffer(buffer)).toEqual([
      { logical: 0, physical: 1 << 20, length: 65536, flags: 0, location: 'mapped' },
      { logical: 65536, physical: null, length: 4096, flags: ExtentFlag.UNKNOWN | ExtentFlag.DELALLOC, location: 'delalloc' },
      { logical: 69632, physical: 7 << 20, length: 4096, flags: ExtentFlag.ENCODED | ExtentFlag.LAST, location: 'encoded' },
    ]);
  });

  it('refuses offsets beyond 2^53', () => {
    expect(() => parseFiemapBuffer(fiemapReply([[0, 2 ** 53 + 2, 4096, 0]]))).toThrow(RangeError);
  });

  it('names locations by precedence: delalloc, inline, unknown, encoded, mapped', () => {
    expect(extentLocation(ExtentFlag.DATA_INLINE | ExtentFlag.NOT_ALIGNED)).toBe('inline');
    expect(extentLocation(ExtentFlag.UNKNOWN)).toBe('unknown');
    expect(extentLocation(ExtentFlag.SHARED | ExtentFlag.UNWRITTEN)).toBe('mapped');
    expect(flagNames(ExtentFlag.LAST | ExtentFlag.SHARED)).toEqual(['last', 'shared']);
  });
});

describe('fileExtents on this machine', () => {
  it('maps a file with holes the same way whatever the number of extents per call', () => {
    const path = join(dir, 'holes.bin');
    const fd = openSync(path, 'w');
    const block = Buffer.alloc(4096, 0xab);
    for (let index = 0; index < 40; index++) writeSync(fd, block, 0, block.length, index * 2 * 65536);
    fsyncSync(fd);
    closeSync(fd);
    let whole;
    try {
      whole = fileExtents(path, { fallback: false });
    } catch (error) {
      // The temp dir sits on a file system without FIEMAP (tmpfs): nothing to compare here.
      expect(error).toBeInstanceOf(ExtentMapError);
      return;
    }
    expect(whole.length).toBeGreaterThanOrEqual(40);
    expect(whole[whole.length - 1]!.flags & ExtentFlag.LAST).toBeTruthy();
    const handle = openSync(path, 'r');
    try {
      expect(fiemapExtents(handle, { extentsPerCall: 3 })).toEqual(whole);
      expect(fileExtents(handle)).toEqual(whole);
    } finally {
      closeSync(handle);
    }
    // filefrag reads the same map: its parsed output must equal ours.
    const printed = execFileSync('filefrag', ['-v', '-e', '-b1', path], { encoding: 'utf8' });
    expect(parseFilefrag(printed).extents).toEqual(whole);
    const mappedBytes = whole.filter((extent) => extent.location === 'mapped').reduce((sum, extent) => sum + extent.length, 0);
    expect(mappedBytes).toBeGreaterThanOrEqual(40 * 4096);
  });

  const shmIsTmpfs = / \/dev\/shm .* - tmpfs /.test(readFileSync('/proc/self/mountinfo', 'utf8'));
  it.runIf(shmIsTmpfs)('falls back to filefrag, and says why, where FIEMAP is refused (tmpfs)', () => {
    const path = join('/dev/shm', `sky-fiemap-${process.pid}`);
    writeFileSync(path, 'hello');
    try {
      expect(() => fileExtents(path, { fallback: false })).toThrow(/FIEMAP failed: EOPNOTSUPP/);
      expect(() => fileExtentReport(path)).toThrow(/filefrag/);
    } finally {
      rmSync(path, { force: true });
    }
  });
});
