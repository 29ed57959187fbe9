/**
 * `sky bench nbd`: fio (nbd ioengine, unix socket) against Sky and against `nbdkit file` on identical tmpfs images,
 * alternating server by server within one run, and the Sky/nbdkit ratio per job against a target.
 *
 * Shape of a run: create a run folder on tmpfs, fill one image with random data and copy it (so reads hit data, not
 * holes), start both servers, then for each round and each job run fio against Sky and then nbdkit. Both servers are
 * stopped by pid at the end, on failure and on Ctrl-C. Results go to bench/nbd/results/ as markdown, JSON and an SVG
 * chart of the ratios; the lead merges them into docs/benchmarks.md.
 */
import assert from 'node:assert/strict';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, InvalidArgumentError, Option } from 'commander';
import { parseSize } from '../device/index.js';
import { escapeXml } from '../report/svg.js';

// ---------------------------------------------------------------------------------------------------------------
// What is measured

export type JobId = 'seqread' | 'seqwrite' | 'randread' | 'randwrite';

export interface BenchJob {
  id: JobId;
  label: string;
  rw: 'read' | 'write' | 'randread' | 'randwrite';
  blockSizeBytes: number;
  iodepth: number;
}

export const JOBS: readonly BenchJob[] = [
  { id: 'seqread', label: 'seq read 1 MiB QD8', rw: 'read', blockSizeBytes: 1 << 20, iodepth: 8 },
  { id: 'seqwrite', label: 'seq write 1 MiB QD8', rw: 'write', blockSizeBytes: 1 << 20, iodepth: 8 },
  { id: 'randread', label: 'rand read 4 KiB QD16', rw: 'randread', blockSizeBytes: 4096, iodepth: 16 },
  { id: 'randwrite', label: 'rand write 4 KiB QD16', rw: 'randwrite', blockSizeBytes: 4096, iodepth: 16 },
];

/** A server under test: a name and an argv template with {file} {socket} {export} {size} placeholders. */
export interface ServerSpec {
  name: string;
  argv: string[];
}

export const EXPORT_NAME = 'bench';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export function defaultSkyArgv(): string[] {
  const sky = path.join(REPO_ROOT, 'bin', 'sky');
  return [process.execPath, sky, 'serve', '--file', '{file}', '--size', '{size}', '--socket', '{socket}', '--export', '{export}', '--log-format', 'json'];
}

export function nbdkitArgv(): string[] {
  return ['nbdkit', '--foreground', '--exit-with-parent', '--unix', '{socket}', 'file', '{file}'];
}

export interface BenchOptions {
  rounds: number;
  runtimeSeconds: number;
  rampSeconds: number;
  imageSizeBytes: number;
  imageDir: string;
  outDir: string;
  jobs: readonly BenchJob[];
  targetRatio: number;
  sky: ServerSpec;
  anchor: ServerSpec;
  /** True when --sky-cmd / SKY_BENCH_SKY_CMD replaced Sky's server (harness validation). */
  skyOverridden: boolean;
}

// ---------------------------------------------------------------------------------------------------------------
// Pure helpers (unit-tested)

/** Splits a command line on whitespace (no quoting: the override is for simple commands). */
export function splitCommand(text: string): string[] {
  const argv = text.trim().split(/\s+/).filter((word) => word.length > 0);
  if (argv.length === 0) throw new Error('empty server command');
  return argv;
}

export function expandArgv(argv: readonly string[], vars: Record<string, string>): string[] {
  return argv.map((word) =>
    word.replace(/\{(\w+)\}/g, (whole, key: string) => {
      const value = vars[key];
      if (value === undefined) throw new Error(`unknown placeholder ${whole} in server command`);
      return value;
    }),
  );
}

export interface FioResult {
  bandwidthBytesPerSecond: number;
  iops: number;
  latencyMeanUs: number;
  latencyP99Us: number;
  ioBytes: number;
}

