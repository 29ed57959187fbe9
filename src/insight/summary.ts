/**
 * The end-of-run report: what a user wants to read after `sky trace` (files touched with sizes and classes,
 * patterns, hints, lifetimes, what was lost). Collected from the insight stream as it passes, with every list
 * bounded so a long trace cannot grow it without limit.
 */
import type { Counters } from './state.js';
import type {
  AppHintInsight,
  CopyDetectedInsight,
  EncryptionDetectedInsight,
  Insight,
  InsightKind,
  LifetimeEndedInsight,
} from './types.js';
import type { FileRecord } from './files.js';
import type { IoClass } from './ioclass.js';

const LIST_MAX = 1000;
const HINT_KEYS_MAX = 1000;

export interface FileSummary {
  path: string;
  size: number | null;
  ioClass: IoClass;
  metadata: boolean;
  opens: number;
  readBytes: number;
  writeBytes: number;
  uncertain?: string;
}

export interface HintSummary {
  path: string | null;
  pid: number | null;
  source: AppHintInsight['source'];
  ioClass: IoClass;
  count: number;
  bytes: number;
}

export interface InsightSummary {
  counters: Counters;
  insights: Partial<Record<InsightKind, number>>;
  files: { total: number; forgotten: number; list: FileSummary[] };
  copies: CopyDetectedInsight[];
  encryptions: EncryptionDetectedInsight[];
  lifetimes: LifetimeEndedInsight[];
  hints: HintSummary[];
  mmapWritebacks: number;
  uncertainties: string[];
  /** Entries left out of the bounded lists above. */
  omitted: number;
}

/** Listens to insights; `summarise` joins them with the engine's tables at the end. */
export class SummaryCollector {
  readonly insights: Partial<Record<InsightKind, number>> = {};
  readonly copies: CopyDetectedInsight[] = [];
  readonly encryptions: EncryptionDetectedInsight[] = [];
  readonly lifetimes: LifetimeEndedInsight[] = [];
  readonly hints = new Map<string, HintSummary>();
  readonly uncertainties: string[] = [];
  mmapWritebacks = 0;
  omitted = 0;

  add(insight: Insight): void {
    this.insights[insight.kind] = (this.insights[insight.kind] ?? 0) + 1;
    switch (insight.kind) {
      case 'copy_detected':
        return this.keep(this.copies, insight);
      case 'encryption_detected':
        return this.keep(this.encryptions, insight);
      case 'lifetime_ended':
        return this.keep(this.lifetimes, insight);
      case 'app_hint':
        return this.addHint(insight);
      case 'mmap_writeback':
        this.mmapWritebacks++;
        return;
      case 'uncertainty':
        return this.keep(this.uncertainties, insight.reason);
    }
  }

  private keep<T>(list: T[], item: T): void {
    if (list.length < LIST_MAX) list.push(item);
    else this.omitted++;
  }

  private addHint(hint: AppHintInsight): void {
    const key = `${hint.pid}\0${hint.path}\0${hint.source}\0${hint.ioClass}`;
    let entry = this.hints.get(key);
    if (!entry && this.hints.size >= HINT_KEYS_MAX) {
      this.omitted++;
      return;
    }
    entry ??= { path: hint.path, pid: hint.pid, source: hint.source, ioClass: hint.ioClass, count: 0, bytes: 0 };
    entry.count++;
    entry.bytes += hint.range?.length ?? 0;
    this.hints.set(key, entry);
  }

  summarise(
    counters: Counters,
    files: Iterable<FileRecord>,
    fileTotals: { total: number; forgotten: number },
    classOf: (file: FileRecord) => IoClass,
  ): InsightSummary {
    const list = [...files].map((file) => fileSummary(file, classOf(file)));
    list.sort((a, b) => b.readBytes + b.writeBytes - (a.readBytes + a.writeBytes) || a.path.localeCompare(b.path));
    return {
      counters: { ...counters },
      insights: { ...this.insights },
      files: { ...fileTotals, list },
      copies: [...this.copies],
      encryptions: [...this.encryptions],
      lifetimes: [...this.lifetimes],
      hints: [...this.hints.values()],
      mmapWritebacks: this.mmapWritebacks,
      uncertainties: [...this.uncertainties],
      omitted: this.omitted,
    };
  }
}

