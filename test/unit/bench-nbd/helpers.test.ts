import { describe, expect, it } from 'vitest';
import {
  JOBS, expandArgv, parseFioOutput, renderMarkdownTable, renderRatioSvg, renderTerminalTable, spread,
  splitCommand, summarize, tableRows, type Sample,
} from '../../../src/cli/bench-nbd.js';

function fioJson(direction: 'read' | 'write', bwBytes: number, iops: number, error = 0): string {
  const side = { io_bytes: bwBytes * 10, bw_bytes: bwBytes, iops, clat_ns: { mean: 250_000, percentile: { '99.000000': 1_000_000 } } };
  const empty = { io_bytes: 0, bw_bytes: 0, iops: 0, clat_ns: { mean: 0 } };
  const job = { jobname: 'x', error, read: direction === 'read' ? side : empty, write: direction === 'write' ? side : empty };
  return JSON.stringify({ 'fio version': 'fio-3.33', jobs: [job] });
}

describe('server command templates', () => {
  it('splits and fills placeholders', () => {
    const argv = splitCommand('  nbdkit -f --unix {socket}  file {file} ');
    expect(argv).toEqual(['nbdkit', '-f', '--unix', '{socket}', 'file', '{file}']);
    expect(expandArgv(argv, { socket: '/s', file: '/i' })).toEqual(['nbdkit', '-f', '--unix', '/s', 'file', '/i']);
  });
  it('refuses unknown placeholders and empty commands', () => {
    expect(() => expandArgv(['x', '{nope}'], {})).toThrow(/unknown placeholder \{nope\}/);
    expect(() => splitCommand('   ')).toThrow(/empty/);
  });
});

describe('parseFioOutput', () => {
  it('skips the nbd engine banner before the JSON', () => {
    const result = parseFioOutput(`fio: connected to NBD server\n${fioJson('read', 2e9, 1907)}`, 'read');
    expect(result).toEqual({ bandwidthBytesPerSecond: 2e9, iops: 1907, latencyMeanUs: 250, latencyP99Us: 1000, ioBytes: 2e10 });
  });
  it('fails on a job error, on no data and on no JSON', () => {
    expect(() => parseFioOutput(fioJson('read', 1, 1, 5), 'read')).toThrow(/error 5/);
    expect(() => parseFioOutput(fioJson('read', 2e9, 1907), 'write')).toThrow(/no data/);
    expect(() => parseFioOutput('fio: nbd_connect_uri: connect: Connection refused', 'read')).toThrow(/no JSON/);
  });
});

describe('spread', () => {
  it('gives median, min and max', () => {
    expect(spread([3, 1, 2])).toEqual({ median: 2, min: 1, max: 3 });
    expect(spread([4, 1, 3, 2])).toEqual({ median: 2.5, min: 1, max: 4 });
    expect(spread([7])).toEqual({ median: 7, min: 7, max: 7 });
  });
});

describe('summarize and render', () => {
  const jobs = JOBS.filter((j) => j.id === 'randread' || j.id === 'seqwrite');
  const samples: Sample[] = [];
  const bandwidth = { sky: { seqwrite: [900e6, 1000e6, 1100e6], randread: [100e6, 80e6, 90e6] }, nbdkit: { seqwrite: [1000e6, 1000e6, 1000e6], randread: [100e6, 100e6, 100e6] } };
  for (const server of ['sky', 'nbdkit'] as const) {
    for (const job of jobs) {
      bandwidth[server][job.id as 'seqwrite' | 'randread'].forEach((bw, i) => {
        samples.push({ server, round: i + 1, job: job.id, bandwidthBytesPerSecond: bw, iops: bw / job.blockSizeBytes, latencyMeanUs: 10, latencyP99Us: 20, ioBytes: bw, loadAverage: 0.1 });
      });
    }
  }
  const summaries = summarize(samples, jobs, 'sky', 'nbdkit', 0.9);

  it('takes the ratio of medians and the range of per-round ratios', () => {
    const [write, read] = summaries;
    expect(write!.job).toBe('seqwrite');
    expect(write!.ratio).toBeCloseTo(1.0);
    expect([write!.ratioMin, write!.ratioMax]).toEqual([0.9, 1.1]);
    expect(write!.meetsTarget).toBe(true);
    expect(read!.ratio).toBeCloseTo(0.9);
    expect(read!.ratioMin).toBeCloseTo(0.8);
    expect(read!.servers.sky!.megabytesPerSecond).toEqual({ median: 90, min: 80, max: 100 });
  });

  it('renders aligned terminal rows, markdown and an SVG with one bar per job', () => {
    const rows = tableRows(summaries, 'sky', 'nbdkit', 0.9);
    expect(rows).toHaveLength(3);
    expect(rows[1]).toContain('1000 (900–1100)');
    const terminal = renderTerminalTable(rows).split('\n');
    expect(new Set(terminal.map((line) => line.length)).size).toBe(1);
    expect(renderMarkdownTable(rows).split('\n')[1]).toBe('| :--- | ---: | ---: | ---: | ---: | ---: | ---: |');
    const svg = renderRatioSvg(summaries, 'sky', 'nbdkit', 0.9);
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg.match(/<rect x=/g)).toHaveLength(2);
    expect(svg).toContain('target 0.9×');
  });

  it('ratios below the target are marked', () => {
    const low = summarize(samples, jobs, 'sky', 'nbdkit', 0.95);
    expect(low.map((s) => s.meetsTarget)).toEqual([true, false]);
    expect(tableRows(low, 'sky', 'nbdkit', 0.95)[2]).toContain('MISSED');
  });
});