/** Reads fio's JSON (which the nbd engine may prefix with a "connected" line) for one job in one direction. */
export function parseFioOutput(text: string, direction: 'read' | 'write'): FioResult {
  const start = text.indexOf('{');
  if (start < 0) throw new Error('fio printed no JSON');
  const doc = JSON.parse(text.slice(start)) as { jobs?: Array<Record<string, unknown>> };
  const job = doc.jobs?.[0];
  if (!job) throw new Error('fio JSON has no jobs');
  if (job.error !== 0) throw new Error(`fio job failed with error ${String(job.error)}`);
  const side = job[direction] as {
    bw_bytes: number; iops: number; io_bytes: number;
    clat_ns: { mean: number; percentile?: Record<string, number> };
  };
  if (!side || side.io_bytes <= 0) throw new Error(`fio moved no data (${direction})`);
  return {
    bandwidthBytesPerSecond: side.bw_bytes,
    iops: side.iops,
    latencyMeanUs: side.clat_ns.mean / 1000,
    latencyP99Us: (side.clat_ns.percentile?.['99.000000'] ?? Number.NaN) / 1000,
    ioBytes: side.io_bytes,
  };
}

export interface Spread {
  median: number;
  min: number;
  max: number;
}

export function spread(values: readonly number[]): Spread {
  assert.ok(values.length > 0, 'spread of no values');
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  const median = sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
  return { median, min: sorted[0]!, max: sorted[sorted.length - 1]! };
}

export interface Sample extends FioResult {
  server: string;
  round: number;
  job: JobId;
  /** 1-minute load average just before the run: other work on the machine shows up here. */
  loadAverage: number;
}

export interface JobSummary {
  job: JobId;
  label: string;
  /** Per server name: MB/s (10^6 bytes) and IOPS over the rounds. */
  servers: Record<string, { megabytesPerSecond: Spread; iops: Spread; latencyMeanUs: Spread; latencyP99Us: Spread }>;
  /**
   * Median of the per-round ratios (round r of Sky over round r of the anchor, measured back to back): pairing
   * cancels load that drifts over the run, which on a shared machine is larger than the difference measured.
   */
  ratio: number;
  /** Range of the per-round ratios. */
  ratioMin: number;
  ratioMax: number;
  meetsTarget: boolean;
}

export function summarize(samples: readonly Sample[], jobs: readonly BenchJob[], sky: string, anchor: string, target: number): JobSummary[] {
  return jobs.map((job) => {
    const ofServer = (server: string) => samples.filter((s) => s.job === job.id && s.server === server).sort((a, b) => a.round - b.round);
    const servers: JobSummary['servers'] = {};
    for (const server of [sky, anchor]) {
      const own = ofServer(server);
      assert.ok(own.length > 0, `no samples for ${server} ${job.id}`);
      servers[server] = {
        megabytesPerSecond: spread(own.map((s) => s.bandwidthBytesPerSecond / 1e6)),
        iops: spread(own.map((s) => s.iops)),
        latencyMeanUs: spread(own.map((s) => s.latencyMeanUs)),
        latencyP99Us: spread(own.map((s) => s.latencyP99Us)),
      };
    }
    const skyRounds = ofServer(sky);
    const anchorRounds = ofServer(anchor);
    const perRound = skyRounds.map((s, i) => s.bandwidthBytesPerSecond / anchorRounds[i]!.bandwidthBytesPerSecond);
    const ratio = spread(perRound);
    return { job: job.id, label: job.label, servers, ratio: ratio.median, ratioMin: ratio.min, ratioMax: ratio.max, meetsTarget: ratio.median >= target };
  });
}

export function formatNumber(value: number): string {
  if (value >= 100_000) return `${(value / 1000).toFixed(0)}k`;
  if (value >= 10_000) return `${(value / 1000).toFixed(1)}k`;
  if (value >= 100) return value.toFixed(0);
  return value.toFixed(1);
}

function formatSpread(s: Spread): string {
  return `${formatNumber(s.median)} (${formatNumber(s.min)}–${formatNumber(s.max)})`;
}

