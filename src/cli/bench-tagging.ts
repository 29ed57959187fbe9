/**
 * `sky bench tagging`: what the classify layer costs the engine's NBD throughput, measured in one run against the
 * same engine without it (issue 4: tagging adds ≤ 5%).
 *
 * Three Sky servers on identical tmpfs images, all `sky serve --config` with one file export:
 *   plain     layers: []                      (the engine without tagging)
 *   classify  layers: [{type: classify}]      (every request tagged, every written 4 KiB block fingerprinted; the
 *                                              index has received no hint, so lookups end early)
 *   indexed   classify + a hint channel, fed before measuring with 10k file extents (2,000 files × 5) and 100k
 *             registered write fingerprints, so reads search a real LBA map and writes probe a real table
 *             (fio's data matches none of them: every write is looked up block by block and ends as metadata)
 * Jobs are bench nbd's (fio nbd ioengine over a unix socket): 1 MiB sequential read/write QD8, 4 KiB random
 * read/write QD16. Every round runs every job on every server, the server order reversing each round; the ratio
 * per job is the median of per-round ratios (each server/plain pair measured close together), as bench nbd does.
 * Results go to bench/tagging/results/ as markdown, JSON and an SVG bar chart.
 */
import assert from 'node:assert/strict';
import { randomBytes, randomFillSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, InvalidArgumentError, Option } from 'commander';
import { parseSize } from '../device/index.js';
import { HintClient } from '../hints/client.js';
import { FINGERPRINT_BLOCK_BYTES, fingerprintBlocksHex, quickKeysOf, type SemanticMessage } from '../semantics/index.js';
import {
  EXPORT_NAME, JOBS, checkImageDir, escapeXml, integerAtLeast, selectJobs, sizeAtLeast, fillImage, formatNumber, machineInfo, progress, renderMarkdownTable,
  renderTerminalTable, runFio, spawnServer, spread, stopProcess, summarize, tableRows, waitReady,
  type BenchJob, type JobSummary, type Log, type MachineInfo, type RunningServer, type Sample, type ServerSpec,
} from './bench-nbd.js';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export type TaggingServer = 'plain' | 'classify' | 'indexed';

export interface TaggingOptions {
  rounds: number;
  runtimeSeconds: number;
  rampSeconds: number;
  imageSizeBytes: number;
  imageDir: string;
  outDir: string;
  jobs: readonly BenchJob[];
  /** classify/plain ratio a job must reach (0.95: tagging adds at most 5%). */
  targetRatio: number;
  /** Also measure the classify layer with a populated index. */
  indexed: boolean;
  /** Size of the populated index. */
  indexFiles: number;
  extentsPerFile: number;
  fingerprints: number;
}

const HINT_TOKEN = 'bench-tagging-token-0123456789';

/** The stack under test for each server. */
function layersOf(server: TaggingServer): unknown[] {
  return server === 'plain' ? [] : [{ type: 'classify' }];
}

/** A config for `sky serve --config`: one export over the image, listening where spawnServer expects it. */
export function serverConfig(server: TaggingServer, runDir: string, image: string): Record<string, unknown> {
  const config: Record<string, unknown> = {
    dataDir: runDir,
    listen: { socket: path.join(runDir, `${server}.sock`) },
    log: { format: 'json', level: 'info' },
    exports: [{ name: EXPORT_NAME, device: { type: 'file', path: image }, layers: layersOf(server), ...(server === 'indexed' ? { hintToken: HINT_TOKEN } : {}) }],
  };
  if (server === 'indexed') config.hints = { socket: hintSocket(runDir) };
  return config;
}

function hintSocket(runDir: string): string {
  return path.join(runDir, 'indexed-hints.sock');
}

/** The shape of the index the `indexed` server is fed (also what bench/tagging/layer-cost.ts applies directly). */
export interface TaggingIndexShape {
  imageSizeBytes: number;
  indexFiles: number;
  extentsPerFile: number;
  fingerprints: number;
}