function fileSummary(file: FileRecord, ioClass: IoClass): FileSummary {
  return {
    path: file.path,
    size: file.size,
    ioClass,
    metadata: file.metadata,
    opens: file.openCount,
    readBytes: file.readBytes,
    writeBytes: file.writeBytes,
    ...(file.uncertain ? { uncertain: file.uncertain } : {}),
  };
}

export function formatBytes(bytes: number | null): string {
  if (bytes === null) return '?';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

function section(title: string, lines: string[], empty: string): string[] {
  return [title, ...(lines.length > 0 ? lines : [`  ${empty}`])];
}

function fileLines(summary: InsightSummary, limit: number): string[] {
  const rows = summary.files.list.slice(0, limit).map((file) => {
    const kind = file.metadata ? 'dir' : formatBytes(file.size);
    const flag = file.uncertain ? ' ~' : '';
    return `  ${kind.padStart(10)}  class ${file.ioClass}  read ${formatBytes(file.readBytes).padStart(9)}  written ${formatBytes(file.writeBytes).padStart(9)}  ${file.path}${flag}`;
  });
  const more = summary.files.list.length - rows.length + summary.files.forgotten;
  if (more > 0) rows.push(`  … and ${more} more`);
  if (summary.files.list.slice(0, limit).some((file) => file.uncertain)) {
    rows.push('  (~ uncertain: inspected late or after lost events; --json says why)');
  }
  return rows;
}

function patternLines(summary: InsightSummary): string[] {
  const copies = summary.copies.map(
    (c) => `  copy        ${c.srcPath} -> ${c.dstPath}  ${formatBytes(c.bytes)} by ${c.method}${c.exe ? ` (${c.exe})` : ''}`,
  );
  const encryptions = summary.encryptions.map(
    (e) => `  encryption  ${e.path}  ${e.evidence.join(', ')}${e.exe ? ` (${e.exe})` : ''}`,
  );
  return [...copies, ...encryptions];
}

function hintLines(summary: InsightSummary): string[] {
  return summary.hints.map(
    (h) => `  ${h.source.padEnd(12)}  class ${h.ioClass}  ${h.path ?? `pid ${h.pid}`}  ${h.count} time(s)${h.bytes ? `, ${formatBytes(h.bytes)}` : ''}`,
  );
}

function lifetimeLines(summary: InsightSummary): string[] {
  return summary.lifetimes.map((l) => {
    const lived = l.livedMs === null ? 'unknown time' : `${l.livedMs.toFixed(1)} ms`;
    return `  ${l.cause.padEnd(11)}  ${formatBytes(l.bytes)} lived ${lived}  ${l.path}`;
  });
}

/** The human report. `fileLimit` bounds the file table (the JSON stream has everything). */
export function renderSummary(summary: InsightSummary, fileLimit = 25): string {
  const c = summary.counters;
  const lost = c.lostEvents > 0 ? `${c.lostEvents} LOST (insights after the loss are marked uncertain)` : '0 lost';
  const lines = [
    `sky trace: ${c.events} events, ${lost}, ${c.processes} processes`,
    ...section(`Files touched (${summary.files.total + summary.files.forgotten}):`, fileLines(summary, fileLimit), 'none'),
    ...section('Patterns:', patternLines(summary), 'no copies or encryption found'),
    ...section('Application hints:', hintLines(summary), 'none'),
    ...section('Lifetimes ended:', lifetimeLines(summary), 'none'),
    `mmap write-backs: ${summary.mmapWritebacks}`,
  ];
  const doubts = [
    c.unknownFds ? `${c.unknownFds} fd(s) used but never seen opened (inherited, or opened before tracing)` : '',
    c.receivedFds ? `${c.receivedFds} fd(s) never seen opened, found by inode (passed over a socket or taken with pidfd_getfd?)` : '',
    c.unknownNames ? `${c.unknownNames} unlink/rename/link/truncate of untracked names` : '',
    c.lateInspections ? `${c.lateInspections} open(s) inspected late (process or fd gone)` : '',
    c.unverifiedCopies ? `${c.unverifiedCopies} possible copies not verifiable` : '',
    ...summary.uncertainties,
  ].filter((s) => s.length > 0);
  if (doubts.length > 0) lines.push(...section('Uncertain:', doubts.map((d) => `  ${d}`), ''));
  if (summary.omitted > 0) lines.push(`(${summary.omitted} entries left out of this report; use --json for all)`);
  return lines.join('\n');
}