/** Rows of the results table (header first); the same cells feed the terminal and the markdown. */
export function tableRows(summaries: readonly JobSummary[], sky: string, anchor: string, target: number): string[][] {
  const header = ['job', `${sky} MB/s`, `${sky} IOPS`, `${anchor} MB/s`, `${anchor} IOPS`, `${sky}/${anchor}`, `target ≥${target}×`];
  const rows = summaries.map((s) => [
    s.label,
    formatSpread(s.servers[sky]!.megabytesPerSecond),
    formatSpread(s.servers[sky]!.iops),
    formatSpread(s.servers[anchor]!.megabytesPerSecond),
    formatSpread(s.servers[anchor]!.iops),
    `${s.ratio.toFixed(2)}× (${s.ratioMin.toFixed(2)}–${s.ratioMax.toFixed(2)})`,
    s.meetsTarget ? 'met' : 'MISSED',
  ]);
  return [header, ...rows];
}

export function renderTerminalTable(rows: readonly string[][]): string {
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
  const line = (row: readonly string[]) => row.map((cell, column) => (column === 0 ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!))).join('  ');
  const rule = widths.map((w) => '─'.repeat(w)).join('  ');
  return [line(rows[0]!), rule, ...rows.slice(1).map(line)].join('\n');
}

export function renderMarkdownTable(rows: readonly string[][]): string {
  const line = (row: readonly string[]) => `| ${row.join(' | ')} |`;
  const align = rows[0]!.map((_, column) => (column === 0 ? ':---' : '---:'));
  return [line(rows[0]!), line(align), ...rows.slice(1).map(line)].join('\n');
}

export { escapeXml };

/** Horizontal bars of the ratio per job, whiskers for the per-round range, lines at the target and at parity. */
export function renderRatioSvg(summaries: readonly JobSummary[], sky: string, anchor: string, target: number): string {
  const labelWidth = 170, chartWidth = 420, rowHeight = 34, top = 40, width = labelWidth + chartWidth + 70;
  const height = top + rowHeight * summaries.length + 30;
  const scaleMax = Math.max(1.25, ...summaries.map((s) => s.ratioMax * 1.05));
  const x = (ratio: number) => labelWidth + (Math.max(0, ratio) / scaleMax) * chartWidth;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
    `<text x="10" y="20" font-size="14" font-weight="bold">${escapeXml(`${sky} / ${anchor} throughput (median and range of per-round ratios)`)}</text>`,
  ];
  summaries.forEach((s, i) => {
    const y = top + i * rowHeight;
    const colour = s.meetsTarget ? '#3a8d3a' : '#c0392b';
    parts.push(
      `<text x="${labelWidth - 8}" y="${y + 17}" text-anchor="end">${escapeXml(s.label)}</text>`,
      `<rect x="${labelWidth}" y="${y + 5}" width="${(x(s.ratio) - labelWidth).toFixed(1)}" height="18" fill="${colour}"/>`,
      `<line x1="${x(s.ratioMin).toFixed(1)}" x2="${x(s.ratioMax).toFixed(1)}" y1="${y + 14}" y2="${y + 14}" stroke="#222" stroke-width="1.5"/>`,
      `<text x="${(Math.max(x(s.ratio), x(s.ratioMax)) + 6).toFixed(1)}" y="${y + 18}">${s.ratio.toFixed(2)}×</text>`,
    );
  });
  const bottom = top + rowHeight * summaries.length;
  // Target label to the left of its line, parity to the right of its own, so the two never overlap.
  for (const [ratio, label, dash, anchor, shift] of [[target, `target ${target}×`, '4 3', 'end', -3], [1, 'parity 1×', '1 0', 'start', 3]] as const) {
    parts.push(
      `<line x1="${x(ratio).toFixed(1)}" x2="${x(ratio).toFixed(1)}" y1="${top - 4}" y2="${bottom}" stroke="#555" stroke-dasharray="${dash}"/>`,
      `<text x="${(x(ratio) + shift).toFixed(1)}" y="${bottom + 16}" text-anchor="${anchor}" fill="#555">${escapeXml(label)}</text>`,
    );
  }
  parts.push('</svg>');
  return parts.join('\n') + '\n';
}

