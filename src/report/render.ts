/** Renders a TagLogReport as markdown tables and SVG plots, and writes report.md, report.json and the plots. */
import fs from 'node:fs';
import path from 'node:path';
import { accuracy } from '../insight/extents/score.js';
import { renderAccuracyReport } from '../insight/extents/report.js';
import { LIFETIME_ENDS, ORIGINS, PATTERNS, type OpRow, type PatternKey, type TagLogReport } from './report.js';
import { formatBytes, stackedBarChart } from './svg.js';

const percent = (part: number, whole: number): string => (whole === 0 ? '-' : `${((100 * part) / whole).toFixed(1)}%`);
const escapeCell = (text: string): string => text.replace(/\|/g, '\\|').replace(/\n/g, ' ');

function table(head: string[], rows: string[][], alignRightFrom = 1): string {
  const align = head.map((_, i) => (i >= alignRightFrom ? '---:' : '---'));
  return [`| ${head.join(' | ')} |`, `| ${align.join(' | ')} |`, ...rows.map((row) => `| ${row.join(' | ')} |`)].join('\n');
}

const PATTERN_NAMES: Record<PatternKey, string> = {
  copy: 'copy (a copied file)',
  unique: 'encrypted (unique data)',
  app: 'class given by the application',
};

/** Bytes that moved data: reads and writes (a trim of the whole disk by mkfs must not swamp the shares). */
const movedBytes = (row: OpRow): number => row.read.bytes + row.write.bytes;

/**
 * Columns for rows keyed by something: read and write (requests, bytes), other ops, total bytes, and the row's
 * share of all read and written bytes.
 */
function opTable(keyName: string, rows: [string, OpRow][], allBytes: number): string {
  const body = rows
    .filter(([, row]) => row.total.requests > 0)
    .map(([key, row]) => {
      const other = row.trim.requests + row.zero.requests + row.cache.requests;
      return [
        escapeCell(key),
        String(row.read.requests), formatBytes(row.read.bytes),
        String(row.write.requests), formatBytes(row.write.bytes),
        String(other),
        formatBytes(row.total.bytes), percent(movedBytes(row), allBytes),
      ];
    });
  return table([keyName, 'reads', 'read bytes', 'writes', 'written bytes', 'trim/zero/cache', 'total bytes', 'share of read+written'], body);
}

function accuracyLine(name: string, report: NonNullable<TagLogReport['accuracy']>['atRequest']): string[] {
  const origin = accuracy(report.origin);
  const sizeClass = accuracy(report.sizeClass);
  const ioClass = accuracy(report.ioClass);
  const cell = (share: number) => `${(100 * share).toFixed(2)}%`;
  return [name, cell(origin.bytes), cell(origin.requests), cell(sizeClass.bytes), cell(ioClass.bytes), cell(ioClass.requests), formatBytes(report.total.bytes - report.freed.bytes)];
}

/** The parts a person reads first: origin, class, patterns and the accuracy headline (the demo prints this). */
export function renderBrief(report: TagLogReport): string {
  const all = movedBytes(report.byOp);
  const out: string[] = [];
  out.push(`Volume ${report.log.volume || '(unnamed)'}: ${report.log.requests} requests, ${formatBytes(report.byOp.read.bytes)} read, ${formatBytes(report.byOp.write.bytes)} written, in ${(report.log.durationMs / 1000).toFixed(1)} s.`);
  out.push('', 'By origin:', '', opTable('origin', ORIGINS.map((origin) => [origin, report.byOrigin[origin]]), all));
  out.push('', 'By I/O class (5 = metadata; 4 … 0 = files < 1 MiB … ≥ 10 MiB):', '', classTable(report, all));
  out.push('', 'Patterns found:', '', patternTable(report, all));
  if (report.accuracy) {
    out.push('', `Accuracy against the ground truth (${report.accuracy.truth.fsType}):`, '', accuracyTable(report.accuracy));
    const misses = afterRetagMissesLine(report.accuracy);
    if (misses !== null) out.push('', misses);
  }
  out.push('');
  return out.join('\n');
}

function classTable(report: TagLogReport, all: number): string {
  // Highest class first: metadata (5) on top, as in the paper's table.
  return opTable('class', Object.entries(report.byClass).sort(([a], [b]) => (a === 'untagged' ? 1 : b === 'untagged' ? -1 : Number(b) - Number(a))), all);
}

function patternTable(report: TagLogReport, all: number): string {
  return opTable('pattern', PATTERNS.map((pattern) => [PATTERN_NAMES[pattern], report.byPattern[pattern]]), all);
}

