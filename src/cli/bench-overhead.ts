/**
 * `sky bench overhead`: what tracing costs a workload. The paper's five workloads (gpg encryption, find over a
 * kernel source tree, cp of a large file, a varmail-like mail server, PostgreSQL under pgbench), each run
 * untraced and under each `sky trace` backend, alternating within every round (untraced, ebpf, ptrace, untraced,
 * ...), with cold caches (as in the paper) and warm caches (harsher: no disk time to hide the tracer behind).
 * Reports medians, min/max and the overhead in percent, as markdown, JSON and an SVG bar chart in
 * bench/overhead/results/ (the lead merges them into docs/benchmarks.md). Method: bench/overhead/README.md.
 *
 * What is timed: the workload's own run time, measured by a small C helper (bench/overhead/timed-run.c) around
 * fork/exec/wait of the workload, started inside the tracer, so tracer start-up and shut-down are outside the
 * clock (they are reported separately as wall time). For the database it is pgbench's run time while the
 * server's process tree is traced. Every process started here is stopped by its pid, on failure and on Ctrl-C.
 */
import { spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomFillSync } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, Option } from 'commander';
import {
  capture, findKernelTarball, findPostgresBin, killGroup, packageInstalled, pidAlive, positiveInt, readTail, settlesWithin, sleep, startProcess, userIds,
  type Finished, type StartOptions, type Started,
} from './bench-processes.js';
import { escapeXml } from '../report/svg.js';

// ---------------------------------------------------------------------------------------------------------------
// What is measured

export const WORKLOAD_IDS = ['encryption', 'find', 'copy', 'varmail', 'database'] as const;
export type WorkloadId = (typeof WORKLOAD_IDS)[number];
export type Backend = 'ebpf' | 'ptrace';
export type TraceMode = 'none' | Backend;
export type CacheState = 'cold' | 'warm';

const WORKLOAD_ALIASES: Record<string, WorkloadId> = {
  encryption: 'encryption', encrypt: 'encryption', gpg: 'encryption',
  find: 'find', search: 'find', 'file-search': 'find',
  copy: 'copy', cp: 'copy', 'file-copy': 'copy',
  varmail: 'varmail', mail: 'varmail', 'mail-server': 'varmail',
  database: 'database', db: 'database', postgres: 'database', postgresql: 'database', pgbench: 'database',
};

export const WORKLOAD_LABELS: Record<WorkloadId, string> = {
  encryption: 'Encryption',
  find: 'File search',
  copy: 'File copy',
  varmail: 'Mail server',
  database: 'Database server',
};

/** The VEE'17 paper's table (seconds with and without Sky, and the overhead it printed). */
export const PAPER_RESULTS: Record<WorkloadId, { withSkySeconds: number; withoutSkySeconds: number; percent: number }> = {
  encryption: { withSkySeconds: 25.3, withoutSkySeconds: 24.8, percent: 2 },
  find: { withSkySeconds: 54.6, withoutSkySeconds: 53.4, percent: 2 },
  copy: { withSkySeconds: 34.9, withoutSkySeconds: 34.7, percent: 1 },
  varmail: { withSkySeconds: 163.5, withoutSkySeconds: 160.8, percent: 2 },
  database: { withSkySeconds: 21, withoutSkySeconds: 21.7, percent: -3 },
};

export const TARGET_EBPF_OVERHEAD_PERCENT = 2;

export interface VarmailParameters {
  loops: number;
  nthreads: number;
  nfiles: number;
  filesizeBytes: number;
  gammaShape: number;
  appendBytes: number;
  iosizeBytes: number;
  preallocPercent: number;
  seed: number;
}

export interface DatabaseParameters {
  scale: number;
  clients: number;
  jobs: number;
  transactionsPerClient: number;
  /** How the server is traced: attach to the running postmaster (--pid), or start it under `sky trace`. */
  traceHow: 'auto' | 'attach' | 'wrap';
  port: number;
}

export interface OverheadConfig {
  workloads: WorkloadId[];
  backends: Backend[];
  caches: CacheState[];
  runs: number;
  scale: number;
  quick: boolean;
  fileBytes: number;
  kernelCopies: number;
  /** Replaces the kernel tree for the find workload. */
  treeDirs: string[] | null;
  varmail: VarmailParameters;
  database: DatabaseParameters;
  workDir: string;
  outFile: string;
  skyArgv: string[];
  traceExtraArgs: string[];
  timeoutSeconds: number;
  install: boolean;
  keep: boolean;
}

// ---------------------------------------------------------------------------------------------------------------
// Pure helpers (unit-tested)

const SIZE_UNITS: Record<string, number> = { '': 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 };

