import { describe, expect, it } from 'vitest';
import { FsmapFlag, parseFsmapBuffer, writeFsmapRequest } from '../../../src/insight/extents/fsmap.js';
import { fsmapLabel } from '../../../src/insight/extents/ground-truth.js';

const HEAD = 192;

function reply(records: Array<{ flags: number; physical: number; owner: bigint; offset?: number; length: number }>): Buffer {
  const buffer = Buffer.alloc(HEAD + 64 * 8);
  writeFsmapRequest(buffer, 8, null);
  buffer.writeUInt32LE(records.length, 12);
  records.forEach((record, index) => {
    const at = HEAD + index * 64;
    buffer.writeUInt32LE(0x700, at);
    buffer.writeUInt32LE(record.flags, at + 4);
    buffer.writeBigUInt64LE(BigInt(record.physical), at + 8);
    buffer.writeBigUInt64LE(record.owner, at + 16);
    buffer.writeBigUInt64LE(BigInt(record.offset ?? 0), at + 24);
    buffer.writeBigUInt64LE(BigInt(record.length), at + 32);
  });
  return buffer;
}

const X = (code: number) => (0x58n << 32n) | BigInt(code);
const F = (code: number) => (0x66n << 32n) | BigInt(code);

describe('GETFSMAP', () => {
  it('asks for everything: keys[1] all ones, reserved fields zero', () => {
    const buffer = Buffer.alloc(HEAD + 64);
    writeFsmapRequest(buffer, 1, null);
    expect(buffer.readUInt32LE(8)).toBe(1);
    expect(buffer.readUInt32LE(128)).toBe(0xffffffff);
    expect(buffer.readBigUInt64LE(128 + 24)).toBe(0xffffffffffffffffn);
    expect(buffer.subarray(128 + 32, 192).every((byte) => byte === 0)).toBe(true);
    const after = Buffer.alloc(64, 0);
    after.writeBigUInt64LE(4096n, 8);
    writeFsmapRequest(buffer, 1, after);
    expect(buffer.readBigUInt64LE(64 + 8)).toBe(4096n);
  });

  it('decodes records and names ext4 and XFS special owners', () => {
    const records = parseFsmapBuffer(
      reply([
        { flags: FsmapFlag.SPECIAL_OWNER, physical: 1024, owner: X(1), length: 1024 },
        { flags: FsmapFlag.SPECIAL_OWNER, physical: 2048, owner: F(1), length: 2048 },
        { flags: FsmapFlag.SPECIAL_OWNER, physical: 8192, owner: 1n, length: 4096 },
        { flags: FsmapFlag.SPECIAL_OWNER, physical: 12288, owner: 2n, length: 4096 },
        { flags: 0, physical: 16384, owner: 131n, offset: 65536, length: 4096 },
        { flags: FsmapFlag.EXTENT_MAP, physical: 20480, owner: 131n, length: 4096 },
        { flags: FsmapFlag.SPECIAL_OWNER | FsmapFlag.LAST, physical: 24576, owner: X(99), length: 4096 },
      ]),
    );
    expect(records.map((record) => record.special)).toEqual(['fs-static', 'group-descriptors', 'free', 'unknown-owner', null, null, 'owner-0x5800000063']);
    expect(records[4]).toMatchObject({ device: 0x700, physical: 16384, owner: 131n, offset: 65536, length: 4096 });
    expect(records.map((record) => `${fsmapLabel(record).origin}:${fsmapLabel(record).kind}`)).toEqual([
      'metadata:fs-static',
      'metadata:group-descriptors',
      'free:free',
      'metadata:allocated',
      'metadata:inode-131',
      'metadata:extent-map',
      'metadata:owner-0x5800000063',
    ]);
  });
});
