/**
 * `sky report`'s figures from a tag log (the paper's case study 1): what a volume's requests were — bytes and
 * requests by origin, I/O class, file-size bucket, process and operation — how long written blocks lived, the files
 * that moved the most bytes, and, given the ground truth of the file system at the end, how right the tags were,
 * both as given at request time and after the re-tags that followed.
 *
 * Memory is bounded: per-block state only for 16 MiB pages the log wrote to (block-map.ts); at most
 * `maxProcesses`/`maxFiles` keys (the rest are summed under "(other)"); re-tag bookkeeping for the after-re-tag
 * score up to `maxRetagEntries` (beyond, that score is marked incomplete).
 *
 * Block lifetimes, per 4 KiB block touched by a request: a write starts a life (ending the previous one:
 * "overwritten"); trim and zero end it ("trimmed"); a re-tag with cause 'gone' (the file was deleted) ends it
 * ("gone"). Blocks alive when the log ends are counted as alive.
 *
 * After-re-tag score: a request's bytes take the tag of the last re-tag that covered them after the request and
 * before anything overwrote them (write, trim, zero: the block's "epoch"), else keep their request-time tag.
 * 'gone' re-tags only say the file is gone, not what the bytes were: they are not applied. Work is per 4 KiB block
 * in two passes over the log: the first finds, for every block and epoch, the last re-tag; the second scores.
 */
import fs from 'node:fs';
import { GroundTruth, type GroundTruthJson } from '../insight/extents/ground-truth.js';
import { emptyReport, scoreOne, type AccuracyReport, type TaggedRequest, type Tally as ScoreTally, type Verdicts } from '../insight/extents/score.js';
import { PAPER_IOCLASS_TABLE, sizeRule } from '../insight/ioclass.js';
import type { RetagCause } from '../semantics/index-store.js';
import { BirthMap, EpochMap, REPORT_BLOCK_BYTES } from './block-map.js';
import { RETAG_CAUSES, TAG_LOG_OPS, readTagLog, type LoggedTag, type TagLogHeader, type TagLogOp, type TagLogRecord } from './reader.js';

export interface Tally {
  requests: number;
  bytes: number;
}

/** Requests and bytes by operation, and their sum. */
export type OpRow = Record<TagLogOp, Tally> & { total: Tally };

export const ORIGINS = ['metadata', 'data', 'unknown', 'untagged'] as const;
export type OriginKey = (typeof ORIGINS)[number];

/** The paper's file-size classes, then requests that are not file data. */
export const SIZE_BUCKETS = [...PAPER_IOCLASS_TABLE.bySize.map((rule) => rule.name), 'metadata', 'data, size unknown', 'unknown', 'untagged'] as const;

export const LIFETIME_BUCKETS: readonly { label: string; belowMs: number | null }[] = [
  { label: '< 1 s', belowMs: 1000 },
  { label: '< 10 s', belowMs: 10_000 },
  { label: '< 1 min', belowMs: 60_000 },
  { label: '< 10 min', belowMs: 600_000 },
  { label: '>= 10 min', belowMs: null },
];
export type LifetimeEnd = 'overwritten' | 'trimmed' | 'gone';
export const LIFETIME_ENDS: readonly LifetimeEnd[] = ['overwritten', 'trimmed', 'gone'];

export interface LifetimeBucket {
  label: string;
  belowMs: number | null;
  overwritten: number;
  trimmed: number;
  gone: number;
  total: number;
}

export interface ProcessRow extends OpRow {
  process: string;
  pid: number | null;
  exe: string | null;
}

export interface FileRow extends OpRow {
  fileId: string;
  /** The file's latest path in the log's tags, when the sender named it. */
  path: string | null;
  fileSize: number | null;
}

/** Patterns and hints carried by data tags (IoTag.hints): what the tracer found about the files. */
export const PATTERNS = ['copy', 'unique', 'app'] as const;
export type PatternKey = (typeof PATTERNS)[number];