// ---------------------------------------------------------------------------------------------------------------
// Machine and report

export interface MachineInfo {
  cpuModel: string;
  cores: number;
  kernel: string;
  node: string;
  nbdkit: string;
  fio: string;
  libnbd: string;
  skyCommit: string;
}

function firstLine(argv: string[]): string {
  try {
    return execFileSync(argv[0]!, argv.slice(1), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).split('\n')[0]!.trim();
  } catch {
    return 'unknown';
  }
}

export function machineInfo(): MachineInfo {
  const cpus = os.cpus();
  return {
    cpuModel: cpus[0]?.model.trim() ?? 'unknown',
    cores: cpus.length,
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    nbdkit: firstLine(['nbdkit', '--version']),
    fio: firstLine(['fio', '--version']),
    libnbd: firstLine(['nbdinfo', '--version']),
    skyCommit: firstLine(['git', '-C', REPO_ROOT, 'rev-parse', '--short', 'HEAD']),
  };
}

export interface BenchReport {
  date: string;
  machine: MachineInfo;
  settings: {
    rounds: number; runtimeSeconds: number; rampSeconds: number; imageSizeBytes: number; imageDir: string;
    targetRatio: number; order: string; skyCommand: string; anchorCommand: string; skyOverridden: boolean;
  };
  summaries: JobSummary[];
  samples: Sample[];
}

function loadRange(samples: readonly Sample[]): string {
  const load = spread(samples.map((sample) => sample.loadAverage));
  return `${load.min.toFixed(2)}–${load.max.toFixed(2)}`;
}

export function renderMarkdownReport(report: BenchReport, svgName: string): string {
  const { machine: m, settings: s } = report;
  const sky = 'sky', anchor = 'nbdkit';
  const lines = [
    `# NBD throughput: Sky vs nbdkit (${report.date})`,
    '',
    s.skyOverridden ? `> **Harness validation run:** the "sky" server was replaced by \`${s.skyCommand}\`.\n` : '',
    `Machine: ${m.cpuModel}, ${m.cores} cores, ${m.kernel}, node ${m.node}, ${m.nbdkit}, ${m.fio}, ${m.libnbd}, sky ${m.skyCommit}.`,
    '',
    `fio (nbd ioengine, unix socket), numjobs=1, time_based, ${s.runtimeSeconds} s per job after ${s.rampSeconds} s ramp; ` +
      `${s.rounds} round${s.rounds === 1 ? '' : 's'}, each running every job on ${s.order}; images of ${(s.imageSizeBytes / 2 ** 20).toFixed(0)} MiB on tmpfs (${s.imageDir}), filled with random data first. ` +
      'Cells: median (min–max) over rounds; MB = 10^6 bytes. The ratio is the median (min–max) of per-round ratios, each from two runs back to back. ' +
      `1-minute load average before the runs: ${loadRange(report.samples)} (above ~0.5 means other work shared the ${m.cores} cores).`,
    '',
    renderMarkdownTable(tableRows(report.summaries, sky, anchor, s.targetRatio)),
    '',
    `![${sky}/${anchor} ratio per job](${svgName})`,
    '',
    `- ${sky}: \`${s.skyCommand}\``,
    `- ${anchor}: \`${s.anchorCommand}\``,
    '',
  ];
  return lines.filter((line, i) => !(line === '' && lines[i - 1] === '')).join('\n');
}

// ---------------------------------------------------------------------------------------------------------------
// Processes: every child is tracked by pid and stopped at the end, on failure and on Ctrl-C.

const live = new Set<ChildProcess>();

process.on('exit', () => {
  for (const child of live) signalChild(child, 'SIGKILL');
});

function exited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

function signalChild(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined || exited(child)) return;
  try { process.kill(child.pid, signal); } catch { /* exited meanwhile */ }
}