/** "500M", "2G", "1.5G", "4096" → bytes (binary units; a trailing "iB"/"B" is accepted). */
export function parseSize(text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*$/i.exec(text);
  if (!match) throw new Error(`not a size: ${JSON.stringify(text)}`);
  const bytes = Math.round(Number(match[1]) * SIZE_UNITS[match[2].toUpperCase()]);
  if (!Number.isSafeInteger(bytes) || bytes <= 0) throw new Error(`size out of range: ${text}`);
  return bytes;
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${Number.isInteger(value) ? value : value.toFixed(1)} ${units[unit]}`;
}

export function parseWorkloads(text: string): WorkloadId[] {
  const ids: WorkloadId[] = [];
  for (const part of text.split(',').map((s) => s.trim().toLowerCase()).filter(Boolean)) {
    if (part === 'all') return [...WORKLOAD_IDS];
    const id = WORKLOAD_ALIASES[part];
    if (!id) throw new Error(`unknown workload ${JSON.stringify(part)} (one of ${WORKLOAD_IDS.join(', ')})`);
    if (!ids.includes(id)) ids.push(id);
  }
  if (ids.length === 0) throw new Error('no workload selected');
  return ids;
}

export function parseBackends(text: string): Backend[] {
  const out: Backend[] = [];
  for (const part of text.split(',').map((s) => s.trim().toLowerCase()).filter(Boolean)) {
    if (part === 'none') return [];
    if (part !== 'ebpf' && part !== 'ptrace') throw new Error(`unknown backend ${JSON.stringify(part)} (ebpf, ptrace or none)`);
    if (!out.includes(part)) out.push(part);
  }
  return out;
}

export function parseCaches(text: string): CacheState[] {
  const out: CacheState[] = [];
  for (const part of text.split(',').map((s) => s.trim().toLowerCase()).filter(Boolean)) {
    if (part !== 'cold' && part !== 'warm') throw new Error(`unknown cache state ${JSON.stringify(part)} (cold, warm)`);
    if (!out.includes(part)) out.push(part);
  }
  if (out.length === 0) throw new Error('no cache state selected');
  return out;
}

/** The order runs happen in: per cache state, per round, untraced then each backend (alternating). */
export function runSchedule(config: Pick<OverheadConfig, 'caches' | 'runs' | 'backends'>): { cache: CacheState; round: number; mode: TraceMode }[] {
  const modes: TraceMode[] = ['none', ...config.backends];
  const schedule: { cache: CacheState; round: number; mode: TraceMode }[] = [];
  for (const cache of config.caches) {
    for (let round = 1; round <= config.runs; round++) {
      for (const mode of modes) schedule.push({ cache, round, mode });
    }
  }
  return schedule;
}

export interface Summary {
  n: number;
  median: number;
  min: number;
  max: number;
  mean: number;
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

export function summarize(values: readonly number[]): Summary {
  if (values.length === 0) return { n: 0, median: Number.NaN, min: Number.NaN, max: Number.NaN, mean: Number.NaN };
  return {
    n: values.length,
    median: median(values),
    min: Math.min(...values),
    max: Math.max(...values),
    mean: values.reduce((a, b) => a + b, 0) / values.length,
  };
}

/** Overhead in percent of `traced` over `untraced` (positive = slower when traced). */
export function overheadPercent(traced: number, untraced: number): number {
  if (!(untraced > 0) || !Number.isFinite(traced)) return Number.NaN;
  return (traced / untraced - 1) * 100;
}

export interface RunSample {
  workload: WorkloadId;
  cache: CacheState;
  mode: TraceMode;
  round: number;
  ok: boolean;
  /** The workload's own run time. */
  seconds: number;
  /** Wall time of the whole invocation, tracer start-up and shut-down included (null when not meaningful). */
  wallSeconds: number | null;
  userSeconds: number | null;
  systemSeconds: number | null;
  /** CPU time (user + system) of the tracer's processes (sky trace, bpftrace/strace) during a traced run. */
  tracerCpuSeconds?: number | null;
  exitCode: number | null;
  error?: string;
  trace?: TraceSummary;
  /** Workload-specific numbers (pgbench tps, varmail flowops, ...). */
  extra?: Record<string, number | string>;
}

export interface TraceSummary {
  events: number | null;
  lost: number | null;
  /** The tracer's summary as printed (trimmed), for the record. */
  raw: string;
}

export interface BackendResult {
  summary: Summary;
  wall: Summary;
  overheadPercent: number;
  /** CPU seconds (user + system) of the workload's own processes, and its overhead over untraced. */
  cpu: Summary;
  cpuOverheadPercent: number;
  /** CPU seconds of the tracer itself (sky trace + bpftrace/strace), when measured. */
  tracerCpu: Summary;
  /** Overhead from each round's pair (traced run vs the untraced run of the same round). */
  paired: Summary;
  failures: number;
  events: number | null;
  lost: number | null;
}

export interface ResultRow {
  workload: WorkloadId;
  cache: CacheState;
  untraced: Summary;
  untracedCpu: Summary;
  failures: number;
  backends: Partial<Record<Backend, BackendResult>>;
}

export function aggregate(samples: readonly RunSample[], workloads: readonly WorkloadId[], caches: readonly CacheState[], backends: readonly Backend[]): ResultRow[] {
  const rows: ResultRow[] = [];
  for (const workload of workloads) {
    for (const cache of caches) {
      const mine = samples.filter((s) => s.workload === workload && s.cache === cache);
      if (mine.length === 0) continue;
      const base = mine.filter((s) => s.mode === 'none' && s.ok);
      const untraced = summarize(base.map((s) => s.seconds));
      const cpuOf = (list: readonly RunSample[]): Summary =>
        summarize(list.filter((s) => s.userSeconds !== null && s.systemSeconds !== null).map((s) => (s.userSeconds ?? 0) + (s.systemSeconds ?? 0)));
      const untracedCpu = cpuOf(base);
      const row: ResultRow = { workload, cache, untraced, untracedCpu, failures: mine.filter((s) => s.mode === 'none' && !s.ok).length, backends: {} };
      for (const backend of backends) {
        const all = mine.filter((s) => s.mode === backend);
        if (all.length === 0) continue;
        const traced = all.filter((s) => s.ok);
        const summary = summarize(traced.map((s) => s.seconds));
        const pairs: number[] = [];
        for (const t of traced) {
          const u = base.find((b) => b.round === t.round);
          if (u) pairs.push(overheadPercent(t.seconds, u.seconds));
        }
        const events = traced.map((s) => s.trace?.events).filter((e): e is number => typeof e === 'number');
        const lost = traced.map((s) => s.trace?.lost).filter((e): e is number => typeof e === 'number');
        const cpu = cpuOf(traced);
        row.backends[backend] = {
          summary,
          wall: summarize(traced.map((s) => s.wallSeconds).filter((w): w is number => typeof w === 'number')),
          overheadPercent: overheadPercent(summary.median, untraced.median),
          cpu,
          cpuOverheadPercent: overheadPercent(cpu.median, untracedCpu.median),
          tracerCpu: summarize(traced.map((s) => s.tracerCpuSeconds).filter((c): c is number => typeof c === 'number')),
          paired: summarize(pairs),
          failures: all.length - traced.length,
          events: events.length ? median(events) : null,
          lost: lost.length ? lost.reduce((a, b) => a + b, 0) : null,
        };
      }
      rows.push(row);
    }
  }
  return rows;
}

/** Best-effort reading of `sky trace`'s end-of-run summary (JSON lines or text). */
export function parseTraceSummary(output: string): TraceSummary {
  const text = output.trim();
  const raw = text.length > 600 ? `${text.slice(0, 300)} … ${text.slice(-300)}` : text;
  let events: number | null = null;
  let lost: number | null = null;
  const lines = text.split('\n').reverse();
  for (const line of lines) {
    const trimmed = line.trim();
    if (!trimmed.startsWith('{')) continue;
    try {
      const parsed: unknown = JSON.parse(trimmed);
      const found = findCounts(parsed);
      if (found.events !== null || found.lost !== null) {
        events = found.events;
        lost = found.lost;
        break;
      }
    } catch {
      // not JSON: fall through to text matching
    }
  }
  if (events === null) {
    const match = /(?:^|[ \t])(?:events?[ \t]*[:=]?[ \t]*(\d[\d,]*)|(\d[\d,]*)[ \t]+(?:syscall[ \t]+)?events?)/im.exec(text);
    const digits = match?.[1] ?? match?.[2];
    if (digits) events = Number(digits.replace(/,/g, ''));
  }
  if (lost === null) {
    const match = /lost[ \t]*(?:events?)?[ \t]*[:=]?[ \t]*(\d[\d,]*)|(\d[\d,]*)[ \t]+(?:events?[ \t]+)?lost/i.exec(text);
    const digits = match?.[1] ?? match?.[2];
    if (digits) lost = Number(digits.replace(/,/g, ''));
  }
  return { events, lost, raw };
}

function findCounts(value: unknown, depth = 0): { events: number | null; lost: number | null } {
  const out = { events: null as number | null, lost: null as number | null };
  if (depth > 3 || value === null || typeof value !== 'object') return out;
  const record = value as Record<string, unknown>;
  for (const [key, v] of Object.entries(record)) {
    const k = key.toLowerCase();
    if (typeof v === 'number') {
      if (out.events === null && (k === 'events' || k === 'eventcount' || k === 'totalevents' || k === 'total')) out.events = v;
      if (out.lost === null && (k === 'lost' || k === 'lostevents' || k === 'dropped')) out.lost = v;
    }
  }
  for (const v of Object.values(record)) {
    if (out.events !== null && out.lost !== null) break;
    const inner = findCounts(v, depth + 1);
    out.events ??= inner.events;
    out.lost ??= inner.lost;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Report: markdown, JSON, SVG

export interface MachineInfo {
  cpuModel: string;
  cores: number;
  memoryGiB: number;
  kernel: string;
  os: string;
  fileSystem: string;
  date: string;
  loadAverageStart: number[];
  loadAverageEnd: number[];
  tools: Record<string, string>;
  commit: string;
}

export interface OverheadReport {
  version: 1;
  machine: MachineInfo;
  config: Omit<OverheadConfig, 'skyArgv'> & { skyArgv: string[] };
  workloadDescriptions: Partial<Record<WorkloadId, string>>;
  notes: string[];
  durationSeconds: number;
  rows: ResultRow[];
  samples: RunSample[];
}

function fmtSeconds(s: number): string {
  if (!Number.isFinite(s)) return 'n/a';
  return s >= 100 ? s.toFixed(1) : s >= 10 ? s.toFixed(2) : s.toFixed(3);
}

function fmtPercent(p: number): string {
  if (!Number.isFinite(p)) return 'n/a';
  return `${p >= 0 ? '+' : '−'}${Math.abs(p).toFixed(1)}%`;
}

function fmtSummary(s: Summary): string {
  if (s.n === 0) return 'n/a';
  return `${fmtSeconds(s.median)} [${fmtSeconds(s.min)}–${fmtSeconds(s.max)}]`;
}

/** The results table: one row per workload and cache state. */
export function renderTable(rows: readonly ResultRow[], backends: readonly Backend[]): string {
  const head = ['workload', 'cache', 'untraced s median [min–max]'];
  for (const b of backends) head.push(`${b} s median [min–max]`, `${b} overhead (paired range)`);
  const lines = [`| ${head.join(' | ')} |`, `|${head.map((_, i) => (i < 2 ? '---' : '---:')).join('|')}|`];
  for (const row of rows) {
    const cells = [WORKLOAD_LABELS[row.workload], row.cache, fmtSummary(row.untraced) + (row.failures ? ` (${row.failures} failed)` : '')];
    for (const b of backends) {
      const r = row.backends[b];
      if (!r || r.summary.n === 0) {
        cells.push(r ? `failed ×${r.failures}` : 'not run', 'n/a');
        continue;
      }
      const mark = b === 'ebpf' ? (r.overheadPercent <= TARGET_EBPF_OVERHEAD_PERCENT ? ' ✓' : ' ✗') : '';
      const range = r.paired.n > 0 ? ` (${fmtPercent(r.paired.min)} … ${fmtPercent(r.paired.max)})` : '';
      cells.push(fmtSummary(r.summary) + (r.failures ? ` (${r.failures} failed)` : ''), `**${fmtPercent(r.overheadPercent)}**${mark}${range}`);
    }
    lines.push(`| ${cells.join(' | ')} |`);
  }
  return lines.join('\n');
}

function fmtCpu(s: Summary | undefined): string {
  return s && s.n > 0 ? `${fmtSeconds(s.median)} [${fmtSeconds(s.min)}–${fmtSeconds(s.max)}]` : 'n/a';
}

/** CPU seconds: less sensitive than run time to other load on a shared machine, and splits the cost in two. */
export function renderCpuTable(rows: readonly ResultRow[], backends: readonly Backend[]): string {
  const head = ['workload', 'cache', 'untraced: workload CPU s'];
  for (const b of backends) head.push(`${b}: workload CPU s (Δ)`, `${b}: tracer CPU s incl. start-up`);
  const lines = [
    'CPU time per run, user + system, median [min–max]: the workload\'s own processes (in-kernel eBPF probes run there; for the database it is pgbench, the client, not the traced server), and the tracer\'s from start to exit (sky trace + bpftrace/strace, start-up included — bpftrace compiles its program then; not measured for the database, whose tracer runs around the server). Less sensitive than run time to other load on the machine.',
    '',
    `| ${head.join(' | ')} |`,
    `|${head.map((_, i) => (i < 2 ? '---' : '---:')).join('|')}|`,
  ];
  for (const row of rows) {
    const cells = [WORKLOAD_LABELS[row.workload], row.cache, fmtCpu(row.untracedCpu)];
    for (const b of backends) {
      const r = row.backends[b];
      cells.push(r && r.cpu?.n ? `${fmtCpu(r.cpu)} (${fmtPercent(r.cpuOverheadPercent)})` : 'n/a', fmtCpu(r?.tracerCpu));
    }
    lines.push(`| ${cells.join(' | ')} |`);
  }
  return lines.join('\n');
}

export function renderMarkdown(report: OverheadReport): string {
  const { machine, config } = report;
  const backends = config.backends;
  const out: string[] = [];
  out.push(`# Sky tracing overhead${config.quick ? ' (quick mode: small sizes, not a measurement)' : ''}`);
  out.push('');
  out.push(`Date: ${machine.date}. Machine: ${machine.cpuModel}, ${machine.cores} cores, ${machine.memoryGiB} GiB RAM, Linux ${machine.kernel} (${machine.os}); work directory on ${machine.fileSystem}. Commit ${machine.commit}.`);
  out.push(`The ${machine.cores} cores were shared with other engineers' builds and tests during the run (load average ${machine.loadAverageStart.map((l) => l.toFixed(2)).join(' / ')} at the start, ${machine.loadAverageEnd.map((l) => l.toFixed(2)).join(' / ')} at the end), so single runs are noisy; read the medians and the paired ranges together.`);
  out.push('');
  out.push(`Method: ${config.runs} run(s) per mode and cache state, alternating untraced${backends.map((b) => ` → ${b}`).join('')} within every round. ` +
    'Time is the workload\'s own run time (a C helper times fork/exec/wait of the workload from inside the tracer, so tracer start-up and shut-down are outside the clock; for the database it is pgbench\'s run time while the server tree is traced). ' +
    'Overhead = median traced ÷ median untraced − 1; in brackets the range of the per-round paired overheads. ' +
    'Cold: `sync; echo 3 > /proc/sys/vm/drop_caches` right before each run (as in the paper); warm: `sync` only, after one untimed warm-up run. ' +
    `Target for the eBPF backend: ≤ ${TARGET_EBPF_OVERHEAD_PERCENT}% (✓/✗); the paper measured 1–2%. Total bench time ${formatDuration(report.durationSeconds)}.`);
  out.push('');
  out.push(renderTable(report.rows, backends));
  out.push('');
  out.push('Workloads:');
  out.push('');
  for (const id of config.workloads) {
    const paper = PAPER_RESULTS[id];
    const description = report.workloadDescriptions[id];
    if (description) out.push(`- **${WORKLOAD_LABELS[id]}**: ${description} (paper: ${paper.withoutSkySeconds} s → ${paper.withSkySeconds} s, ${paper.percent}%).`);
  }
  if (backends.length > 0 && report.rows.length > 0) {
    out.push('');
    out.push(renderCpuTable(report.rows, backends));
  }
  const traced = report.rows.flatMap((row) => backends.map((b) => ({ row, b, r: row.backends[b] }))).filter((x) => x.r && x.r.summary.n > 0);
  if (traced.length > 0) {
    out.push('');
    out.push('Tracer side (median events per traced run as `sky trace` reported them, events lost in total, and wall time including tracer start-up and shut-down):');
    out.push('');
    out.push('| workload | cache | backend | events | lost | wall s median [min–max] |');
    out.push('|---|---|---|---:|---:|---:|');
    for (const { row, b, r } of traced) {
      if (!r) continue;
      out.push(`| ${WORKLOAD_LABELS[row.workload]} | ${row.cache} | ${b} | ${r.events === null ? 'n/a' : Math.round(r.events)} | ${r.lost ?? 'n/a'} | ${fmtSummary(r.wall)} |`);
    }
  }
  const failed = report.samples.filter((s) => !s.ok);
  if (failed.length > 0) {
    out.push('');
    out.push('Failed runs (left out of the medians):');
    out.push('');
    const seen = new Map<string, { count: number; error: string }>();
    for (const s of failed) {
      const key = `${WORKLOAD_LABELS[s.workload]}, ${s.cache}, ${s.mode}`;
      const entry = seen.get(key) ?? { count: 0, error: (s.error ?? 'unknown error').replace(/\s+/g, ' ').slice(0, 300) };
      entry.count += 1;
      seen.set(key, entry);
    }
    for (const [key, { count, error }] of seen) out.push(`- ${key} ×${count}: \`${error.replace(/`/g, "'")}\``);
  }
  if (report.notes.length > 0) {
    out.push('');
    out.push('Notes:');
    out.push('');
    for (const note of report.notes) out.push(`- ${note}`);
  }
  const tools = Object.entries(machine.tools).map(([k, v]) => `${k} ${v}`).join('; ');
  if (tools) {
    out.push('');
    out.push(`Tools: ${tools}.`);
  }
  out.push('');
  return out.join('\n');
}

