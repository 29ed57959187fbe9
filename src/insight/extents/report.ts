/** Plain-text rendering of a classification report and of a ground truth's summary. */
import type { AccuracyReport, Tally, Verdicts } from './score.js';
import type { GroundTruth } from './ground-truth.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

function percent(part: number, whole: number): string {
  return whole === 0 ? '    -' : `${((100 * part) / whole).toFixed(1).padStart(5)}%`;
}

function size(bytes: number): string {
  if (bytes >= GiB) return `${(bytes / GiB).toFixed(2)} GiB`;
  if (bytes >= MiB) return `${(bytes / MiB).toFixed(2)} MiB`;
  return `${(bytes / KiB).toFixed(1)} KiB`;
}

function verdictLine(name: string, verdicts: Verdicts): string {
  const all = (key: keyof Tally) => verdicts.right[key] + verdicts.wrong[key] + verdicts.unknown[key];
  const bytes = all('bytes');
  const requests = all('requests');
  const cell = (key: keyof Verdicts) =>
    `${percent(verdicts[key].bytes, bytes)} ${percent(verdicts[key].requests, requests)}`;
  return `${name.padEnd(18)} ${cell('right')}   ${cell('wrong')}   ${cell('unknown')}   ${size(bytes).padStart(12)} ${String(requests).padStart(9)}`;
}

export function renderAccuracyReport(report: AccuracyReport): string {
  const lines: string[] = [];
  lines.push(`requests ${report.total.requests}, ${size(report.total.bytes)}; to space free at the end (not scored): ${report.freed.requests} requests, ${size(report.freed.bytes)}`);
  lines.push('');
  lines.push(`${''.padEnd(18)} right (bytes req)  wrong (bytes req)  unknown (bytes req)        bytes  requests`);
  lines.push(verdictLine('origin', report.origin));
  lines.push(verdictLine('  truth metadata', report.origin.byTruth.metadata));
  lines.push(verdictLine('  truth data', report.origin.byTruth.data));
  for (const [direction, verdicts] of Object.entries(report.origin.byDirection)) lines.push(verdictLine(`  ${direction}`, verdicts));
  lines.push(verdictLine('I/O class', report.ioClass));
  for (const [ioClass, verdicts] of Object.entries(report.ioClass.byTruth).sort()) lines.push(verdictLine(`  true class ${ioClass}`, verdicts));
  lines.push('');
  lines.push('bytes by true class (rows) and tagged class (columns):');
  const columns = [...new Set(Object.values(report.ioClass.confusionBytes).flatMap((row) => Object.keys(row)))].sort();
  lines.push(`${'true\\tag'.padEnd(10)}${columns.map((column) => column.padStart(14)).join('')}`);
  for (const [row, cells] of Object.entries(report.ioClass.confusionBytes).sort()) {
    lines.push(`${row.padEnd(10)}${columns.map((column) => size(cells[column] ?? 0).padStart(14)).join('')}`);
  }
  return lines.join('\n');
}

export function renderTruthSummary(truth: GroundTruth): string {
  const totals = truth.totals();
  const stats = truth.stats;
  const lines = [
    `${truth.fsType} at offset ${truth.offsetInExport} of a ${size(truth.volumeBytes)} volume; space map: ${truth.spaceMap}`,
    `data ${size(totals.data)}, metadata ${size(totals.metadata)}, free ${size(totals.free)}`,
    `files ${stats.files} (${stats.filesUnplaced} with inline or unplaced data), file bytes mapped ${size(stats.fileBytesMapped)}`,
    `cross-check: file bytes on free space ${stats.fileBytesOnFreeSpace}, on static metadata ${stats.fileBytesOnStaticMetadata}, ` +
      `owner confirmed ${stats.fileBytesOwnerConfirmed}, owner mismatch ${stats.fileBytesOwnerMismatch}`,
  ];
  for (const warning of truth.warnings) lines.push(`warning: ${warning}`);
  return lines.join('\n');
}
