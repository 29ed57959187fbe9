/**
 * The pure parts of `sky bench accuracy`: scoring a time window of a tag log against a ground truth (which lines
 * count, what the diagnosis attributes), the docs table update, the debugfs journal parse, finding the after-re-tag
 * scores in `sky report --json`, and the list options. The end-to-end run is test/integration/accuracy.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { GroundTruth } from '../../../src/insight/extents/ground-truth.js';
import {
  ACCURACY_WORKLOADS,
  parseDebugfsExtents,
  parseList,
  renderSummaryTable,
  renderSvg,
  resolveAccuracyConfig,
  scoreWindow,
  updateDocs,
  type AccuracyBenchReport,
  type AccuracyRun,
} from '../../../src/cli/bench-accuracy.js';
import { emptyReport } from '../../../src/insight/extents/score.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const dir = mkdtempSync(join(tmpdir(), 'sky-accuracy-unit-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/**
 * A 16 MiB volume: [0, 1 MiB) static metadata, [1, 2) a journal-ish "allocated" range, [4, 8) data of a 4 MiB
 * file, [8, 9) data of a 100 KiB-class file, [10, 11) free, the rest unclaimed metadata.
 */
function truth(): GroundTruth {
  return GroundTruth.fromParts({
    volumeBytes: 16 * MiB,
    fsType: 'ext4',
    offsetInExport: 0,
    deviceBytes: 16 * MiB,
    spaceMap: 'fsmap',
    spaceIntervals: [
      { start: 0, end: 1 * MiB, layer: 2, label: { origin: 'metadata', kind: 'fs-static' } },
      { start: 1 * MiB, end: 2 * MiB, layer: 2, label: { origin: 'metadata', kind: 'allocated' } },
      { start: 4 * MiB, end: 9 * MiB, layer: 2, label: { origin: 'metadata', kind: 'allocated' } },
      { start: 10 * MiB, end: 11 * MiB, layer: 2, label: { origin: 'free', kind: 'free' } },
    ],
    files: [
      { owner: { path: '/mnt/src/big.bin', sizeBytes: 4 * MiB, ino: 12 }, extents: [{ volumeOffset: 4 * MiB, length: 4 * MiB }] },
      { owner: { path: '/mnt/mail/small', sizeBytes: 100 * KiB, ino: 13 }, extents: [{ volumeOffset: 8 * MiB, length: 1 * MiB }] },
    ],
  });
}

const started = Date.parse('2026-01-01T00:00:00.000Z');
const line = (value: object) => JSON.stringify(value);
const data = (ioClass: number) => ({ origin: 'data', ioClass });
const meta = { origin: 'metadata', ioClass: 5 };