function formatDuration(seconds: number): string {
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = s % 60;
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : m > 0 ? `${m}m${String(r).padStart(2, '0')}s` : `${r}s`;
}

/** A round step (1, 2 or 5 × 10^k) that splits `span` into about `count` intervals. */
export function niceStep(span: number, count = 5): number {
  if (!(span > 0)) return 1;
  const raw = span / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const fraction = raw / power;
  return (fraction <= 1 ? 1 : fraction <= 2 ? 2 : fraction <= 5 ? 5 : 10) * power;
}

const CACHE_COLORS: Record<CacheState, string> = { cold: '#2f6db5', warm: '#e0892b' };

/** Hand-written SVG: one panel per backend, a group of bars (one per cache state) per workload. */
export function renderSvg(rows: readonly ResultRow[], backends: readonly Backend[], caches: readonly CacheState[], title: string): string {
  const workloads = [...new Set(rows.map((r) => r.workload))];
  const width = 860;
  const panelHeight = 280;
  const top = 56;
  const left = 70;
  const right = 20;
  const panels = backends.length === 0 ? 1 : backends.length;
  const height = top + panels * (panelHeight + 10);
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`);
  parts.push(`<rect width="${width}" height="${height}" fill="#ffffff"/>`);
  parts.push(`<text x="${width / 2}" y="22" text-anchor="middle" font-size="16" font-weight="bold">${escapeXml(title)}</text>`);
  caches.forEach((cache, i) => {
    const x = width - right - 170 + i * 85;
    parts.push(`<rect x="${x}" y="32" width="12" height="12" fill="${CACHE_COLORS[cache]}"/><text x="${x + 16}" y="42">${cache} cache</text>`);
  });
  if (backends.length === 0) {
    parts.push(`<text x="${width / 2}" y="${top + panelHeight / 2}" text-anchor="middle">no traced runs (tracer unavailable or --backends none)</text>`);
  }
  backends.forEach((backend, panelIndex) => {
    const y0 = top + panelIndex * (panelHeight + 10);
    const values: number[] = [];
    for (const row of rows) {
      const v = row.backends[backend]?.overheadPercent;
      if (v !== undefined && Number.isFinite(v)) values.push(v);
    }
    const targetLine = backend === 'ebpf' ? TARGET_EBPF_OVERHEAD_PERCENT : null;
    let lo = Math.min(0, ...values);
    let hi = Math.max(targetLine !== null ? targetLine * 1.5 : 1, ...values);
    const step = niceStep(hi - lo);
    lo = Math.floor(lo / step) * step;
    hi = Math.ceil(hi / step) * step;
    const plotTop = y0 + 24;
    const plotHeight = panelHeight - 60;
    const yOf = (v: number): number => plotTop + ((hi - v) / (hi - lo)) * plotHeight;
    parts.push(`<text x="${left}" y="${y0 + 14}" font-size="14" font-weight="bold">${backend === 'ebpf' ? 'eBPF backend (bpftrace)' : 'ptrace backend (strace)'} — overhead vs untraced, %${targetLine !== null ? `<tspan font-weight="normal" fill="#c0392b">&#160;(dashed: target ${targetLine}%)</tspan>` : ''}</text>`);
    for (let v = lo; v <= hi + step / 2; v += step) {
      const y = yOf(v);
      parts.push(`<line x1="${left}" x2="${width - right}" y1="${y.toFixed(1)}" y2="${y.toFixed(1)}" stroke="${Math.abs(v) < step / 2 ? '#333' : '#ddd'}"/>`);
      parts.push(`<text x="${left - 6}" y="${(y + 4).toFixed(1)}" text-anchor="end">${Number(v.toFixed(6))}%</text>`);
    }
    if (targetLine !== null) {
      const y = yOf(targetLine);
      parts.push(`<line x1="${left}" x2="${width - right}" y1="${y.toFixed(1)}" y2="${y.toFixed(1)}" stroke="#c0392b" stroke-dasharray="6 4"/>`);
    }
    const groupWidth = (width - left - right) / Math.max(1, workloads.length);
    const barWidth = Math.min(60, (groupWidth - 30) / Math.max(1, caches.length));
    workloads.forEach((workload, wi) => {
      const groupX = left + wi * groupWidth;
      parts.push(`<text x="${(groupX + groupWidth / 2).toFixed(1)}" y="${(plotTop + plotHeight + 18).toFixed(1)}" text-anchor="middle">${escapeXml(WORKLOAD_LABELS[workload])}</text>`);
      caches.forEach((cache, ci) => {
        const row = rows.find((r) => r.workload === workload && r.cache === cache);
        const value = row?.backends[backend]?.overheadPercent;
        const x = groupX + (groupWidth - barWidth * caches.length) / 2 + ci * barWidth;
        if (value === undefined || !Number.isFinite(value)) {
          parts.push(`<text x="${(x + barWidth / 2).toFixed(1)}" y="${(yOf(0) - 4).toFixed(1)}" text-anchor="middle" fill="#999">n/a</text>`);
          return;
        }
        const yv = yOf(value);
        const y = Math.min(yv, yOf(0));
        const h = Math.max(1, Math.abs(yOf(0) - yv));
        parts.push(`<rect x="${(x + 2).toFixed(1)}" y="${y.toFixed(1)}" width="${(barWidth - 4).toFixed(1)}" height="${h.toFixed(1)}" fill="${CACHE_COLORS[cache]}"><title>${escapeXml(`${WORKLOAD_LABELS[workload]}, ${cache}, ${backend}: ${fmtPercent(value)}`)}</title></rect>`);
        const labelY = value >= 0 ? y - 4 : y + h + 12;
        parts.push(`<text x="${(x + barWidth / 2).toFixed(1)}" y="${labelY.toFixed(1)}" text-anchor="middle" font-size="11">${escapeXml(fmtPercent(value))}</text>`);
      });
    });
  });
  parts.push('</svg>');
  return parts.join('\n') + '\n';
}

// ---------------------------------------------------------------------------------------------------------------
// Configuration

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const SOURCE_DIR = path.join(REPO_ROOT, 'bench', 'overhead');
const DEFAULT_OUT = path.join(SOURCE_DIR, 'results', 'overhead.md');

export interface CliOptions {
  render?: string;
  workloads?: string;
  backends?: string;
  cache?: string;
  runs?: string;
  scale?: string;
  quick?: boolean;
  size?: string;
  kernelCopies?: string;
  tree?: string[];
  varmailLoops?: string;
  varmailThreads?: string;
  pgScale?: string;
  pgClients?: string;
  pgJobs?: string;
  pgTransactions?: string;
  pgTrace?: string;
  workDir?: string;
  out?: string;
  sky?: string;
  traceArg?: string[];
  timeout?: string;
  install?: boolean;
  keep?: boolean;
}

export function resolveConfig(options: CliOptions): OverheadConfig {
  const quick = options.quick === true;
  const scale = options.scale === undefined ? 1 : Number(options.scale);
  if (!(scale > 0) || !Number.isFinite(scale)) throw new Error(`--scale must be a positive number, got ${options.scale}`);
  const scaled = (full: number, min: number): number => Math.max(min, Math.round(full * scale));
  const fileBytes = options.size !== undefined ? parseSize(options.size) : quick ? 16 * 2 ** 20 : scaled(500 * 2 ** 20, 2 ** 20);
  const varmailThreads = positiveInt(options.varmailThreads, 'varmail-threads', 16);
  const traceHow = (options.pgTrace ?? 'auto') as DatabaseParameters['traceHow'];
  if (!['auto', 'attach', 'wrap'].includes(traceHow)) throw new Error(`--pg-trace must be auto, attach or wrap, got ${options.pgTrace}`);
  const runs = positiveInt(options.runs, 'runs', quick ? 1 : 5);
  return {
    workloads: parseWorkloads(options.workloads ?? 'all'),
    backends: parseBackends(options.backends ?? 'ebpf,ptrace'),
    caches: parseCaches(options.cache ?? (quick ? 'cold' : 'cold,warm')),
    runs,
    scale,
    quick,
    fileBytes,
    kernelCopies: positiveInt(options.kernelCopies, 'kernel-copies', quick ? 1 : scaled(8, 1)),
    treeDirs: options.tree && options.tree.length > 0 ? options.tree.map((t) => path.resolve(t)) : null,
    varmail: {
      loops: positiveInt(options.varmailLoops, 'varmail-loops', quick ? 320 : scaled(30000, varmailThreads)),
      nthreads: varmailThreads,
      nfiles: 1000,
      filesizeBytes: 16384,
      gammaShape: 1.5,
      appendBytes: 16384,
      iosizeBytes: 2 ** 20,
      preallocPercent: 80,
      seed: 1,
    },
    database: {
      scale: positiveInt(options.pgScale, 'pg-scale', quick ? 1 : scaled(20, 1)),
      clients: positiveInt(options.pgClients, 'pg-clients', 8),
      jobs: positiveInt(options.pgJobs, 'pg-jobs', 2),
      transactionsPerClient: positiveInt(options.pgTransactions, 'pg-transactions', quick ? 25 : scaled(3000, 10)),
      traceHow,
      port: 5432,
    },
    workDir: path.resolve(options.workDir ?? '/var/tmp/sky-bench'),
    outFile: path.resolve(options.out ?? (quick ? path.join(SOURCE_DIR, 'results', 'overhead-quick.md') : DEFAULT_OUT)),
    skyArgv: options.sky ? options.sky.split(/\s+/).filter(Boolean) : [process.execPath, path.join(REPO_ROOT, 'bin', 'sky')],
    traceExtraArgs: options.traceArg ?? [],
    timeoutSeconds: positiveInt(options.timeout, 'timeout', 1800),
    install: options.install !== false && !quick,
    keep: options.keep === true,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Processes: every child is tracked and stopped by its pid (its process group, which we created)

const liveChildren = new Set<ChildProcess>();

function start(argv: readonly string[], options: StartOptions = {}): Started {
  return startProcess(argv, liveChildren, options);
}

async function run(argv: readonly string[], options: StartOptions = {}): Promise<Finished> {
  return start(argv, options).done;
}

function stopAllChildren(): void {
  for (const child of liveChildren) killGroup(child, 'SIGTERM');
}

/** `sky trace`'s summary opens with its counts and can run long (file lists): keep the head and the tail. */
async function readSummary(file: string): Promise<string> {
  try {
    const text = await fsp.readFile(file, 'utf8');
    return text.length > 24_000 ? `${text.slice(0, 8000)}\n…\n${text.slice(-8000)}` : text;
  } catch {
    return '';
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Environment: packages, helpers, machine

function haveCommand(name: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' }).status === 0;
}

async function installPackages(names: string[], config: OverheadConfig, log: Logger): Promise<void> {
  const missing = names.filter((n) => !packageInstalled(n));
  if (missing.length === 0) return;
  if (!config.install) throw new Error(`missing Debian packages ${missing.join(' ')} (not installing: --no-install or --quick)`);
  log.info(`installing ${missing.join(' ')} with apt-get (once; this can take a few minutes)`);
  const logFile = path.join(config.workDir, 'apt-get.log');
  const result = await run(['apt-get', 'install', '-y', '--no-install-recommends', '-o', 'DPkg::Lock::Timeout=900', ...missing], {
    stdoutFile: logFile,
    stderrFile: `${logFile}.err`,
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    timeoutSeconds: 3600,
  });
  if (result.code !== 0) throw new Error(`apt-get install ${missing.join(' ')} failed: ${await readTail(`${logFile}.err`, 800)}`);
}

interface Helpers {
  timedRun: string;
  varmail: string;
}

async function compileHelpers(workDir: string): Promise<Helpers> {
  const binDir = path.join(workDir, 'bin');
  await fsp.mkdir(binDir, { recursive: true });
  const build = async (name: string, extra: string[]): Promise<string> => {
    const source = path.join(SOURCE_DIR, `${name}.c`);
    const text = await fsp.readFile(source);
    const hash = createHash('sha256').update(text).update(extra.join(' ')).digest('hex').slice(0, 12);
    const binary = path.join(binDir, `${name}-${hash}`);
    if (!fs.existsSync(binary)) {
      capture(['gcc', '-O2', '-Wall', '-o', `${binary}.tmp`, source, ...extra]);
      await fsp.rename(`${binary}.tmp`, binary);
    }
    return binary;
  };
  return { timedRun: await build('timed-run', []), varmail: await build('varmail', ['-pthread', '-lm']) };
}

function firstLine(text: string): string {
  return text.split('\n')[0]?.trim() ?? '';
}

function toolVersion(argv: string[]): string | null {
  const result = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8', timeout: 10_000 });
  if (result.status !== 0 && !result.stdout) return null;
  return firstLine(result.stdout || result.stderr).replace(/^[^0-9]*?(\d)/, '$1') || null;
}

export function machineInfo(workDir: string): MachineInfo {
  let cpuModel = os.cpus()[0]?.model ?? 'unknown CPU';
  try {
    const match = /^model name\s*:\s*(.+)$/m.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'));
    if (match) cpuModel = match[1].trim();
  } catch {
    // keep os.cpus()
  }
  let osName = `${os.type()} ${os.release()}`;
  try {
    const match = /^PRETTY_NAME="?([^"\n]+)"?$/m.exec(fs.readFileSync('/etc/os-release', 'utf8'));
    if (match) osName = match[1];
  } catch {
    // keep os.type()
  }
  const fsInfo = capture(['findmnt', '-n', '-o', 'FSTYPE,SOURCE', '-T', fs.existsSync(workDir) ? workDir : path.dirname(workDir)], { allowFail: true }).trim().split(/\s+/);
  const tools: Record<string, string> = {};
  const versions: [string, string[]][] = [
    ['gpg', ['gpg', '--version']],
    ['find', ['find', '--version']],
    ['cp', ['cp', '--version']],
    ['gcc', ['gcc', '-dumpfullversion']],
    ['bpftrace', ['bpftrace', '--version']],
    ['strace', ['strace', '-V']],
    ['node', [process.execPath, '--version']],
  ];
  for (const [name, argv] of versions) {
    const version = toolVersion(argv);
    if (version) tools[name] = version;
  }
  const commit = capture(['git', '-C', REPO_ROOT, 'rev-parse', '--short', 'HEAD'], { allowFail: true }).trim() || 'unknown';
  return {
    cpuModel,
    cores: os.cpus().length,
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    kernel: os.release(),
    os: osName,
    fileSystem: fsInfo.length === 2 ? `${fsInfo[0]} (${fsInfo[1]})` : 'unknown file system',
    date: new Date().toISOString(),
    loadAverageStart: os.loadavg(),
    loadAverageEnd: [],
    tools,
    commit,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Progress

class Logger {
  private readonly began = Date.now();
  constructor(private readonly stream: NodeJS.WritableStream = process.stderr) {}
  elapsed(): string {
    return formatDuration((Date.now() - this.began) / 1000);
  }
  info(message: string): void {
    this.stream.write(`[sky bench overhead ${this.elapsed()}] ${message}\n`);
  }
  write(text: string): void {
    this.stream.write(text);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Tracer

interface TracerInfo {
  available: Backend[];
  unavailable: Partial<Record<Backend, string>>;
  supportsPid: boolean;
}

async function probeTracer(config: OverheadConfig, helpers: Helpers, scratch: string, log: Logger): Promise<TracerInfo> {
  const info: TracerInfo = { available: [], unavailable: {}, supportsPid: false };
  if (config.backends.length === 0) return info;
  const help = spawnSync(config.skyArgv[0], [...config.skyArgv.slice(1), 'trace', '--help'], { encoding: 'utf8', timeout: 60_000 });
  if (help.status !== 0) {
    const reason = `\`sky trace\` is not available (${firstLine((help.stderr || help.stdout || help.error?.message || '').trim()) || `exit ${help.status}`})`;
    for (const b of config.backends) info.unavailable[b] = reason;
    return info;
  }
  info.supportsPid = /--pid\b/.test(help.stdout);
  for (const backend of config.backends) {
    const out = path.join(scratch, `probe-${backend}.out`);
    const err = path.join(scratch, `probe-${backend}.err`);
    const timeFile = path.join(scratch, `probe-${backend}.json`);
    const argv = [...traceArgv(config, backend), '--', helpers.timedRun, '--out', timeFile, '--', 'true'];
    const result = await run(argv, { stdoutFile: out, stderrFile: err, timeoutSeconds: 120 });
    if (result.code === 0 && fs.existsSync(timeFile)) {
      info.available.push(backend);
      log.info(`tracer ${backend}: works (start-up and shut-down ${result.wallSeconds.toFixed(2)} s)`);
    } else {
      info.unavailable[backend] = `\`sky trace --backend ${backend}\` failed (${result.timedOut ? 'timed out' : `exit ${result.code ?? result.signal}`}): ${(await readTail(err, 300)).trim().replace(/\s+/g, ' ')}`;
      log.info(`tracer ${backend}: unavailable — ${info.unavailable[backend]}`);
    }
  }
  return info;
}