export function renderMarkdown(report: TagLogReport): string {
  const log = report.log;
  const all = movedBytes(report.byOp);
  const out: string[] = [];
  out.push(`# Sky report: volume ${log.volume || '(unnamed)'}`);
  out.push('');
  out.push(`Log ${log.path}, started ${log.started}, ${(log.durationMs / 1000).toFixed(1)} s, volume ${formatBytes(log.volumeBytes)}.`);
  out.push(`${log.requests} requests (${formatBytes(all)}), ${log.retags} re-tag lines.`);
  const notes: string[] = [];
  if (log.truncated) notes.push('the last line was cut short (the engine stopped before flushing it) and was skipped');
  if (!log.ended) notes.push('the log has no end line: the engine did not close it (killed?), so its last ~100 ms may be missing');
  if (log.dropped > 0) notes.push(`the engine dropped ${log.dropped} lines because the disk could not keep up: figures are short by that many requests`);
  if (log.malformed > 0) notes.push(`${log.malformed} malformed lines were skipped (first at line ${log.firstMalformedLine})`);
  for (const note of notes) out.push(`\n**Note:** ${note}.`);
  out.push('');
  out.push('## By origin');
  out.push('');
  out.push(opTable('origin', ORIGINS.map((origin) => [origin, report.byOrigin[origin]]), all));
  out.push('');
  out.push('## By I/O class');
  out.push('');
  out.push(classTable(report, all));
  out.push('');
  out.push('## Patterns and hints');
  out.push('');
  out.push(patternTable(report, all));
  out.push('');
  out.push('## By file size (the paper\'s classes)');
  out.push('');
  out.push(opTable('bucket', Object.entries(report.bySize), all));
  out.push('');
  out.push(`## By process (${report.processes}${report.processesCapped ? '+' : ''} seen)`);
  out.push('');
  out.push(opTable('process', report.byProcess.map((row) => [row.process, row]), all));
  out.push('');
  out.push('## By operation');
  out.push('');
  out.push(table(['op', 'requests', 'bytes'], (['read', 'write', 'trim', 'zero', 'cache'] as const).map((op) => [op, String(report.byOp[op].requests), formatBytes(report.byOp[op].bytes)])));
  out.push('');
  out.push(`## Block lifetimes (${report.lifetimes.blockBytes / 1024} KiB blocks written in the log)`);
  out.push('');
  const lifeRows = report.lifetimes.buckets.map((bucket) => [bucket.label, ...LIFETIME_ENDS.map((end) => String(bucket[end])), String(bucket.total)]);
  lifeRows.push(['alive at the end', '', '', '', String(report.lifetimes.alive)]);
  out.push(table(['lived', 'overwritten', 'trimmed/zeroed', 'file gone', 'blocks'], lifeRows));
  out.push('');
  out.push(`## Top files by bytes (${report.files}${report.filesCapped ? '+' : ''} files seen)`);
  out.push('');
  out.push(table(['file', 'size', 'reads', 'read bytes', 'writes', 'written bytes', 'total bytes'], report.topFiles.map((file) => [
    escapeCell(file.path ?? file.fileId), file.fileSize === null ? '' : formatBytes(file.fileSize),
    String(file.read.requests), formatBytes(file.read.bytes), String(file.write.requests), formatBytes(file.write.bytes), formatBytes(file.total.bytes),
  ])));
  out.push('');
  out.push('## Re-tags');
  out.push('');
  out.push(table(['cause', 'ranges', 'bytes'], Object.entries(report.retags).map(([cause, t]) => [cause, String(t.requests), formatBytes(t.bytes)])));
  if (report.accuracy) out.push('', ...renderAccuracy(report.accuracy));
  out.push('', '## Plots', '');
  for (const name of PLOT_NAMES) out.push(`![${name.replace('.svg', '')}](${name})`);
  out.push('');
  return out.join('\n');
}

function accuracyTable(section: NonNullable<TagLogReport['accuracy']>): string {
  return table(['tags', 'origin right (bytes)', 'origin right (requests)', 'size class right (bytes)', 'I/O class right (bytes)', 'I/O class right (requests)', 'bytes scored'], [
    accuracyLine('at request time', section.atRequest),
    accuracyLine('after re-tags', section.afterRetag),
  ]);
}

