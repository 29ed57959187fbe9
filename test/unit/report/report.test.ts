/**
 * The report's figures on small synthetic tag logs, exact: counts by origin/class/size/process/op, block lifetimes,
 * and tag accuracy at request time and after re-tags (including a re-tag that covers only part of a request and a
 * block overwritten between a request and the re-tag).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { GroundTruth } from '../../../src/insight/extents/index.js';
import { buildReport, PLOT_NAMES, renderBrief, renderMarkdown, writeReport } from '../../../src/report/index.js';
import { makeTempDir, removeTempDirs } from '../../helpers/tmp.js';

const KiB = 1024;
const MiB = 1024 * KiB;

afterAll(() => removeTempDirs());

const header = { sky: 'tag-log', v: 1, volume: 'vol', size: 16 * MiB, started: '2026-11-26T10:00:00.000Z' };
const meta = (extra: object = {}) => ({ origin: 'metadata', ioClass: 5, ...extra });
const f1 = { origin: 'data', ioClass: 4, fileId: 'f1', fileSize: 100_000, pid: 20, exe: 'cp' };

function writeLog(lines: object[], tail = ''): string {
  const file = path.join(makeTempDir('sky-report-unit-'), 'tags.jsonl');
  writeFileSync(file, lines.map((line) => `${JSON.stringify(line)}\n`).join('') + tail);
  return file;
}

/** Line numbers (the header is line 1) in comments: re-tags apply to earlier lines of the same block epoch. */
const mainLog = [
  header,
  /* 2 */ { t: 0, op: 'write', offset: 0, length: 8192, tag: meta({ pid: 10, exe: 'mkfs' }) },
  /* 3 */ { t: 100, op: 'write', offset: 1 * MiB, length: 16384, tag: meta({ pid: 20, exe: 'cp' }) },
  /* 4 */ { t: 200, op: 'read', offset: 1 * MiB, length: 16384, tag: meta() },
  /* 5 */ { t: 300, op: 'retag', cause: 'extents', offset: 1 * MiB, length: 16384, tag: f1 },
  /* 6 */ { t: 400, op: 'read', offset: 1 * MiB, length: 8192, tag: f1 },
  /* 7 */ { t: 1500, op: 'write', offset: 0, length: 4096, tag: meta({ pid: 10, exe: 'mkfs' }) },
  /* 8 */ { t: 2000, op: 'trim', offset: 4096, length: 4096, tag: meta() },
  /* 9 */ { t: 70_000, op: 'retag', cause: 'gone', offset: 1 * MiB, length: 16384, tag: { origin: 'unknown', ioClass: 0, hints: ['gone'] } },
  /* 10 */ { t: 70_001, op: 'write', offset: 2 * MiB, length: 4096, tag: null },
  /* 11 */ { t: 70_002, op: 'end', dropped: 0, lines: 9 },
];

const truth = GroundTruth.fromParts({
  volumeBytes: 16 * MiB, fsType: 'test', offsetInExport: 0, deviceBytes: 16 * MiB, spaceMap: 'none', spaceIntervals: [],
  files: [
    { owner: { path: '/f1', sizeBytes: 100_000, ino: 12 }, extents: [{ volumeOffset: 1 * MiB, length: 16384 }] },
  ],
});