export async function stopProcess(child: ChildProcess, graceMs = 10_000): Promise<void> {
  if (exited(child) || child.pid === undefined) return void live.delete(child);
  const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  signalChild(child, 'SIGTERM');
  const timer = setTimeout(() => signalChild(child, 'SIGKILL'), graceMs);
  await gone;
  clearTimeout(timer);
  live.delete(child);
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const abort = () => { clearTimeout(timer); reject(signal.reason); };
    const timer = setTimeout(() => { signal.removeEventListener('abort', abort); resolve(); }, ms);
    signal.addEventListener('abort', abort, { once: true });
  });
}

/** Runs a short-lived tool; on abort it is sent SIGTERM and the promise settles only once the tool has exited. */
export function run(argv: readonly string[], signal: AbortSignal): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
    live.add(child);
    const abort = () => signalChild(child, 'SIGTERM');
    signal.addEventListener('abort', abort, { once: true });
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => { if (stderr.length < 64 * 1024) stderr += chunk.toString(); });
    const settle = (error: Error | null, code: number | null) => {
      live.delete(child);
      signal.removeEventListener('abort', abort);
      if (signal.aborted) reject(signal.reason);
      else if (error) reject(error);
      else resolve({ code, stderr });
    };
    child.once('error', (error) => settle(error, null)); // spawn failed: no 'close' follows
    child.once('close', (code) => settle(null, code));
  });
}

export interface RunningServer {
  spec: ServerSpec;
  child: ChildProcess;
  uri: string;
  logPath: string;
}

async function tail(file: string, lines = 15): Promise<string> {
  const text = await fs.readFile(file, 'utf8').catch(() => '');
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}

/** Spawns the server in its own process group (a terminal's Ctrl-C reaches us, and we stop it by pid). */
export async function spawnServer(spec: ServerSpec, runDir: string, image: string, sizeBytes: number): Promise<RunningServer> {
  const socket = path.join(runDir, `${spec.name}.sock`);
  const logPath = path.join(runDir, `${spec.name}.log`);
  const argv = expandArgv(spec.argv, { file: image, socket, export: EXPORT_NAME, size: String(sizeBytes) });
  const log = await fs.open(logPath, 'w');
  try {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', log.fd, log.fd], detached: true });
    live.add(child);
    child.once('error', () => undefined); // a failed spawn shows up as an exit in waitReady
    return { spec, child, uri: `nbd+unix:///${EXPORT_NAME}?socket=${socket}`, logPath };
  } finally {
    await log.close();
  }
}

/** Polls nbdinfo until the export answers; fails early if the server exits. */
export async function waitReady(server: RunningServer, signal: AbortSignal, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (let attempt = 0; Date.now() < deadline; attempt++) {
    if (exited(server.child) || server.child.pid === undefined) {
      throw new Error(`${server.spec.name} server exited before it was ready:\n${await tail(server.logPath)}`);
    }
    const probe = await run(['nbdinfo', '--size', server.uri], signal);
    if (probe.code === 0) return;
    await sleep(Math.min(50 * 2 ** attempt, 500), signal);
  }
  throw new Error(`${server.spec.name} server not ready after ${timeoutMs / 1000} s:\n${await tail(server.logPath)}`);
}

// ---------------------------------------------------------------------------------------------------------------
// The run

export type Log = (text: string) => void;

/** What running one fio job needs of the options (bench tagging reuses the runner). */
export type FioSettings = Pick<BenchOptions, 'imageSizeBytes' | 'runtimeSeconds' | 'rampSeconds'>;

const TMPFS_MAGIC = 0x01021994;

export async function checkImageDir(dir: string, bytesNeeded: number, log: Log): Promise<void> {
  const stats = await fs.statfs(dir);
  if (stats.type !== TMPFS_MAGIC) log(`warning: ${dir} is not tmpfs; results will include the disk`);
  const available = stats.bavail * stats.bsize;
  if (available < bytesNeeded) throw new Error(`${dir} has ${(available / 2 ** 20).toFixed(0)} MiB free; the images need ${(bytesNeeded / 2 ** 20).toFixed(0)} MiB`);
}