/**
 * The index's hint messages: `indexFiles` files of `extentsPerFile` extents (16–64 KiB each, one per slot of the
 * volume, slots dealt at random so files are fragmented and the rest of every slot is metadata), then `fingerprints`
 * fingerprints and quick keys of random blocks registered to those files (1-hour TTL, so none expires during a run):
 * what an agent registers for blocks traced processes wrote, matching none of fio's.
 */
export function* taggingIndexMessages(shape: TaggingIndexShape): Generator<SemanticMessage> {
  const slots = shape.indexFiles * shape.extentsPerFile;
  const slotBytes = Math.floor(shape.imageSizeBytes / slots / 4096) * 4096;
  assert.ok(slotBytes >= 64 * 1024, `a ${shape.imageSizeBytes}-byte image is too small for ${slots} extents`);
  const order = Array.from({ length: slots }, (_, i) => i);
  const random = randomBytes(4 * slots);
  for (let i = slots - 1; i > 0; i--) {
    const j = random.readUInt32LE(4 * i) % (i + 1);
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  for (let f = 0; f < shape.indexFiles; f++) {
    const extents = [];
    for (let e = 0; e < shape.extentsPerFile; e++) {
      const slot = order[f * shape.extentsPerFile + e]!;
      extents.push({ volumeOffset: slot * slotBytes, length: (4 + (random[4 * slot]! % 13)) * 4096 });
    }
    yield { type: 'FileExtents', fileId: `f${f}`, path: `/data/d${f % 50}/file${f}.bin`, size: extents.reduce((n, e) => n + e.length, 0), extents };
  }
  const batch = 8192;
  for (let sent = 0, file = 0; sent < shape.fingerprints; file++) {
    const blocks = randomFillSync(Buffer.alloc(Math.min(batch, shape.fingerprints - sent) * FINGERPRINT_BLOCK_BYTES));
    const fingerprints = fingerprintBlocksHex(blocks);
    sent += fingerprints.length;
    yield { type: 'WriteFingerprints', fileId: `f${file % shape.indexFiles}`, blockSize: 4096, fingerprints, quickKeys: quickKeysOf(blocks), ttlMs: 3_600_000 };
  }
}

/** Feeds the indexed server the messages of taggingIndexMessages over its hint channel. */
async function populateIndex(runDir: string, options: TaggingOptions, log: Log): Promise<{ messages: number }> {
  const warnings: string[] = [];
  const client = new HintClient({ engine: `unix:${hintSocket(runDir)}`, volume: EXPORT_NAME, token: HINT_TOKEN, queuedBytesMax: 1024 * 1024 * 1024, onWarning: (w) => warnings.push(w) });
  let messages = 0;
  try {
    for (const message of taggingIndexMessages(options)) {
      client.send(message as unknown as { type: string });
      messages++;
    }
    if (!(await client.flush(60_000))) throw new Error(`the hint channel did not take the index within 60 s${warnings.length ? `: ${warnings.at(-1)}` : ''}`);
  } finally {
    client.close();
  }
  log(`indexed: sent ${messages} hint messages (${options.indexFiles * options.extentsPerFile} extents, ${options.fingerprints} fingerprints)`);
  return { messages };
}

/** Hints are applied as frames arrive; a rejected one is logged by the engine. None may be. */
async function checkIndexLog(server: RunningServer): Promise<void> {
  const text = await fs.readFile(server.logPath, 'utf8');
  const rejected = text.split('\n').filter((line) => line.includes('hint rejected') || line.includes('"level":50'));
  if (rejected.length > 0) throw new Error(`the indexed server rejected hints:\n${rejected.slice(0, 5).join('\n')}`);
}

/** user + system CPU seconds of a process so far (from /proc; 0 where there is no /proc). */
export function processCpuSeconds(pid: number): number {
  try {
    // Fields after the command name (which may hold spaces) start at state; utime and stime are fields 14 and 15.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100; // USER_HZ is 100 on Linux
  } catch {
    return 0;
  }
}

export interface TaggingSample extends Sample {
  /** CPU seconds the server used during the fio run (ramp included). */
  serverCpuSeconds: number;
  /** Server CPU µs per MB moved (the ramp's bytes estimated at the measured rate, since its CPU is counted). */
  serverCpuMicrosecondsPerMegabyte: number;
}

export interface CpuSummary {
  job: string;
  label: string;
  /** Server CPU µs per MB moved, per server: median (min–max) over rounds. */
  servers: Record<string, { min: number; median: number; max: number }>;
  /** Median (min–max) of per-round ratios of CPU per MB, compared server over plain. */
  ratio: number;
  ratioMin: number;
  ratioMax: number;
}

/** CPU per byte is steadier than throughput on a shared machine: it shows what tagging costs the server's cores. */
export function summarizeCpu(samples: readonly TaggingSample[], jobs: readonly BenchJob[], server: string): CpuSummary[] {
  return jobs.map((job) => {
    const of = (name: string) => samples.filter((s) => s.job === job.id && s.server === name).sort((a, b) => a.round - b.round);
    const mine = of(server);
    const plain = of('plain');
    const perRound = spread(mine.map((s, i) => s.serverCpuMicrosecondsPerMegabyte / plain[i]!.serverCpuMicrosecondsPerMegabyte));
    const cpu = (list: TaggingSample[]) => spread(list.map((s) => s.serverCpuMicrosecondsPerMegabyte));
    return { job: job.id, label: job.label, servers: { [server]: cpu(mine), plain: cpu(plain) }, ratio: perRound.median, ratioMin: perRound.min, ratioMax: perRound.max };
  });
}

function cpuRows(summaries: readonly CpuSummary[], server: string): string[][] {
  const cell = (s: { min: number; median: number; max: number }) => `${s.median.toFixed(0)} (${s.min.toFixed(0)}–${s.max.toFixed(0)})`;
  return [
    ['job', `${server} CPU µs/MB`, 'plain CPU µs/MB', `${server}/plain CPU per byte`],
    ...summaries.map((s) => [s.label, cell(s.servers[server]!), cell(s.servers.plain!), `${s.ratio.toFixed(2)}× (${s.ratioMin.toFixed(2)}–${s.ratioMax.toFixed(2)})`]),
  ];
}

// ---------------------------------------------------------------------------------------------------------------
// Report

export interface TaggingReport {
  date: string;
  machine: MachineInfo;
  load: { before: number[]; after: number[]; perRun: { min: number; median: number; max: number } };
  settings: {
    rounds: number; runtimeSeconds: number; rampSeconds: number; imageSizeBytes: number; imageDir: string; targetRatio: number;
    servers: Record<string, { layers: unknown[]; index: string }>; order: string;
  };
  /** Per compared server (classify, indexed): its ratio to plain per job. */
  comparisons: Record<string, JobSummary[]>;
  /** Per compared server: the server's CPU time per MB against plain's. */
  cpu: Record<string, CpuSummary[]>;
  samples: TaggingSample[];
}

const SERVER_LABELS: Record<TaggingServer, string> = {
  plain: 'plain',
  classify: 'classify (empty index)',
  indexed: 'classify (10k extents, 100k fingerprints)',
};

/** Grouped horizontal bars: per job, one bar per compared server (ratio to plain), whiskers for the per-round range. */
export function renderTaggingSvg(comparisons: Record<string, JobSummary[]>, target: number): string {
  const names = Object.keys(comparisons);
  const jobs = comparisons[names[0]!]!;
  const labelWidth = 170, chartWidth = 420, barHeight = 16, groupGap = 14, top = 58, width = labelWidth + chartWidth + 80;
  const groupHeight = names.length * (barHeight + 4) + groupGap;
  const height = top + groupHeight * jobs.length + 30;
  const all = names.flatMap((n) => comparisons[n]!);
  const lowest = Math.min(0.8, ...all.map((s) => s.ratioMin * 0.97));
  const highest = Math.max(1.1, ...all.map((s) => s.ratioMax * 1.03));
  const x = (ratio: number) => labelWidth + ((Math.min(highest, Math.max(lowest, ratio)) - lowest) / (highest - lowest)) * chartWidth;
  const colours = ['#2e6fb0', '#d98a1c', '#6a4c93'];
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
    `<text x="10" y="20" font-size="14" font-weight="bold">Throughput with the classify layer / without (median, range of per-round ratios)</text>`,
  ];
  names.forEach((name, i) => {
    parts.push(
      `<rect x="${10 + i * 260}" y="32" width="12" height="12" fill="${colours[i % colours.length]}"/>`,
      `<text x="${26 + i * 260}" y="42">${escapeXml(SERVER_LABELS[name as TaggingServer] ?? name)}</text>`,
    );
  });
  jobs.forEach((job, j) => {
    const y0 = top + j * groupHeight;
    parts.push(`<text x="${labelWidth - 8}" y="${y0 + (names.length * (barHeight + 4)) / 2 + 4}" text-anchor="end">${escapeXml(job.label)}</text>`);
    names.forEach((name, i) => {
      const s = comparisons[name]![j]!;
      const y = y0 + i * (barHeight + 4);
      parts.push(
        `<rect x="${labelWidth}" y="${y}" width="${(x(s.ratio) - labelWidth).toFixed(1)}" height="${barHeight}" fill="${colours[i % colours.length]}"/>`,
        `<line x1="${x(s.ratioMin).toFixed(1)}" x2="${x(s.ratioMax).toFixed(1)}" y1="${y + barHeight / 2}" y2="${y + barHeight / 2}" stroke="#222" stroke-width="1.5"/>`,
        `<text x="${(Math.max(x(s.ratio), x(s.ratioMax)) + 6).toFixed(1)}" y="${y + 12}">${s.ratio.toFixed(3)}×</text>`,
      );
    });
  });
  const bottom = top + groupHeight * jobs.length - groupGap;
  for (const [ratio, label, dash, anchor, shift] of [[target, `target ${target}×`, '4 3', 'end', -3], [1, 'parity 1×', '1 0', 'start', 3]] as const) {
    parts.push(
      `<line x1="${x(ratio).toFixed(1)}" x2="${x(ratio).toFixed(1)}" y1="${top - 4}" y2="${bottom}" stroke="#555" stroke-dasharray="${dash}"/>`,
      `<text x="${(x(ratio) + shift).toFixed(1)}" y="${bottom + 16}" text-anchor="${anchor}" fill="#555">${escapeXml(label)}</text>`,
    );
  }
  parts.push(`<text x="${labelWidth}" y="${bottom + 16}" fill="#555" text-anchor="start">${lowest.toFixed(2)}×</text>`);
  parts.push('</svg>');
  return parts.join('\n') + '\n';
}