describe('buildReport', () => {
  it('counts the patterns data tags carry (copy, encrypted, application class) and names files by path', async () => {
    const copied = { origin: 'data', ioClass: 0, fileId: 'c', path: '/vol/b.copy', fileSize: 20 * MiB, hints: ['copy'] };
    const sealed = { origin: 'data', ioClass: 0, fileId: 'e', path: '/vol/a.gpg', fileSize: 20 * MiB, hints: ['app', 'unique'] };
    const report = await buildReport(writeLog([
      header,
      { t: 0, op: 'write', offset: 0, length: 8192, tag: copied },
      { t: 1, op: 'write', offset: 8192, length: 12288, tag: sealed },
      { t: 2, op: 'read', offset: 8192, length: 4096, tag: sealed },
      { t: 3, op: 'read', offset: 1 * MiB, length: 4096, tag: meta() },
    ]));
    expect(report.byPattern.copy.write).toEqual({ requests: 1, bytes: 8192 });
    expect(report.byPattern.copy.read).toEqual({ requests: 0, bytes: 0 });
    expect(report.byPattern.unique.write).toEqual({ requests: 1, bytes: 12288 });
    expect(report.byPattern.unique.read).toEqual({ requests: 1, bytes: 4096 });
    expect(report.byPattern.app.total).toEqual({ requests: 2, bytes: 16384 });
    expect(report.topFiles.map((file) => [file.path, file.total.bytes])).toEqual([['/vol/a.gpg', 16384], ['/vol/b.copy', 8192]]);
    const brief = renderBrief(report);
    expect(brief).toContain('| copy (a copied file) | 0 | 0 B | 1 | 8.00 KiB | 0 | 8.00 KiB | 28.6% |');
    expect(brief).toContain('| encrypted (unique data) | 1 | 4.00 KiB | 1 | 12.0 KiB | 0 | 16.0 KiB | 57.1% |');
    expect(brief).not.toContain('By process');
  });

  it('counts requests and bytes by op, origin, class, size bucket, process and file', async () => {
    const report = await buildReport(writeLog(mainLog));
    expect(report.log).toMatchObject({ volume: 'vol', volumeBytes: 16 * MiB, lines: 11, requests: 7, retags: 2, durationMs: 70_002, truncated: false, ended: true, dropped: 0, malformed: 0 });
    expect(report.byOp.read).toEqual({ requests: 2, bytes: 24576 });
    expect(report.byOp.write).toEqual({ requests: 4, bytes: 32768 });
    expect(report.byOp.trim).toEqual({ requests: 1, bytes: 4096 });
    expect(report.byOp.total).toEqual({ requests: 7, bytes: 61440 });
    expect(report.byOrigin.metadata.write).toEqual({ requests: 3, bytes: 28672 });
    expect(report.byOrigin.metadata.read).toEqual({ requests: 1, bytes: 16384 });
    expect(report.byOrigin.metadata.trim).toEqual({ requests: 1, bytes: 4096 });
    expect(report.byOrigin.data.total).toEqual({ requests: 1, bytes: 8192 });
    expect(report.byOrigin.untagged.write).toEqual({ requests: 1, bytes: 4096 });
    expect(report.byOrigin.unknown.total).toEqual({ requests: 0, bytes: 0 });
    expect(Object.keys(report.byClass)).toEqual(['4', '5', 'untagged']);
    expect(report.byClass['5']!.total).toEqual({ requests: 5, bytes: 49152 });
    expect(report.byClass['4']!.read).toEqual({ requests: 1, bytes: 8192 });
    expect(report.bySize['file < 1 MiB']!.total).toEqual({ requests: 1, bytes: 8192 });
    expect(report.bySize.metadata!.total).toEqual({ requests: 5, bytes: 49152 });
    expect(report.bySize.untagged!.total).toEqual({ requests: 1, bytes: 4096 });
    expect(report.byProcess.map((row) => [row.process, row.pid, row.exe, row.total.bytes])).toEqual([
      // Same bytes: more requests first (3 against 2).
      ['(unknown)', null, null, 24576],
      ['cp[20]', 20, 'cp', 24576],
      ['mkfs[10]', 10, 'mkfs', 12288],
    ]);
    expect(report.processes).toBe(3);
    expect(report.topFiles).toEqual([expect.objectContaining({ fileId: 'f1', fileSize: 100_000, read: { requests: 1, bytes: 8192 } })]);
    expect(report.retags).toEqual({ extents: { requests: 1, bytes: 16384 }, class: { requests: 0, bytes: 0 }, gone: { requests: 1, bytes: 16384 } });
  });

  it('measures block lifetimes: overwritten, trimmed, file gone, and alive at the end', async () => {
    const report = await buildReport(writeLog(mainLog));
    const byLabel = Object.fromEntries(report.lifetimes.buckets.map((b) => [b.label, [b.overwritten, b.trimmed, b.gone, b.total]]));
    // Block 0: written at 0, overwritten at 1.5 s. Block 1: written at 0, trimmed at 2 s. Blocks 256..259: written
    // at 0.1 s, their file gone at 70 s. Alive: block 0 (rewritten at 1.5 s) and block 512 (written at 70 s).
    expect(byLabel).toEqual({
      '< 1 s': [0, 0, 0, 0],
      '< 10 s': [1, 1, 0, 2],
      '< 1 min': [0, 0, 0, 0],
      '< 10 min': [0, 0, 4, 4],
      '>= 10 min': [0, 0, 0, 0],
    });
    expect(report.lifetimes.ended).toEqual({ overwritten: 1, trimmed: 1, gone: 4 });
    expect(report.lifetimes.alive).toBe(2);
  });

  it('scores tags at request time and after re-tags against a ground truth', async () => {
    const report = await buildReport(writeLog(mainLog), { truth: truth.toJSON() });
    const accuracy = report.accuracy!;
    // Reads and writes only (the trim is not scored): 57344 bytes in 6 requests.
    expect(accuracy.atRequest.total).toEqual({ bytes: 57344, requests: 6 });
    expect(accuracy.atRequest.origin.right).toEqual({ bytes: 20480, requests: 3 });
    expect(accuracy.atRequest.origin.wrong).toEqual({ bytes: 32768, requests: 2 });
    expect(accuracy.atRequest.origin.unknown).toEqual({ bytes: 4096, requests: 1 });
    // The extents re-tag at line 5 turns lines 3 and 4 (same epoch, earlier) into data of f1; the 'gone' re-tag
    // at line 9 says nothing about what the bytes were and is not applied.
    expect(accuracy.afterRetag.total).toEqual({ bytes: 57344, requests: 6 });
    expect(accuracy.afterRetag.origin.right).toEqual({ bytes: 53248, requests: 5 });
    expect(accuracy.afterRetag.origin.wrong).toEqual({ bytes: 0, requests: 0 });
    expect(accuracy.afterRetag.origin.unknown).toEqual({ bytes: 4096, requests: 1 });
    expect(accuracy.afterRetag.ioClass.right).toEqual({ bytes: 53248, requests: 5 });
    expect(accuracy.afterRetag.ioClass.confusionBytes['4']).toEqual({ '4': 40960 });
    expect(accuracy.retagged).toEqual({ requests: 2, bytes: 32768 });
    expect(accuracy.outsideTruth).toEqual({ requests: 0, bytes: 0 });
    expect(accuracy.afterRetagComplete).toBe(true);
  });

  it('applies a re-tag only to blocks not overwritten since the request, splitting the request\'s bytes', async () => {
    const f2 = { origin: 'data', ioClass: 3, fileId: 'f2', fileSize: 1_500_000 };
    const log = writeLog([
      header,
      /* 2 */ { t: 0, op: 'write', offset: 3 * MiB, length: 8192, tag: meta() },
      /* 3 */ { t: 1, op: 'write', offset: 3 * MiB + 4096, length: 4096, tag: meta() },
      /* 4 */ { t: 2, op: 'read', offset: 3 * MiB, length: 12288, tag: meta() },
      /* 5 */ { t: 3, op: 'retag', cause: 'extents', offset: 3 * MiB, length: 8192, tag: f2 },
      /* 6 */ { t: 4, op: 'write', offset: 3 * MiB, length: 4096, tag: meta() },
      /* 7 */ { t: 5, op: 'retag', cause: 'class', offset: 3 * MiB, length: 4096, tag: { ...f2, ioClass: 2, fileSize: 3_000_000 } },
    ]);
    // Truth: everything is metadata, so every re-tagged byte turns wrong.
    const report = await buildReport(log, { truth: GroundTruth.fromParts({ volumeBytes: 16 * MiB, fsType: 'test', offsetInExport: 0, deviceBytes: 16 * MiB, spaceMap: 'none', spaceIntervals: [], files: [] }) });
    const after = report.accuracy!.afterRetag;
    // Line 2: block 768 → f2 (re-tag at line 5, same epoch); block 769 was rewritten by line 3 before the re-tag,
    // so line 2 keeps its own tag there (right). Line 3: block 769 → f2. Line 4 (a read of 3 blocks): 768 and 769
    // → f2, 770 keeps its own tag. Line 6 starts a new epoch of block 768; the class re-tag at line 7 → class 2.
    expect(after.origin.wrong.bytes).toBe(4096 + 4096 + 8192 + 4096);
    expect(after.origin.right.bytes).toBe(4096 + 4096);
    // A request split between tags counts under the tag of most of its bytes (ties: the first run): all 4 wrong.
    expect(after.origin.wrong.requests).toBe(4);
    expect(after.ioClass.confusionBytes['5']).toEqual({ '3': 16384, '2': 4096, '5': 8192 });
    expect(report.accuracy!.retagged).toEqual({ requests: 4, bytes: 8192 + 4096 + 12288 + 4096 });
    expect(report.accuracy!.atRequest.origin.right).toEqual({ bytes: 28672, requests: 4 });
  });

  it('does not apply a re-tag to a request whose block was overwritten before the re-tag', async () => {
    const f3 = { origin: 'data', ioClass: 4, fileId: 'f3', fileSize: 4096 };
    const log = writeLog([
      header,
      /* 2 */ { t: 0, op: 'write', offset: 0, length: 4096, tag: meta() },
      /* 3 */ { t: 1, op: 'read', offset: 0, length: 4096, tag: meta() },
      /* 4 */ { t: 2, op: 'trim', offset: 0, length: 4096, tag: meta() },
      /* 5 */ { t: 3, op: 'write', offset: 0, length: 4096, tag: meta() },
      /* 6 */ { t: 4, op: 'retag', cause: 'extents', offset: 0, length: 4096, tag: f3 },
    ]);
    const report = await buildReport(log, { truth: GroundTruth.fromParts({ volumeBytes: 16 * MiB, fsType: 'test', offsetInExport: 0, deviceBytes: 16 * MiB, spaceMap: 'none', spaceIntervals: [], files: [] }) });
    // Only line 5 (the epoch the re-tag names) changes; lines 2 and 3 keep metadata (right).
    expect(report.accuracy!.afterRetag.origin.right).toEqual({ bytes: 8192, requests: 2 });
    expect(report.accuracy!.afterRetag.origin.wrong).toEqual({ bytes: 4096, requests: 1 });
    expect(report.accuracy!.retagged).toEqual({ requests: 1, bytes: 4096 });
  });

  it('says why bytes stay wrong after re-tags: overwritten before a re-tag, never re-tagged, re-tagged wrong', async () => {
    const wal = { origin: 'data', ioClass: 0, fileId: 'wal', fileSize: 16 * MiB };
    const log = writeLog([
      header,
      /* 2 */ { t: 0, op: 'write', offset: 0, length: 8192, tag: meta() }, // a zero-fill, synced before the file is described
      /* 3 */ { t: 1, op: 'write', offset: 0, length: 4096, tag: meta() }, // records over its first block, before the re-tag
      /* 4 */ { t: 2, op: 'retag', cause: 'extents', offset: 0, length: 8192, tag: wal },
      /* 5 */ { t: 3, op: 'read', offset: 8192, length: 4096, tag: meta() }, // no re-tag ever comes
      /* 6 */ { t: 4, op: 'write', offset: 12288, length: 4096, tag: meta() },
      /* 7 */ { t: 5, op: 'retag', cause: 'class', offset: 12288, length: 4096, tag: meta({ ioClass: 4 }) },
    ]);
    const truth = GroundTruth.fromParts({ volumeBytes: 16 * MiB, fsType: 'test', offsetInExport: 0, deviceBytes: 16 * MiB, spaceMap: 'none', spaceIntervals: [], files: [{ owner: { path: '/wal', sizeBytes: 16 * MiB, ino: 7 }, extents: [{ volumeOffset: 0, length: 16 * KiB }] }] });
    const accuracy = (await buildReport(log, { truth })).accuracy!;
    // Line 2's second block and line 3 are put right by the re-tag; line 2's first block was overwritten by line 3 first.
    expect(accuracy.afterRetag.origin.right.bytes).toBe(8192);
    expect(accuracy.afterRetag.origin.wrong.bytes).toBe(12288);
    expect(accuracy.afterRetagMisses).toEqual({ overwritten: 4096, notRetagged: 4096, retagged: 4096 });
    expect(accuracy.retagged).toEqual({ requests: 3, bytes: 8192 + 4096 + 4096 });
    const report = await buildReport(log, { truth });
    for (const out of [renderMarkdown(report), renderBrief(report)]) expect(out).toContain('Origin not right after re-tags: 4.00 KiB overwritten before a re-tag reached them');
  });

  it('applies a re-tag to the bytes it names, to 1 KiB (a 1 KiB-block file system shares a 4 KiB block between a file and metadata)', async () => {
    const f4 = { origin: 'data', ioClass: 4, fileId: 'f4', fileSize: 2048 };
    const log = writeLog([
      header,
      /* 2 */ { t: 0, op: 'write', offset: 9 * KiB, length: 2048, tag: meta() }, // the file's data, not yet described
      /* 3 */ { t: 1, op: 'write', offset: 8 * KiB, length: 1024, tag: meta() }, // an inode block beside it, written after
      /* 4 */ { t: 2, op: 'retag', cause: 'extents', offset: 9 * KiB, length: 2048, tag: f4 },
    ]);
    const truth = GroundTruth.fromParts({ volumeBytes: 16 * MiB, fsType: 'test', offsetInExport: 0, deviceBytes: 16 * MiB, spaceMap: 'none', spaceIntervals: [], files: [{ owner: { path: '/f4', sizeBytes: 2048, ino: 4 }, extents: [{ volumeOffset: 9 * KiB, length: 2048 }] }] });
    const report = await buildReport(log, { truth });
    expect(report.accuracy!.atRequest.origin.right).toEqual({ bytes: 1024, requests: 1 });
    expect(report.accuracy!.afterRetag.origin.right).toEqual({ bytes: 1024 + 2048, requests: 2 });
    expect(report.accuracy!.retagged).toEqual({ requests: 1, bytes: 2048 });
  });

  it('writes report.md, report.json and the plots', async () => {
    const report = await buildReport(writeLog(mainLog), { truth });
    const out = makeTempDir('sky-report-out-');
    const written = writeReport(report, out);
    expect(written.map((file) => path.basename(file)).sort()).toEqual(['report.json', 'report.md', ...PLOT_NAMES].sort());
    const markdown = readFileSync(path.join(out, 'report.md'), 'utf8');
    expect(markdown).toBe(renderMarkdown(report));
    expect(markdown).toContain('| metadata | 1 | 16.0 KiB | 3 | 28.0 KiB | 1 | 48.0 KiB | 78.6% |');
    expect(markdown).toContain('| at request time | 35.71% | 50.00% |');
    expect(markdown).toContain('| after re-tags | 92.86% | 83.33% |');
    expect(JSON.parse(readFileSync(path.join(out, 'report.json'), 'utf8'))).toEqual(JSON.parse(JSON.stringify(report)));
    for (const plot of PLOT_NAMES) {
      const svg = readFileSync(path.join(out, plot), 'utf8');
      expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
      expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
    }
    // The origin plot stacks metadata over data for reads: two rects in the read bar, with their byte counts.
    const origin = readFileSync(path.join(out, 'origin.svg'), 'utf8');
    expect(origin).toContain('<title>read · metadata: 16.0 KiB</title>');
    expect(origin).toContain('<title>read · data: 8.00 KiB</title>');
    expect(origin).toContain('<title>write · untagged: 4.00 KiB</title>');
  });
});
