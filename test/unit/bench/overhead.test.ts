/**
 * `sky bench overhead`: the pure parts (parsing, schedule, statistics, report rendering) and the harness end to
 * end in quick mode on the copy and varmail workloads — untraced always, and under each `sky trace` backend when
 * the tracer works on this machine (the harness probes it and skips a backend that does not).
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  aggregate,
  median,
  niceStep,
  overheadPercent,
  parseBackends,
  parseCaches,
  parseSize,
  parseTraceSummary,
  parseWorkloads,
  renderMarkdown,
  renderSvg,
  renderTable,
  resolveConfig,
  runOverheadBench,
  runSchedule,
  summarize,
  type OverheadReport,
  type RunSample,
} from '../../../src/cli/bench-overhead.js';

function sample(partial: Partial<RunSample> & Pick<RunSample, 'mode' | 'round' | 'seconds'>): RunSample {
  return { workload: 'copy', cache: 'cold', ok: true, wallSeconds: partial.seconds + 1, userSeconds: 0, systemSeconds: 0, exitCode: 0, ...partial };
}

describe('bench overhead: parsing', () => {
  it('parses sizes with binary units', () => {
    expect(parseSize('500M')).toBe(500 * 2 ** 20);
    expect(parseSize('1.5G')).toBe(1.5 * 2 ** 30);
    expect(parseSize('4096')).toBe(4096);
    expect(parseSize('16KiB')).toBe(16384);
    expect(() => parseSize('lots')).toThrow();
  });

  it('accepts workload aliases and keeps order without duplicates', () => {
    expect(parseWorkloads('cp,mail,cp')).toEqual(['copy', 'varmail']);
    expect(parseWorkloads('gpg,search,db')).toEqual(['encryption', 'find', 'database']);
    expect(parseWorkloads('all')).toHaveLength(5);
    expect(() => parseWorkloads('fio')).toThrow(/unknown workload/);
  });

  it('parses backends and cache states', () => {
    expect(parseBackends('ebpf,ptrace')).toEqual(['ebpf', 'ptrace']);
    expect(parseBackends('none')).toEqual([]);
    expect(() => parseBackends('dtrace')).toThrow();
    expect(parseCaches('warm,cold')).toEqual(['warm', 'cold']);
    expect(() => parseCaches('hot')).toThrow();
  });

  it('resolves quick and scaled configurations', () => {
    const quick = resolveConfig({ quick: true });
    expect(quick.runs).toBe(1);
    expect(quick.install).toBe(false);
    expect(quick.fileBytes).toBeLessThanOrEqual(32 * 2 ** 20);
    const full = resolveConfig({});
    expect(full.runs).toBeGreaterThanOrEqual(5);
    expect(full.fileBytes).toBe(500 * 2 ** 20);
    expect(full.caches).toEqual(['cold', 'warm']);
    expect(full.varmail).toMatchObject({ nfiles: 1000, nthreads: 16, filesizeBytes: 16384, appendBytes: 16384, iosizeBytes: 2 ** 20 });
    const small = resolveConfig({ scale: '0.1' });
    expect(small.fileBytes).toBe(Math.round(50 * 2 ** 20));
    expect(small.varmail.loops).toBe(3000);
    expect(() => resolveConfig({ runs: '0' })).toThrow();
  });
});

describe('bench overhead: schedule and statistics', () => {
  it('alternates untraced and each backend within every round', () => {
    const schedule = runSchedule({ caches: ['cold', 'warm'], runs: 2, backends: ['ebpf', 'ptrace'] });
    expect(schedule.slice(0, 6).map((s) => `${s.cache}:${s.round}:${s.mode}`)).toEqual([
      'cold:1:none', 'cold:1:ebpf', 'cold:1:ptrace', 'cold:2:none', 'cold:2:ebpf', 'cold:2:ptrace',
    ]);
    expect(schedule).toHaveLength(12);
    expect(schedule[6]).toEqual({ cache: 'warm', round: 1, mode: 'none' });
  });

  it('computes medians, spread and overheads', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 2, 3])).toBe(2.5);
    expect(summarize([2, 4, 9])).toMatchObject({ n: 3, median: 4, min: 2, max: 9, mean: 5 });
    expect(overheadPercent(10.2, 10)).toBeCloseTo(2, 10);
    expect(overheadPercent(9, 10)).toBeCloseTo(-10, 10);
    expect(Number.isNaN(overheadPercent(1, 0))).toBe(true);
  });

  it('aggregates rows with paired overheads and ignores failed runs', () => {
    const samples: RunSample[] = [
      sample({ mode: 'none', round: 1, seconds: 10 }),
      sample({ mode: 'ebpf', round: 1, seconds: 10.1, trace: { events: 100, lost: 0, raw: '' } }),
      sample({ mode: 'ptrace', round: 1, seconds: 15 }),
      sample({ mode: 'none', round: 2, seconds: 11 }),
      sample({ mode: 'ebpf', round: 2, seconds: 11.22, trace: { events: 120, lost: 2, raw: '' } }),
      sample({ mode: 'ptrace', round: 2, seconds: Number.NaN, ok: false, error: 'boom' }),
    ];
    const [row] = aggregate(samples, ['copy'], ['cold'], ['ebpf', 'ptrace']);
    expect(row.untraced.median).toBeCloseTo(10.5);
    const ebpf = row.backends.ebpf!;
    expect(ebpf.summary.median).toBeCloseTo(10.66);
    expect(ebpf.overheadPercent).toBeCloseTo((10.66 / 10.5 - 1) * 100);
    expect(ebpf.paired.min).toBeCloseTo(1);
    expect(ebpf.paired.max).toBeCloseTo(2);
    expect(ebpf.events).toBe(110);
    expect(ebpf.lost).toBe(2);
    expect(row.backends.ptrace!.failures).toBe(1);
    expect(row.backends.ptrace!.summary.n).toBe(1);
  });

  it('reads event counts from JSON or text tracer summaries', () => {
    expect(parseTraceSummary('hello\n{"summary":{"events":1234,"lost":5}}\n')).toMatchObject({ events: 1234, lost: 5 });
    expect(parseTraceSummary('traced 3 processes\nevents: 42,000\nlost: 0\n')).toMatchObject({ events: 42000, lost: 0 });
    expect(parseTraceSummary('sky trace: 1234 events, 0 lost, 3 processes\nFiles touched (2):\n')).toMatchObject({ events: 1234, lost: 0 });
    expect(parseTraceSummary('sky trace: 99 events, 7 LOST (insights after the loss are marked uncertain), 1 processes\n')).toMatchObject({ events: 99, lost: 7 });
    expect(parseTraceSummary('nothing useful')).toMatchObject({ events: null, lost: null });
  });

  it('picks round axis steps', () => {
    expect(niceStep(10)).toBe(2);
    expect(niceStep(1000)).toBe(200);
    expect(niceStep(3)).toBe(1);
  });
});

describe('bench overhead: report', () => {
  const samples: RunSample[] = [
    sample({ mode: 'none', round: 1, seconds: 10 }),
    sample({ mode: 'ebpf', round: 1, seconds: 10.1 }),
    sample({ mode: 'ptrace', round: 1, seconds: 13 }),
    sample({ workload: 'varmail', mode: 'none', round: 1, seconds: 5 }),
    sample({ workload: 'varmail', mode: 'ebpf', round: 1, seconds: 5.5 }),
    sample({ workload: 'varmail', mode: 'ptrace', round: 1, seconds: 12 }),
  ];
  const rows = aggregate(samples, ['copy', 'varmail'], ['cold'], ['ebpf', 'ptrace']);

  it('renders a table with medians, spread, overheads and the eBPF target mark', () => {
    const table = renderTable(rows, ['ebpf', 'ptrace']);
    expect(table).toContain('| File copy | cold | 10.00 [10.00–10.00] | 10.10 [10.10–10.10] | **+1.0%** ✓');
    expect(table).toContain('**+10.0%** ✗');
    expect(table).toContain('**+140.0%**');
  });

  it('renders markdown with the machine and date, and a well-formed SVG', () => {
    const config = resolveConfig({ runs: '1', workloads: 'copy,varmail', cache: 'cold' });
    const report: OverheadReport = {
      version: 1,
      machine: { cpuModel: 'Test CPU', cores: 2, memoryGiB: 24, kernel: '6.1.0', os: 'Debian 12', fileSystem: 'ext4 (/dev/vda)', date: '2026-01-01T00:00:00.000Z', loadAverageStart: [1, 1, 1], loadAverageEnd: [2, 2, 2], tools: { gpg: '2.2.40' }, commit: 'abc1234' },
      config,
      workloadDescriptions: { copy: 'cp of a file', varmail: 'mail' },
      notes: ['a note'],
      durationSeconds: 75,
      rows,
      samples,
    };
    const markdown = renderMarkdown(report);
    expect(markdown).toContain('Test CPU, 2 cores');
    expect(markdown).toContain('Linux 6.1.0');
    expect(markdown).toContain('2026-01-01');
    expect(markdown).toContain('shared with other engineers');
    expect(markdown).toContain('- a note');
    expect(markdown).toContain('ebpf: tracer CPU s incl. start-up');
    const svg = renderSvg(rows, ['ebpf', 'ptrace'], ['cold'], 'title & more');
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg.trim().endsWith('</svg>')).toBe(true);
    expect(svg).not.toMatch(/NaN|undefined/);
    expect(svg).toContain('title &amp; more');
    expect((svg.match(/<rect [^>]*fill="#2f6db5"/g) ?? []).length).toBeGreaterThanOrEqual(4);
  });
});

describe('bench overhead: quick run end to end', () => {
  const haveGcc = spawnSync('sh', ['-c', 'command -v gcc'], { stdio: 'ignore' }).status === 0;
  const temp = fs.mkdtempSync(path.join(os.tmpdir(), 'sky-bench-overhead-'));
  afterAll(() => fs.rmSync(temp, { recursive: true, force: true }));

  it.skipIf(!haveGcc)('runs cp and varmail untraced (and traced when `sky trace` works) and writes the report', async () => {
    // Warm caches: dropping the page cache would disturb whatever else runs on the machine.
    const config = resolveConfig({ quick: true, workloads: 'copy,varmail', cache: 'warm', workDir: path.join(temp, 'work'), out: path.join(temp, 'results', 'quick.md') });
    const lines: string[] = [];
    const log = { elapsed: () => '0s', info: (m: string) => lines.push(m), write: (t: string) => lines.push(t) };
    const { report, files } = await runOverheadBench(config, log as never);
    for (const id of ['copy', 'varmail'] as const) {
      const row = report.rows.find((r) => r.workload === id && r.cache === 'warm');
      expect(row, `${id} row`).toBeDefined();
      expect(row!.untraced.n).toBe(1);
      expect(row!.untraced.median).toBeGreaterThan(0);
      for (const backend of report.config.backends) {
        expect(row!.backends[backend]?.summary.n, `${id} ${backend}: ${JSON.stringify(report.samples.filter((s) => s.mode === backend).map((s) => s.error))}`).toBe(1);
      }
    }
    const varmail = report.samples.find((s) => s.workload === 'varmail' && s.mode === 'none');
    expect(varmail?.extra?.errors).toBe(0);
    expect(varmail?.extra?.flowops).toBe(320 * 13);
    expect(fs.readFileSync(files.markdown, 'utf8')).toContain('| File copy | warm |');
    expect(JSON.parse(fs.readFileSync(files.json, 'utf8')).rows).toHaveLength(2);
    expect(fs.readFileSync(files.svg, 'utf8')).toContain('</svg>');
    expect(lines.join('')).toMatch(/Mail server\s+warm none\s+run 1\/1/);
    // Nothing left behind: the scratch directory is removed.
    expect(fs.readdirSync(path.join(temp, 'work')).filter((n) => n.startsWith('run-'))).toEqual([]);
  }, 300_000);
});