export interface AccuracySection {
  truth: { fsType: string; volumeBytes: number; offsetInExport: number };
  /** Tags as the engine gave them when the request arrived. */
  atRequest: AccuracyReport;
  /** Tags after the re-tags that followed (the engine's last word on those bytes). */
  afterRetag: AccuracyReport;
  /** Reads and writes whose bytes' tag a later re-tag changed (some or all of their bytes). */
  retagged: Tally;
  /** Requests beyond the truth's volume size (not scored). */
  outsideTruth: Tally;
  /** False when re-tag bookkeeping hit its bound: later re-tags were not applied. */
  afterRetagComplete: boolean;
  /** Bytes whose origin is not right after re-tags, by why no re-tag put them right (AfterRetagMisses). */
  afterRetagMisses: AfterRetagMisses;
}

/**
 * Why bytes stay wrong (or unknown) after re-tags. `overwritten`: a write whose bytes were overwritten, trimmed or
 * zeroed before any re-tag reached them (a re-tag names the bytes on the volume, so it can only correct the last
 * write of each); `notRetagged`: no re-tag came for them at all (reads, and writes never overwritten); `retagged`:
 * re-tagged, and still not right.
 */
export interface AfterRetagMisses {
  overwritten: number;
  notRetagged: number;
  retagged: number;
}

export interface TagLogReport {
  log: {
    path: string;
    volume: string;
    volumeBytes: number;
    started: string;
    lines: number;
    requests: number;
    retags: number;
    /** ms from the start of the log to its last record. */
    durationMs: number;
    malformed: number;
    firstMalformedLine: number | null;
    truncated: boolean;
    /** The log was closed properly (it has its end line). */
    ended: boolean;
    /** Lines the engine could not write in time (from the end line). */
    dropped: number;
  };
  byOp: OpRow;
  byOrigin: Record<OriginKey, OpRow>;
  /** By I/O class id ('untagged' for requests without a tag). */
  byClass: Record<string, OpRow>;
  bySize: Record<string, OpRow>;
  /** Largest first; at most `topProcesses` rows, the rest in one '(other)' row. */
  byProcess: ProcessRow[];
  /** Requests whose tag carries a pattern or hint; a request with several counts under each. */
  byPattern: Record<PatternKey, OpRow>;
  /** Processes told apart; when capped, more were seen and the rest are summed under '(other)'. */
  processes: number;
  processesCapped: boolean;
  /** Largest first. */
  topFiles: FileRow[];
  files: number;
  filesCapped: boolean;
  retags: Record<RetagCause, Tally>;
  lifetimes: {
    blockBytes: number;
    buckets: LifetimeBucket[];
    ended: Record<LifetimeEnd, number>;
    /** Blocks still alive at the end of the log. */
    alive: number;
  };
  accuracy?: AccuracySection;
}

export interface ReportOptions {
  /** Ground truth: a GroundTruth, its JSON, or the path of a JSON file (GroundTruth.toJSON). */
  truth?: GroundTruth | GroundTruthJson | string;
  topFiles?: number;
  topProcesses?: number;
  maxProcesses?: number;
  maxFiles?: number;
  maxRetagEntries?: number;
}

const OTHER = '(other)';
const UNKNOWN_PROCESS = '(unknown)';

const tally = (): Tally => ({ requests: 0, bytes: 0 });
export function emptyOpRow(): OpRow {
  return { read: tally(), write: tally(), trim: tally(), zero: tally(), cache: tally(), total: tally() };
}

function addOp(row: OpRow, op: TagLogOp, bytes: number): void {
  row[op].requests++;
  row[op].bytes += bytes;
  row.total.requests++;
  row.total.bytes += bytes;
}

export function sizeBucket(tag: LoggedTag | null): string {
  if (tag === null) return 'untagged';
  if (tag.origin === 'metadata') return 'metadata';
  if (tag.origin === 'unknown') return 'unknown';
  if (tag.fileSize === undefined) return 'data, size unknown';
  return sizeRule(tag.fileSize).name;
}