export function renderTaggingMarkdown(report: TaggingReport, svgName: string): string {
  const { machine: m, settings: s, load } = report;
  const lines = [
    `# Tagging cost through NBD: Sky with vs without the classify layer (${report.date})`,
    '',
    `Machine: ${m.cpuModel}, ${m.cores} cores, ${m.kernel}, node ${m.node}, ${m.fio}, sky ${m.skyCommit}. ` +
      `Load average (1/5/15 min) before: ${load.before.map((v) => v.toFixed(2)).join(' ')}, after: ${load.after.map((v) => v.toFixed(2)).join(' ')}; ` +
      `1-minute load before each fio run: ${load.perRun.min.toFixed(2)}–${load.perRun.max.toFixed(2)} (median ${load.perRun.median.toFixed(2)}); above ~1 means other work shared the ${m.cores} cores.`,
    '',
    `fio (nbd ioengine, unix socket), numjobs=1, time_based, ${s.runtimeSeconds} s per job after ${s.rampSeconds} s ramp; ${s.rounds} rounds, ` +
      `each running every job on every server (${s.order}); images of ${(s.imageSizeBytes / 2 ** 20).toFixed(0)} MiB on tmpfs, filled with random data first. ` +
      'Cells: median (min–max) over rounds; MB = 10^6 bytes. The ratio is the median (min–max) of per-round ratios. ' +
      `Target: ≥ ${s.targetRatio}× (tagging adds at most ${Math.round((1 - s.targetRatio) * 100)}%).`,
    '',
    'Servers (all `sky serve --config`, one file export, the stats layer on top as always):',
    ...Object.entries(s.servers).map(([name, v]) => `- **${name}**: \`layers: ${JSON.stringify(v.layers)}\` — ${v.index}`),
    '',
  ];
  for (const [name, summaries] of Object.entries(report.comparisons)) {
    lines.push(
      `## ${SERVER_LABELS[name as TaggingServer] ?? name} vs plain`, '', renderMarkdownTable(tableRows(summaries, name, 'plain', s.targetRatio)), '',
      'Server CPU time (user + system, from /proc, ramp included) per MB moved — what tagging costs the engine\'s cores, steadier than throughput when neighbours compete:', '',
      renderMarkdownTable(cpuRows(report.cpu[name]!, name)), '',
    );
  }
  lines.push(`![classify/plain ratio per job](${svgName})`, '');
  return lines.join('\n');
}

