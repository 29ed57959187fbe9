import { describe, expect, it } from 'vitest';
import { OptionFormatError, parseInfoRequest, parseMetaContextRequest } from '../../../src/nbd/options.js';

function infoPayload(name: string, infos: number[], lie = 0): Buffer {
  const n = Buffer.from(name);
  const b = Buffer.alloc(4 + n.length + 2 + infos.length * 2);
  b.writeUInt32BE(n.length + lie, 0);
  n.copy(b, 4);
  b.writeUInt16BE(infos.length, 4 + n.length);
  infos.forEach((v, i) => b.writeUInt16BE(v, 6 + n.length + i * 2));
  return b;
}

describe('option decoding', () => {
  it('parses INFO/GO requests', () => {
    expect(parseInfoRequest(infoPayload('disk', [1, 3]))).toEqual({ exportName: 'disk', infos: [1, 3] });
  });

  it('rejects a name length that overruns the payload', () => {
    expect(() => parseInfoRequest(infoPayload('disk', [], 100))).toThrow(OptionFormatError);
  });

  it('rejects a payload whose info count does not match its length', () => {
    const b = infoPayload('x', [1]);
    b.writeUInt16BE(5, 5);
    expect(() => parseInfoRequest(b)).toThrow(/does not match/);
  });

  it('rejects a query count the payload cannot hold without looping over it', () => {
    const b = Buffer.alloc(8);
    b.writeUInt32BE(0, 0);
    b.writeUInt32BE(0xffffffff, 4);
    expect(() => parseMetaContextRequest(b)).toThrow(/cannot fit/);
  });

  it('parses meta context queries', () => {
    const q = Buffer.from('base:allocation');
    const b = Buffer.alloc(4 + 1 + 4 + 4 + q.length);
    b.writeUInt32BE(1, 0);
    b.write('a', 4);
    b.writeUInt32BE(1, 5);
    b.writeUInt32BE(q.length, 9);
    q.copy(b, 13);
    expect(parseMetaContextRequest(b)).toEqual({ exportName: 'a', queries: ['base:allocation'] });
  });
});