/** Writes the image once, fully, with random data, so reads hit data and not holes. */
export async function fillImage(file: string, sizeBytes: number, signal: AbortSignal): Promise<void> {
  const chunk = Buffer.allocUnsafe(Math.min(4 << 20, sizeBytes));
  const handle = await fs.open(file, 'w');
  try {
    for (let offset = 0; offset < sizeBytes; offset += chunk.length) {
      signal.throwIfAborted();
      const length = Math.min(chunk.length, sizeBytes - offset);
      randomFillSync(chunk, 0, length);
      await handle.write(chunk, 0, length, offset);
    }
  } finally {
    await handle.close();
  }
}

function fioArgv(job: BenchJob, uri: string, options: FioSettings, output: string): string[] {
  return [
    'fio', `--name=${job.id}`, '--ioengine=nbd', `--uri=${uri}`, `--rw=${job.rw}`, `--bs=${job.blockSizeBytes}`,
    `--iodepth=${job.iodepth}`, '--numjobs=1', `--size=${options.imageSizeBytes}`, '--time_based',
    `--runtime=${options.runtimeSeconds}`, `--ramp_time=${options.rampSeconds}`, '--output-format=json',
    `--output=${output}`, '--eta=never',
  ];
}

export async function runFio(job: BenchJob, server: RunningServer, options: FioSettings, output: string, signal: AbortSignal): Promise<FioResult> {
  const result = await run(fioArgv(job, server.uri, options, output), signal);
  const text = await fs.readFile(output, 'utf8').catch(() => '');
  if (result.code !== 0) throw new Error(`fio ${job.id} against ${server.spec.name} exited ${result.code}:\n${result.stderr.trim()}\n${await tail(server.logPath)}`);
  if (exited(server.child)) throw new Error(`${server.spec.name} server died during ${job.id}:\n${await tail(server.logPath)}`);
  return parseFioOutput(text, job.rw.endsWith('read') ? 'read' : 'write');
}

/** One line per fio run, with a live seconds counter when stderr is a terminal. */
export function progress(step: number, total: number, text: string, options: FioSettings): () => void {
  const prefix = `[${String(step).padStart(String(total).length)}/${total}] ${text}`;
  if (!process.stderr.isTTY) return () => undefined;
  const started = Date.now();
  const expected = options.runtimeSeconds + options.rampSeconds;
  const timer = setInterval(() => {
    process.stderr.write(`\r${prefix} … ${Math.min(expected, Math.round((Date.now() - started) / 1000))}/${expected} s`);
  }, 1000);
  process.stderr.write(`${prefix} …`);
  return () => { clearInterval(timer); process.stderr.write('\r\x1b[2K'); };
}

async function measure(servers: readonly RunningServer[], runDir: string, options: BenchOptions, log: Log, signal: AbortSignal): Promise<Sample[]> {
  const samples: Sample[] = [];
  const total = options.rounds * options.jobs.length * servers.length;
  let step = 0;
  for (let round = 1; round <= options.rounds; round++) {
    for (const job of options.jobs) {
      for (const server of servers) {
        step++;
        const what = `round ${round}/${options.rounds} ${server.spec.name.padEnd(6)} ${job.label}`;
        const done = progress(step, total, what, options);
        const output = path.join(runDir, `${round}-${job.id}-${server.spec.name}.json`);
        const loadAverage = os.loadavg()[0]!;
        const result = await runFio(job, server, options, output, signal).finally(done);
        samples.push({ server: server.spec.name, round, job: job.id, loadAverage, ...result });
        log(`[${String(step).padStart(String(total).length)}/${total}] ${what}: ${formatNumber(result.bandwidthBytesPerSecond / 1e6)} MB/s, ${formatNumber(result.iops)} IOPS`);
      }
    }
  }
  return samples;
}

export interface BenchOutcome {
  report: BenchReport;
  files: { markdown: string; json: string; svg: string };
  table: string;
}