function traceArgv(config: OverheadConfig, backend: Backend): string[] {
  return [...config.skyArgv, 'trace', '--backend', backend, ...config.traceExtraArgs];
}

// ---------------------------------------------------------------------------------------------------------------
// Workloads

interface RunContext {
  config: OverheadConfig;
  helpers: Helpers;
  scratch: string;
  log: Logger;
  tracer: TracerInfo;
  notes: string[];
}

interface Workload {
  id: WorkloadId;
  description: string;
  /** Once, before any run. */
  prepare(): Promise<void>;
  /** One timed run; `warmup` runs are not recorded. */
  runOnce(mode: TraceMode, cache: CacheState, round: number): Promise<RunSample>;
  /** Once, after all runs (also on failure). */
  cleanup(): Promise<void>;
}

interface TimedResult {
  ok: boolean;
  seconds: number;
  wallSeconds: number;
  userSeconds: number | null;
  systemSeconds: number | null;
  /** CPU time (user + system) of the tracer's processes (sky trace, bpftrace/strace) during a traced run. */
  tracerCpuSeconds?: number | null;
  exitCode: number | null;
  error?: string;
  trace?: TraceSummary;
  stdoutFile: string;
}

/** Runs `command` through timed-run, inside `sky trace` unless mode is 'none'. */
async function timedCommand(ctx: RunContext, command: string[], mode: TraceMode, cache: CacheState, tag: string, cwd?: string): Promise<TimedResult> {
  const base = path.join(ctx.scratch, tag);
  const timeFile = `${base}.time.json`;
  const stdoutFile = `${base}.stdout`;
  await fsp.rm(timeFile, { force: true });
  const helper = [ctx.helpers.timedRun, '--out', timeFile, '--stdout', stdoutFile, cache === 'cold' ? '--drop-caches' : '--sync'];
  if (cwd) helper.push('--cwd', cwd);
  helper.push('--', ...command);
  // Around a traced run, a second timed-run collects the CPU time of the whole tree (tracer + workload).
  const outerFile = `${base}.outer.json`;
  const argv = mode === 'none' ? helper : [ctx.helpers.timedRun, '--out', outerFile, '--', ...traceArgv(ctx.config, mode), '--', ...helper];
  const traceOut = `${base}.trace.out`;
  const stderrFile = `${base}.stderr`;
  const finished = await run(argv, { stdoutFile: mode === 'none' ? undefined : traceOut, stderrFile, timeoutSeconds: ctx.config.timeoutSeconds });
  let timing: { seconds?: number; exitCode?: number; userSeconds?: number; systemSeconds?: number; selfCpuSeconds?: number } = {};
  try {
    timing = JSON.parse(await fsp.readFile(timeFile, 'utf8')) as typeof timing;
  } catch {
    // reported below
  }
  const trace = mode === 'none' ? undefined : parseTraceSummary(await readSummary(traceOut));
  let tracerCpuSeconds: number | null = null;
  if (mode !== 'none') {
    try {
      const outer = JSON.parse(await fsp.readFile(outerFile, 'utf8')) as { userSeconds: number; systemSeconds: number };
      tracerCpuSeconds = outer.userSeconds + outer.systemSeconds - (timing.userSeconds ?? 0) - (timing.systemSeconds ?? 0) - (timing.selfCpuSeconds ?? 0);
    } catch {
      // the outer helper did not finish: no number
    }
  }
  const ok = finished.code === 0 && !finished.timedOut && typeof timing.seconds === 'number' && timing.exitCode === 0;
  const result: TimedResult = {
    ok,
    seconds: timing.seconds ?? Number.NaN,
    wallSeconds: finished.wallSeconds,
    userSeconds: timing.userSeconds ?? null,
    systemSeconds: timing.systemSeconds ?? null,
    tracerCpuSeconds,
    exitCode: timing.exitCode ?? finished.code,
    trace,
    stdoutFile,
  };
  if (!ok) {
    const why = finished.timedOut ? `timed out after ${ctx.config.timeoutSeconds} s` : `exit ${finished.code ?? finished.signal}`;
    result.error = `${why}: ${(await readTail(stderrFile, 500)).trim().replace(/\s+/g, ' ')}`;
  }
  return result;
}