export function lifetimeBucket(ms: number): number {
  const at = LIFETIME_BUCKETS.findIndex((bucket) => bucket.belowMs === null || ms < bucket.belowMs);
  return at;
}

/** A map with a bound on keys: new keys past the bound land on one overflow key. */
class BoundedRows<R> {
  readonly rows = new Map<string, R>();
  /** Requests whose key came past the bound (they are summed under '(other)'). */
  overflowed = 0;
  constructor(
    private readonly max: number,
    private readonly make: (key: string) => R,
  ) {}
  get(key: string): R {
    let row = this.rows.get(key);
    if (row === undefined) {
      if (this.rows.size >= this.max) {
        this.overflowed++;
        key = OTHER;
        row = this.rows.get(key);
      }
      if (row === undefined) {
        row = this.make(key);
        this.rows.set(key, row);
      }
    }
    return row;
  }

  /** Keys kept (without '(other)'). */
  distinct(): number {
    return this.rows.size - (this.rows.has(OTHER) ? 1 : 0);
  }
}

/** Largest by total bytes first; rows past `top` are summed into one '(other)' row. */
function topRows<R extends OpRow>(rows: Iterable<R>, top: number, other: (sum: OpRow) => R): R[] {
  const sorted = [...rows].sort((a, b) => b.total.bytes - a.total.bytes || b.total.requests - a.total.requests);
  if (sorted.length <= top) return sorted;
  const sum = emptyOpRow();
  for (const row of sorted.slice(top)) {
    for (const key of [...TAG_LOG_OPS, 'total'] as const) {
      sum[key].requests += row[key].requests;
      sum[key].bytes += row[key].bytes;
    }
  }
  return [...sorted.slice(0, top), other(sum)];
}

// ---------------------------------------------------------------------------------------------------------------
// Pass 1: counts, lifetimes, and the last re-tag of every (block, epoch)

/** Re-tags kept for pass 2: per grain (retagGrainBytes), triples [epoch line, re-tag line, tag index], one per epoch re-tagged. */
class RetagBook {
  readonly byBlock = new Map<number, number[]>();
  readonly tags: LoggedTag[] = [];
  private readonly tagIndex = new Map<string, number>();
  entries = 0;
  complete = true;
  constructor(private readonly max: number) {}

  intern(tag: LoggedTag): number {
    const key = JSON.stringify(tag);
    let at = this.tagIndex.get(key);
    if (at === undefined) {
      at = this.tags.push(tag) - 1;
      this.tagIndex.set(key, at);
    }
    return at;
  }

  record(block: number, epoch: number, line: number, tag: number): void {
    let list = this.byBlock.get(block);
    if (list !== undefined && list[list.length - 3] === epoch) {
      list[list.length - 2] = line;
      list[list.length - 1] = tag;
      return;
    }
    if (this.entries >= this.max) {
      this.complete = false;
      return;
    }
    if (list === undefined) this.byBlock.set(block, (list = []));
    list.push(epoch, line, tag);
    this.entries++;
  }

  /** The last re-tag of `block` in `epoch` if it came after `line`; else -1. */
  after(block: number, epoch: number, line: number): number {
    const list = this.byBlock.get(block);
    if (list === undefined) return -1;
    for (let k = list.length - 3; k >= 0; k -= 3) {
      if (list[k] === epoch) return list[k + 1]! > line ? list[k + 2]! : -1;
      if (list[k]! < epoch) return -1;
    }
    return -1;
  }
}

