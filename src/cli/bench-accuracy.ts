/**
 * `sky bench accuracy`: how right Sky's tags are, on a real volume, against the file system's own account of it.
 *
 * For each file system (ext4, xfs, btrfs) one Sky volume (a sparse file in /dev/shm) is formatted once; the
 * workloads run on it one after the other (untar, find, cp, smallfiles, db). For every workload a fresh engine is
 * started (`sky serve --config`: classify + tag-log layers, a hint token, hints on a unix socket), so the semantic
 * index knows nothing a traced run did not tell it. The volume is attached with nbdfuse + losetup --direct-io=on
 * + mount; the setup phase runs untraced (e.g. the kernel tree for find/cp), then the volume is remounted and the
 * page cache dropped (cold cache), the workload runs under `sky agent`, the volume is unmounted (which writes the
 * rest back: those requests count too), and the ground truth is built from a read-only remount (GroundTruth:
 * FIEMAP of every file + GETFSMAP / the btrfs chunk tree). Requests in the tag log between the start of the traced
 * phase and the end of the umount are scored: at request time here (scoreOne), after re-tags by `sky report`.
 *
 * Every process started here is stopped by its pid; the volume is torn down (umount, losetup -d, fusermount3 -u,
 * engine stop) in finally blocks, on failure and on Ctrl-C. Method and caveats: bench/accuracy/README.md.
 */
import { spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { GroundTruth, emptyReport, scoreOne, type AccuracyReport, type GroundTruthStats, type TaggedRequest, type Verdicts } from '../insight/extents/index.js';
import { PAPER_IOCLASS_TABLE, sizeRule } from '../insight/ioclass.js';
import { machineInfo, parseSize, type MachineInfo } from './bench-overhead.js';
import {
  capture, findKernelTarball, findPostgresBin, killGroup, packageInstalled, pidAlive, positiveInt, readTail as tail, settlesWithin as settles, sleep,
  startProcess, userIds, type Finished, type StartOptions, type Started,
} from './bench-processes.js';
import { escapeXml } from '../report/svg.js';
import type { AfterRetagMisses } from '../report/index.js';

// ---------------------------------------------------------------------------------------------------------------
// What is measured

/** The issue's three, run by `--fs all`; ext2 and ext3 (both served by the kernel's ext4 driver here) on request. */
export const FS_TYPES = ['ext4', 'xfs', 'btrfs', 'ext2', 'ext3'] as const;
export type FsType = (typeof FS_TYPES)[number];
const FS_TYPES_ALL: readonly FsType[] = ['ext4', 'xfs', 'btrfs'];
/** In this order: each kernel-tree workload builds on the tree the previous left, so partial runs are useful. */
export const ACCURACY_WORKLOADS = ['untar', 'find', 'cp', 'smallfiles', 'db'] as const;
/** 'command': a workload of the user's (--command), run after the built-in ones. */
export type AccuracyWorkload = (typeof ACCURACY_WORKLOADS)[number] | 'command';
export const TARGET_PERCENT = 99;

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
const EXPORT_NAME = 'accuracy';
/** Pause before the traced phase starts and after the umount ends, so the time window has clean edges. */
const WINDOW_GUARD_MS = 400;

export interface AccuracyConfig {
  fsTypes: FsType[];
  workloads: AccuracyWorkload[];
  outDir: string;
  volumeBytes: number;
  /** Where the sparse volume file goes (tmpfs: the engine's device should not be the bottleneck). */
  volumeDir: string;
  /** Trace with `sky agent` (false: run the workload untraced; every tag is then 'unknown' — a baseline). */
  agent: boolean;
  backend: 'ebpf' | 'ptrace' | null;
  tarball: string | null;
  smallfiles: { nfiles: number; loops: number; nthreads: number; seed: number };
  pgScale: number;
  /** --command: a shell command run as one more workload, in the mounted volume. */
  command: string | null;
  /** --mkfs-options: more mkfs arguments (before the device), for every file system of the run. */
  mkfsOptions: string[];
  /** --mount-options: mount -o options for the workload's mounts (the ground truth's read-only mount adds ro). */
  mountOptions: string | null;
  timeoutSeconds: number;
  /** How long `sky agent` may take to flush and exit after its command ended before the bench stops it. */
  agentLingerSeconds: number;
  /** Also replace the measured table in this markdown file (docs/benchmarks.md). */
  docs: string | null;
  keep: boolean;
  skyArgv: string[];
  install: boolean;
}

// ---------------------------------------------------------------------------------------------------------------
// Results

export interface WindowCounts {
  /** Requests in the tag log in the window, by op (read/write are scored; trim/zero/cache are counted). */
  byOp: Record<string, { requests: number; bytes: number }>;
  retags: number;
  /** Requests logged with no tag at all (the classify layer gave none). */
  untagged: number;
  windowMs: number;
}

/** Bytes tagged wrong or unknown, by what they really were: where the tags go wrong. */
export interface DiagnosisRow {
  phase: 'workload' | 'umount';
  direction: string;
  truth: string;
  tagged: string;
  bytes: number;
  requests: number;
}

export interface RetagScores {
  origin: Verdicts;
  ioClass: Verdicts;
  sizeClass: Verdicts;
  /** Origin bytes not right after re-tags, by why (sky report's AfterRetagMisses). */
  misses?: AfterRetagMisses;
}

export interface AccuracyRun {
  fs: FsType;
  workload: AccuracyWorkload;
  description: string;
  ok: boolean;
  error?: string;
  /** traced: the agent's run (command + flush); agentAfterWorkload: from the command's end to the agent's exit. */
  seconds: { setup: number; traced: number; umount: number; truth: number; total: number; agentAfterWorkload?: number };
  agent: { exitCode: number | null; summary: string } | null;
  truth: { stats: GroundTruthStats; totals: Record<string, number>; warnings: string[] } | null;
  counts: WindowCounts | null;
  requestTime: AccuracyReport | null;
  afterRetag: RetagScores | null;
  afterRetagNote?: string;
  diagnosis: DiagnosisRow[];
  /** Wrong/unknown data bytes by the file's top directories on the volume (which files' tags go wrong). */
  dataMissesByDir: Record<string, number>;
}

export interface AccuracyBenchReport {
  version: 1;
  machine: MachineInfo;
  config: Omit<AccuracyConfig, 'skyArgv'>;
  durationSeconds: number;
  notes: string[];
  runs: AccuracyRun[];
}

export function percentRight(verdicts: Verdicts | undefined, key: 'bytes' | 'requests'): number | null {
  if (!verdicts) return null;
  const all = verdicts.right[key] + verdicts.wrong[key] + verdicts.unknown[key];
  return all === 0 ? null : (100 * verdicts.right[key]) / all;
}

export function percentOf(verdicts: Verdicts | undefined, which: 'right' | 'wrong' | 'unknown', key: 'bytes' | 'requests'): number | null {
  if (!verdicts) return null;
  const all = verdicts.right[key] + verdicts.wrong[key] + verdicts.unknown[key];
  return all === 0 ? null : (100 * verdicts[which][key]) / all;
}

// ---------------------------------------------------------------------------------------------------------------
// Rendering

function fmtPct(value: number | null): string {
  return value === null ? '–' : `${value.toFixed(2)}%`;
}

export function formatBytesShort(bytes: number): string {
  if (bytes >= GiB) return `${(bytes / GiB).toFixed(2)} GiB`;
  if (bytes >= MiB) return `${(bytes / MiB).toFixed(1)} MiB`;
  if (bytes >= KiB) return `${(bytes / KiB).toFixed(1)} KiB`;
  return `${bytes} B`;
}

function meetsTarget(value: number | null): string {
  return value !== null && value >= TARGET_PERCENT ? '' : ' ✗';
}

/** One row per (fs, workload): the figures the ≥99% target is about. */
export function renderSummaryTable(runs: readonly AccuracyRun[]): string {
  const lines = [
    '| fs | workload | requests | bytes scored | origin bytes right (request time) | origin bytes right (after re-tags) | size class bytes right (request time) | size class bytes right (after re-tags) | I/O class bytes right (request time / after re-tags) | requests right (origin) | unknown (bytes) | freed bytes |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const run of runs) {
    if (!run.ok || !run.requestTime) {
      lines.push(`| ${run.fs} | ${run.workload} | failed: ${(run.error ?? 'unknown error').replace(/\|/g, '/').replace(/\s+/g, ' ').slice(0, 160)} | | | | | | | | | |`);
      continue;
    }
    const r = run.requestTime;
    const scored = r.origin.right.bytes + r.origin.wrong.bytes + r.origin.unknown.bytes;
    const o = percentRight(r.origin, 'bytes');
    const c = percentRight(r.sizeClass, 'bytes');
    const io = percentRight(r.ioClass, 'bytes');
    const oa = percentRight(run.afterRetag?.origin, 'bytes');
    const ca = percentRight(run.afterRetag?.sizeClass, 'bytes');
    const ioa = percentRight(run.afterRetag?.ioClass, 'bytes');
    lines.push(
      `| ${run.fs} | ${run.workload} | ${r.total.requests.toLocaleString('en-US')} | ${formatBytesShort(scored)} | ${fmtPct(o)}${meetsTarget(o)} | ${fmtPct(oa)} | ${fmtPct(c)}${meetsTarget(c)} | ${fmtPct(ca)} | ${fmtPct(io)} / ${fmtPct(ioa)} | ${fmtPct(percentRight(r.origin, 'requests'))} | ${fmtPct(percentOf(r.origin, 'unknown', 'bytes'))} | ${formatBytesShort(r.freed.bytes)} |`,
    );
  }
  return lines.join('\n');
}

function verdictCells(v: Verdicts): string {
  const cell = (which: 'right' | 'wrong' | 'unknown') => `${fmtPct(percentOf(v, which, 'bytes'))} / ${fmtPct(percentOf(v, which, 'requests'))}`;
  const bytes = v.right.bytes + v.wrong.bytes + v.unknown.bytes;
  const requests = v.right.requests + v.wrong.requests + v.unknown.requests;
  return `${cell('right')} | ${cell('wrong')} | ${cell('unknown')} | ${formatBytesShort(bytes)} | ${requests.toLocaleString('en-US')}`;
}

export function renderRunDetail(run: AccuracyRun): string {
  const out: string[] = [`### ${run.fs} · ${run.workload}`, '', run.description, ''];
  if (!run.ok) out.push(`**Failed:** ${run.error}`, '');
  const s = run.seconds;
  out.push(`Times: setup ${s.setup.toFixed(1)} s, traced phase ${s.traced.toFixed(1)} s${s.agentAfterWorkload !== undefined ? ` (of which the agent's flush after the command ended ${s.agentAfterWorkload.toFixed(1)} s)` : ''}, umount ${s.umount.toFixed(1)} s, ground truth ${s.truth.toFixed(1)} s (total ${s.total.toFixed(1)} s).`, '');
  if (run.counts) {
    const ops = Object.entries(run.counts.byOp).map(([op, c]) => `${op} ${c.requests.toLocaleString('en-US')} (${formatBytesShort(c.bytes)})`).join(', ');
    out.push(`Tag log in the window (${(run.counts.windowMs / 1000).toFixed(1)} s): ${ops || 'no requests'}; ${run.counts.retags.toLocaleString('en-US')} re-tags; ${run.counts.untagged} requests without a tag.`, '');
  }
  if (run.truth) {
    const st = run.truth.stats;
    out.push(
      `Ground truth: ${st.files.toLocaleString('en-US')} files, ${formatBytesShort(st.fileBytesMapped)} of file data mapped, ${st.filesUnplaced} inline/unplaced; cross-checks — file bytes on free space ${st.fileBytesOnFreeSpace}, on static metadata ${st.fileBytesOnStaticMetadata}, owner mismatch ${st.fileBytesOwnerMismatch} (all must be 0), owner confirmed ${formatBytesShort(st.fileBytesOwnerConfirmed)}.${run.truth.warnings.length > 0 ? ` Warnings: ${run.truth.warnings.slice(0, 3).join('; ')}${run.truth.warnings.length > 3 ? ` (+${run.truth.warnings.length - 3})` : ''}.` : ''}`,
      '',
    );
  }
  const r = run.requestTime;
  if (r) {
    out.push('| at request time | right (bytes / requests) | wrong | unknown | bytes | requests |', '|---|---|---|---|---:|---:|');
    out.push(`| origin | ${verdictCells(r.origin)} |`);
    out.push(`| · truth metadata | ${verdictCells(r.origin.byTruth.metadata)} |`);
    out.push(`| · truth data | ${verdictCells(r.origin.byTruth.data)} |`);
    for (const [direction, v] of Object.entries(r.origin.byDirection)) out.push(`| · ${direction}s | ${verdictCells(v)} |`);
    out.push(`| size class (of the tag's file size) | ${verdictCells(r.sizeClass)} |`);
    out.push(`| I/O class (after rules and application hints) | ${verdictCells(r.ioClass)} |`);
    for (const [cls, v] of Object.entries(r.ioClass.byTruth).sort()) out.push(`| · true class ${cls} | ${verdictCells(v)} |`);
    if (run.afterRetag) {
      out.push(`| origin after re-tags | ${verdictCells(run.afterRetag.origin)} |`);
      out.push(`| size class after re-tags | ${verdictCells(run.afterRetag.sizeClass)} |`);
      out.push(`| I/O class after re-tags | ${verdictCells(run.afterRetag.ioClass)} |`);
    }
    out.push('');
    if (run.afterRetagNote) out.push(`After re-tags: ${run.afterRetagNote}`, '');
    const columns = [...new Set(Object.values(r.ioClass.confusionBytes).flatMap((row) => Object.keys(row)))].sort();
    if (columns.length > 0) {
      out.push('Bytes by true class (rows) and tagged class (columns), at request time:', '');
      out.push(`| true \\ tagged | ${columns.join(' | ')} |`, `|---|${columns.map(() => '---:').join('|')}|`);
      for (const [row, cells] of Object.entries(r.ioClass.confusionBytes).sort()) out.push(`| ${row} | ${columns.map((c) => formatBytesShort(cells[c] ?? 0)).join(' | ')} |`);
      out.push('');
    }
  }
  if (run.diagnosis.length > 0) {
    out.push('Where origin tags go wrong (bytes not right at request time, by phase, direction, what the bytes really are, and the tag):', '');
    out.push('| phase | direction | truth | tagged | bytes | requests |', '|---|---|---|---|---:|---:|');
    for (const d of run.diagnosis.slice(0, 14)) out.push(`| ${d.phase} | ${d.direction} | ${d.truth} | ${d.tagged} | ${formatBytesShort(d.bytes)} | ${d.requests.toLocaleString('en-US')} |`);
    out.push('');
  }
  const dirs = Object.entries(run.dataMissesByDir).sort((a, b) => b[1] - a[1]).slice(0, 8);
  if (dirs.length > 0) out.push(`Data bytes not tagged data, by directory: ${dirs.map(([d, b]) => `${d} ${formatBytesShort(b)}`).join(', ')}.`, '');
  if (run.agent) out.push('<details><summary>agent summary</summary>', '', '```', run.agent.summary.trim().slice(-3000), '```', '</details>', '');
  return out.join('\n');
}

export function renderMarkdown(report: AccuracyBenchReport, svgName: string | null): string {
  const m = report.machine;
  const lines = [
    `# Tag accuracy (sky bench accuracy) — ${m.date.slice(0, 10)}`,
    '',
    `Machine: ${m.cpuModel}, ${m.cores} cores, ${m.memoryGiB} GiB, Linux ${m.kernel} (${m.os}); commit ${m.commit}. Run took ${(report.durationSeconds / 60).toFixed(1)} min.`,
    `Volume: ${formatBytesShort(report.config.volumeBytes)} sparse file in ${report.config.volumeDir}, one per file system${report.config.mkfsOptions?.length ? ` (mkfs ${report.config.mkfsOptions.join(' ')})` : ''}${report.config.mountOptions ? ` mounted -o ${report.config.mountOptions}` : ''}; engine restarted for every workload (fresh semantic index); tracer: ${report.config.agent ? `\`sky agent\`${report.config.backend ? ` --backend ${report.config.backend}` : ''}` : 'none (baseline: no hints)'}. Target: ≥${TARGET_PERCENT}% of bytes right for metadata/data and for size class (✗ = below).`,
    '',
    renderSummaryTable(report.runs),
    '',
    'Scored: every read and write in the tag log from the start of the traced phase to the end of the umount that follows it (the writeback counts). "Unknown" = no tag or origin unknown (counted as not right). Bytes on space that is free at the end (deleted files, freed metadata) are not scored: "freed bytes".',
    '',
  ];
  if (svgName) lines.push(`![tag accuracy](${svgName})`, '');
  for (const note of report.notes) lines.push(`- ${note}`);
  if (report.notes.length > 0) lines.push('');
  for (const run of report.runs) lines.push(renderRunDetail(run), '');
  return lines.join('\n');
}

const SERIES = [
  { name: 'origin, request time', color: '#2f6db5', pick: (r: AccuracyRun) => percentRight(r.requestTime?.origin, 'bytes') },
  { name: 'origin, after re-tags', color: '#8fb3e0', pick: (r: AccuracyRun) => percentRight(r.afterRetag?.origin, 'bytes') },
  { name: 'size class, request time', color: '#d9822b', pick: (r: AccuracyRun) => percentRight(r.requestTime?.sizeClass, 'bytes') },
  { name: 'size class, after re-tags', color: '#f0c090', pick: (r: AccuracyRun) => percentRight(r.afterRetag?.sizeClass, 'bytes') },
];

/** Grouped bars: bytes right (%) per (fs, workload), with the 99% target as a dashed line. */
export function renderSvg(runs: readonly AccuracyRun[], title: string): string {
  const groupWidth = 110;
  const left = 50;
  const top = 50;
  const plotHeight = 260;
  const width = Math.max(520, left + 20 + groupWidth * Math.max(1, runs.length));
  const height = top + plotHeight + 70;
  const yOf = (pct: number) => top + plotHeight * (1 - pct / 100);
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${width / 2}" y="20" text-anchor="middle" font-size="14">${escapeXml(title)}</text>`,
  ];
  SERIES.forEach((series, i) => {
    const x = left + i * 150;
    parts.push(`<rect x="${x}" y="30" width="12" height="12" fill="${series.color}"/><text x="${x + 16}" y="40">${escapeXml(series.name)}</text>`);
  });
  for (let pct = 0; pct <= 100; pct += 20) {
    parts.push(`<line x1="${left}" x2="${width - 10}" y1="${yOf(pct)}" y2="${yOf(pct)}" stroke="#ddd"/>`);
    parts.push(`<text x="${left - 6}" y="${yOf(pct) + 4}" text-anchor="end">${pct}%</text>`);
  }
  parts.push(`<line x1="${left}" x2="${width - 10}" y1="${yOf(TARGET_PERCENT)}" y2="${yOf(TARGET_PERCENT)}" stroke="#c00" stroke-dasharray="6 4"/>`);
  parts.push(`<text x="${width - 12}" y="${yOf(TARGET_PERCENT) - 4}" text-anchor="end" fill="#c00">target ${TARGET_PERCENT}%</text>`);
  const barWidth = (groupWidth - 20) / SERIES.length;
  runs.forEach((run, g) => {
    const x0 = left + 10 + g * groupWidth;
    SERIES.forEach((series, i) => {
      const value = series.pick(run);
      if (value === null) return;
      const y = yOf(value);
      parts.push(`<rect x="${(x0 + i * barWidth).toFixed(1)}" y="${y.toFixed(1)}" width="${(barWidth - 2).toFixed(1)}" height="${(yOf(0) - y).toFixed(1)}" fill="${series.color}"><title>${escapeXml(`${run.fs} ${run.workload}, ${series.name}: ${value.toFixed(2)}%`)}</title></rect>`);
    });
    parts.push(`<text x="${x0 + (groupWidth - 20) / 2}" y="${top + plotHeight + 16}" text-anchor="middle">${escapeXml(run.fs)}</text>`);
    parts.push(`<text x="${x0 + (groupWidth - 20) / 2}" y="${top + plotHeight + 30}" text-anchor="middle">${escapeXml(run.workload)}${run.ok ? '' : ' (failed)'}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n') + '\n';
}

const DOCS_SECTION = '## Tag accuracy (`sky bench accuracy`) — issue 4';
const TABLE_START = '<!-- sky bench accuracy: measured table (rewritten by `sky bench accuracy --docs`) -->';
const TABLE_END = '<!-- end of sky bench accuracy table -->';

/** Replaces the measured table in the docs section (creating the section at the end if it is missing). */
export function updateDocs(text: string, report: AccuracyBenchReport, resultsLink: string): string {
  const m = report.machine;
  const block = [
    TABLE_START,
    `Measured ${m.date.slice(0, 10)} on ${m.cpuModel}, ${m.cores} cores, ${m.memoryGiB} GiB, Linux ${m.kernel}; commit ${m.commit}; full report: [${path.basename(resultsLink)}](${resultsLink}).`,
    '',
    renderSummaryTable(report.runs),
    TABLE_END,
  ].join('\n');
  const start = text.indexOf(TABLE_START);
  const end = text.indexOf(TABLE_END);
  if (start >= 0 && end > start) return text.slice(0, start) + block + text.slice(end + TABLE_END.length);
  const section = text.indexOf(DOCS_SECTION);
  if (section >= 0) {
    const afterHeading = text.indexOf('\n', section) + 1;
    return `${text.slice(0, afterHeading)}\n${block}\n${text.slice(afterHeading)}`;
  }
  return `${text.replace(/\n*$/, '\n')}\n${DOCS_SECTION}\n\n${block}\n`;
}

// ---------------------------------------------------------------------------------------------------------------
// Processes: each child in its own process group, tracked, stopped by its pid

/** Workload processes (stopped first on Ctrl-C) and infrastructure (engine, nbdfuse: stopped by teardown). */
const workloadChildren = new Set<ChildProcess>();
const infraChildren = new Set<ChildProcess>();

/** A workload child, or with `infra` an engine/nbdfuse child (stopped by teardown, not first on Ctrl-C). */
function start(argv: readonly string[], options: StartOptions & { infra?: boolean } = {}): Started {
  return startProcess(argv, options.infra ? infraChildren : workloadChildren, { append: true, killGraceMs: 10_000, ...options });
}

/** Runs a command to completion; throws with the tail of its stderr on failure. */
async function runChecked(argv: readonly string[], scratch: string, tag: string, options: { cwd?: string; timeoutSeconds?: number } = {}): Promise<Finished> {
  const errFile = path.join(scratch, `${tag}.err`);
  const outFile = path.join(scratch, `${tag}.out`);
  const result = await start(argv, { stdoutFile: outFile, stderrFile: errFile, cwd: options.cwd, timeoutSeconds: options.timeoutSeconds ?? 3600 }).done;
  if (result.code !== 0) throw new Error(`${argv.join(' ').slice(0, 200)} failed (${result.timedOut ? 'timed out' : `exit ${result.code ?? result.signal}`}): ${(await tail(errFile, 600)).trim()}`);
  return result;
}

/** SIGTERM, then SIGKILL if it does not end; by pid (process group). */
async function stopChild(started: Started, graceMs = 30_000): Promise<void> {
  killGroup(started.child, 'SIGTERM');
  if (await settles(started.done, graceMs)) return;
  killGroup(started.child, 'SIGKILL');
  await settles(started.done, 5000);
}

function isMounted(mountPoint: string): boolean {
  try {
    return fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some((line) => line.split(' ')[4] === mountPoint);
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Progress

class Progress {
  private readonly began = Date.now();
  constructor(private readonly stream: NodeJS.WritableStream = process.stderr) {}
  elapsed(): string {
    const s = Math.round((Date.now() - this.began) / 1000);
    return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
  }
  info(message: string): void {
    this.stream.write(`[sky bench accuracy ${this.elapsed()}] ${message}\n`);
  }
  /** Prints "still running" every 20 s while `promise` runs. */
  async during<T>(what: string, promise: Promise<T>): Promise<T> {
    const began = Date.now();
    const timer = setInterval(() => this.info(`  … ${what}: ${Math.round((Date.now() - began) / 1000)} s`), 20_000);
    try {
      return await promise;
    } finally {
      clearInterval(timer);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The engine and the attached volume

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

interface EngineHandle {
  started: Started;
  nbdSocket: string;
  hintsSocket: string;
  token: string;
  logPath: string;
  stderrFile: string;
}

async function startEngine(config: AccuracyConfig, dir: string, image: string, tag: string): Promise<EngineHandle> {
  const nbdSocket = path.join(dir, `${tag}.nbd.sock`);
  const hintsSocket = path.join(dir, `${tag}.hints.sock`);
  const logPath = path.join(dir, `${tag}.tags.jsonl`);
  const token = randomBytes(16).toString('hex');
  const engineConfig = {
    dataDir: dir,
    listen: { socket: nbdSocket },
    log: { format: 'json', level: 'warn' },
    hints: { socket: hintsSocket },
    exports: [
      {
        name: EXPORT_NAME,
        device: { type: 'file', path: image, size: String(config.volumeBytes) },
        // The brief's stack, with room for two kernel trees (cp): ~160k files would overflow the default maxFiles.
        layers: [
          { type: 'classify', maxFingerprints: 2_000_000, maxFiles: 1_000_000, maxExtents: 8_000_000 },
          { type: 'tag-log', path: logPath },
        ],
        hintToken: token,
      },
    ],
  };
  const configFile = path.join(dir, `${tag}.engine.json`);
  await fsp.writeFile(configFile, JSON.stringify(engineConfig, null, 2));
  const stderrFile = path.join(dir, `${tag}.engine.log`);
  const started = start([...config.skyArgv, 'serve', '--config', configFile], { stdoutFile: stderrFile, stderrFile, infra: true });
  const deadline = Date.now() + 60_000;
  while (!(fs.existsSync(nbdSocket) && fs.existsSync(hintsSocket))) {
    if (started.child.exitCode !== null || started.child.signalCode !== null) throw new Error(`sky serve exited: ${(await tail(stderrFile, 800)).trim()}`);
    if (Date.now() > deadline) {
      await stopChild(started, 5000);
      throw new Error(`sky serve did not listen within 60 s: ${(await tail(stderrFile, 800)).trim()}`);
    }
    await sleep(100);
  }
  return { started, nbdSocket, hintsSocket, token, logPath, stderrFile };
}

const liveAttachments = new Set<Attachment>();

/** nbdfuse → loop (direct I/O) → file system; teardown undoes whatever part was set up, in reverse order. */
class Attachment {
  readonly fuseDir: string;
  readonly image: string;
  loop: string | null = null;
  private nbdfuse: Started | null = null;

  constructor(readonly dir: string, readonly mountPoint: string, readonly uri: string, private readonly scratch: string) {
    this.fuseDir = path.join(dir, 'fuse');
    this.image = path.join(this.fuseDir, 'nbd');
  }

  async attach(): Promise<void> {
    liveAttachments.add(this);
    await fsp.mkdir(this.fuseDir, { recursive: true });
    await fsp.mkdir(this.mountPoint, { recursive: true });
    const pidFile = path.join(this.dir, 'nbdfuse.pid');
    await fsp.rm(pidFile, { force: true });
    const errFile = path.join(this.scratch, 'nbdfuse.err');
    this.nbdfuse = start(['nbdfuse', '-P', pidFile, this.image, this.uri], { stderrFile: errFile, infra: true });
    const deadline = Date.now() + 20_000;
    while (!(fs.existsSync(pidFile) && isMounted(this.fuseDir) && fs.existsSync(this.image))) {
      if (this.nbdfuse.child.exitCode !== null) throw new Error(`nbdfuse exited: ${(await tail(errFile, 500)).trim()}`);
      if (Date.now() > deadline) throw new Error('nbdfuse did not mount within 20 s');
      await sleep(100);
    }
    this.loop = capture(['losetup', '--direct-io=on', '--find', '--show', this.image]).trim();
    if (!this.loop.startsWith('/dev/loop')) throw new Error(`losetup printed ${this.loop}`);
  }

  async mkfs(fsType: FsType, extra: readonly string[] = []): Promise<void> {
    const argv: Record<FsType, string[]> = {
      // Inode tables and journal written now, not by ext4lazyinit in the background during a traced phase.
      ext4: ['mkfs.ext4', '-q', '-F', '-E', 'lazy_itable_init=0,lazy_journal_init=0'],
      // No extents: files map through indirect blocks, which are metadata the agent never sees in FIEMAP.
      ext3: ['mkfs.ext3', '-q', '-F', '-E', 'lazy_itable_init=0,lazy_journal_init=0'],
      ext2: ['mkfs.ext2', '-q', '-F', '-E', 'lazy_itable_init=0'],
      // Reverse mapping: GETFSMAP names each extent's inode, which the ground truth cross-checks against FIEMAP.
      xfs: ['mkfs.xfs', '-q', '-f', '-m', 'rmapbt=1'],
      btrfs: ['mkfs.btrfs', '-q', '-f'],
    };
    await runChecked([...argv[fsType], ...extra, this.device], this.scratch, `mkfs-${fsType}`, { timeoutSeconds: 600 });
  }

  get device(): string {
    if (!this.loop) throw new Error('not attached');
    return this.loop;
  }

  /** Mount options for every mount of this volume (--mount-options). */
  mountOptions: string | null = null;

  async mount(readOnly = false): Promise<void> {
    const options = [this.mountOptions, readOnly ? 'ro' : null].filter((option) => option !== null).join(',');
    await runChecked(['mount', ...(options ? ['-o', options] : []), this.device, this.mountPoint], this.scratch, 'mount', { timeoutSeconds: 300 });
  }

  async umount(): Promise<void> {
    if (isMounted(this.mountPoint)) await runChecked(['umount', this.mountPoint], this.scratch, 'umount', { timeoutSeconds: 1800 });
  }

  /** Safe at any stage, more than once; returns what it could not undo cleanly. */
  async teardown(): Promise<string[]> {
    const problems: string[] = [];
    for (let i = 0; i < 20 && isMounted(this.mountPoint); i++) {
      spawnSync('umount', [this.mountPoint], { stdio: 'ignore', timeout: 600_000 });
      if (isMounted(this.mountPoint)) await sleep(250);
    }
    if (isMounted(this.mountPoint)) {
      spawnSync('umount', ['-l', this.mountPoint], { stdio: 'ignore' });
      problems.push(`${this.mountPoint} needed a lazy umount`);
    }
    if (this.loop) {
      for (let i = 0; i < 20; i++) {
        if (spawnSync('losetup', ['-d', this.loop], { stdio: 'ignore' }).status === 0) break;
        await sleep(250);
      }
      // losetup -d on a busy device only sets autoclear: wait until the nbdfuse file is let go.
      for (let i = 0; i < 40 && capture(['losetup', '--associated', this.image], { allowFail: true }).trim() !== ''; i++) await sleep(250);
      if (capture(['losetup', '--associated', this.image], { allowFail: true }).trim() !== '') problems.push(`a loop device still uses ${this.image}`);
      this.loop = null;
    }
    for (let i = 0; i < 20 && isMounted(this.fuseDir); i++) {
      spawnSync('fusermount3', ['-u', this.fuseDir], { stdio: 'ignore' });
      if (isMounted(this.fuseDir)) await sleep(250);
    }
    if (isMounted(this.fuseDir)) {
      spawnSync('fusermount3', ['-u', '-z', this.fuseDir], { stdio: 'ignore' });
      problems.push(`${this.fuseDir} needed a lazy fusermount3 -u`);
    }
    if (this.nbdfuse) {
      if (!(await settles(this.nbdfuse.done, 10_000))) {
        problems.push('nbdfuse had to be killed');
        await stopChild(this.nbdfuse, 5000);
      }
      this.nbdfuse = null;
    }
    liveAttachments.delete(this);
    return problems;
  }

  /** Last resort on a forced exit: lazy umount, detach, lazy fusermount, synchronously. */
  emergencyTeardown(): void {
    spawnSync('umount', ['-l', this.mountPoint], { stdio: 'ignore' });
    if (this.loop) spawnSync('losetup', ['-d', this.loop], { stdio: 'ignore' });
    spawnSync('fusermount3', ['-u', '-z', this.fuseDir], { stdio: 'ignore' });
    if (this.nbdfuse) killGroup(this.nbdfuse.child, 'SIGKILL');
  }
}

function dropCaches(): void {
  spawnSync('sync', [], { stdio: 'ignore' });
  try {
    fs.writeFileSync('/proc/sys/vm/drop_caches', '3');
  } catch {
    // not root: the remount alone empties the file system's own caches
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Workloads

async function installPackages(names: string[], config: AccuracyConfig, scratch: string, progress: Progress): Promise<void> {
  const missing = names.filter((n) => !packageInstalled(n));
  if (missing.length === 0) return;
  if (!config.install) throw new Error(`missing Debian packages ${missing.join(' ')} (--no-install)`);
  progress.info(`installing ${missing.join(' ')} with apt-get`);
  await runChecked(['apt-get', 'install', '-y', '--no-install-recommends', '-o', 'DPkg::Lock::Timeout=900', ...missing], scratch, 'apt-get', { timeoutSeconds: 3600 });
}

const shq = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

/** What is on the volume, so a workload can build on what an earlier one left (or set it up untraced). */
interface VolumeState {
  formatted: boolean;
  tree: boolean;
}

interface WorkloadPlan {
  description: string;
  /** Untraced, on the mounted volume; the harness then remounts and drops caches. */
  setup: () => Promise<void>;
  /** The traced command. */
  script: string;
  /** After the traced phase, success or not (e.g. stop a server that outlived its script). */
  cleanup?: () => Promise<void>;
  after?: (ok: boolean) => void;
}

interface Tools {
  varmail: string;
  tarball: string;
  pgBin: string | null;
}

async function compileVarmail(workDir: string, scratch: string): Promise<string> {
  const source = path.join(REPO_ROOT, 'bench', 'overhead', 'varmail.c');
  const binary = path.join(workDir, 'varmail');
  await runChecked(['gcc', '-O2', '-Wall', '-o', binary, source, '-pthread', '-lm'], scratch, 'gcc-varmail');
  return binary;
}

/** Processes with their cwd, root or an open fd under `dir` (not this one). */
function processesUsing(dir: string): number[] {
  const inside = (target: string | null) => target !== null && (target === dir || target.startsWith(`${dir}/`));
  const link = (at: string): string | null => {
    try {
      return fs.readlinkSync(at);
    } catch {
      return null;
    }
  };
  const found: number[] = [];
  for (const name of fs.readdirSync('/proc')) {
    const pid = Number(name);
    if (!Number.isSafeInteger(pid) || pid <= 0 || pid === process.pid) continue;
    let fds: string[] = [];
    try {
      fds = fs.readdirSync(`/proc/${pid}/fd`);
    } catch {
      // gone, or a kernel thread
    }
    if (inside(link(`/proc/${pid}/cwd`)) || inside(link(`/proc/${pid}/root`)) || fds.some((fd) => inside(link(`/proc/${pid}/fd/${fd}`)))) found.push(pid);
  }
  return found;
}

type SignalLadder = readonly (readonly [NodeJS.Signals, number])[];

/**
 * Sends each signal of the ladder to the processes `find` names (asked again before each step), waiting up to its
 * time for them to go; stops when none is left.
 */
async function stopProcesses(find: () => number[], ladder: SignalLadder): Promise<void> {
  for (const [signal, ms] of ladder) {
    const pids = find().filter(pidAlive);
    if (pids.length === 0) return;
    for (const pid of pids) {
      try {
        process.kill(pid, signal);
      } catch {
        // exited meanwhile
      }
    }
    const deadline = Date.now() + ms;
    while (pids.some(pidAlive) && Date.now() < deadline) await sleep(100);
  }
}

/** SIGTERM to every process using `dir`, SIGKILL to those left after 10 s. */
function stopProcessesUsing(dir: string): Promise<void> {
  return stopProcesses(() => processesUsing(dir), [['SIGTERM', 10_000], ['SIGKILL', 5000]]);
}

function planWorkload(id: AccuracyWorkload, mnt: string, state: VolumeState, tools: Tools, config: AccuracyConfig, scratch: string, socketDir: string): WorkloadPlan {
  const tree = path.join(mnt, 'src');
  const untarTree = async (): Promise<void> => {
    await fsp.rm(tree, { recursive: true, force: true });
    await fsp.mkdir(tree, { recursive: true });
    await runChecked(['tar', '-xf', tools.tarball, '-C', tree], scratch, 'setup-untar', { timeoutSeconds: config.timeoutSeconds });
    state.tree = true;
  };
  const needTree = async (): Promise<void> => {
    if (!state.tree) await untarTree();
  };
  const tarName = path.basename(tools.tarball);
  switch (id) {
    case 'untar':
      return {
        description: `\`tar -xf ${tarName}\` onto the volume (a fresh directory).`,
        setup: async () => {
          await fsp.rm(tree, { recursive: true, force: true });
          await fsp.mkdir(tree, { recursive: true });
          state.tree = false;
        },
        script: `tar -xf ${shq(tools.tarball)} -C ${shq(tree)}`,
        after: (ok) => (state.tree = ok),
      };
    case 'find':
      return {
        description: `\`find src -name does-not-exist\` over the untarred ${tarName} tree, cold cache.`,
        setup: needTree,
        script: `find ${shq(tree)} -name does-not-exist`,
      };
    case 'cp':
      return {
        description: `\`cp -r src copy\` of the untarred ${tarName} tree on the same volume, cold cache.`,
        setup: async () => {
          await needTree();
          await fsp.rm(path.join(mnt, 'copy'), { recursive: true, force: true });
        },
        script: `cp -r ${shq(tree)} ${shq(path.join(mnt, 'copy'))}`,
      };
    case 'smallfiles': {
      const s = config.smallfiles;
      const dir = path.join(mnt, 'mail');
      return {
        description: `bench/overhead/varmail.c (filebench varmail flow: delete; create+append+fsync; read+append+fsync; read) with ${s.nfiles} files (gamma mean 16 KiB) set up untraced, then ${s.loops.toLocaleString('en-US')} flow loops on ${s.nthreads} threads traced, cold cache.`,
        setup: async () => {
          await runChecked([tools.varmail, 'setup', dir, '--nfiles', String(s.nfiles), '--seed', String(s.seed)], scratch, 'setup-varmail', { timeoutSeconds: config.timeoutSeconds });
        },
        script: `${shq(tools.varmail)} run ${shq(dir)} --nfiles ${s.nfiles} --seed ${s.seed} --loops ${s.loops} --nthreads ${s.nthreads}`,
      };
    }
    case 'command': {
      const command = config.command;
      if (command === null) throw new Error('the command workload needs --command');
      return {
        description: `\`${command}\`, run by sh in the mounted volume (its working directory; $SKY_MNT names it), cold cache.`,
        setup: async () => {},
        // A server the command started and left running (or a command that failed half-way) holds the volume.
        cleanup: () => stopProcessesUsing(mnt),
        script: `cd ${shq(mnt)} && SKY_MNT=${shq(mnt)} exec sh -c ${shq(command)}`,
      };
    }
    case 'db': {
      const pgBin = tools.pgBin;
      if (!pgBin) throw new Error('PostgreSQL binaries not found under /usr/lib/postgresql/*/bin');
      const root = path.join(mnt, 'pg');
      const data = path.join(root, 'data');
      const ids = userIds('postgres');
      if (!ids) throw new Error('no `postgres` user (the server refuses to run as root)');
      const asPg = `setpriv --reuid=${ids.uid} --regid=${ids.gid} --init-groups --`;
      const pgOpts = `-c listen_addresses= -c unix_socket_directories=${socketDir} -p 5432`;
      const stopServer = async (): Promise<void> => {
        // A server left running by a failed script: stop it by the pid it wrote (we started it).
        let pid = 0;
        try {
          pid = Number(fs.readFileSync(path.join(data, 'postmaster.pid'), 'utf8').split('\n')[0]);
        } catch {
          return;
        }
        if (!(pid > 0)) return;
        // PostgreSQL's own ladder: smart shutdown, then immediate, then kill.
        await stopProcesses(() => [pid], [['SIGINT', 60_000], ['SIGQUIT', 10_000], ['SIGKILL', 5000]]);
      };
      return {
        description: `PostgreSQL (${path.basename(path.dirname(pgBin))}): initdb with the data directory on the volume, server on a private unix socket, \`pgbench -i -s ${config.pgScale}\`, server stopped — all traced (server included), cold cache.`,
        setup: async () => {
          await fsp.rm(root, { recursive: true, force: true });
          await fsp.mkdir(root);
          await fsp.chown(root, ids.uid, ids.gid);
          await fsp.chmod(socketDir, 0o777);
        },
        script: [
          'set -e',
          `${asPg} ${shq(path.join(pgBin, 'initdb'))} -D ${shq(data)} -A trust -U postgres -E UTF8 --locale=C >/dev/null`,
          `${asPg} ${shq(path.join(pgBin, 'pg_ctl'))} -D ${shq(data)} -o ${shq(pgOpts)} -l ${shq(path.join(socketDir, 'server.log'))} -w -t 300 start >/dev/null`,
          `${shq(path.join(pgBin, 'pgbench'))} -i -q -s ${config.pgScale} -h ${shq(socketDir)} -p 5432 -U postgres postgres`,
          `${asPg} ${shq(path.join(pgBin, 'pg_ctl'))} -D ${shq(data)} -m fast -w -t 300 stop >/dev/null`,
        ].join('\n'),
        cleanup: stopServer,
      };
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Scoring the window of the tag log

interface LogTag {
  origin: 'metadata' | 'data' | 'unknown';
  ioClass: number;
  fileSize?: number;
}

interface LogLine {
  t?: number;
  op?: string;
  offset?: number;
  length?: number;
  tag?: LogTag | null;
  sky?: string;
  started?: string;
}

interface Window {
  /** Absolute times (Date.now()). */
  startMs: number;
  agentEndMs: number;
  endMs: number;
}

export interface WindowScore {
  requestTime: AccuracyReport;
  counts: WindowCounts;
  diagnosis: DiagnosisRow[];
  dataMissesByDir: Record<string, number>;
  windowLog: string;
}

/** Ranges of the volume a finer name is known for (ext4's journal, which GETFSMAP only calls "allocated"). */
export interface NamedRange {
  start: number;
  end: number;
  kind: string;
}

/** The ext4 journal's place on the volume (debugfs on the read-only mounted device), for the diagnosis. */
export function parseDebugfsExtents(text: string, blockBytes: number, offsetInExport: number, kind: string): NamedRange[] {
  const ranges: NamedRange[] = [];
  const extents = text.slice(text.indexOf('EXTENTS:'));
  for (const match of extents.matchAll(/\((?:\d+)(?:-(?:\d+))?\):(\d+)(?:-(\d+))?/g)) {
    const first = Number(match[1]);
    const last = match[2] === undefined ? first : Number(match[2]);
    ranges.push({ start: offsetInExport + first * blockBytes, end: offsetInExport + (last + 1) * blockBytes, kind });
  }
  return ranges;
}

function ext4JournalRanges(device: string, offsetInExport: number): NamedRange[] {
  const header = capture(['dumpe2fs', '-h', device], { allowFail: true });
  const blockBytes = Number(/^Block size:\s*(\d+)/m.exec(header)?.[1] ?? 0);
  const inode = Number(/^Journal inode:\s*(\d+)/m.exec(header)?.[1] ?? 0);
  if (!(blockBytes > 0) || !(inode > 0)) return [];
  return parseDebugfsExtents(capture(['debugfs', '-R', `stat <${inode}>`, device], { allowFail: true }), blockBytes, offsetInExport, 'journal');
}

/** The finer name of a truth label's piece: bytes of [start, end) inside the named ranges, and the rest. */
function refine(start: number, end: number, kind: string, named: readonly NamedRange[]): Array<{ kind: string; bytes: number }> {
  if (named.length === 0) return [{ kind, bytes: end - start }];
  const pieces: Array<{ kind: string; bytes: number }> = [];
  let inside = 0;
  for (const range of named) {
    const overlap = Math.min(end, range.end) - Math.max(start, range.start);
    if (overlap > 0) {
      pieces.push({ kind: range.kind, bytes: overlap });
      inside += overlap;
    }
  }
  if (end - start - inside > 0) pieces.push({ kind, bytes: end - start - inside });
  return pieces;
}

/** XFS names blocks an inode owns that are not file data (directories, symlinks) by inode: one name for them all. */
function metadataKind(kind: string): string {
  return /^inode-\d+$/.test(kind) ? 'inode-owned (directory/symlink blocks)' : kind;
}

function directoryKey(file: string, mountPoint: string): string {
  const relative = path.relative(mountPoint, file).split(path.sep);
  return relative.slice(0, Math.min(3, relative.length - 1)).join('/') || '.';
}

/**
 * Streams the tag log: requests logged between window.startMs and window.endMs are scored against the truth; the
 * header, those requests and every later re-tag are copied to a window log for `sky report`.
 */
export async function scoreWindow(logPath: string, truth: GroundTruth, window: Window, mountPoint: string, windowLog: string, named: readonly NamedRange[] = []): Promise<WindowScore> {
  const report = emptyReport();
  const counts: WindowCounts = { byOp: {}, retags: 0, untagged: 0, windowMs: window.endMs - window.startMs };
  const diagnosis = new Map<string, DiagnosisRow>();
  const dataMissesByDir: Record<string, number> = {};
  const out = fs.createWriteStream(windowLog);
  let startedMs: number | null = null;
  let startT = 0;
  let agentEndT = 0;
  let endT = 0;
  const request: TaggedRequest = { offset: 0, length: 0, direction: 'read', tag: null };
  const lines = createInterface({ input: fs.createReadStream(logPath), crlfDelay: Infinity });
  for await (const line of lines) {
    if (line.trim() === '') continue;
    const entry = JSON.parse(line) as LogLine;
    if (startedMs === null) {
      if (entry.sky !== 'tag-log' || typeof entry.started !== 'string') throw new Error(`${logPath}: the first line is not a tag-log header`);
      startedMs = Date.parse(entry.started);
      startT = window.startMs - startedMs;
      agentEndT = window.agentEndMs - startedMs;
      endT = window.endMs - startedMs;
      out.write(line + '\n');
      continue;
    }
    const t = entry.t ?? 0;
    if (t < startT) continue;
    if (entry.op === 'retag') {
      counts.retags += 1;
      out.write(line + '\n');
      continue;
    }
    if (t > endT || entry.op === undefined || entry.offset === undefined || entry.length === undefined) continue;
    out.write(line + '\n');
    const op = (counts.byOp[entry.op] ??= { requests: 0, bytes: 0 });
    op.requests += 1;
    op.bytes += entry.length;
    if (entry.op !== 'read' && entry.op !== 'write') continue;
    if (entry.length <= 0) continue;
    if (entry.tag === null || entry.tag === undefined) counts.untagged += 1;
    request.offset = entry.offset;
    request.length = entry.length;
    request.direction = entry.op;
    request.tag = entry.tag ?? null;
    scoreOne(report, request, truth, PAPER_IOCLASS_TABLE);
    // Where does it go wrong: the bytes whose origin tag is not right, by what they really are.
    const tagged = request.tag === null ? 'none' : request.tag.origin;
    const phase = t <= agentEndT ? 'workload' : 'umount';
    for (const segment of truth.segments(request.offset, request.length)) {
      const label = segment.label;
      if (label.origin === 'free') continue;
      if (tagged === label.origin) continue;
      const bytes = segment.end - segment.start;
      const pieces: Array<{ kind: string; bytes: number }> = [];
      if (label.origin === 'data') {
        const size = label.owners?.[0]?.sizeBytes ?? 0;
        pieces.push({ kind: `data (${sizeRule(size).name})`, bytes });
        const dir = directoryKey(label.owners?.[0]?.path ?? mountPoint, mountPoint);
        dataMissesByDir[dir] = (dataMissesByDir[dir] ?? 0) + bytes;
      } else for (const piece of label.kind === 'allocated' ? refine(segment.start, segment.end, label.kind, named) : [{ kind: metadataKind(label.kind), bytes }]) pieces.push({ kind: `metadata: ${piece.kind}`, bytes: piece.bytes });
      for (const piece of pieces) {
        const key = `${phase}|${entry.op}|${piece.kind}|${tagged}`;
        let row = diagnosis.get(key);
        if (!row) diagnosis.set(key, (row = { phase, direction: entry.op, truth: piece.kind, tagged, bytes: 0, requests: 0 }));
        row.bytes += piece.bytes;
      }
    }
    // Count the request once, under its main truth (as scoreOne does).
    const main = truth.classify(request.offset, request.length);
    if (main.origin !== 'free' && main.origin !== tagged) {
      const mainKind = main.kind === 'allocated' ? refine(request.offset, request.offset + request.length, main.kind, named).sort((a, b) => b.bytes - a.bytes)[0].kind : metadataKind(main.kind);
      const truthName = main.origin === 'data' ? `data (${sizeRule(main.fileSize ?? 0).name})` : `metadata: ${mainKind}`;
      const row = diagnosis.get(`${phase}|${entry.op}|${truthName}|${tagged}`);
      if (row) row.requests += 1;
    }
  }
  await new Promise<void>((resolve, reject) => out.end((error?: Error | null) => (error ? reject(error) : resolve())));
  if (startedMs === null) throw new Error(`${logPath} is empty (no header)`);
  return { requestTime: report, counts, diagnosis: [...diagnosis.values()].sort((a, b) => b.bytes - a.bytes), dataMissesByDir, windowLog };
}

/**
 * Scores after re-tags come from `sky report`'s library (src/report): it replays the window log, applies every
 * re-tag to the requests it changed, and scores both. Its request-time score must equal ours (same log, same
 * truth, same scorer): a cross-check of the windowing and of its reader.
 */
async function afterRetagScores(windowLog: string, truth: GroundTruth, requestTime: AccuracyReport): Promise<{ scores: RetagScores | null; note?: string }> {
  let report;
  try {
    const { buildReport } = await import('../report/index.js');
    report = await buildReport(windowLog, { truth });
  } catch (error) {
    return { scores: null, note: `sky report could not score this log: ${(error as Error).message}` };
  }
  const accuracy = report.accuracy;
  if (!accuracy) return { scores: null, note: 'sky report returned no accuracy section' };
  const notes: string[] = [];
  const same = (a: Verdicts, b: Verdicts) => a.right.bytes === b.right.bytes && a.wrong.bytes === b.wrong.bytes && a.unknown.bytes === b.unknown.bytes;
  if (!same(accuracy.atRequest.origin, requestTime.origin) || !same(accuracy.atRequest.ioClass, requestTime.ioClass)) {
    notes.push(`sky report's request-time score differs from the harness's (origin right ${accuracy.atRequest.origin.right.bytes} vs ${requestTime.origin.right.bytes} bytes)`);
  }
  if (!accuracy.afterRetagComplete) notes.push('re-tag bookkeeping hit its bound: later re-tags were not applied');
  notes.push(`${accuracy.retagged.requests.toLocaleString('en-US')} requests (${formatBytesShort(accuracy.retagged.bytes)}) had bytes re-tagged later`);
  const misses = accuracy.afterRetagMisses;
  if (misses.overwritten + misses.notRetagged + misses.retagged > 0) {
    notes.push(
      `origin not right after re-tags: ${formatBytesShort(misses.overwritten)} overwritten before a re-tag reached them, ` +
        `${formatBytesShort(misses.notRetagged)} never re-tagged, ${formatBytesShort(misses.retagged)} re-tagged and still not right`,
    );
  }
  return { scores: { origin: accuracy.afterRetag.origin, ioClass: accuracy.afterRetag.ioClass, sizeClass: accuracy.afterRetag.sizeClass, misses }, note: notes.join('; ') };
}

// ---------------------------------------------------------------------------------------------------------------
// The bench

export interface AccuracyOutcome {
  report: AccuracyBenchReport;
  files: { markdown: string; json: string; svg: string; docs?: string };
}

let interrupted = false;

/** Stops an agent that is still running `lingerSeconds` after the workload's marker file appeared. */
function watchLinger(agent: Started, doneFile: string, lingerSeconds: number, progress: Progress, what: string): { fired: boolean } {
  const state = { fired: false };
  let doneAt: number | null = null;
  const timer = setInterval(() => {
    if (doneAt === null && fs.existsSync(doneFile)) doneAt = Date.now();
    if (doneAt !== null && Date.now() - doneAt > lingerSeconds * 1000 && !state.fired) {
      state.fired = true;
      progress.info(`${what}: the agent is still running ${lingerSeconds} s after its command ended; stopping it`);
      void stopChild(agent, 15_000);
    }
  }, 500);
  void agent.done.finally(() => clearInterval(timer));
  return state;
}

async function runOne(
  config: AccuracyConfig,
  fsType: FsType,
  id: AccuracyWorkload,
  ctx: { dir: string; image: string; mnt: string; state: VolumeState; tools: Tools; progress: Progress; socketDir: string },
): Promise<AccuracyRun> {
  const { progress, state, mnt } = ctx;
  const began = Date.now();
  const tag = `${fsType}-${id}`;
  const scratch = path.join(ctx.dir, tag);
  await fsp.mkdir(scratch, { recursive: true });
  const run: AccuracyRun = {
    fs: fsType,
    workload: id,
    description: '',
    ok: false,
    seconds: { setup: 0, traced: 0, umount: 0, truth: 0, total: 0 },
    agent: null,
    truth: null,
    counts: null,
    requestTime: null,
    afterRetag: null,
    diagnosis: [],
    dataMissesByDir: {},
  };
  let engine: EngineHandle | null = null;
  let attachment: Attachment | null = null;
  let plan: WorkloadPlan | null = null;
  let truth: GroundTruth | null = null;
  let named: NamedRange[] = [];
  const window: Window = { startMs: 0, agentEndMs: 0, endMs: 0 };
  const step = (message: string) => progress.info(`${fsType} ${id}: ${message}`);
  try {
    step('starting the engine');
    engine = await startEngine(config, scratch, ctx.image, 'engine');
    attachment = new Attachment(scratch, mnt, `nbd+unix:///${EXPORT_NAME}?socket=${engine.nbdSocket}`, scratch);
    await attachment.attach();
    if (!state.formatted) {
      step(`mkfs.${fsType} on ${attachment.device} (${formatBytesShort(config.volumeBytes)})`);
      await attachment.mkfs(fsType, config.mkfsOptions);
      attachment.mountOptions = config.mountOptions;
      state.formatted = true;
    }
    await attachment.mount();
    plan = planWorkload(id, mnt, state, ctx.tools, config, scratch, ctx.socketDir);
    run.description = plan.description;
    step('setup (untraced)');
    const setupBegan = Date.now();
    await progress.during(`${fsType} ${id} setup`, plan.setup());
    // Cold cache: the file system forgets what it read (remount), the kernel drops its page cache.
    await attachment.umount();
    dropCaches();
    await attachment.mount();
    run.seconds.setup = (Date.now() - setupBegan) / 1000;
    if (interrupted) throw new Error('interrupted');
    await sleep(WINDOW_GUARD_MS);
    window.startMs = Date.now();
    // The workload is a script file; a marker file says when it ended, so an agent that does not exit after its
    // command has ended (it should flush and exit) is noticed and stopped instead of hanging the bench.
    const scriptFile = path.join(scratch, 'workload.sh');
    const doneFile = path.join(scratch, 'workload.done');
    await fsp.writeFile(scriptFile, plan.script + '\n');
    await fsp.rm(doneFile, { force: true });
    // The workload's own stderr goes to a file too: a failure is reported with its words, not the agent's summary.
    const workloadErr = path.join(scratch, 'workload.err');
    const wrapped = `sh ${shq(scriptFile)} 2> ${shq(workloadErr)}; rc=$?; echo $rc > ${shq(doneFile)}; exit $rc`;
    const argv = config.agent
      ? [...config.skyArgv, 'agent', '--engine', `unix:${engine.hintsSocket}`, '--volume', EXPORT_NAME, '--token', engine.token, ...(config.backend ? ['--backend', config.backend] : []), '--', 'sh', '-c', wrapped]
      : ['sh', '-c', wrapped];
    step(`traced phase: ${config.agent ? 'sky agent -- ' : ''}${plan.script.split('\n').filter((l) => l !== 'set -e').join('; ').slice(0, 160)}`);
    const agentErr = path.join(scratch, 'agent.err');
    const agent = start(argv, { stdoutFile: path.join(scratch, 'workload.out'), stderrFile: agentErr, cwd: mnt, timeoutSeconds: config.timeoutSeconds });
    const lingered = watchLinger(agent, doneFile, config.agentLingerSeconds, progress, `${fsType} ${id}`);
    const traced = await progress.during(`${fsType} ${id} traced phase`, agent.done);
    window.agentEndMs = Date.now();
    const workloadEnded = fs.existsSync(doneFile) ? fs.statSync(doneFile).mtimeMs : null;
    run.seconds.traced = traced.wallSeconds;
    if (workloadEnded !== null) run.seconds.agentAfterWorkload = Math.max(0, (window.agentEndMs - workloadEnded) / 1000);
    if (lingered.fired) throw new Error(`sky agent did not exit within ${config.agentLingerSeconds} s after its command ended (stopped by the bench): ${(await tail(agentErr, 600)).trim()}`);
    run.agent = { exitCode: traced.code, summary: await tail(agentErr, 6000) };
    plan.after?.(traced.code === 0);
    if (plan.cleanup) await plan.cleanup();
    if (traced.code !== 0) {
      const said = fs.existsSync(workloadErr) ? (await tail(workloadErr, 600)).trim() : '';
      throw new Error(`the traced command failed (${traced.timedOut ? 'timed out' : `exit ${traced.code ?? traced.signal}`}): ${said || (await tail(agentErr, 600)).trim()}`);
    }
    step(`traced phase done in ${traced.wallSeconds.toFixed(1)} s; umount (writes the rest back)`);
    const umountBegan = Date.now();
    await progress.during(`${fsType} ${id} umount`, attachment.umount());
    window.endMs = Date.now();
    run.seconds.umount = (window.endMs - umountBegan) / 1000;
    await sleep(WINDOW_GUARD_MS);
    step('ground truth (read-only remount, FIEMAP of every file, space map)');
    const truthBegan = Date.now();
    await attachment.mount(true);
    truth = GroundTruth.fromMount(mnt, { volumeBytes: config.volumeBytes });
    if (fsType === 'ext4' || fsType === 'ext3') named = ext4JournalRanges(attachment.device, truth.offsetInExport);
    run.seconds.truth = (Date.now() - truthBegan) / 1000;
    run.truth = { stats: truth.stats, totals: truth.totals(), warnings: [...truth.warnings] };
    await fsp.writeFile(path.join(scratch, 'truth.json'), JSON.stringify(truth.toJSON()));
    await attachment.umount();
  } catch (error) {
    run.error = (error as Error).message;
  } finally {
    if (plan?.cleanup) await plan.cleanup().catch(() => undefined);
    if (attachment) {
      const problems = await attachment.teardown();
      if (problems.length > 0) run.error = [run.error, `teardown: ${problems.join('; ')}`].filter(Boolean).join('; ');
    }
    if (engine) await stopChild(engine.started, 60_000);
  }
  if (truth && engine && !run.error) {
    try {
      step('scoring the tag log');
      const scored = await scoreWindow(engine.logPath, truth, window, mnt, path.join(scratch, 'window.tags.jsonl'), named);
      run.requestTime = scored.requestTime;
      run.counts = scored.counts;
      run.diagnosis = scored.diagnosis;
      run.dataMissesByDir = scored.dataMissesByDir;
      const after = await afterRetagScores(scored.windowLog, truth, scored.requestTime);
      run.afterRetag = after.scores;
      if (after.note) run.afterRetagNote = after.note;
      run.ok = true;
    } catch (error) {
      run.error = `scoring: ${(error as Error).message}`;
    }
  }
  run.seconds.total = (Date.now() - began) / 1000;
  if (run.ok && run.requestTime) {
    step(`origin bytes right ${fmtPct(percentRight(run.requestTime.origin, 'bytes'))} (after re-tags ${fmtPct(percentRight(run.afterRetag?.origin, 'bytes'))}), size class ${fmtPct(percentRight(run.requestTime.sizeClass, 'bytes'))} (after re-tags ${fmtPct(percentRight(run.afterRetag?.sizeClass, 'bytes'))}), I/O class ${fmtPct(percentRight(run.requestTime.ioClass, 'bytes'))}, unknown ${fmtPct(percentOf(run.requestTime.origin, 'unknown', 'bytes'))} (${run.seconds.total.toFixed(0)} s)`);
  } else step(`FAILED: ${run.error}`);
  return run;
}

export async function runAccuracyBench(config: AccuracyConfig, progress = new Progress()): Promise<AccuracyOutcome> {
  if (process.getuid?.() !== 0) throw new Error('sky bench accuracy needs root (mount, losetup, FIEMAP/GETFSMAP, tracing)');
  const began = Date.now();
  const notes: string[] = [];
  const runs: AccuracyRun[] = [];
  const work = await fsp.mkdtemp(path.join(os.tmpdir(), 'sky-accuracy-'));
  await fsp.chmod(work, 0o755);
  const socketDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'sky-accuracy-pg-'));
  const machine = machineInfo(work);
  progress.info(`${machine.cpuModel}, ${machine.cores} cores, Linux ${machine.kernel}; work dir ${work}`);
  let signals = 0;
  const onSignal = (signal: NodeJS.Signals): void => {
    signals += 1;
    interrupted = true;
    if (signals === 1) {
      progress.info(`${signal}: stopping the workload (SIGTERM, SIGKILL after 15 s), then tearing the volume down`);
      for (const child of workloadChildren) killGroup(child, 'SIGTERM');
      setTimeout(() => {
        for (const child of workloadChildren) killGroup(child, 'SIGKILL');
      }, 15_000).unref();
    } else if (signals === 2) {
      progress.info(`${signal} again: killing the workload now; teardown continues (a third signal exits at once)`);
      for (const child of workloadChildren) killGroup(child, 'SIGKILL');
    } else {
      progress.info(`${signal} a third time: lazy teardown and exit`);
      for (const child of workloadChildren) killGroup(child, 'SIGKILL');
      for (const attachment of liveAttachments) attachment.emergencyTeardown();
      for (const child of infraChildren) killGroup(child, 'SIGKILL');
      process.exit(130);
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const { skyArgv: _skyArgv, ...shownConfig } = config;
  const snapshot = (): AccuracyBenchReport => ({ version: 1, machine, config: shownConfig, durationSeconds: (Date.now() - began) / 1000, notes, runs });
  try {
    if (spawnSync('sh', ['-c', 'mount | grep -q tracefs || mount -t tracefs nodev /sys/kernel/tracing'], { stdio: 'ignore' }).status !== 0) notes.push('tracefs could not be mounted');
    const needsTree = config.workloads.some((w) => w === 'untar' || w === 'find' || w === 'cp');
    let tarball = config.tarball ?? findKernelTarball();
    if (!tarball && needsTree) {
      await installPackages(['linux-source'], config, work, progress);
      tarball = findKernelTarball();
    }
    if (!tarball && needsTree) throw new Error('no /usr/src/linux-source-*.tar.xz (install linux-source, or pass --tarball FILE)');
    let pgBin = findPostgresBin();
    if (!pgBin && config.workloads.includes('db')) {
      await installPackages(['postgresql', 'postgresql-contrib'], config, work, progress);
      pgBin = findPostgresBin();
    }
    const varmail = config.workloads.includes('smallfiles') ? await compileVarmail(work, work) : '';
    const tools: Tools = { varmail, tarball: tarball ?? '', pgBin };
    if (config.agent) {
      const help = spawnSync(config.skyArgv[0], [...config.skyArgv.slice(1), 'agent', '--help'], { encoding: 'utf8', timeout: 60_000 });
      if (help.status !== 0 || !/--engine/.test(help.stdout)) throw new Error(`\`sky agent\` is not available in this build: ${(help.stderr || help.stdout).trim().split('\n')[0]}`);
    } else notes.push('Run without `sky agent` (--no-agent): no hints reach the engine, so every tag is unknown; a baseline for the harness, not a measurement of tagging.');
    for (const fsType of config.fsTypes) {
      if (interrupted) break;
      const volumeDir = await fsp.mkdtemp(path.join(config.volumeDir, 'sky-accuracy-'));
      const dir = await fsp.mkdtemp(path.join(work, `${fsType}-`));
      await fsp.chmod(dir, 0o755);
      const mnt = path.join(dir, 'mnt');
      await fsp.mkdir(mnt, { mode: 0o755 });
      const state: VolumeState = { formatted: false, tree: false };
      try {
        for (const id of config.workloads) {
          if (interrupted) break;
          runs.push(await runOne(config, fsType, id, { dir, image: path.join(volumeDir, 'volume.img'), mnt, state, tools, progress, socketDir }));
          // Results so far, so an interrupted or crashed run still leaves its figures behind.
          await writeReport(snapshot(), { ...config, docs: null });
          // A failed mkfs leaves nothing to build on; later workloads would fail the same way.
          if (!state.formatted) break;
        }
      } finally {
        await fsp.rm(volumeDir, { recursive: true, force: true });
        if (!config.keep) await fsp.rm(dir, { recursive: true, force: true }).catch(() => undefined);
      }
    }
    if (interrupted) notes.push('Interrupted (Ctrl-C): partial results.');
    machine.loadAverageEnd = os.loadavg();
    const report = snapshot();
    const files = await writeReport(report, config);
    return { report, files };
  } finally {
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    for (const child of [...workloadChildren, ...infraChildren]) killGroup(child, 'SIGTERM');
    await fsp.rm(socketDir, { recursive: true, force: true }).catch(() => undefined);
    if (!config.keep) await fsp.rm(work, { recursive: true, force: true }).catch(() => undefined);
    else progress.info(`kept ${work} (logs, tag logs, truths)`);
  }
}

async function writeReport(report: AccuracyBenchReport, config: AccuracyConfig): Promise<AccuracyOutcome['files']> {
  await fsp.mkdir(config.outDir, { recursive: true });
  const stamp = report.machine.date.slice(0, 19).replace(/[:T]/g, '-');
  const base = path.join(config.outDir, `accuracy-${stamp}`);
  const files: AccuracyOutcome['files'] = { markdown: `${base}.md`, json: `${base}.json`, svg: `${base}.svg` };
  await fsp.writeFile(files.svg, renderSvg(report.runs, `Sky tag accuracy: bytes right (${report.machine.date.slice(0, 10)}, ${report.machine.cores} cores)`));
  await fsp.writeFile(files.markdown, renderMarkdown(report, path.basename(files.svg)));
  await fsp.writeFile(files.json, JSON.stringify(report, null, 2) + '\n');
  if (config.docs) {
    const text = await fsp.readFile(config.docs, 'utf8').catch(() => '# Benchmarks\n');
    const link = path.relative(path.dirname(config.docs), files.markdown);
    await fsp.writeFile(config.docs, updateDocs(text, report, link));
    files.docs = config.docs;
  }
  return files;
}

// ---------------------------------------------------------------------------------------------------------------
// CLI

export function parseList<T extends string>(text: string, known: readonly T[], what: string, all: readonly T[] = known): T[] {
  if (text === 'all') return [...all];
  const items = text.split(',').map((s) => s.trim()).filter(Boolean);
  for (const item of items) if (!known.includes(item as T)) throw new Error(`unknown ${what} "${item}" (known: ${known.join(', ')})`);
  // Keep the canonical order: later kernel-tree workloads build on the earlier ones' tree.
  return known.filter((k) => items.includes(k));
}

/** The built-in workloads asked for (all, unless only --command is given), then --command's. */
function workloadsOf(options: Pick<CliOptions, 'workloads' | 'command'>): AccuracyWorkload[] {
  if (options.command !== undefined && options.command.trim() === '') throw new Error('--command is empty');
  const builtIn: AccuracyWorkload[] = options.workloads !== undefined ? parseList(options.workloads, ACCURACY_WORKLOADS, 'workload') : options.command !== undefined ? [] : [...ACCURACY_WORKLOADS];
  return options.command !== undefined ? [...builtIn, 'command'] : builtIn;
}

interface CliOptions {
  fs: string;
  workloads?: string;
  command?: string;
  mkfsOptions?: string;
  mountOptions?: string;
  out?: string;
  size: string;
  volumeDir: string;
  agent: boolean;
  backend?: string;
  tarball?: string;
  smallfilesFiles?: string;
  smallfilesLoops?: string;
  smallfilesThreads?: string;
  pgScale?: string;
  timeout?: string;
  agentLinger?: string;
  docs?: string | boolean;
  keep?: boolean;
  install: boolean;
  sky?: string;
}

export function resolveAccuracyConfig(options: CliOptions): AccuracyConfig {
  const backend = options.backend ?? null;
  if (backend !== null && backend !== 'ebpf' && backend !== 'ptrace') throw new Error(`--backend must be ebpf or ptrace, got ${backend}`);
  const volumeBytes = parseSize(options.size);
  if (volumeBytes < 512 * MiB) throw new Error('--size must be at least 512M (btrfs and the kernel tree need room)');
  const docs = options.docs === true ? path.join(REPO_ROOT, 'docs', 'benchmarks.md') : typeof options.docs === 'string' ? path.resolve(options.docs) : null;
  return {
    fsTypes: parseList(options.fs, FS_TYPES, 'file system', FS_TYPES_ALL),
    workloads: workloadsOf(options),
    outDir: path.resolve(options.out ?? path.join(REPO_ROOT, 'bench', 'accuracy', 'results')),
    volumeBytes,
    volumeDir: path.resolve(options.volumeDir),
    agent: options.agent,
    backend,
    tarball: options.tarball ? path.resolve(options.tarball) : null,
    smallfiles: {
      nfiles: positiveInt(options.smallfilesFiles, 'smallfiles-files', 1000),
      loops: positiveInt(options.smallfilesLoops, 'smallfiles-loops', 4000),
      nthreads: positiveInt(options.smallfilesThreads, 'smallfiles-threads', 4),
      seed: 1,
    },
    pgScale: positiveInt(options.pgScale, 'pg-scale', 20),
    command: options.command ?? null,
    mkfsOptions: options.mkfsOptions ? options.mkfsOptions.split(/\s+/).filter(Boolean) : [],
    mountOptions: options.mountOptions?.trim() || null,
    timeoutSeconds: positiveInt(options.timeout, 'timeout', 3600),
    agentLingerSeconds: positiveInt(options.agentLinger, 'agent-linger', 300),
    docs,
    keep: options.keep === true,
    skyArgv: options.sky ? options.sky.split(/\s+/).filter(Boolean) : [process.execPath, path.join(REPO_ROOT, 'dist', 'cli', 'main.js')],
    install: options.install,
  };
}

export function registerBenchAccuracy(bench: Command): void {
  bench
    .command('accuracy')
    .description('tag accuracy on a real Sky volume: workloads under `sky agent`, ground truth from the file system (ext4, xfs, btrfs)')
    .option('--fs <list>', `file systems: ${FS_TYPES.join(',')} (all: ${FS_TYPES_ALL.join(',')})`, 'all')
    .option('--workloads <list>', `workloads, run in this order: ${ACCURACY_WORKLOADS.join(',')} (or all; default all, or none with --command)`)
    .option('--mkfs-options <args>', 'more mkfs arguments for every file system of the run, e.g. "-b 1024" or "-O ^has_journal" (space-separated)')
    .option('--mount-options <opts>', 'mount -o options for the volume, e.g. nodelalloc or data=journal')
    .option('--command <shell>', 'one more workload: a shell command run in the mounted volume (cwd and $SKY_MNT), traced like the others')
    .option('--out <dir>', 'results directory (default bench/accuracy/results); writes accuracy-<date>.{md,json,svg}')
    .option('--size <size>', 'volume size (a sparse file)', '8G')
    .option('--volume-dir <dir>', 'where the sparse volume file lives', '/dev/shm')
    .option('--no-agent', 'run the workloads untraced (every tag unknown): a baseline that checks the harness')
    .option('--backend <backend>', 'tracer backend for `sky agent` (ebpf or ptrace; default: the agent\'s)')
    .option('--tarball <file>', 'source tarball for untar/find/cp (default /usr/src/linux-source-*.tar.xz)')
    .option('--smallfiles-files <n>', 'small-file workload: files in the fileset (default 1000)')
    .option('--smallfiles-loops <n>', 'small-file workload: flow loops (default 4000)')
    .option('--smallfiles-threads <n>', 'small-file workload: threads (default 4)')
    .option('--pg-scale <n>', 'pgbench -i scale (default 20)')
    .option('--timeout <seconds>', 'per-phase timeout (default 3600)')
    .option('--agent-linger <seconds>', 'stop `sky agent` when it has not exited this long after its command ended (default 300)')
    .option('--docs [file]', 'also write the measured table into docs/benchmarks.md (or FILE)')
    .option('--keep', 'keep the work directory (engine logs, tag logs, truths)')
    .option('--no-install', 'do not apt-get install missing packages (linux-source, postgresql)')
    .option('--sky <command>', 'how to run sky (default: this node and dist/cli/main.js)')
    .action(async (options: CliOptions) => {
      const config = resolveAccuracyConfig(options);
      const { report, files } = await runAccuracyBench(config);
      process.stdout.write(`\n${renderSummaryTable(report.runs)}\n\n`);
      for (const note of report.notes) process.stdout.write(`note: ${note}\n`);
      process.stdout.write(`wrote ${[files.markdown, files.json, files.svg, files.docs].filter(Boolean).map((f) => path.relative(process.cwd(), f!)).join(', ')}\n`);
      if (interrupted) process.exitCode = 130;
      else if (report.runs.length === 0 || report.runs.some((r) => !r.ok)) process.exitCode = 1;
    });
}
