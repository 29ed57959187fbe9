/**
 * `sky bench accuracy` end to end on one small workload: a real engine (`sky serve` with classify + tag-log), a real
 * volume (nbdfuse + loop + ext4), the small-file workload traced by the real `sky agent` (eBPF), ground truth from
 * the read-only remounted file system, and the scored report. Checks the report's structure and that its figures
 * are consistent with each other — not a target: the figures are what the bench is for.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { AccuracyBenchReport } from '../../../src/cli/bench-accuracy.js';

const ROOT = resolve(import.meta.dirname, '..', '..', '..');
const out = mkdtempSync(join(tmpdir(), 'sky-accuracy-it-'));
afterAll(() => rmSync(out, { recursive: true, force: true }));

function mounts(): string {
  return readFileSync('/proc/self/mountinfo', 'utf8');
}

describe('sky bench accuracy (ext4, smallfiles, sky agent)', () => {
  it('runs the workload traced, builds the truth and scores every request', () => {
    const result = spawnSync(
      process.execPath,
      [join(ROOT, 'dist', 'cli', 'main.js'), 'bench', 'accuracy', '--fs', 'ext4', '--workloads', 'smallfiles', '--size', '1G', '--smallfiles-files', '200', '--smallfiles-loops', '400', '--agent-linger', '120', '--out', out],
      { encoding: 'utf8', timeout: 600_000 },
    );
    expect(result.status, `${result.stdout}\n${result.stderr}`).toBe(0);
    // Progress lines name the phases as they happen.
    expect(result.stderr).toMatch(/ext4 smallfiles: setup \(untraced\)/);
    expect(result.stderr).toMatch(/ext4 smallfiles: traced phase: sky agent -- /);
    expect(result.stderr).toMatch(/ext4 smallfiles: ground truth/);

    const files = readdirSync(out);
    const json = files.find((f) => /^accuracy-.*\.json$/.test(f));
    expect(json).toBeDefined();
    const base = json!.replace(/\.json$/, '');
    expect(files).toEqual(expect.arrayContaining([`${base}.md`, `${base}.svg`]));
    expect(readFileSync(join(out, `${base}.svg`), 'utf8')).toMatch(/^<svg /);
    const markdown = readFileSync(join(out, `${base}.md`), 'utf8');
    expect(markdown).toContain('| fs | workload | requests | bytes scored | origin bytes right (request time)');
    expect(markdown).toMatch(/\| ext4 \| smallfiles \| [\d,]+ \|/);

    const report = JSON.parse(readFileSync(join(out, json!), 'utf8')) as AccuracyBenchReport;
    expect(report.version).toBe(1);
    expect(report.runs).toHaveLength(1);
    const run = report.runs[0];
    expect(run.error).toBeUndefined();
    expect(run).toMatchObject({ fs: 'ext4', workload: 'smallfiles', ok: true });
    expect(run.agent?.exitCode).toBe(0);
    expect(run.agent?.summary).toMatch(/hint channel: delivered/);

    // The truth's cross-checks against the file system's own space map are all zero.
    const stats = run.truth!.stats;
    expect(stats.fileBytesOnFreeSpace).toBe(0);
    expect(stats.fileBytesOnStaticMetadata).toBe(0);
    expect(stats.fileBytesOwnerMismatch).toBe(0);
    // varmail keeps about 80% of its 200-file set (it deletes and re-creates during the run).
    expect(stats.files).toBeGreaterThan(100);
    expect(stats.files).toBeLessThanOrEqual(200);

    const r = run.requestTime!;
    const origin = r.origin;
    const scoredBytes = origin.right.bytes + origin.wrong.bytes + origin.unknown.bytes;
    // Every byte is scored or counted as freed; every request is scored or counted as freed.
    expect(scoredBytes + r.freed.bytes).toBe(r.total.bytes);
    expect(origin.right.requests + origin.wrong.requests + origin.unknown.requests + r.freed.requests).toBe(r.total.requests);
    expect(r.total.requests).toBe(run.counts!.byOp.read.requests + run.counts!.byOp.write.requests);
    // varmail writes and fsyncs: megabytes of writes, and its file data is found as data.
    expect(run.counts!.byOp.write.bytes).toBeGreaterThan(1024 * 1024);
    expect(origin.byTruth.data.right.bytes).toBeGreaterThan(0);
    expect(origin.byTruth.metadata.right.bytes).toBeGreaterThan(0);

    const pct = (100 * origin.right.bytes) / scoredBytes;
    expect(pct).toBeGreaterThan(0);
    expect(pct).toBeLessThanOrEqual(100);
    const after = run.afterRetag!;
    const afterBytes = after.origin.right.bytes + after.origin.wrong.bytes + after.origin.unknown.bytes;
    expect(afterBytes).toBe(scoredBytes);
    // Torn down: nothing of this run stays mounted or attached, and its work dir is gone.
    const workDir = /work dir (\S+)/.exec(result.stderr)?.[1];
    expect(workDir).toMatch(/^\/tmp\/sky-accuracy-/);
    expect(mounts()).not.toContain(workDir);
    expect(spawnSync('losetup', ['-a'], { encoding: 'utf8' }).stdout).not.toContain(workDir);
    expect(existsSync(workDir!)).toBe(false);
  }, 660_000);
});