class Counter {
  readonly byOp = emptyOpRow();
  readonly byOrigin = Object.fromEntries(ORIGINS.map((origin) => [origin, emptyOpRow()])) as Record<OriginKey, OpRow>;
  readonly byClass = new Map<string, OpRow>();
  readonly bySize = new Map<string, OpRow>(SIZE_BUCKETS.map((bucket) => [bucket, emptyOpRow()]));
  readonly byPattern = Object.fromEntries(PATTERNS.map((pattern) => [pattern, emptyOpRow()])) as Record<PatternKey, OpRow>;
  readonly processes: BoundedRows<ProcessRow>;
  readonly files: BoundedRows<FileRow>;
  readonly retags = Object.fromEntries(RETAG_CAUSES.map((cause) => [cause, tally()])) as Record<RetagCause, Tally>;
  readonly lifetimes = LIFETIME_BUCKETS.map((bucket) => ({ label: bucket.label, belowMs: bucket.belowMs, overwritten: 0, trimmed: 0, gone: 0, total: 0 }));
  readonly ended: Record<LifetimeEnd, number> = { overwritten: 0, trimmed: 0, gone: 0 };
  readonly blocks: BirthMap;
  /** Epochs per re-tag grain: the last write, trim or zero of each (re-tags name the epoch they apply to). */
  readonly grains: EpochMap;
  private readonly processKeys = new Map<string, { pid: number | null; exe: string | null }>();

  constructor(
    header: TagLogHeader,
    options: Required<Pick<ReportOptions, 'maxProcesses' | 'maxFiles'>>,
    private readonly book: RetagBook | null,
  ) {
    this.blocks = new BirthMap(header.size);
    this.grains = new EpochMap(header.size);
    this.processes = new BoundedRows(options.maxProcesses, (key) => {
      const who = this.processKeys.get(key);
      return { process: key, pid: who?.pid ?? null, exe: who?.exe ?? null, ...emptyOpRow() };
    });
    this.files = new BoundedRows(options.maxFiles, (key) => ({ fileId: key, path: null, fileSize: null, ...emptyOpRow() }));
  }

  visit(record: TagLogRecord): void {
    if (record.kind === 'request') this.request(record);
    else if (record.kind === 'retag') this.retag(record);
  }

  private request(r: Extract<TagLogRecord, { kind: 'request' }>): void {
    const tag = r.tag;
    addOp(this.byOp, r.op, r.length);
    addOp(this.byOrigin[tag === null ? 'untagged' : tag.origin], r.op, r.length);
    const ioClass = tag === null ? 'untagged' : String(tag.ioClass);
    let classRow = this.byClass.get(ioClass);
    if (classRow === undefined) this.byClass.set(ioClass, (classRow = emptyOpRow()));
    addOp(classRow, r.op, r.length);
    addOp(this.bySize.get(sizeBucket(tag))!, r.op, r.length);
    addOp(this.processes.get(this.processKey(tag)), r.op, r.length);
    if (tag?.hints !== undefined) {
      for (const hint of tag.hints) if (hint in this.byPattern) addOp(this.byPattern[hint as PatternKey], r.op, r.length);
    }
    if (tag?.fileId !== undefined) {
      const file = this.files.get(tag.fileId);
      if (file.fileId === tag.fileId && tag.fileSize !== undefined) file.fileSize = tag.fileSize;
      if (file.fileId === tag.fileId && tag.path !== undefined) file.path = tag.path;
      addOp(file, r.op, r.length);
    }
    if (r.op === 'write') this.lives(r.offset, r.length, r.t, r.line, 'overwritten', true);
    else if (r.op === 'trim' || r.op === 'zero') this.lives(r.offset, r.length, r.t, r.line, 'trimmed', false);
  }

  private processKey(tag: LoggedTag | null): string {
    if (tag === null || (tag.pid === undefined && tag.exe === undefined)) return UNKNOWN_PROCESS;
    const key = `${tag.exe ?? '?'}${tag.pid === undefined ? '' : `[${tag.pid}]`}`;
    if (!this.processKeys.has(key) && this.processKeys.size < 1_000_000) this.processKeys.set(key, { pid: tag.pid ?? null, exe: tag.exe ?? null });
    return key;
  }

  /** Ends the lives of the blocks a request touches; a write starts new ones and every change starts an epoch. */
  private lives(offset: number, length: number, t: number, line: number, end: LifetimeEnd, birth: boolean): void {
    const { first, last } = this.blocks.range(offset, length);
    for (let block = first; block <= last; block++) {
      this.endLife(block, t, end);
      this.blocks.setBorn(block, birth ? t : NaN);
    }
    const grains = this.grains.range(offset, length);
    for (let grain = grains.first; grain <= grains.last; grain++) this.grains.setEpoch(grain, line);
  }