// ---------------------------------------------------------------------------------------------------------------
// The run

export interface TaggingOutcome {
  report: TaggingReport;
  files: { markdown: string; json: string; svg: string };
  tables: string;
}

export async function runBenchTagging(options: TaggingOptions, log: Log, signal: AbortSignal): Promise<TaggingOutcome> {
  assert.ok(options.rounds >= 1 && options.runtimeSeconds >= 1 && options.jobs.length > 0);
  const names: TaggingServer[] = options.indexed ? ['plain', 'classify', 'indexed'] : ['plain', 'classify'];
  await checkImageDir(options.imageDir, names.length * options.imageSizeBytes, log);
  const loadBefore = os.loadavg();
  const runDir = await fs.mkdtemp(path.join(options.imageDir, 'sky-bench-tagging-'));
  const servers: RunningServer[] = [];
  try {
    const images = names.map((name) => path.join(runDir, `${name}.img`));
    log(`filling ${(options.imageSizeBytes / 2 ** 20).toFixed(0)} MiB image with random data in ${runDir}`);
    await fillImage(images[0]!, options.imageSizeBytes, signal);
    for (const image of images.slice(1)) await fs.copyFile(images[0]!, image);
    const sky = path.join(REPO_ROOT, 'bin', 'sky');
    for (const [i, name] of names.entries()) {
      const configPath = path.join(runDir, `${name}.yaml`);
      // JSON is YAML: the config needs no YAML writer.
      await fs.writeFile(configPath, JSON.stringify(serverConfig(name, runDir, images[i]!), null, 2));
      // SKY_BENCH_SERVER_NODE_ARGS="--cpu-prof --cpu-prof-dir=DIR" profiles the servers (NODE_OPTIONS refuses --cpu-prof).
      const nodeArgs = (process.env.SKY_BENCH_SERVER_NODE_ARGS ?? '').split(' ').filter((arg) => arg !== '');
      const spec: ServerSpec = { name, argv: [process.execPath, ...nodeArgs, sky, 'serve', '--config', configPath] };
      log(`starting ${name}: layers ${JSON.stringify(layersOf(name))}`);
      const server = await spawnServer(spec, runDir, images[i]!, options.imageSizeBytes);
      servers.push(server);
      await waitReady(server, signal);
      if (name === 'indexed') {
        await populateIndex(runDir, options, log);
        await new Promise((r) => setTimeout(r, 500)); // let the engine apply the last frames before fio starts
        await checkIndexLog(server);
      }
    }
    const perRun = options.runtimeSeconds + options.rampSeconds + 1;
    log(`measuring: ${options.rounds} rounds × ${options.jobs.length} jobs × ${names.length} servers, about ${((options.rounds * options.jobs.length * names.length * perRun) / 60).toFixed(1)} min`);
    const samples: TaggingSample[] = [];
    const total = options.rounds * options.jobs.length * servers.length;
    let step = 0;
    for (let round = 1; round <= options.rounds; round++) {
      // Alternate the order, so that neither drift nor whoever runs first after a job change favours one server.
      const order = round % 2 === 1 ? servers : [...servers].reverse();
      for (const job of options.jobs) {
        for (const server of order) {
          step++;
          const what = `round ${round}/${options.rounds} ${server.spec.name.padEnd(8)} ${job.label}`;
          const done = progress(step, total, what, options);
          const output = path.join(runDir, `${round}-${job.id}-${server.spec.name}.json`);
          const loadAverage = os.loadavg()[0]!;
          const cpuBefore = processCpuSeconds(server.child.pid!);
          const result = await runFio(job, server, options, output, signal).finally(done);
          const serverCpuSeconds = processCpuSeconds(server.child.pid!) - cpuBefore;
          // The ramp's bytes are not in ioBytes but its CPU is in serverCpuSeconds: scale by the measured share.
          const movedMegabytes = (result.ioBytes / 1e6) * (1 + options.rampSeconds / options.runtimeSeconds);
          const serverCpuMicrosecondsPerMegabyte = (serverCpuSeconds * 1e6) / movedMegabytes;
          samples.push({ server: server.spec.name, round, job: job.id, loadAverage, ...result, serverCpuSeconds, serverCpuMicrosecondsPerMegabyte });
          log(`[${String(step).padStart(String(total).length)}/${total}] ${what}: ${formatNumber(result.bandwidthBytesPerSecond / 1e6)} MB/s, ${formatNumber(result.iops)} IOPS, server CPU ${serverCpuMicrosecondsPerMegabyte.toFixed(0)} µs/MB (load ${loadAverage.toFixed(2)})`);
        }
      }
    }
    if (options.indexed) await checkIndexLog(servers[2]!);
    return await writeReport(options, names, samples, loadBefore, os.loadavg());
  } finally {
    for (const server of servers.reverse()) await stopProcess(server.child);
    await fs.rm(runDir, { recursive: true, force: true });
  }
}