/** Why bytes stay wrong after re-tags, in a sentence; null when nothing does. */
function afterRetagMissesLine(section: NonNullable<TagLogReport['accuracy']>): string | null {
  const misses = section.afterRetagMisses;
  if (misses.overwritten + misses.notRetagged + misses.retagged === 0) return null;
  return (
    `Origin not right after re-tags: ${formatBytes(misses.overwritten)} overwritten before a re-tag reached them (a re-tag names the bytes ` +
    `on the volume, so it corrects only the last write of each), ${formatBytes(misses.notRetagged)} never re-tagged, ` +
    `${formatBytes(misses.retagged)} re-tagged and still not right.`
  );
}

function renderAccuracy(section: NonNullable<TagLogReport['accuracy']>): string[] {
  const out: string[] = [];
  out.push(`## Accuracy against the ground truth (${section.truth.fsType}, reads and writes)`);
  out.push('');
  out.push(accuracyTable(section));
  out.push('');
  out.push(`Re-tags changed the tag of ${section.retagged.requests} requests (${formatBytes(section.retagged.bytes)}).`);
  const misses = afterRetagMissesLine(section);
  if (misses !== null) out.push(misses);
  if (section.outsideTruth.requests > 0) out.push(`${section.outsideTruth.requests} requests beyond the truth's ${formatBytes(section.truth.volumeBytes)} were not scored.`);
  if (!section.afterRetagComplete) out.push('**Note:** re-tag bookkeeping hit its bound; later re-tags were not applied to the after-re-tag score.');
  out.push('', '### At request time', '', '```', renderAccuracyReport(section.atRequest), '```');
  out.push('', '### After re-tags', '', '```', renderAccuracyReport(section.afterRetag), '```');
  return out;
}

export const PLOT_NAMES = ['origin.svg', 'class.svg', 'size.svg', 'lifetimes.svg', 'processes.svg'] as const;

/** The plots, by file name (PLOT_NAMES). */
export function renderPlots(report: TagLogReport): Record<string, string> {
  const ops = ['read', 'write'] as const;
  const opNames = ['read', 'write'];
  const origins = ORIGINS.filter((origin) => report.byOrigin[origin].total.requests > 0);
  const classes = Object.keys(report.byClass);
  const buckets = Object.keys(report.bySize).filter((bucket) => report.bySize[bucket]!.total.requests > 0);
  const processes = report.byProcess.slice(0, 15);
  return {
    'origin.svg': stackedBarChart({
      title: 'Bytes by origin', unit: 'bytes', yLabel: 'bytes', categories: opNames,
      series: origins.map((origin) => ({ name: origin, values: ops.map((op) => report.byOrigin[origin][op].bytes) })),
    }),
    'class.svg': stackedBarChart({
      title: 'Bytes by I/O class', unit: 'bytes', yLabel: 'bytes', categories: opNames,
      series: classes.map((ioClass) => ({ name: ioClass === 'untagged' ? ioClass : `class ${ioClass}`, values: ops.map((op) => report.byClass[ioClass]![op].bytes) })),
    }),
    'size.svg': stackedBarChart({
      title: 'Bytes by file-size bucket', unit: 'bytes', yLabel: 'bytes', categories: buckets,
      series: ops.map((op) => ({ name: op, values: buckets.map((bucket) => report.bySize[bucket]![op].bytes) })),
    }),
    'lifetimes.svg': stackedBarChart({
      title: `Lifetimes of written ${report.lifetimes.blockBytes / 1024} KiB blocks`, unit: 'count', yLabel: 'blocks',
      categories: [...report.lifetimes.buckets.map((bucket) => bucket.label), 'alive'],
      series: [
        ...LIFETIME_ENDS.map((end) => ({ name: end, values: [...report.lifetimes.buckets.map((bucket) => bucket[end]), 0] })),
        { name: 'alive at end', values: [...report.lifetimes.buckets.map(() => 0), report.lifetimes.alive] },
      ],
    }),
    'processes.svg': stackedBarChart({
      title: 'Bytes by process', unit: 'bytes', yLabel: 'bytes', categories: processes.map((row) => row.process),
      series: ops.map((op) => ({ name: op, values: processes.map((row) => row[op].bytes) })),
    }),
  };
}

/** Writes report.md, report.json and the SVG plots into `outDir` (created); returns the paths written. */
export function writeReport(report: TagLogReport, outDir: string, markdown = renderMarkdown(report)): string[] {
  fs.mkdirSync(outDir, { recursive: true });
  const written: string[] = [];
  const put = (name: string, text: string) => {
    const file = path.join(outDir, name);
    fs.writeFileSync(file, text);
    written.push(file);
  };
  put('report.md', markdown);
  put('report.json', `${JSON.stringify(report, null, 2)}\n`);
  for (const [name, svg] of Object.entries(renderPlots(report))) put(name, svg);
  return written;
}