function sampleFrom(id: WorkloadId, mode: TraceMode, cache: CacheState, round: number, r: TimedResult, extra?: Record<string, number | string>): RunSample {
  return {
    workload: id,
    cache,
    mode,
    round,
    ok: r.ok,
    seconds: r.seconds,
    wallSeconds: r.wallSeconds,
    userSeconds: r.userSeconds,
    systemSeconds: r.systemSeconds,
    ...(r.tracerCpuSeconds !== undefined && r.tracerCpuSeconds !== null ? { tracerCpuSeconds: r.tracerCpuSeconds } : {}),
    exitCode: r.exitCode,
    ...(r.error ? { error: r.error } : {}),
    ...(r.trace ? { trace: r.trace } : {}),
    ...(extra ? { extra } : {}),
  };
}

async function ensureRandomFile(ctx: RunContext, bytes: number): Promise<string> {
  const dir = path.join(ctx.config.workDir, 'data');
  await fsp.mkdir(dir, { recursive: true });
  const file = path.join(dir, `random-${bytes}.bin`);
  if (fs.existsSync(file) && fs.statSync(file).size === bytes) return file;
  ctx.log.info(`writing ${formatBytes(bytes)} of random data to ${file} (once)`);
  const handle = await fsp.open(`${file}.tmp`, 'w');
  try {
    const chunk = Buffer.alloc(8 * 2 ** 20);
    for (let done = 0; done < bytes; ) {
      const n = Math.min(chunk.length, bytes - done);
      randomFillSync(chunk, 0, n);
      await handle.write(chunk, 0, n);
      done += n;
    }
    await handle.sync();
  } finally {
    await handle.close();
  }
  await fsp.rename(`${file}.tmp`, file);
  return file;
}

function encryptionWorkload(ctx: RunContext): Workload {
  const home = path.join(ctx.scratch, 'gnupg');
  const output = path.join(ctx.scratch, 'encrypted.gpg');
  let input = '';
  const gpgArgv = (): string[] => ['gpg', '--homedir', home, '--batch', '--yes', '--pinentry-mode', 'loopback', '--passphrase', 'sky-bench-overhead', '--symmetric', '-o', output, input];
  return {
    id: 'encryption',
    description: `\`gpg --batch --yes --pinentry-mode loopback --passphrase … --symmetric\` of a ${formatBytes(ctx.config.fileBytes)} random file (default cipher and compression; gpg-agent started untraced beforehand)`,
    async prepare() {
      if (!haveCommand('gpg')) await installPackages(['gnupg'], ctx.config, ctx.log);
      input = await ensureRandomFile(ctx, ctx.config.fileBytes);
      await fsp.mkdir(home, { recursive: true, mode: 0o700 });
      // The agent is a daemon: start it here (untraced) so traced runs only talk to it.
      capture(['gpg-connect-agent', '--homedir', home, '/bye'], { timeoutSeconds: 60 });
      // gpg's first run in a fresh home creates its keybox and trustdb: do that once, untimed.
      const probe = path.join(ctx.scratch, 'gpg-init.txt');
      await fsp.writeFile(probe, 'sky bench overhead\n');
      capture(['gpg', '--homedir', home, '--batch', '--yes', '--pinentry-mode', 'loopback', '--passphrase', 'sky-bench-overhead', '--symmetric', '-o', `${probe}.gpg`, probe], { timeoutSeconds: 60 });
      await fsp.rm(`${probe}.gpg`, { force: true });
    },
    async runOnce(mode, cache, round) {
      await fsp.rm(output, { force: true });
      const r = await timedCommand(ctx, gpgArgv(), mode, cache, `encryption-${cache}-${mode}-${round}`);
      if (r.ok && !fs.existsSync(output)) Object.assign(r, { ok: false, error: 'gpg wrote no output' });
      await fsp.rm(output, { force: true });
      return sampleFrom('encryption', mode, cache, round, r);
    },
    async cleanup() {
      capture(['gpgconf', '--homedir', home, '--kill', 'gpg-agent'], { allowFail: true, timeoutSeconds: 30 });
      await fsp.rm(output, { force: true });
    },
  };
}

function copyWorkload(ctx: RunContext): Workload {
  const output = path.join(ctx.scratch, 'copy.bin');
  let input = '';
  return {
    id: 'copy',
    description: `\`cp\` of a ${formatBytes(ctx.config.fileBytes)} random file on the same file system (coreutils cp uses copy_file_range)`,
    async prepare() {
      input = await ensureRandomFile(ctx, ctx.config.fileBytes);
    },
    async runOnce(mode, cache, round) {
      await fsp.rm(output, { force: true });
      const r = await timedCommand(ctx, ['cp', input, output], mode, cache, `copy-${cache}-${mode}-${round}`);
      if (r.ok && fs.statSync(output, { throwIfNoEntry: false })?.size !== ctx.config.fileBytes) Object.assign(r, { ok: false, error: 'cp output has the wrong size' });
      await fsp.rm(output, { force: true });
      return sampleFrom('copy', mode, cache, round, r);
    },
    async cleanup() {
      await fsp.rm(output, { force: true });
    },
  };
}

interface KernelTree {
  starts: string[];
  entries: number;
  source: string;
}

