/**
 * Scores the tags Sky gave block requests against the ground truth, in bytes and in requests:
 * - origin: was the request's origin (metadata / data) right, wrong, or unknown (no tag, or origin 'unknown');
 * - ioClass: was its I/O class the class the truth implies (metadata → the table's metadata class; data → the
 *   class of the owning file's FINAL size; for a shared extent, any owner's class counts as right);
 * - sizeClass: the same truth against the class the table gives the tag's own facts (metadata, or data of a file of
 *   `fileSize` bytes), before rules apply: an application hint (posix_fadvise, a hinted write) rightly overrides the
 *   size class in ioClass, and no file system truth can say which hint an application gave.
 *
 * Bytes are scored exactly, piece by piece. A request is scored by the truth covering most of its bytes.
 * Bytes in space the file system calls free at the end (deleted files, freed metadata) are not right or wrong: they
 * are counted under `freed`, and a request whose bytes are mostly free is counted there instead of being scored.
 */
import assert from 'node:assert/strict';
import { sizeRule, PAPER_IOCLASS_TABLE, type IoClassTable } from '../ioclass.js';
import type { GroundTruth, TruthLabel } from './ground-truth.js';

export interface TaggedRequest {
  offset: number;
  length: number;
  direction: string;
  tag: { origin: 'metadata' | 'data' | 'unknown'; ioClass: number; fileSize?: number } | null;
}

export interface Tally {
  bytes: number;
  requests: number;
}

export interface Verdicts {
  right: Tally;
  wrong: Tally;
  unknown: Tally;
}

export interface AccuracyReport {
  total: Tally;
  /** Requests (and bytes) landing in space that is free at the end. */
  freed: Tally;
  origin: Verdicts & { byTruth: Record<'metadata' | 'data', Verdicts>; byDirection: Record<string, Verdicts> };
  ioClass: Verdicts & {
    byTruth: Record<string, Verdicts>;
    /** Bytes by true class, then by tagged class ('unknown' when there was no usable tag). */
    confusionBytes: Record<string, Record<string, number>>;
  };
  sizeClass: Verdicts;
}

type Verdict = 'right' | 'wrong' | 'unknown';

const tally = (): Tally => ({ bytes: 0, requests: 0 });
const verdicts = (): Verdicts => ({ right: tally(), wrong: tally(), unknown: tally() });

export function emptyReport(): AccuracyReport {
  return {
    total: tally(),
    freed: tally(),
    origin: { ...verdicts(), byTruth: { metadata: verdicts(), data: verdicts() }, byDirection: {} },
    ioClass: { ...verdicts(), byTruth: {}, confusionBytes: {} },
    sizeClass: verdicts(),
  };
}

/** The classes a truth label allows: metadata's class, or each owner's size class. */
export function trueClasses(label: TruthLabel, table: IoClassTable = PAPER_IOCLASS_TABLE): number[] {
  if (label.origin !== 'data') return [table.metadata.ioClass];
  return [...new Set((label.owners ?? []).map((owner) => sizeRule(owner.sizeBytes, table).ioClass))];
}

function originVerdict(request: TaggedRequest, label: TruthLabel): Verdict {
  if (request.tag === null || request.tag.origin === 'unknown') return 'unknown';
  return request.tag.origin === label.origin ? 'right' : 'wrong';
}

function classVerdict(request: TaggedRequest, label: TruthLabel, table: IoClassTable): Verdict {
  if (request.tag === null || request.tag.origin === 'unknown') return 'unknown';
  return trueClasses(label, table).includes(request.tag.ioClass) ? 'right' : 'wrong';
}

/** The table's class for the tag's facts (metadata, or data of a file of fileSize bytes); null when they are unknown. */
export function tagSizeClass(tag: TaggedRequest['tag'], table: IoClassTable = PAPER_IOCLASS_TABLE): number | null {
  if (tag === null || tag.origin === 'unknown') return null;
  if (tag.origin === 'metadata') return table.metadata.ioClass;
  return typeof tag.fileSize === 'number' ? sizeRule(tag.fileSize, table).ioClass : null;
}

function sizeClassVerdict(request: TaggedRequest, label: TruthLabel, table: IoClassTable): Verdict {
  const tagged = tagSizeClass(request.tag, table);
  if (tagged === null) return 'unknown';
  return trueClasses(label, table).includes(tagged) ? 'right' : 'wrong';
}