async function writeReport(options: TaggingOptions, names: TaggingServer[], samples: TaggingSample[], before: number[], after: number[]): Promise<TaggingOutcome> {
  const date = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  const comparisons: Record<string, JobSummary[]> = {};
  const cpu: Record<string, CpuSummary[]> = {};
  for (const name of names.slice(1)) {
    comparisons[name] = summarize(samples, options.jobs, name, 'plain', options.targetRatio);
    cpu[name] = summarizeCpu(samples, options.jobs, name);
  }
  const loads = spread(samples.map((s) => s.loadAverage));
  const indexText = `${options.indexFiles * options.extentsPerFile} extents of ${options.indexFiles} files, ${options.fingerprints} registered fingerprints`;
  const report: TaggingReport = {
    date,
    machine: machineInfo(),
    load: { before, after, perRun: { min: loads.min, median: loads.median, max: loads.max } },
    settings: {
      rounds: options.rounds, runtimeSeconds: options.runtimeSeconds, rampSeconds: options.rampSeconds,
      imageSizeBytes: options.imageSizeBytes, imageDir: options.imageDir, targetRatio: options.targetRatio,
      servers: Object.fromEntries(names.map((n) => [n, {
        layers: layersOf(n),
        index: n === 'plain' ? 'no tagging' : n === 'classify' ? 'no hints: every request is tagged unknown, nothing is hashed (no fingerprint registered)' : `fed over the hint channel before measuring: ${indexText}; fio's data matches none`,
      }])),
      order: `${names.join(', ')} in odd rounds, reversed in even rounds`,
    },
    comparisons,
    cpu,
    samples,
  };
  await fs.mkdir(options.outDir, { recursive: true });
  const base = path.join(options.outDir, `tagging-${date.replace(/:/g, '-')}`);
  const files = { markdown: `${base}.md`, json: `${base}.json`, svg: `${base}.svg` };
  await fs.writeFile(files.svg, renderTaggingSvg(comparisons, options.targetRatio));
  await fs.writeFile(files.markdown, renderTaggingMarkdown(report, path.basename(files.svg)));
  await fs.writeFile(files.json, JSON.stringify(report, null, 2) + '\n');
  const tables = Object.entries(comparisons)
    .map(([name, summaries]) => `${SERVER_LABELS[name as TaggingServer] ?? name} vs plain\n${renderTerminalTable(tableRows(summaries, name, 'plain', options.targetRatio))}\n${renderTerminalTable(cpuRows(cpu[name]!, name))}`)
    .join('\n\n');
  return { report, files, tables };
}