async function countEntries(dir: string): Promise<number> {
  let count = 0;
  const stack = [dir];
  while (stack.length > 0) {
    const current = stack.pop()!;
    for (const entry of await fsp.readdir(current, { withFileTypes: true })) {
      count += 1;
      if (entry.isDirectory()) stack.push(path.join(current, entry.name));
    }
  }
  return count;
}

async function prepareKernelTree(ctx: RunContext): Promise<KernelTree> {
  const { config, log } = ctx;
  if (config.treeDirs) {
    let entries = 0;
    for (const dir of config.treeDirs) entries += await countEntries(dir);
    return { starts: config.treeDirs, entries, source: config.treeDirs.join(' ') };
  }
  let tarball = findKernelTarball();
  if (!tarball && config.install) {
    await installPackages(['linux-source'], config, log);
    tarball = findKernelTarball();
  }
  if (!tarball) {
    if (!config.quick) throw new Error('no /usr/src/linux-source-*.tar.xz (install linux-source, or pass --tree DIR)');
    ctx.notes.push('File search ran over /usr/include (quick mode without linux-source installed), not the kernel tree.');
    return { starts: ['/usr/include'], entries: await countEntries('/usr/include'), source: '/usr/include' };
  }
  const base = path.join(config.workDir, 'linux', path.basename(tarball).replace(/\.tar\.\w+$/, ''));
  await fsp.mkdir(base, { recursive: true });
  const first = path.join(base, 'copy-0');
  const marker = (dir: string): string => path.join(dir, '.sky-bench-complete');
  if (!fs.existsSync(marker(first))) {
    log.info(`extracting ${tarball} into ${first} (once)`);
    await fsp.rm(`${first}.tmp`, { recursive: true, force: true });
    await fsp.mkdir(`${first}.tmp`);
    const result = await run(['tar', '-xf', tarball, '-C', `${first}.tmp`], { stderrFile: path.join(ctx.scratch, 'tar.err'), timeoutSeconds: 3600 });
    if (result.code !== 0) throw new Error(`tar -xf ${tarball} failed: ${await readTail(path.join(ctx.scratch, 'tar.err'), 500)}`);
    await fsp.writeFile(path.join(`${first}.tmp`, '.sky-bench-entries'), String(await countEntries(`${first}.tmp`)));
    await fsp.writeFile(marker(`${first}.tmp`), tarball);
    await fsp.rm(first, { recursive: true, force: true });
    await fsp.rename(`${first}.tmp`, first);
  }
  const starts = [first];
  for (let i = 1; i < config.kernelCopies; i++) {
    const copy = path.join(base, `copy-${i}`);
    if (!fs.existsSync(marker(copy))) {
      // Hard-linked copies: new directories and directory entries (all that `find -name` reads), shared file data.
      log.info(`making hard-linked copy ${i} of the kernel tree (once)`);
      await fsp.rm(copy, { recursive: true, force: true });
      await fsp.rm(`${copy}.tmp`, { recursive: true, force: true });
      const result = await run(['cp', '-al', first, `${copy}.tmp`], { stderrFile: path.join(ctx.scratch, 'cp-al.err'), timeoutSeconds: 3600 });
      if (result.code !== 0) throw new Error(`cp -al failed: ${await readTail(path.join(ctx.scratch, 'cp-al.err'), 500)}`);
      await fsp.rename(`${copy}.tmp`, copy);
    }
    starts.push(copy);
  }
  const perCopy = Number(await fsp.readFile(path.join(first, '.sky-bench-entries'), 'utf8').catch(() => '0'));
  return { starts, entries: perCopy * starts.length, source: tarball };
}

function findWorkload(ctx: RunContext): Workload {
  let tree: KernelTree = { starts: [], entries: 0, source: '' };
  const workload: Workload = {
    id: 'find',
    description: '',
    async prepare() {
      tree = await prepareKernelTree(ctx);
      workload.description = `\`find TREE… -name does-not-exist\` over ${tree.starts.length} cop${tree.starts.length === 1 ? 'y' : 'ies'} of ${path.basename(tree.source)} (${tree.entries.toLocaleString('en-US')} entries; copies after the first are hard-linked: their own directories, shared file data)`;
    },
    async runOnce(mode, cache, round) {
      const r = await timedCommand(ctx, ['find', ...tree.starts, '-name', 'does-not-exist'], mode, cache, `find-${cache}-${mode}-${round}`);
      return sampleFrom('find', mode, cache, round, r);
    },
    async cleanup() {},
  };
  return workload;
}

function varmailWorkload(ctx: RunContext): Workload {
  const v = ctx.config.varmail;
  const dir = path.join(ctx.scratch, 'varmail');
  const common = ['--nfiles', String(v.nfiles), '--seed', String(v.seed)];
  return {
    id: 'varmail',
    description: `bench/overhead/varmail.c (filebench varmail flow: delete; create+append+fsync; open+read whole+append+fsync; open+read whole) with nfiles ${v.nfiles} in one directory (meandirwidth 1000000), filesize gamma mean ${formatBytes(v.filesizeBytes)} shape ${v.gammaShape}, prealloc ${v.preallocPercent}%, iosize ${formatBytes(v.iosizeBytes)}, appends uniform 0–${formatBytes(v.appendBytes)}, ${v.nthreads} threads, ${v.loops.toLocaleString('en-US')} flow loops (${(v.loops * 13).toLocaleString('en-US')} flowops); fileset re-created before every run`,
    async prepare() {},
    async runOnce(mode, cache, round) {
      capture([ctx.helpers.varmail, 'setup', dir, ...common, '--filesize', String(v.filesizeBytes), '--gamma', String(v.gammaShape), '--prealloc', String(v.preallocPercent)]);
      const command = [ctx.helpers.varmail, 'run', dir, ...common, '--loops', String(v.loops), '--nthreads', String(v.nthreads), '--iosize', String(v.iosizeBytes), '--appendsize', String(v.appendBytes)];
      const r = await timedCommand(ctx, command, mode, cache, `varmail-${cache}-${mode}-${round}`);
      const extra: Record<string, number | string> = {};
      try {
        const stats = JSON.parse(firstLine(await fsp.readFile(r.stdoutFile, 'utf8'))) as Record<string, number>;
        for (const key of ['flowops', 'fsyncs', 'readBytes', 'writeBytes', 'errors']) if (typeof stats[key] === 'number') extra[key] = stats[key];
      } catch {
        if (r.ok) Object.assign(r, { ok: false, error: 'varmail printed no totals' });
      }
      return sampleFrom('varmail', mode, cache, round, r, extra);
    },
    async cleanup() {
      await fsp.rm(dir, { recursive: true, force: true });
    },
  };
}

// --- PostgreSQL -------------------------------------------------------------------------------------------------

/** Child pids and names of every process below `root` (from /proc). */
function descendants(root: number): { pid: number; comm: string }[] {
  const parentOf = new Map<number, { ppid: number; comm: string }>();
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
      const close = stat.lastIndexOf(')');
      const ppid = Number(stat.slice(close + 2).split(' ')[1]);
      parentOf.set(Number(name), { ppid, comm: stat.slice(stat.indexOf('(') + 1, close) });
    } catch {
      // exited meanwhile
    }
  }
  const out: { pid: number; comm: string }[] = [];
  const queue = [root];
  while (queue.length > 0) {
    const parent = queue.shift()!;
    for (const [pid, info] of parentOf) {
      if (info.ppid === parent) {
        out.push({ pid, comm: info.comm });
        queue.push(pid);
      }
    }
  }
  return out;
}

/** bpftrace/strace processes on the machine that this bench did not start. */
function foreignTracers(): number {
  const ours = new Set(descendants(process.pid).map((p) => p.pid));
  let count = 0;
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || ours.has(Number(name))) continue;
    try {
      const comm = fs.readFileSync(`/proc/${name}/comm`, 'utf8').trim();
      if (comm === 'bpftrace' || comm === 'strace') count += 1;
    } catch {
      // exited meanwhile
    }
  }
  return count;
}

/**
 * `sky trace --pid` prints nothing when it is ready, so watch for it: strace has attached when the target's
 * TracerPid is set; bpftrace has attached when its perf-event fds (one per probe) stop growing. Null when ready,
 * else why not.
 */
async function waitForAttach(tracer: Started, backend: Backend, targetPid: number, timeoutMs: number): Promise<string | null> {
  const deadline = Date.now() + timeoutMs;
  let previous = -1;
  let stableSince = 0;
  while (Date.now() < deadline) {
    if (tracer.child.exitCode !== null || tracer.child.signalCode !== null) return 'the tracer exited';
    if (backend === 'ptrace') {
      const status = fs.readFileSync(`/proc/${targetPid}/status`, 'utf8');
      if (Number(/^TracerPid:\s*(\d+)/m.exec(status)?.[1] ?? 0) !== 0) return null;
    } else {
      const bpftrace = descendants(tracer.child.pid ?? -1).find((p) => p.comm === 'bpftrace');
      let probes = 0;
      if (bpftrace) {
        try {
          for (const fd of fs.readdirSync(`/proc/${bpftrace.pid}/fd`)) {
            if (fs.readlinkSync(`/proc/${bpftrace.pid}/fd/${fd}`, 'utf8') === 'anon_inode:[perf_event]') probes += 1;
          }
        } catch {
          probes = 0;
        }
      }
      if (probes > 0 && probes === previous) {
        if (Date.now() - stableSince >= 1500) return null;
      } else {
        previous = probes;
        stableSince = Date.now();
      }
    }
    await sleep(200);
  }
  return `not attached after ${timeoutMs / 1000} s`;
}

async function chownTree(dir: string, ids: { uid: number; gid: number }): Promise<void> {
  await fsp.chown(dir, ids.uid, ids.gid);
  for (const entry of await fsp.readdir(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) await chownTree(full, ids);
    else await fsp.chown(full, ids.uid, ids.gid);
  }
}

