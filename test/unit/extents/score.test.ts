import { describe, expect, it } from 'vitest';
import { GroundTruth } from '../../../src/insight/extents/ground-truth.js';
import { accuracy, scoreTags, trueClasses, type TaggedRequest } from '../../../src/insight/extents/score.js';
import { PAPER_IOCLASS_TABLE, type IoClassTable } from '../../../src/insight/ioclass.js';
import { sampleParts } from './sample-truth.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const truth = GroundTruth.fromParts(sampleParts());

const request = (offset: number, length: number, tag: TaggedRequest['tag'], direction = 'read'): TaggedRequest => ({ offset, length, direction, tag });
const data = (ioClass: number, fileSize?: number) => ({ origin: 'data' as const, ioClass, fileSize });
const metadata = { origin: 'metadata' as const, ioClass: 5 };

describe('trueClasses', () => {
  it('uses the paper table: metadata 5, <1 MiB 4, <2 MiB 3, <5 MiB 2, <10 MiB 1, larger 0', () => {
    expect(trueClasses({ origin: 'metadata', kind: 'inodes' })).toEqual([5]);
    const owner = (sizeBytes: number) => ({ origin: 'data' as const, kind: 'file', owners: [{ path: 'p', sizeBytes, ino: 1 }] });
    expect([1000, 1.5 * MiB, 3 * MiB, 7 * MiB, 12 * MiB].map((size) => trueClasses(owner(size))[0])).toEqual([4, 3, 2, 1, 0]);
  });
});

describe('scoreTags', () => {
  it('all right: bytes and requests, by truth and by direction', () => {
    const report = scoreTags(
      [request(2 * MiB, 4 * KiB, data(4, 1000)), request(5 * MiB, 64 * KiB, data(0), 'write'), request(1 * MiB + 64 * KiB, 4 * KiB, metadata)],
      truth,
    );
    expect(report.total).toEqual({ bytes: 72 * KiB, requests: 3 });
    expect(report.origin.right).toEqual({ bytes: 72 * KiB, requests: 3 });
    expect(report.origin.byTruth.data.right).toEqual({ bytes: 68 * KiB, requests: 2 });
    expect(report.origin.byTruth.metadata.right).toEqual({ bytes: 4 * KiB, requests: 1 });
    expect(report.origin.byDirection.write!.right.requests).toBe(1);
    expect(report.ioClass.right).toEqual({ bytes: 72 * KiB, requests: 3 });
    expect(report.ioClass.confusionBytes).toEqual({ '4': { '4': 4 * KiB }, '0': { '0': 64 * KiB }, '5': { '5': 4 * KiB } });
    expect(accuracy(report.origin)).toEqual({ bytes: 1, requests: 1 });
  });

  it('wrong origin, wrong class, and unknown tags', () => {
    const report = scoreTags(
      [
        request(2 * MiB, 4 * KiB, metadata), // data of /m/small called metadata
        request(5 * MiB, 4 * KiB, data(2, 3 * MiB)), // right origin, wrong class (file is 12 MiB → 0)
        request(1 * MiB + 64 * KiB, 4 * KiB, null), // no tag
        request(1 * MiB + 128 * KiB, 4 * KiB, { origin: 'unknown', ioClass: 0 }),
      ],
      truth,
    );
    expect(report.origin.wrong).toEqual({ bytes: 4 * KiB, requests: 1 });
    expect(report.origin.right).toEqual({ bytes: 4 * KiB, requests: 1 });
    expect(report.origin.unknown).toEqual({ bytes: 8 * KiB, requests: 2 });
    expect(report.ioClass.wrong).toEqual({ bytes: 8 * KiB, requests: 2 });
    expect(report.ioClass.confusionBytes['0']).toEqual({ '2': 4 * KiB });
    expect(report.ioClass.confusionBytes['4']).toEqual({ '5': 4 * KiB });
    expect(report.ioClass.byTruth['5']!.unknown.requests).toBe(2);
    expect(accuracy(report.origin).requests).toBe(0.25);
  });

  it('size class: the table\'s class of the tag\'s own facts, whatever class the rules gave (an application hint)', () => {
    const report = scoreTags(
      [
        request(2 * MiB, 4 * KiB, data(0, 1000)), // /m/small (class 4) hinted to class 0: size class right, I/O class wrong
        request(5 * MiB, 4 * KiB, data(0, 3 * MiB)), // the 12 MiB file when it had 3 MiB: size class wrong (2), I/O class right
        request(5 * MiB + 4 * KiB, 4 * KiB, data(0)), // no file size in the tag: size class unknown
        request(1 * MiB + 64 * KiB, 4 * KiB, metadata), // metadata: class 5 either way
        request(1 * MiB + 128 * KiB, 4 * KiB, { origin: 'unknown', ioClass: 5 }),
      ],
      truth,
    );
    expect(report.sizeClass.right).toEqual({ bytes: 8 * KiB, requests: 2 });
    expect(report.sizeClass.wrong).toEqual({ bytes: 4 * KiB, requests: 1 });
    expect(report.sizeClass.unknown).toEqual({ bytes: 8 * KiB, requests: 2 });
    expect(report.ioClass.right).toEqual({ bytes: 12 * KiB, requests: 3 });
    expect(report.ioClass.wrong).toEqual({ bytes: 4 * KiB, requests: 1 });
  });

  it('a shared extent is right for any owner’s class', () => {
    const asBig = scoreTags([request(3 * MiB, 4 * KiB, data(0))], truth);
    const asClone = scoreTags([request(3 * MiB, 4 * KiB, data(3))], truth);
    expect(asBig.ioClass.right.requests).toBe(1);
    expect(asClone.ioClass.right.requests).toBe(1);
    expect(scoreTags([request(3 * MiB, 4 * KiB, data(4))], truth).ioClass.wrong.requests).toBe(1);
  });

  it('counts requests to space free at the end apart, and scores the rest of a partly free request by bytes', () => {
    const report = scoreTags(
      [
        request(12 * MiB, 64 * KiB, data(2), 'write'), // a since-deleted file
        request(10 * MiB - 4 * KiB, 16 * KiB, metadata, 'write'), // 4 KiB unclaimed, 12 KiB free
      ],
      truth,
    );
    expect(report.freed).toEqual({ bytes: 76 * KiB, requests: 2 });
    expect(report.origin.right).toEqual({ bytes: 4 * KiB, requests: 0 });
    expect(report.total).toEqual({ bytes: 80 * KiB, requests: 2 });
  });

  it('a request spanning data and metadata is scored by the majority of its bytes', () => {
    const report = scoreTags([request(2 * MiB, 16 * KiB, data(4))], truth);
    expect(report.origin.right).toEqual({ bytes: 4 * KiB, requests: 0 });
    expect(report.origin.wrong).toEqual({ bytes: 12 * KiB, requests: 1 });
  });

  it('honours another class table', () => {
    const twoClasses: IoClassTable = {
      metadata: { name: 'metadata', ioClass: 1 },
      bySize: [{ name: 'any', ioClass: 0, belowBytes: null }],
    };
    const report = scoreTags([request(5 * MiB, 4 * KiB, data(0)), request(1 * MiB + 64 * KiB, 4 * KiB, { origin: 'metadata', ioClass: 1 })], truth, twoClasses);
    expect(report.ioClass.right.requests).toBe(2);
    expect(scoreTags([request(5 * MiB, 4 * KiB, data(0))], truth, PAPER_IOCLASS_TABLE).ioClass.right.requests).toBe(1);
  });
});