export async function runBenchNbd(options: BenchOptions, log: Log, signal: AbortSignal): Promise<BenchOutcome> {
  assert.ok(options.rounds >= 1 && options.runtimeSeconds >= 1 && options.jobs.length > 0);
  await checkImageDir(options.imageDir, 2 * options.imageSizeBytes, log);
  const runDir = await fs.mkdtemp(path.join(options.imageDir, 'sky-bench-nbd-'));
  const servers: RunningServer[] = [];
  try {
    const images = [options.sky, options.anchor].map((spec) => path.join(runDir, `${spec.name}.img`));
    log(`filling ${(options.imageSizeBytes / 2 ** 20).toFixed(0)} MiB image with random data in ${runDir}`);
    await fillImage(images[0]!, options.imageSizeBytes, signal);
    await fs.copyFile(images[0]!, images[1]!);
    for (const [i, spec] of [options.sky, options.anchor].entries()) {
      log(`starting ${spec.name}: ${spec.argv.join(' ')}`);
      servers.push(await spawnServer(spec, runDir, images[i]!, options.imageSizeBytes));
      await waitReady(servers[i]!, signal);
    }
    const minutes = (options.rounds * options.jobs.length * 2 * (options.runtimeSeconds + options.rampSeconds + 1)) / 60;
    log(`measuring: ${options.rounds} rounds × ${options.jobs.length} jobs × 2 servers, about ${minutes.toFixed(1)} min`);
    const samples = await measure(servers, runDir, options, log, signal);
    return await writeReport(options, samples);
  } finally {
    for (const server of servers.reverse()) await stopProcess(server.child);
    await fs.rm(runDir, { recursive: true, force: true });
  }
}

async function writeReport(options: BenchOptions, samples: Sample[]): Promise<BenchOutcome> {
  const date = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  const summaries = summarize(samples, options.jobs, options.sky.name, options.anchor.name, options.targetRatio);
  const report: BenchReport = {
    date,
    machine: machineInfo(),
    settings: {
      rounds: options.rounds, runtimeSeconds: options.runtimeSeconds, rampSeconds: options.rampSeconds,
      imageSizeBytes: options.imageSizeBytes, imageDir: options.imageDir, targetRatio: options.targetRatio,
      order: `${options.sky.name} then ${options.anchor.name}`, skyCommand: options.sky.argv.join(' '),
      anchorCommand: options.anchor.argv.join(' '), skyOverridden: options.skyOverridden,
    },
    summaries,
    samples,
  };
  await fs.mkdir(options.outDir, { recursive: true });
  const base = path.join(options.outDir, `nbd-${date.replace(/:/g, '-')}${options.skyOverridden ? '-validation' : ''}`);
  const files = { markdown: `${base}.md`, json: `${base}.json`, svg: `${base}.svg` };
  await fs.writeFile(files.svg, renderRatioSvg(summaries, options.sky.name, options.anchor.name, options.targetRatio));
  await fs.writeFile(files.markdown, renderMarkdownReport(report, path.basename(files.svg)));
  await fs.writeFile(files.json, JSON.stringify(report, null, 2) + '\n');
  const table = renderTerminalTable(tableRows(summaries, options.sky.name, options.anchor.name, options.targetRatio));
  return { report, files, table };
}

// ---------------------------------------------------------------------------------------------------------------
// CLI

export function integerAtLeast(minimum: number, flag: string): (text: string) => number {
  return (text) => {
    const value = Number(text);
    if (!Number.isSafeInteger(value) || value < minimum) throw new InvalidArgumentError(`${flag} needs a whole number ≥ ${minimum}`);
    return value;
  };
}

function positiveRatio(text: string): number {
  const value = Number(text);
  if (!(value > 0)) throw new InvalidArgumentError('--target needs a ratio above 0, e.g. 0.9');
  return value;
}

/** A commander parser for `--size`: a size of at least `minimum` bytes (and above 0). */
export function sizeAtLeast(minimum: number, name: string): (text: string) => number {
  return (text) => {
    let bytes = 0;
    try { bytes = parseSize(text); } catch (error) { throw new InvalidArgumentError((error as Error).message); }
    if (bytes === 0 || bytes < minimum) throw new InvalidArgumentError(minimum > 0 ? `--size must be at least ${name}` : '--size must be above 0');
    return bytes;
  };
}

const positiveSize = sizeAtLeast(0, '');