function databaseWorkload(ctx: RunContext): Workload {
  const d = ctx.config.database;
  const root = path.join(ctx.scratch, 'pg');
  const data = path.join(root, 'data');
  const socketDir = path.join(root, 'sock');
  let bin = '';
  let asUser: string[] = [];
  let how: 'attach' | 'wrap' = 'wrap';
  /** Server processes we started (postmaster pid and the process that runs it). */
  let server: { started: Started; postmasterPid: number } | null = null;
  let tracer: Started | null = null;

  const serverArgv = (): string[] => [...asUser, path.join(bin, 'postgres'), '-D', data, '-p', String(d.port), '-c', 'listen_addresses=', '-c', `unix_socket_directories=${socketDir}`, '-c', 'max_connections=60'];
  const clientArgs = (): string[] => ['-h', socketDir, '-p', String(d.port), '-U', 'postgres'];

  const readPostmasterPid = async (): Promise<number | null> => {
    try {
      const pid = Number(firstLine(await fsp.readFile(path.join(data, 'postmaster.pid'), 'utf8')));
      return Number.isSafeInteger(pid) && pid > 0 ? pid : null;
    } catch {
      return null;
    }
  };

  const startServer = async (wrapWith: Backend | null, tag: string): Promise<void> => {
    await fsp.rm(path.join(data, 'postmaster.pid'), { force: true }).catch(() => undefined);
    const argv = wrapWith ? [...traceArgv(ctx.config, wrapWith), '--', ...serverArgv()] : serverArgv();
    const base = path.join(ctx.scratch, `pg-${tag}`);
    const started = start(argv, { stdoutFile: `${base}.server.out`, stderrFile: `${base}.server.log` });
    const deadline = Date.now() + 180_000;
    for (;;) {
      const ready = spawnSync(path.join(bin, 'pg_isready'), ['-q', ...clientArgs().slice(0, 4)], { stdio: 'ignore' }).status === 0;
      const pid = await readPostmasterPid();
      if (ready && pid) {
        server = { started, postmasterPid: pid };
        return;
      }
      if (started.child.exitCode !== null || started.child.signalCode !== null) throw new Error(`postgres exited during start-up: ${await readTail(`${base}.server.log`, 600)}`);
      if (Date.now() > deadline) {
        killGroup(started.child, 'SIGKILL');
        throw new Error(`postgres did not become ready: ${await readTail(`${base}.server.log`, 600)}`);
      }
      await sleep(100);
    }
  };

  const stopServer = async (): Promise<void> => {
    if (!server) return;
    const { started, postmasterPid } = server;
    server = null;
    const signals: [NodeJS.Signals, number][] = [['SIGINT', 60_000], ['SIGQUIT', 10_000], ['SIGKILL', 5_000]];
    for (const [signal, waitMs] of signals) {
      if (!pidAlive(postmasterPid)) break;
      try {
        process.kill(postmasterPid, signal);
      } catch {
        break;
      }
      const deadline = Date.now() + waitMs;
      while (pidAlive(postmasterPid) && Date.now() < deadline) await sleep(50);
    }
    // The process we spawned (the postmaster itself, or `sky trace` around it) ends with it.
    if (!(await settlesWithin(started.done, 60_000))) {
      killGroup(started.child, 'SIGTERM');
      if (!(await settlesWithin(started.done, 5000))) killGroup(started.child, 'SIGKILL');
    }
  };

  const stopTracer = async (): Promise<void> => {
    if (!tracer) return;
    const t = tracer;
    tracer = null;
    if (t.child.pid !== undefined && t.child.exitCode === null) {
      try {
        process.kill(t.child.pid, 'SIGINT');
      } catch {
        // gone
      }
    }
    if (!(await settlesWithin(t.done, 60_000))) {
      killGroup(t.child, 'SIGTERM');
      if (!(await settlesWithin(t.done, 5000))) killGroup(t.child, 'SIGKILL');
    }
  };

  const psql = (commands: string[]): void => {
    capture([path.join(bin, 'psql'), '-q', '-X', '-v', 'ON_ERROR_STOP=1', ...clientArgs(), ...commands.flatMap((c) => ['-c', c]), 'postgres'], { timeoutSeconds: 600 });
  };

  const workload: Workload = {
    id: 'database',
    description: '',
    async prepare() {
      if (!findPostgresBin()) await installPackages(['postgresql', 'postgresql-contrib'], ctx.config, ctx.log);
      const found = findPostgresBin();
      if (!found) throw new Error('PostgreSQL binaries not found under /usr/lib/postgresql/*/bin');
      bin = found;
      // auto = wrap: the whole server tree is traced (background writers too, not only backends forked after an
      // attach), and the server accepts connections only once the tracer is running.
      how = d.traceHow === 'auto' ? 'wrap' : d.traceHow;
      if (how === 'attach' && !ctx.tracer.supportsPid && ctx.tracer.available.length > 0) throw new Error('--pg-trace attach: `sky trace` has no --pid option');
      await fsp.rm(root, { recursive: true, force: true });
      await fsp.mkdir(socketDir, { recursive: true });
      if (process.getuid?.() === 0) {
        const ids = userIds('postgres');
        if (!ids) throw new Error('no `postgres` user (the server refuses to run as root)');
        asUser = ['setpriv', `--reuid=${ids.uid}`, `--regid=${ids.gid}`, '--init-groups', '--'];
        await chownTree(root, ids);
      }
      ctx.log.info(`database: initdb and pgbench -i -s ${d.scale} in ${root}`);
      capture([...asUser, path.join(bin, 'initdb'), '-D', data, '-A', 'trust', '-U', 'postgres', '-E', 'UTF8', '--locale=C', '--no-sync'], { timeoutSeconds: 600 });
      await startServer(null, 'init');
      try {
        capture([path.join(bin, 'pgbench'), '-i', '-q', '-s', String(d.scale), ...clientArgs(), 'postgres'], { timeoutSeconds: 3600 });
      } finally {
        await stopServer();
      }
      const version = firstLine(capture([path.join(bin, 'postgres'), '--version'], { allowFail: true }));
      workload.description = `${version || 'PostgreSQL'} on a unix socket only (initdb into a temp dir, fsync on, defaults otherwise), \`pgbench -i -s ${d.scale}\`, then the timed part \`pgbench -n -c ${d.clients} -j ${d.jobs} -t ${d.transactionsPerClient}\` (${(d.clients * d.transactionsPerClient).toLocaleString('en-US')} TPC-B-like transactions); the server is restarted for every run, vacuumed and checkpointed before it; the traced runs trace the server's process tree (${how === 'attach' ? '`sky trace --pid` of the postmaster, which follows the backends it forks from then on (background processes started before are not traced)' : 'the postmaster started under `sky trace`, so every server process is traced, and the server accepts connections only once the tracer runs'}); pgbench itself is not traced`;
    },
    async runOnce(mode, cache, round) {
      const tag = `${cache}-${mode}-${round}`;
      const failed = (error: string): RunSample => ({ workload: 'database', cache, mode, round, ok: false, seconds: Number.NaN, wallSeconds: null, userSeconds: null, systemSeconds: null, exitCode: null, error });
      const traceOut = path.join(ctx.scratch, `pg-${tag}.trace.out`);
      try {
        await startServer(mode !== 'none' && how === 'wrap' ? mode : null, tag);
        if (mode !== 'none' && how === 'attach' && server) {
          tracer = start([...traceArgv(ctx.config, mode), '--pid', String(server.postmasterPid)], { stdoutFile: traceOut, stderrFile: path.join(ctx.scratch, `pg-${tag}.trace.err`) });
          const attached = await waitForAttach(tracer, mode, server.postmasterPid, 180_000);
          if (attached !== null) return failed(`sky trace --pid did not attach: ${attached}: ${await readTail(path.join(ctx.scratch, `pg-${tag}.trace.err`), 400)}`);
        }
        psql(['VACUUM pgbench_branches', 'VACUUM pgbench_tellers', 'TRUNCATE pgbench_history', 'CHECKPOINT']);
        const r = await timedCommand(ctx, [path.join(bin, 'pgbench'), '-n', '-c', String(d.clients), '-j', String(d.jobs), '-t', String(d.transactionsPerClient), ...clientArgs(), 'postgres'], 'none', cache, `database-${tag}`);
        await stopTracer();
        await stopServer();
        const extra: Record<string, number | string> = {};
        const output = await fsp.readFile(r.stdoutFile, 'utf8').catch(() => '');
        const tps = /tps = ([\d.]+) \(without initial connection time\)/.exec(output);
        if (tps) extra.tps = Number(tps[1]);
        const processed = /number of transactions actually processed: (\d+)/.exec(output);
        if (processed) extra.transactions = Number(processed[1]);
        const sample = sampleFrom('database', mode, cache, round, r, extra);
        sample.wallSeconds = null;
        if (mode !== 'none') {
          const file = how === 'wrap' ? path.join(ctx.scratch, `pg-${tag}.server.out`) : traceOut;
          sample.trace = parseTraceSummary(await readSummary(file));
        }
        return sample;
      } catch (error) {
        return failed((error as Error).message);
      } finally {
        await stopTracer();
        await stopServer();
      }
    },
    async cleanup() {
      await stopTracer();
      await stopServer();
    },
  };
  return workload;
}

// ---------------------------------------------------------------------------------------------------------------
// The bench

function makeWorkload(id: WorkloadId, ctx: RunContext): Workload {
  switch (id) {
    case 'encryption':
      return encryptionWorkload(ctx);
    case 'find':
      return findWorkload(ctx);
    case 'copy':
      return copyWorkload(ctx);
    case 'varmail':
      return varmailWorkload(ctx);
    case 'database':
      return databaseWorkload(ctx);
  }
}

export interface BenchOutcome {
  report: OverheadReport;
  files: { markdown: string; json: string; svg: string };
}