describe('scoreWindow', () => {
  const log = join(dir, 'tags.jsonl');
  writeFileSync(
    log,
    [
      line({ sky: 'tag-log', v: 1, volume: 'accuracy', size: 16 * MiB, started: new Date(started).toISOString() }),
      // before the window (setup): not scored, not copied
      line({ t: 500, op: 'write', offset: 4 * MiB, length: 64 * KiB, tag: null }),
      // in the window, during the workload
      line({ t: 1500, op: 'read', offset: 0, length: 8 * KiB, tag: meta }), // right (metadata)
      line({ t: 1600, op: 'write', offset: 4 * MiB, length: 128 * KiB, tag: data(2) }), // right origin and class (4 MiB → class 2)
      line({ t: 1700, op: 'write', offset: 8 * MiB, length: 64 * KiB, tag: meta }), // wrong: data written before its fingerprints
      line({ t: 1800, op: 'read', offset: 8 * MiB, length: 16 * KiB, tag: data(0) }), // origin right, class wrong (truth 4)
      line({ t: 1900, op: 'retag', cause: 'extents', offset: 8 * MiB, length: 64 * KiB, tag: data(4) }),
      line({ t: 2000, op: 'trim', offset: 12 * MiB, length: 1 * MiB, tag: null }), // counted, not scored
      // after the workload, during the umount
      line({ t: 2500, op: 'write', offset: 1 * MiB, length: 4 * KiB, tag: { origin: 'unknown', ioClass: 5 } }), // unknown, journal
      line({ t: 2600, op: 'write', offset: 10 * MiB, length: 32 * KiB, tag: meta }), // freed: not scored
      // after the window (the read-only remount): not scored; a re-tag still goes to the window log
      line({ t: 3500, op: 'read', offset: 0, length: 4 * KiB, tag: meta }),
      line({ t: 3600, op: 'retag', cause: 'gone', offset: 10 * MiB, length: 64 * KiB, tag: meta }),
    ].join('\n') + '\n',
  );
  const window = { startMs: started + 1000, agentEndMs: started + 2200, endMs: started + 3000 };
  const named = [{ start: 1 * MiB, end: 2 * MiB, kind: 'journal' }];

  it('scores only the window, piece by piece, and counts the rest', async () => {
    const scored = await scoreWindow(log, truth(), window, '/mnt', join(dir, 'window.jsonl'), named);
    const r = scored.requestTime;
    expect(r.total).toEqual({ requests: 6, bytes: 8 * KiB + 128 * KiB + 64 * KiB + 16 * KiB + 4 * KiB + 32 * KiB });
    expect(r.freed).toEqual({ requests: 1, bytes: 32 * KiB });
    expect(r.origin.right).toEqual({ requests: 3, bytes: 8 * KiB + 128 * KiB + 16 * KiB });
    expect(r.origin.wrong).toEqual({ requests: 1, bytes: 64 * KiB });
    expect(r.origin.unknown).toEqual({ requests: 1, bytes: 4 * KiB });
    expect(r.ioClass.right).toEqual({ requests: 2, bytes: 8 * KiB + 128 * KiB });
    expect(r.ioClass.wrong).toEqual({ requests: 2, bytes: 64 * KiB + 16 * KiB });
    expect(scored.counts.byOp).toEqual({
      read: { requests: 2, bytes: 24 * KiB },
      write: { requests: 4, bytes: 228 * KiB },
      trim: { requests: 1, bytes: 1 * MiB },
    });
    expect(scored.counts.retags).toBe(2);
    expect(scored.counts.windowMs).toBe(2000);
    expect(scored.diagnosis).toEqual([
      { phase: 'workload', direction: 'write', truth: 'data (file < 1 MiB)', tagged: 'metadata', bytes: 64 * KiB, requests: 1 },
      { phase: 'umount', direction: 'write', truth: 'metadata: journal', tagged: 'unknown', bytes: 4 * KiB, requests: 1 },
    ]);
    expect(scored.dataMissesByDir).toEqual({ mail: 64 * KiB });
    const copied = readFileSync(join(dir, 'window.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { t?: number; sky?: string });
    expect(copied[0].sky).toBe('tag-log');
    expect(copied.slice(1).map((l) => l.t)).toEqual([1500, 1600, 1700, 1800, 1900, 2000, 2500, 2600, 3600]);
  });

  it('refuses a log without a header', async () => {
    const bad = join(dir, 'bad.jsonl');
    writeFileSync(bad, line({ t: 1, op: 'read', offset: 0, length: 4096, tag: null }) + '\n');
    await expect(scoreWindow(bad, truth(), window, '/mnt', join(dir, 'bad-window.jsonl'))).rejects.toThrow(/not a tag-log header/);
  });
});

describe('parseDebugfsExtents', () => {
  it('turns debugfs extents into volume ranges', () => {
    const text = 'Inode: 8   Type: regular\nEXTENTS:\n(0-8191):131072-139263, (8192):200000\n';
    expect(parseDebugfsExtents(text, 4096, 1 * MiB, 'journal')).toEqual([
      { start: 1 * MiB + 131072 * 4096, end: 1 * MiB + 139264 * 4096, kind: 'journal' },
      { start: 1 * MiB + 200000 * 4096, end: 1 * MiB + 200001 * 4096, kind: 'journal' },
    ]);
  });
});

describe('parseList', () => {
  it('keeps the canonical order and refuses unknown names', () => {
    expect(parseList('db,untar', ACCURACY_WORKLOADS, 'workload')).toEqual(['untar', 'db']);
    expect(parseList('all', ACCURACY_WORKLOADS, 'workload')).toEqual(['untar', 'find', 'cp', 'smallfiles', 'db']);
    expect(() => parseList('untar,tar', ACCURACY_WORKLOADS, 'workload')).toThrow(/unknown workload "tar"/);
  });
  it('runs the issue\'s three file systems for "all", and ext2/ext3 when named', () => {
    expect(resolveAccuracyConfig({ fs: 'all', size: '1G', volumeDir: '/dev/shm', agent: true, install: false }).fsTypes).toEqual(['ext4', 'xfs', 'btrfs']);
    expect(resolveAccuracyConfig({ fs: 'ext3,xfs,ext2', size: '1G', volumeDir: '/dev/shm', agent: true, install: false }).fsTypes).toEqual(['xfs', 'ext2', 'ext3']);
    expect(() => resolveAccuracyConfig({ fs: 'vfat', size: '1G', volumeDir: '/dev/shm', agent: true, install: false })).toThrow(/unknown file system "vfat" \(known: ext4, xfs, btrfs, ext2, ext3\)/);
  });
});

describe('--command (a workload of the user\'s)', () => {
  const base = { fs: 'ext4', size: '1G', volumeDir: '/dev/shm', agent: true, install: false };
  it('runs alone unless built-in workloads are named, and after them', () => {
    expect(resolveAccuracyConfig({ ...base, command: 'git init x' })).toMatchObject({ workloads: ['command'], command: 'git init x' });
    expect(resolveAccuracyConfig({ ...base, workloads: 'db,untar', command: 'true' }).workloads).toEqual(['untar', 'db', 'command']);
    expect(resolveAccuracyConfig({ ...base }).workloads).toEqual([...ACCURACY_WORKLOADS]);
    expect(resolveAccuracyConfig({ ...base }).command).toBeNull();
    expect(() => resolveAccuracyConfig({ ...base, command: '  ' })).toThrow(/--command is empty/);
  });
});

describe('--mkfs-options and --mount-options (held-out file system setups)', () => {
  const base = { fs: 'ext4', size: '1G', volumeDir: '/dev/shm', agent: true, install: false };
  it('split mkfs arguments on spaces and pass mount options as given; none by default', () => {
    expect(resolveAccuracyConfig({ ...base, mkfsOptions: ' -b 1024  -O ^has_journal', mountOptions: ' data=journal ' })).toMatchObject({
      mkfsOptions: ['-b', '1024', '-O', '^has_journal'],
      mountOptions: 'data=journal',
    });
    expect(resolveAccuracyConfig(base)).toMatchObject({ mkfsOptions: [], mountOptions: null });
  });
});

function fakeRun(ok: boolean): AccuracyRun {
  const report = emptyReport();
  report.total = { bytes: 100, requests: 2 };
  report.origin.right = { bytes: 99, requests: 1 };
  report.origin.unknown = { bytes: 1, requests: 1 };
  report.ioClass.right = { bytes: 50, requests: 1 };
  report.ioClass.wrong = { bytes: 50, requests: 1 };
  report.sizeClass.right = { bytes: 40, requests: 1 };
  report.sizeClass.wrong = { bytes: 60, requests: 1 };
  return {
    fs: 'xfs',
    workload: 'find',
    description: 'find',
    ok,
    ...(ok ? {} : { error: 'boom | bang' }),
    seconds: { setup: 0, traced: 0, umount: 0, truth: 0, total: 0 },
    agent: null,
    truth: null,
    counts: null,
    requestTime: ok ? report : null,
    afterRetag: null,
    diagnosis: [],
    dataMissesByDir: {},
  };
}

describe('rendering', () => {
  it('marks figures below the target and failed runs', () => {
    const table = renderSummaryTable([fakeRun(true), fakeRun(false)]);
    expect(table).toContain('| xfs | find | 2 | 100 B | 99.00% | – | 40.00% ✗ | – | 50.00% / – | 50.00% | 1.00% | 0 B |');
    expect(table).toContain('| xfs | find | failed: boom / bang |');
  });

  it('draws one bar per known figure and the target line', () => {
    const svg = renderSvg([fakeRun(true)], 'title');
    expect(svg.match(/<rect x=/g)?.length).toBe(4 + 2); // legend (4) + origin and size class at request time
    expect(svg).toContain('target 99%');
  });

  it('writes the table into the docs section and replaces only the table on the next run', () => {
    const report = { machine: { date: '2026-11-25T10:00:00Z', cpuModel: 'cpu', cores: 2, memoryGiB: 8, kernel: '6.1', commit: 'abc' }, runs: [fakeRun(true)] } as unknown as AccuracyBenchReport;
    const first = updateDocs('# Benchmarks\n\n## Other\ntext\n', report, '../bench/accuracy/results/a.md');
    expect(first).toContain('## Tag accuracy (`sky bench accuracy`) — issue 4');
    expect(first.indexOf('## Other')).toBeLessThan(first.indexOf('## Tag accuracy'));
    const withProse = first.replace('<!-- end of sky bench accuracy table -->', '<!-- end of sky bench accuracy table -->\n\nReading: prose.');
    const second = updateDocs(withProse, { ...report, runs: [fakeRun(false)] } as AccuracyBenchReport, 'b.md');
    expect(second).toContain('Reading: prose.');
    expect(second).toContain('failed: boom / bang');
    expect(second).not.toContain('99.00%');
    expect(second.match(/## Tag accuracy/g)?.length).toBe(1);
  });
});