function add(into: Verdicts, verdict: Verdict, bytes: number, requests: number): void {
  into[verdict].bytes += bytes;
  into[verdict].requests += requests;
}

export function scoreTags(requests: Iterable<TaggedRequest>, truth: GroundTruth, table: IoClassTable = PAPER_IOCLASS_TABLE): AccuracyReport {
  const report = emptyReport();
  for (const request of requests) scoreOne(report, request, truth, table);
  return report;
}

/** Adds one request to a report (for streaming a long trace). */
export function scoreOne(report: AccuracyReport, request: TaggedRequest, truth: GroundTruth, table: IoClassTable = PAPER_IOCLASS_TABLE): void {
  assert.ok(request.length > 0, 'requests have a length');
  report.total.bytes += request.length;
  report.total.requests += 1;
  const byLabel = new Map<TruthLabel, number>();
  let freeBytes = 0;
  for (const segment of truth.segments(request.offset, request.length)) {
    const bytes = segment.end - segment.start;
    if (segment.label.origin === 'free') freeBytes += bytes;
    else scoreBytes(report, request, segment.label, bytes, table);
    byLabel.set(segment.label, (byLabel.get(segment.label) ?? 0) + bytes);
  }
  report.freed.bytes += freeBytes;
  const main = majority(byLabel);
  if (main.origin === 'free') {
    report.freed.requests += 1;
    return;
  }
  scoreRequest(report, request, main, table);
}

function majority(byLabel: ReadonlyMap<TruthLabel, number>): TruthLabel {
  let best: TruthLabel | null = null;
  let bestBytes = -1;
  for (const [label, bytes] of byLabel) {
    if (bytes > bestBytes) {
      best = label;
      bestBytes = bytes;
    }
  }
  assert.ok(best !== null, 'a request covers at least one labelled byte');
  return best;
}

function scoreBytes(report: AccuracyReport, request: TaggedRequest, label: TruthLabel, bytes: number, table: IoClassTable): void {
  const origin = originVerdict(request, label);
  add(report.origin, origin, bytes, 0);
  add(report.origin.byTruth[label.origin as 'metadata' | 'data'], origin, bytes, 0);
  add((report.origin.byDirection[request.direction] ??= verdicts()), origin, bytes, 0);
  const classes = trueClasses(label, table);
  const verdict = classVerdict(request, label, table);
  const trueClass = verdict === 'right' ? String(request.tag!.ioClass) : String(classes[0]);
  add(report.ioClass, verdict, bytes, 0);
  add((report.ioClass.byTruth[trueClass] ??= verdicts()), verdict, bytes, 0);
  const tagged = verdict === 'unknown' ? 'unknown' : String(request.tag!.ioClass);
  const row = (report.ioClass.confusionBytes[trueClass] ??= {});
  row[tagged] = (row[tagged] ?? 0) + bytes;
  add(report.sizeClass, sizeClassVerdict(request, label, table), bytes, 0);
}

function scoreRequest(report: AccuracyReport, request: TaggedRequest, label: TruthLabel, table: IoClassTable): void {
  const origin = originVerdict(request, label);
  add(report.origin, origin, 0, 1);
  add(report.origin.byTruth[label.origin as 'metadata' | 'data'], origin, 0, 1);
  add((report.origin.byDirection[request.direction] ??= verdicts()), origin, 0, 1);
  const verdict = classVerdict(request, label, table);
  const trueClass = verdict === 'right' ? String(request.tag!.ioClass) : String(trueClasses(label, table)[0]);
  add(report.ioClass, verdict, 0, 1);
  add((report.ioClass.byTruth[trueClass] ??= verdicts()), verdict, 0, 1);
  add(report.sizeClass, sizeClassVerdict(request, label, table), 0, 1);
}

/** Right as a share of everything scored (right + wrong + unknown), by bytes and by requests. */
export function accuracy(verdict: Verdicts): { bytes: number; requests: number } {
  const share = (key: keyof Tally) => {
    const all = verdict.right[key] + verdict.wrong[key] + verdict.unknown[key];
    return all === 0 ? 1 : verdict.right[key] / all;
  };
  return { bytes: share('bytes'), requests: share('requests') };
}
