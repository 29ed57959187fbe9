/**
 * Information gathering end to end: an Engine with `layers: [classify, tag-log]` on a memory device, a FileExtents
 * hint fed to the volume's index, real NBD requests from qemu-io (reads, writes, write-zeroes, discard), a class
 * change that re-tags what was seen, then `sky report` (the built CLI) on the log, with and without a ground truth.
 * Also: a tag log on a full disk costs the requests nothing; one that cannot be opened stops the engine's start.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine, parseConfig } from '../../../src/engine/index.js';
import { GroundTruth } from '../../../src/insight/extents/index.js';
import { PLOT_NAMES, type TagLogReport } from '../../../src/report/index.js';
import { makeTempDir, qemuIo, useIntegrationCleanup } from '../../helpers/index.js';

useIntegrationCleanup();

const KiB = 1024;
const MiB = 1024 * KiB;
const SKY_MAIN = path.resolve('dist/cli/main.js');

function engineFor(dir: string, logPath: string): Engine {
  const config = parseConfig(
    {
      dataDir: dir,
      listen: { socket: 'nbd.sock' },
      log: { level: 'silent' },
      exports: [{ name: 'vol', device: { type: 'memory', size: '64M' }, layers: [{ type: 'classify' }, { type: 'tag-log', path: logPath }] }],
    },
    'test',
  );
  return new Engine(config, pino({ level: 'silent' }));
}

const uri = (dir: string) => `nbd+unix:///vol?socket=${path.join(dir, 'nbd.sock')}`;

function sky(args: string[]): { code: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [SKY_MAIN, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe('tag log of a served volume, and sky report on it', () => {
  let dir: string;
  let logPath: string;
  let lines: Record<string, any>[];

  beforeAll(async () => {
    dir = makeTempDir('sky-it-report-');
    logPath = path.join(dir, 'vol.tags.jsonl');
    const engine = engineFor(dir, logPath);
    await engine.start();
    try {
      const index = engine.semantics.get('vol')!;
      // A 256 KiB file at 1 MiB of the volume, 200,000 bytes long (class 4, < 1 MiB), written by pid 77 (cp).
      expect(index.accept({ type: 'FileExtents', fileId: 'ino:12', path: '/data/f1', size: 200_000, extents: [{ volumeOffset: 1 * MiB, length: 256 * KiB }], pid: 77, process: 'cp' })).toEqual({ ok: true });
      const io = await qemuIo(uri(dir), [
        'write -P 0xab 1M 256k', // data: an in-place write of the file's extent
        'read -P 0xab 1M 128k', // data
        'write -P 0x01 0 64k', // metadata
        'read -P 0x01 0 64k', // metadata
        'write -z 4M 64k', // write-zeroes: metadata
        'discard 8M 64k', // trim: metadata
      ]);
      expect(io.code, io.stderr + io.stdout).toBe(0);
      // The file grew to 3 MB (class 2): the range already seen is re-tagged.
      expect(index.accept({ type: 'FileClass', fileId: 'ino:12', size: 3_000_000, ioClass: 2 })).toEqual({ ok: true });
    } finally {
      await engine.stop();
    }
    lines = readFileSync(logPath, 'utf8').trimEnd().split('\n').map((line) => JSON.parse(line));
  });

  it('logged the header, every request with its tag, the re-tag, and the end line', () => {
    expect(lines[0]).toMatchObject({ sky: 'tag-log', v: 1, volume: 'vol', size: 64 * MiB });
    const f1 = { origin: 'data', ioClass: 4, fileId: 'ino:12', path: '/data/f1', fileSize: 200_000, pid: 77, exe: 'cp' };
    const meta = { origin: 'metadata', ioClass: 5 };
    const records = lines.slice(1).map(({ t, ...rest }) => {
      expect(typeof t).toBe('number');
      return rest;
    });
    expect(records).toEqual([
      { op: 'write', offset: 1 * MiB, length: 256 * KiB, tag: f1 },
      { op: 'read', offset: 1 * MiB, length: 128 * KiB, tag: f1 },
      { op: 'write', offset: 0, length: 64 * KiB, tag: meta },
      { op: 'read', offset: 0, length: 64 * KiB, tag: meta },
      { op: 'zero', offset: 4 * MiB, length: 64 * KiB, tag: meta },
      { op: 'trim', offset: 8 * MiB, length: 64 * KiB, tag: meta },
      { op: 'retag', cause: 'class', offset: 1 * MiB, length: 256 * KiB, tag: { ...f1, ioClass: 2, fileSize: 3_000_000 } },
      { op: 'end', dropped: 0, lines: 7 },
    ]);
    const times = lines.slice(1).map((line) => line.t as number);
    expect([...times].sort((a, b) => a - b)).toEqual(times);
  });

  it('sky report writes report.md, report.json and the plots, with exact bytes by origin', () => {
    const out = path.join(dir, 'report');
    const result = sky(['report', logPath, '--out', out]);
    expect(result.stderr).toBe(`sky report: wrote ${2 + PLOT_NAMES.length} files to ${out}\n`);
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(readFileSync(path.join(out, 'report.md'), 'utf8'));
    for (const plot of PLOT_NAMES) expect(readFileSync(path.join(out, plot), 'utf8')).toMatch(/^<svg [^]*<\/svg>\n$/);
    const report = JSON.parse(readFileSync(path.join(out, 'report.json'), 'utf8')) as TagLogReport;
    expect(report.byOrigin.data.read).toEqual({ requests: 1, bytes: 128 * KiB });
    expect(report.byOrigin.data.write).toEqual({ requests: 1, bytes: 256 * KiB });
    expect(report.byOrigin.data.total).toEqual({ requests: 2, bytes: 384 * KiB });
    expect(report.byOrigin.metadata.read).toEqual({ requests: 1, bytes: 64 * KiB });
    expect(report.byOrigin.metadata.write).toEqual({ requests: 1, bytes: 64 * KiB });
    expect(report.byOrigin.metadata.zero).toEqual({ requests: 1, bytes: 64 * KiB });
    expect(report.byOrigin.metadata.trim).toEqual({ requests: 1, bytes: 64 * KiB });
    expect(report.byOrigin.unknown.total).toEqual({ requests: 0, bytes: 0 });
    expect(report.bySize['file < 1 MiB']!.total.bytes).toBe(384 * KiB);
    expect(report.byProcess[0]).toMatchObject({ process: 'cp[77]', pid: 77, exe: 'cp', total: { requests: 2, bytes: 384 * KiB } });
    expect(report.topFiles[0]).toMatchObject({ fileId: 'ino:12', path: '/data/f1', fileSize: 200_000 });
    expect(report.retags.class).toEqual({ requests: 1, bytes: 256 * KiB });
    // 64 data blocks and 16 metadata blocks written and still alive; the zeroed and trimmed ones never lived.
    expect(report.lifetimes.alive).toBe(80);
    expect(report.log).toMatchObject({ requests: 6, retags: 1, ended: true, truncated: false, dropped: 0 });
  });

  it('with --truth scores the tags: the class is wrong at request time and right after the re-tag', () => {
    const truthPath = path.join(dir, 'truth.json');
    const truth = GroundTruth.fromParts({
      volumeBytes: 64 * MiB, fsType: 'synthetic', offsetInExport: 0, deviceBytes: 64 * MiB, spaceMap: 'none', spaceIntervals: [],
      files: [{ owner: { path: '/data/f1', sizeBytes: 3_000_000, ino: 12 }, extents: [{ volumeOffset: 1 * MiB, length: 256 * KiB }] }],
    });
    writeFileSync(truthPath, JSON.stringify(truth.toJSON()));
    const out = path.join(dir, 'scored');
    const result = sky(['report', logPath, '--truth', truthPath, '--out', out, '--json']);
    expect(result.code, result.stderr).toBe(0);
    const report = JSON.parse(result.stdout) as TagLogReport;
    const { atRequest, afterRetag, retagged } = report.accuracy!;
    // Reads and writes: 512 KiB in 4 requests; origin right everywhere.
    expect(atRequest.origin.right).toEqual({ bytes: 512 * KiB, requests: 4 });
    expect(atRequest.ioClass.right).toEqual({ bytes: 128 * KiB, requests: 2 });
    expect(atRequest.ioClass.wrong).toEqual({ bytes: 384 * KiB, requests: 2 });
    expect(afterRetag.ioClass.right).toEqual({ bytes: 512 * KiB, requests: 4 });
    expect(retagged).toEqual({ requests: 2, bytes: 384 * KiB });
    // Size class from the tags' own file size (what the table gives it), apart from the I/O class after rules.
    expect(atRequest.sizeClass.right).toEqual({ bytes: 128 * KiB, requests: 2 });
    expect(afterRetag.sizeClass.right).toEqual({ bytes: 512 * KiB, requests: 4 });
    const markdown = readFileSync(path.join(out, 'report.md'), 'utf8');
    expect(markdown).toContain('| at request time | 100.00% | 100.00% | 25.00% | 25.00% | 50.00% | 512 KiB |');
    expect(markdown).toContain('| after re-tags | 100.00% | 100.00% | 100.00% | 100.00% | 100.00% | 512 KiB |');
  });

  it('sky report explains a missing file, a file that is not a tag log, and a cut-short last line', () => {
    const missing = sky(['report', path.join(dir, 'nope.jsonl')]);
    expect(missing).toMatchObject({ code: 1, stdout: '' });
    expect(missing.stderr).toBe(`sky report: no such file: ${path.join(dir, 'nope.jsonl')}\n`);
    const notLog = path.join(dir, 'other.jsonl');
    writeFileSync(notLog, '{"hello":"world"}\n');
    expect(sky(['report', notLog])).toMatchObject({ code: 1, stderr: `sky report: ${notLog} is not a Sky tag log: its first line is not a tag-log header ({"sky":"tag-log",...})\n` });
    const cut = path.join(dir, 'cut.jsonl');
    const text = readFileSync(logPath, 'utf8');
    writeFileSync(cut, text.slice(0, text.indexOf('"op":"trim"') + 8));
    const result = sky(['report', cut]);
    expect(result.code).toBe(0);
    expect(result.stderr).toContain(`sky report: warning: the last line of ${cut} is cut short`);
    expect(result.stdout).toContain('**Note:** the last line was cut short');
    expect(existsSync(path.join(dir, 'cut-report', 'report.md'))).toBe(true);
  });
});

describe('tag-log layer config', () => {
  it('names the key when the path is missing or an option is unknown', async () => {
    const dir = makeTempDir('sky-it-report-config-');
    for (const [layer, message] of [
      [{ type: 'tag-log' }, 'exports.0.layers.1: path: '],
      [{ type: 'tag-log', path: 'x.jsonl', bogus: 1 }, 'exports.0.layers.1: : Unrecognized key: "bogus"'],
    ] as const) {
      const config = parseConfig({ dataDir: dir, listen: { socket: 'nbd.sock' }, log: { level: 'silent' }, exports: [{ name: 'vol', device: { type: 'memory', size: '1M' }, layers: [{ type: 'classify' }, layer] }] }, 'test');
      const engine = new Engine(config, pino({ level: 'silent' }));
      await expect(engine.start()).rejects.toThrow(message);
      await engine.stop();
    }
  });
});

describe('a tag log that cannot be written', () => {
  for (const [what, target] of [['on a full disk (/dev/full)', () => '/dev/full']] as const) {
    it(`${what} does not fail requests`, async () => {
      const dir = makeTempDir('sky-it-report-fail-');
      writeFileSync(path.join(dir, 'file'), 'x');
      const engine = engineFor(dir, target(dir));
      const stderrWrite = process.stderr.write;
      const warnings: string[] = [];
      // The layer's one warning goes to stderr; capture it to check it is there once.
      process.stderr.write = ((chunk: string | Uint8Array) => {
        warnings.push(String(chunk));
        return true;
      }) as typeof process.stderr.write;
      try {
        await engine.start();
        const io = await qemuIo(uri(dir), Array.from({ length: 40 }, (_, k) => [`write -P ${k + 1} ${k}M 1M`, `read -P ${k + 1} ${k}M 1M`]).flat(), { timeout_ms: 60_000 });
        expect(io.code, io.stderr + io.stdout).toBe(0);
        await new Promise((resolve) => setTimeout(resolve, 200));
      } finally {
        await engine.stop();
        process.stderr.write = stderrWrite;
      }
      expect(warnings.filter((w) => w.startsWith('sky tag-log: warning:'))).toHaveLength(1);
    });
  }

  it('under a path that is a file fails the engine start, naming the path', async () => {
    const dir = makeTempDir('sky-it-report-fail-');
    writeFileSync(path.join(dir, 'file'), 'x');
    const engine = engineFor(dir, path.join(dir, 'file', 'log.jsonl'));
    try {
      await expect(engine.start()).rejects.toThrow(/tag-log: cannot open .*file\/log.jsonl: ENOTDIR/);
    } finally {
      await engine.stop();
    }
  });
});
