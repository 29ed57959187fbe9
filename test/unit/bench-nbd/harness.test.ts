// End to end: the harness with nbdkit standing in for Sky (the same override `--sky-cmd` offers), one short round.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JOBS, nbdkitArgv, runBenchNbd, type BenchReport } from '../../../src/cli/bench-nbd.js';

describe('sky bench nbd harness (nbdkit vs nbdkit)', () => {
  const outDir = path.join(os.tmpdir(), `sky-bench-nbd-test-${process.pid}`);
  let imageDir = '';
  beforeAll(async () => { imageDir = await fs.mkdtemp('/dev/shm/sky-bench-nbd-test-'); });
  afterAll(async () => {
    await fs.rm(outDir, { recursive: true, force: true });
    await fs.rm(imageDir, { recursive: true, force: true });
  });

  it('measures every job on both servers, writes md/json/svg and leaves nothing running', async () => {
    const lines: string[] = [];
    const outcome = await runBenchNbd(
      {
        rounds: 1, runtimeSeconds: 1, rampSeconds: 0, imageSizeBytes: 32 << 20, imageDir, outDir,
        jobs: JOBS, targetRatio: 0.9, sky: { name: 'sky', argv: nbdkitArgv() }, anchor: { name: 'nbdkit', argv: nbdkitArgv() },
        skyOverridden: true,
      },
      (line) => lines.push(line),
      new AbortController().signal,
    );
    expect(outcome.report.samples).toHaveLength(JOBS.length * 2);
    for (const sample of outcome.report.samples) expect(sample.iops).toBeGreaterThan(0);
    for (const summary of outcome.report.summaries) expect(summary.ratio).toBeGreaterThan(0);
    const json = JSON.parse(await fs.readFile(outcome.files.json, 'utf8')) as BenchReport;
    expect(json.machine.nbdkit).toMatch(/^nbdkit /);
    expect(await fs.readFile(outcome.files.markdown, 'utf8')).toContain('Harness validation run');
    expect(await fs.readFile(outcome.files.svg, 'utf8')).toMatch(/^<svg/);
    expect(lines.some((line) => line.includes('[8/8]'))).toBe(true);
    expect(await fs.readdir(imageDir)).toEqual([]);
  });

  it('fails cleanly when a server cannot start', async () => {
    const run = runBenchNbd(
      {
        rounds: 1, runtimeSeconds: 1, rampSeconds: 0, imageSizeBytes: 1 << 20, imageDir, outDir,
        jobs: JOBS.slice(0, 1), targetRatio: 0.9, sky: { name: 'sky', argv: ['sh', '-c', 'echo no such server; exit 3'] },
        anchor: { name: 'nbdkit', argv: nbdkitArgv() }, skyOverridden: true,
      },
      () => undefined,
      new AbortController().signal,
    );
    await expect(run).rejects.toThrow(/sky server exited before it was ready:\nno such server/);
    expect(await fs.readdir(imageDir)).toEqual([]);
  });

  it('on abort (Ctrl-C) stops both servers and removes the images', async () => {
    const controller = new AbortController();
    const started = Date.now();
    const run = runBenchNbd(
      {
        rounds: 1, runtimeSeconds: 30, rampSeconds: 0, imageSizeBytes: 8 << 20, imageDir, outDir,
        jobs: JOBS.slice(0, 1), targetRatio: 0.9, sky: { name: 'sky', argv: nbdkitArgv() }, anchor: { name: 'nbdkit', argv: nbdkitArgv() },
        skyOverridden: true,
      },
      (line) => { if (line.startsWith('measuring')) setTimeout(() => controller.abort(new Error('interrupted')), 500); },
      controller.signal,
    );
    await expect(run).rejects.toThrow();
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(await fs.readdir(imageDir)).toEqual([]);
    const servers = execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' }).split('\n').filter((line) => line.includes(imageDir));
    expect(servers).toEqual([]);
  });
});