  private endLife(block: number, t: number, end: LifetimeEnd): void {
    const born = this.blocks.born(block);
    if (Number.isNaN(born)) return;
    const bucket = this.lifetimes[lifetimeBucket(Math.max(0, t - born))]!;
    bucket[end]++;
    bucket.total++;
    this.ended[end]++;
  }

  private retag(r: Extract<TagLogRecord, { kind: 'retag' }>): void {
    this.retags[r.cause].requests++;
    this.retags[r.cause].bytes += r.length;
    const { first, last } = this.blocks.range(r.offset, r.length);
    if (r.cause === 'gone') {
      for (let block = first; block <= last; block++) {
        this.endLife(block, r.t, 'gone');
        this.blocks.setBorn(block, NaN);
      }
      return;
    }
    if (this.book === null) return;
    const tag = this.book.intern(r.tag);
    const grains = this.grains.range(r.offset, r.length);
    for (let grain = grains.first; grain <= grains.last; grain++) this.book.record(grain, this.grains.epoch(grain), r.line, tag);
  }

  alive(): number {
    let alive = 0;
    this.blocks.forEachAlive(() => alive++);
    return alive;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Pass 2: scoring

/** Why a run of a request's bytes has its final tag (see AfterRetagMisses). */
type FinalCause = keyof AfterRetagMisses;

class Scorer {
  readonly atRequest = emptyReport();
  readonly afterRetag = emptyReport();
  readonly retagged = tally();
  readonly outsideTruth = tally();
  readonly misses: AfterRetagMisses = { overwritten: 0, notRetagged: 0, retagged: 0 };
  private readonly grains: EpochMap;
  private readonly request: TaggedRequest = { offset: 0, length: 0, direction: 'read', tag: null };
  private readonly runs: { offset: number; length: number; tag: LoggedTag | null; cause: FinalCause }[] = [];

  /** `lastEpochs`: pass 1's epochs at the end of the log (a write older than its grain's last epoch was overwritten). */
  constructor(
    header: TagLogHeader,
    private readonly truth: GroundTruth,
    private readonly book: RetagBook,
    private readonly lastEpochs: EpochMap,
  ) {
    this.grains = new EpochMap(header.size);
  }

  visit(record: TagLogRecord): void {
    if (record.kind !== 'request') return;
    const { op, offset, length, line } = record;
    if (op === 'trim' || op === 'zero') {
      const { first, last } = this.grains.range(offset, length);
      for (let grain = first; grain <= last; grain++) this.grains.setEpoch(grain, line);
    }
    if (op !== 'read' && op !== 'write') return;
    if (length === 0) return;
    if (offset + length > this.truth.volumeBytes) {
      this.outsideTruth.requests++;
      this.outsideTruth.bytes += length;
      return;
    }
    const request = this.request;
    request.offset = offset;
    request.length = length;
    request.direction = op;
    request.tag = record.tag;
    scoreOne(this.atRequest, request, this.truth);
    this.finalRuns(op, offset, length, line, record.tag);
    if (this.runs.length === 1 && this.runs[0]!.tag === record.tag) {
      const before = notRight(this.afterRetag);
      scoreOne(this.afterRetag, request, this.truth);
      this.misses[this.runs[0]!.cause] += notRight(this.afterRetag) - before;
      return;
    }
    if (this.runs.some((run) => run.cause === 'retagged')) {
      this.retagged.requests++;
      this.retagged.bytes += length;
    }
    this.scoreRuns(request);
  }

  /** Splits the request into runs of blocks with the same final tag and cause (in this.runs). */
  private finalRuns(op: 'read' | 'write', offset: number, length: number, line: number, own: LoggedTag | null): void {
    this.runs.length = 0;
    const end = offset + length;
    const grainBytes = this.grains.blockBytes;
    const { first, last } = this.grains.range(offset, length);
    for (let grain = first; grain <= last; grain++) {
      if (op === 'write') this.grains.setEpoch(grain, line);
      const found = this.book.after(grain, this.grains.epoch(grain), line);
      const tag = found < 0 ? own : this.book.tags[found]!;
      const cause: FinalCause = found >= 0 ? 'retagged' : op === 'write' && this.lastEpochs.epoch(grain) > line ? 'overwritten' : 'notRetagged';
      const start = Math.max(offset, grain * grainBytes);
      const stop = Math.min(end, (grain + 1) * grainBytes);
      const previous = this.runs[this.runs.length - 1];
      if (previous !== undefined && previous.tag === tag && previous.cause === cause) previous.length += stop - start;
      else this.runs.push({ offset: start, length: stop - start, tag, cause });
    }
  }

  /** Bytes run by run; the request itself by the tag covering most of its bytes. */
  private scoreRuns(request: TaggedRequest): void {
    const bytesOnly = emptyReport();
    // The main tag: the longest stretch of one tag (runs of one tag differ in cause only where they touch).
    let mainTag = this.runs[0]!.tag;
    let mainLength = 0;
    let stretch = 0;
    for (let k = 0; k < this.runs.length; k++) {
      const run = this.runs[k]!;
      const before = notRight(bytesOnly);
      scoreOne(bytesOnly, { offset: run.offset, length: run.length, direction: request.direction, tag: run.tag }, this.truth);
      this.misses[run.cause] += notRight(bytesOnly) - before;
      stretch = k > 0 && this.runs[k - 1]!.tag === run.tag ? stretch + run.length : run.length;
      if (stretch > mainLength) {
        mainLength = stretch;
        mainTag = run.tag;
      }
    }
    const requestOnly = emptyReport();
    scoreOne(requestOnly, { ...request, tag: mainTag }, this.truth);
    addReport(this.afterRetag, bytesOnly, 'bytes');
    addReport(this.afterRetag, requestOnly, 'requests');
  }
}

/** Bytes scored whose origin is wrong or unknown so far. */
function notRight(report: AccuracyReport): number {
  return report.origin.wrong.bytes + report.origin.unknown.bytes;
}

function addTally(into: ScoreTally, from: ScoreTally, field: keyof ScoreTally): void {
  into[field] += from[field];
}

function addVerdicts(into: Verdicts, from: Verdicts, field: keyof ScoreTally): void {
  addTally(into.right, from.right, field);
  addTally(into.wrong, from.wrong, field);
  addTally(into.unknown, from.unknown, field);
}

const emptyVerdicts = (): Verdicts => ({ right: tally(), wrong: tally(), unknown: tally() });

/** Adds one field (bytes or requests) of every tally of `from` into `into`. */
export function addReport(into: AccuracyReport, from: AccuracyReport, field: keyof ScoreTally): void {
  addTally(into.total, from.total, field);
  addTally(into.freed, from.freed, field);
  addVerdicts(into.origin, from.origin, field);
  addVerdicts(into.origin.byTruth.metadata, from.origin.byTruth.metadata, field);
  addVerdicts(into.origin.byTruth.data, from.origin.byTruth.data, field);
  for (const [direction, verdicts] of Object.entries(from.origin.byDirection)) addVerdicts((into.origin.byDirection[direction] ??= emptyVerdicts()), verdicts, field);
  addVerdicts(into.ioClass, from.ioClass, field);
  addVerdicts(into.sizeClass, from.sizeClass, field);
  for (const [ioClass, verdicts] of Object.entries(from.ioClass.byTruth)) addVerdicts((into.ioClass.byTruth[ioClass] ??= emptyVerdicts()), verdicts, field);
  if (field !== 'bytes') return;
  for (const [row, cells] of Object.entries(from.ioClass.confusionBytes)) {
    const target = (into.ioClass.confusionBytes[row] ??= {});
    for (const [column, bytes] of Object.entries(cells)) target[column] = (target[column] ?? 0) + bytes;
  }
}

// ---------------------------------------------------------------------------------------------------------------

function loadTruth(truth: NonNullable<ReportOptions['truth']>): GroundTruth {
  if (truth instanceof GroundTruth) return truth;
  const json = typeof truth === 'string' ? (JSON.parse(fs.readFileSync(truth, 'utf8')) as GroundTruthJson) : truth;
  if (json?.version !== 1 || !Array.isArray(json.segments) || !Array.isArray(json.labels)) {
    throw new Error(`${typeof truth === 'string' ? truth : 'the truth'} is not a ground-truth file (GroundTruth.toJSON, version 1)`);
  }
  return GroundTruth.fromJSON(json);
}

/** Reads the log (twice with a truth: the second pass scores) and computes the report. */
export async function buildReport(logPath: string, options: ReportOptions = {}): Promise<TagLogReport> {
  const truth = options.truth === undefined ? null : loadTruth(options.truth);
  const book = truth === null ? null : new RetagBook(options.maxRetagEntries ?? 64_000_000);
  const limits = { maxProcesses: options.maxProcesses ?? 10_000, maxFiles: options.maxFiles ?? 1_000_000 };
  let counter: Counter | null = null;
  const summary = await readTagLog(
    logPath,
    (record) => counter!.visit(record),
    (header) => (counter = new Counter(header, limits, book)),
  );
  const counted = counter as unknown as Counter;
  let accuracy: AccuracySection | undefined;
  if (truth !== null) {
    const scorer = new Scorer(summary.header, truth, book!, counted.grains);
    await readTagLog(logPath, (record) => scorer.visit(record));
    accuracy = {
      truth: { fsType: truth.fsType, volumeBytes: truth.volumeBytes, offsetInExport: truth.offsetInExport },
      atRequest: scorer.atRequest,
      afterRetag: scorer.afterRetag,
      retagged: scorer.retagged,
      outsideTruth: scorer.outsideTruth,
      afterRetagComplete: book!.complete,
      afterRetagMisses: scorer.misses,
    };
  }
  const topProcesses = options.topProcesses ?? 20;
  const topFiles = options.topFiles ?? 20;
  const report: TagLogReport = {
    log: {
      path: logPath,
      volume: summary.header.volume,
      volumeBytes: summary.header.size,
      started: summary.header.started,
      lines: summary.lines,
      requests: summary.requests,
      retags: summary.retags,
      durationMs: summary.lastT,
      malformed: summary.malformed,
      firstMalformedLine: summary.firstMalformedLine,
      truncated: summary.truncated,
      ended: summary.end !== null,
      dropped: summary.end?.dropped ?? 0,
    },
    byOp: counted.byOp,
    byOrigin: counted.byOrigin,
    byClass: Object.fromEntries([...counted.byClass].sort(([a], [b]) => classOrder(a) - classOrder(b))),
    bySize: Object.fromEntries(counted.bySize),
    byProcess: topRows(counted.processes.rows.values(), topProcesses, (sum) => ({ process: OTHER, pid: null, exe: null, ...sum })),
    byPattern: counted.byPattern,
    processes: counted.processes.distinct(),
    processesCapped: counted.processes.overflowed > 0,
    topFiles: topRows(counted.files.rows.values(), topFiles, (sum) => ({ fileId: OTHER, path: null, fileSize: null, ...sum })),
    files: counted.files.distinct(),
    filesCapped: counted.files.overflowed > 0,
    retags: counted.retags,
    lifetimes: { blockBytes: REPORT_BLOCK_BYTES, buckets: counted.lifetimes, ended: counted.ended, alive: counted.alive() },
  };
  if (accuracy) report.accuracy = accuracy;
  return report;
}

/** Class ids ascending (as JSON objects keep integer keys anyway), 'untagged' last. */
function classOrder(key: string): number {
  return key === 'untagged' ? Number.MAX_SAFE_INTEGER : Number(key);
}