export function selectJobs(text: string): BenchJob[] {
  const ids = text.split(',').map((id) => id.trim());
  return ids.map((id) => {
    const job = JOBS.find((j) => j.id === id);
    if (!job) throw new InvalidArgumentError(`unknown job ${id}; jobs: ${JOBS.map((j) => j.id).join(', ')}`);
    return job;
  });
}

interface CliOptions {
  rounds: number; runtime: number; ramp: number; size: number; imageDir: string; out: string; jobs: BenchJob[]; target: number; skyCmd?: string[];
}

function optionsFromCli(cli: CliOptions): BenchOptions {
  const fromEnv = process.env.SKY_BENCH_SKY_CMD;
  const override = cli.skyCmd ?? (fromEnv ? splitCommand(fromEnv) : undefined);
  return {
    rounds: cli.rounds,
    runtimeSeconds: cli.runtime,
    rampSeconds: cli.ramp,
    imageSizeBytes: cli.size,
    imageDir: cli.imageDir,
    outDir: path.resolve(cli.out),
    jobs: cli.jobs,
    targetRatio: cli.target,
    sky: { name: 'sky', argv: override ?? defaultSkyArgv() },
    anchor: { name: 'nbdkit', argv: nbdkitArgv() },
    skyOverridden: override !== undefined,
  };
}

export function registerBenchNbd(bench: Command): void {
  bench
    .command('nbd')
    .description('fio over NBD against Sky and nbdkit (file plugin) on identical tmpfs images, alternating, with Sky/nbdkit ratios')
    .option('--rounds <n>', 'rounds; each round runs every job on Sky then on nbdkit', integerAtLeast(1, '--rounds'), 5)
    .option('--runtime <seconds>', 'measured seconds per fio job', integerAtLeast(1, '--runtime'), 10)
    .option('--ramp <seconds>', 'unmeasured warm-up seconds per fio job', integerAtLeast(0, '--ramp'), 1)
    .addOption(new Option('--size <size>', 'image size, e.g. 1G, 512M').argParser(positiveSize).default(2 ** 30, '1G'))
    .addOption(new Option('--jobs <list>', `comma-separated subset of ${JOBS.map((j) => j.id).join(',')}`).argParser(selectJobs).default([...JOBS], 'all'))
    .option('--target <ratio>', 'Sky/nbdkit ratio a job must reach', positiveRatio, 0.9)
    .option('--image-dir <dir>', 'tmpfs folder for the images and sockets', '/dev/shm')
    .option('--out <dir>', 'folder for the markdown, JSON and SVG results', path.join(REPO_ROOT, 'bench', 'nbd', 'results'))
    .addOption(new Option('--sky-cmd <command>', 'replace the Sky server command ({file} {socket} {export} {size}); also SKY_BENCH_SKY_CMD').argParser(splitCommand).hideHelp())
    .action(async (cli: CliOptions) => {
      const log: Log = (text) => process.stderr.write(`${text}\n`);
      const controller = new AbortController();
      const interrupt = (signal: NodeJS.Signals) => {
        if (controller.signal.aborted) process.exit(130); // second Ctrl-C: the exit hook SIGKILLs children
        log(`\n${signal}: stopping servers and removing images`);
        controller.abort(new Error(`interrupted by ${signal}`));
      };
      process.on('SIGINT', interrupt).on('SIGTERM', interrupt);
      try {
        const options = optionsFromCli(cli);
        const outcome = await runBenchNbd(options, log, controller.signal);
        process.stdout.write(`\n${outcome.table}\n\n`);
        log(`results: ${outcome.files.markdown}\n         ${outcome.files.json}\n         ${outcome.files.svg}`);
        if (options.skyOverridden) log('note: Sky was replaced by --sky-cmd / SKY_BENCH_SKY_CMD (harness validation run)');
      } catch (error) {
        log(`sky bench nbd: ${error instanceof Error ? error.message : String(error)}`);
        process.exitCode = controller.signal.aborted ? 130 : 1;
      } finally {
        process.off('SIGINT', interrupt).off('SIGTERM', interrupt);
      }
    });
}