// ---------------------------------------------------------------------------------------------------------------
// CLI

const positiveSize = sizeAtLeast(2 ** 26, '64M');

function ratio(text: string): number {
  const value = Number(text);
  if (!(value > 0 && value <= 1)) throw new InvalidArgumentError('--target needs a ratio in (0, 1], e.g. 0.95');
  return value;
}

interface CliOptions {
  rounds: number; runtime: number; ramp: number; size: number; imageDir: string; out: string; jobs: BenchJob[]; target: number; indexed: boolean;
}

export function registerBenchTagging(bench: Command): void {
  bench
    .command('tagging')
    .description('fio over NBD against Sky with and without the classify layer (and with a populated index), alternating, with the ratios')
    .option('--rounds <n>', 'rounds; each runs every job on every server', integerAtLeast(1, '--rounds'), 4)
    .option('--runtime <seconds>', 'measured seconds per fio job', integerAtLeast(1, '--runtime'), 8)
    .option('--ramp <seconds>', 'unmeasured warm-up seconds per fio job', integerAtLeast(0, '--ramp'), 1)
    .addOption(new Option('--size <size>', 'image size, e.g. 1G, 512M').argParser(positiveSize).default(2 ** 30, '1G'))
    .addOption(new Option('--jobs <list>', `comma-separated subset of ${JOBS.map((j) => j.id).join(',')}`).argParser(selectJobs).default([...JOBS], 'all'))
    .option('--target <ratio>', 'classify/plain ratio a job must reach', ratio, 0.95)
    .option('--no-indexed', 'skip the server whose index is populated')
    .option('--image-dir <dir>', 'tmpfs folder for the images and sockets', '/dev/shm')
    .option('--out <dir>', 'folder for the markdown, JSON and SVG results', path.join(REPO_ROOT, 'bench', 'tagging', 'results'))
    .action(async (cli: CliOptions) => {
      const log: Log = (text) => process.stderr.write(`${text}\n`);
      const controller = new AbortController();
      const interrupt = (signal: NodeJS.Signals) => {
        if (controller.signal.aborted) process.exit(130); // second Ctrl-C: bench nbd's exit hook SIGKILLs children
        log(`\n${signal}: stopping servers and removing images`);
        controller.abort(new Error(`interrupted by ${signal}`));
      };
      process.on('SIGINT', interrupt).on('SIGTERM', interrupt);
      try {
        const options: TaggingOptions = {
          rounds: cli.rounds, runtimeSeconds: cli.runtime, rampSeconds: cli.ramp, imageSizeBytes: cli.size,
          imageDir: cli.imageDir, outDir: path.resolve(cli.out), jobs: cli.jobs, targetRatio: cli.target, indexed: cli.indexed,
          indexFiles: 2000, extentsPerFile: 5, fingerprints: 100_000,
        };
        const outcome = await runBenchTagging(options, log, controller.signal);
        process.stdout.write(`\n${outcome.tables}\n\n`);
        log(`results: ${outcome.files.markdown}\n         ${outcome.files.json}\n         ${outcome.files.svg}`);
      } catch (error) {
        log(`sky bench tagging: ${error instanceof Error ? error.message : String(error)}`);
        process.exitCode = controller.signal.aborted ? 130 : 1;
      } finally {
        process.off('SIGINT', interrupt).off('SIGTERM', interrupt);
      }
    });
}