export async function runOverheadBench(config: OverheadConfig, log = new Logger()): Promise<BenchOutcome> {
  const began = Date.now();
  if (config.caches.includes('cold') && process.getuid?.() !== 0) throw new Error('cold-cache runs drop the page cache and need root (or use --cache warm)');
  await fsp.mkdir(config.workDir, { recursive: true });
  const scratch = await fsp.mkdtemp(path.join(config.workDir, 'run-'));
  await fsp.chmod(scratch, 0o755); // the database server runs as the postgres user and lives below it
  const machine = machineInfo(config.workDir);
  log.info(`${machine.cpuModel}, ${machine.cores} cores, Linux ${machine.kernel}; work dir ${config.workDir}`);
  const notes: string[] = [];
  const samples: RunSample[] = [];
  const descriptions: Partial<Record<WorkloadId, string>> = {};
  const workloads: Workload[] = [];
  const onSignal = (signal: NodeJS.Signals): void => {
    log.info(`${signal}: stopping every process this bench started`);
    stopAllChildren();
    void Promise.allSettled(workloads.map((w) => w.cleanup())).finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    if (!haveCommand('gcc')) await installPackages(['gcc', 'libc6-dev'], config, log);
    const helpers = await compileHelpers(config.workDir);
    const ctx: RunContext = { config, helpers, scratch, log, tracer: { available: [], unavailable: {}, supportsPid: false }, notes };
    ctx.tracer = await probeTracer(config, helpers, scratch, log);
    for (const [backend, reason] of Object.entries(ctx.tracer.unavailable)) notes.push(`${backend} backend not measured: ${reason}.`);
    const backends = config.backends.filter((b) => ctx.tracer.available.includes(b));
    const effective: OverheadConfig = { ...config, backends };
    const schedule = runSchedule(effective);
    const total = schedule.length * config.workloads.length;
    let index = 0;
    for (const id of config.workloads) {
      const workload = makeWorkload(id, ctx);
      workloads.push(workload);
      try {
        log.info(`${WORKLOAD_LABELS[id]}: preparing`);
        await workload.prepare();
        descriptions[id] = workload.description;
        let warmedUp = false;
        for (const step of schedule) {
          index += 1;
          if (step.cache === 'warm' && !warmedUp) {
            log.info(`${WORKLOAD_LABELS[id]}: warm-up run (not recorded)`);
            const warm = await workload.runOnce('none', 'warm', 0);
            if (!warm.ok) throw new Error(`warm-up failed: ${warm.error}`);
            warmedUp = true;
          }
          log.write(`[${String(index).padStart(String(total).length)}/${total} ${log.elapsed()}] ${WORKLOAD_LABELS[id].padEnd(15)} ${step.cache} ${step.mode.padEnd(6)} run ${step.round}/${config.runs} … `);
          const foreign = foreignTracers();
          const sample = await workload.runOnce(step.mode, step.cache, step.round);
          if (foreign > 0) sample.extra = { ...sample.extra, foreignTracers: foreign };
          samples.push(sample);
          log.write(sample.ok ? `${fmtSeconds(sample.seconds)} s${sample.wallSeconds !== null && step.mode !== 'none' ? ` (wall ${fmtSeconds(sample.wallSeconds)} s)` : ''}${sample.trace?.events != null ? `, ${sample.trace.events} events` : ''}\n` : `FAILED: ${sample.error}\n`);
          if (!sample.ok && step.mode === 'none') throw new Error(`untraced run failed: ${sample.error}`);
        }
      } catch (error) {
        const message = `${WORKLOAD_LABELS[id]} aborted: ${(error as Error).message}`;
        log.info(message);
        notes.push(message);
        descriptions[id] ??= workload.description || undefined;
        index = config.workloads.indexOf(id) * schedule.length + schedule.length;
      } finally {
        await workload.cleanup();
      }
    }
    machine.loadAverageEnd = os.loadavg();
    const disturbed = samples.filter((s) => s.extra?.foreignTracers !== undefined).length;
    if (disturbed > 0) notes.push(`${disturbed} of ${samples.length} runs started while another bpftrace/strace (not this bench's: other engineers' tests) was running on the machine; its probes cost every system call, untraced runs included.`);
    const rows = aggregate(samples, config.workloads, config.caches, backends);
    if (config.quick) notes.push('Quick mode: tiny sizes and one run; checks that the harness works, the numbers mean nothing.');
    if (config.scale !== 1) notes.push(`Sizes scaled by ${config.scale} (--scale).`);
    const report: OverheadReport = {
      version: 1,
      machine,
      config: effective,
      workloadDescriptions: descriptions,
      notes,
      durationSeconds: (Date.now() - began) / 1000,
      rows,
      samples,
    };
    const files = await writeReport(report, config.outFile);
    return { report, files };
  } finally {
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    stopAllChildren();
    if (!config.keep) await fsp.rm(scratch, { recursive: true, force: true });
  }
}

/** Re-aggregates and re-renders a finished run from its JSON (samples are the source of truth). */
export async function rerender(jsonFile: string, outFile?: string): Promise<BenchOutcome['files']> {
  const report = JSON.parse(await fsp.readFile(jsonFile, 'utf8')) as OverheadReport;
  for (const sample of report.samples) if (sample.seconds === null) sample.seconds = Number.NaN;
  report.rows = aggregate(report.samples, report.config.workloads, report.config.caches, report.config.backends);
  return writeReport(report, path.resolve(outFile ?? jsonFile.replace(/\.json$/, '.md')));
}

async function writeReport(report: OverheadReport, outFile: string): Promise<BenchOutcome['files']> {
  const base = outFile.replace(/\.md$/, '');
  const files = { markdown: `${base}.md`, json: `${base}.json`, svg: `${base}.svg` };
  await fsp.mkdir(path.dirname(files.markdown), { recursive: true });
  await fsp.writeFile(files.markdown, renderMarkdown(report) + `\n![overhead per workload](${path.basename(files.svg)})\n`);
  await fsp.writeFile(files.json, JSON.stringify(report, (_k, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2) + '\n');
  const title = `Sky tracing overhead per workload (${report.machine.cores} cores, ${report.machine.date.slice(0, 10)}${report.config.quick ? ', quick mode' : ''})`;
  await fsp.writeFile(files.svg, renderSvg(report.rows, report.config.backends, report.config.caches, title));
  return files;
}

// ---------------------------------------------------------------------------------------------------------------
// CLI

export function registerBenchOverhead(bench: Command): void {
  bench
    .command('overhead')
    .description('tracing overhead on the paper\'s five workloads (gpg, find, cp, mail server, PostgreSQL), untraced vs each `sky trace` backend, cold and warm caches')
    .addOption(new Option('--workloads <list>', `comma-separated: ${WORKLOAD_IDS.join(',')} (or all)`))
    .addOption(new Option('--backends <list>', 'tracer backends to measure: ebpf,ptrace (or none)'))
    .addOption(new Option('--cache <list>', 'cache states: cold,warm (cold drops the page cache before every run)'))
    .option('--runs <n>', 'runs per mode and cache state (default 5; quick 1)')
    .option('--scale <factor>', 'shrink (or grow) every size for a quicker run, e.g. 0.1')
    .option('--quick', 'tiny sizes, one cold run each: checks the harness end to end')
    .option('--size <bytes>', 'file size for encryption and copy (default 500M)')
    .option('--kernel-copies <n>', 'copies of the kernel source tree to search (default 8)')
    .option('--tree <dir...>', 'search these directories instead of the kernel tree')
    .option('--varmail-loops <n>', 'varmail flow loops in total (default 30000)')
    .option('--varmail-threads <n>', 'varmail threads (default 16)')
    .option('--pg-scale <n>', 'pgbench -i scale (default 20)')
    .option('--pg-clients <n>', 'pgbench clients (default 8)')
    .option('--pg-jobs <n>', 'pgbench threads (default 2)')
    .option('--pg-transactions <n>', 'pgbench transactions per client (default 3000)')
    .addOption(new Option('--pg-trace <how>', 'trace the server by attaching to the postmaster or by starting it under sky trace').choices(['auto', 'attach', 'wrap']))
    .option('--work-dir <dir>', 'cache of inputs (random files, kernel trees, helpers) and scratch space (default /var/tmp/sky-bench)')
    .option('--out <file.md>', 'report path; .json and .svg are written next to it (default bench/overhead/results/overhead.md)')
    .option('--sky <command>', 'how to run sky (default: this node and bin/sky)')
    .option('--trace-arg <arg...>', 'extra arguments for `sky trace`')
    .option('--timeout <seconds>', 'per-run timeout (default 1800)')
    .option('--no-install', 'do not apt-get install missing packages (linux-source, postgresql, gnupg)')
    .option('--keep', 'keep the scratch directory (per-run outputs and logs)')
    .option('--render <file.json>', 'only re-render the markdown, JSON and SVG of an earlier run from its JSON (to --out, default next to it)')
    .action(async (options: CliOptions) => {
      if (options.render) {
        const files = await rerender(options.render, options.out);
        process.stdout.write(`wrote ${files.markdown}, ${files.json}, ${files.svg}\n`);
        return;
      }
      const config = resolveConfig(options);
      const { report, files } = await runOverheadBench(config);
      const m = report.machine;
      process.stdout.write(`\nSky tracing overhead — ${m.date}; ${m.cpuModel}, ${m.cores} cores, Linux ${m.kernel}; ${config.runs} run(s) per mode; time = the workload's own run time\n`);
      process.stdout.write(`${renderTable(report.rows, report.config.backends)}\n\n`);
      for (const note of report.notes) process.stdout.write(`note: ${note}\n`);
      process.stdout.write(`wrote ${path.relative(process.cwd(), files.markdown)}, ${path.relative(process.cwd(), files.json)}, ${path.relative(process.cwd(), files.svg)}\n`);
      const incomplete = report.rows.length === 0 || report.notes.some((n) => n.includes('aborted'));
      if (incomplete) process.exitCode = 1;
    });
}
