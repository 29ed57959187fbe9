/**
 * Streaming reader of tag logs (see tag-log.ts for the format). Logs run to gigabytes, so the file is read in
 * 1 MiB chunks and split into lines on the bytes; each record goes to a callback and is not kept.
 *
 * Tolerated: a last line cut short (the engine was killed before it flushed) — it is skipped and reported as
 * `truncated`; malformed lines in the middle — counted, with the first one's line number. Refused: a file that does
 * not start with a tag-log header (TagLogError).
 */
import fs from 'node:fs';
import type { RetagCause } from '../semantics/index-store.js';
import { TAG_LOG_FORMAT, TAG_LOG_VERSION } from './tag-log.js';

export type TagLogOp = 'read' | 'write' | 'trim' | 'zero' | 'cache';
export const TAG_LOG_OPS: readonly TagLogOp[] = ['read', 'write', 'trim', 'zero', 'cache'];
export const RETAG_CAUSES: readonly RetagCause[] = ['extents', 'class', 'gone'];

export interface LoggedTag {
  origin: 'metadata' | 'data' | 'unknown';
  ioClass: number;
  fileId?: string;
  path?: string;
  fileSize?: number;
  pid?: number;
  exe?: string;
  hints?: string[];
}

export interface TagLogHeader {
  sky: typeof TAG_LOG_FORMAT;
  v: number;
  volume: string;
  size: number;
  started: string;
}

/** `line` is the 1-based line number in the file (the header is line 1): the order of events. */
export type TagLogRecord =
  | { kind: 'request'; line: number; t: number; op: TagLogOp; offset: number; length: number; tag: LoggedTag | null }
  | { kind: 'retag'; line: number; t: number; cause: RetagCause; offset: number; length: number; tag: LoggedTag }
  | { kind: 'end'; line: number; t: number; dropped: number; lines: number };

export interface TagLogReadSummary {
  header: TagLogHeader;
  /** Lines in the file, header included (a truncated last line included). */
  lines: number;
  requests: number;
  retags: number;
  malformed: number;
  firstMalformedLine: number | null;
  /** The last line had no newline and did not parse: skipped. */
  truncated: boolean;
  /** The end line, when the log was closed properly. */
  end: { dropped: number; lines: number } | null;
  /** t of the last record. */
  lastT: number;
}

export class TagLogError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TagLogError';
  }
}

const READ_CHUNK_BYTES = 1024 * 1024;
const NEWLINE = 10;
/** Longer lines are garbage (a tag's JSON is a few hundred bytes). */
const LINE_BYTES_MAX = 16 * 1024 * 1024;
const OPS = new Set<string>(TAG_LOG_OPS);
const CAUSES = new Set<string>(RETAG_CAUSES);

const isCount = (value: unknown): value is number => typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;

function isTag(value: unknown): value is LoggedTag {
  const tag = value as Partial<LoggedTag> | null;
  return typeof tag === 'object' && tag !== null && (tag.origin === 'metadata' || tag.origin === 'data' || tag.origin === 'unknown') && typeof tag.ioClass === 'number';
}

/** Checks a parsed line; null when it is not a record of the format. */
function toRecord(raw: unknown, line: number): TagLogRecord | null {
  const r = raw as Record<string, unknown> | null;
  if (typeof r !== 'object' || r === null || typeof r.t !== 'number') return null;
  const op = r.op;
  if (op === 'end') return isCount(r.dropped) && isCount(r.lines) ? { kind: 'end', line, t: r.t, dropped: r.dropped, lines: r.lines } : null;
  if (!isCount(r.offset) || !isCount(r.length)) return null;
  if (op === 'retag') {
    if (typeof r.cause !== 'string' || !CAUSES.has(r.cause) || !isTag(r.tag)) return null;
    return { kind: 'retag', line, t: r.t, cause: r.cause as RetagCause, offset: r.offset, length: r.length, tag: r.tag };
  }
  if (typeof op !== 'string' || !OPS.has(op) || !(r.tag === null || isTag(r.tag))) return null;
  return { kind: 'request', line, t: r.t, op: op as TagLogOp, offset: r.offset, length: r.length, tag: r.tag as LoggedTag | null };
}

function parseHeader(text: string, file: string): TagLogHeader {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new TagLogError(`${file} is not a Sky tag log: its first line is not JSON`);
  }
  const header = raw as Partial<TagLogHeader> | null;
  if (typeof header !== 'object' || header === null || header.sky !== TAG_LOG_FORMAT) {
    throw new TagLogError(`${file} is not a Sky tag log: its first line is not a tag-log header ({"sky":"tag-log",...})`);
  }
  if (header.v !== TAG_LOG_VERSION) throw new TagLogError(`${file} is a tag log of version ${String(header.v)}; this sky reads version ${TAG_LOG_VERSION}`);
  if (!isCount(header.size) || header.size === 0) throw new TagLogError(`${file}: the tag-log header has no volume size`);
  return { sky: TAG_LOG_FORMAT, v: header.v, volume: String(header.volume ?? ''), size: header.size, started: String(header.started ?? '') };
}

/**
 * Reads the log at `file`, calling `visit` for every record in order. Throws TagLogError for a file that is not a
 * tag log; fs errors (ENOENT …) pass through.
 */
export async function readTagLog(
  file: string,
  visit: (record: TagLogRecord) => void,
  onHeader?: (header: TagLogHeader) => void,
): Promise<TagLogReadSummary> {
  let header: TagLogHeader | null = null;
  const summary = { lines: 0, requests: 0, retags: 0, malformed: 0, firstMalformedLine: null as number | null, truncated: false, end: null as TagLogReadSummary['end'], lastT: 0 };
  const onLine = (text: string, complete: boolean): void => {
    summary.lines++;
    if (header === null) {
      header = parseHeader(text, file);
      onHeader?.(header);
      return;
    }
    let record: TagLogRecord | null = null;
    try {
      record = toRecord(JSON.parse(text), summary.lines);
    } catch {
      record = null;
    }
    if (record === null) {
      if (!complete) summary.truncated = true;
      else if (text.trim().length > 0) {
        summary.malformed++;
        summary.firstMalformedLine ??= summary.lines;
      }
      return;
    }
    summary.lastT = record.t;
    if (record.kind === 'request') summary.requests++;
    else if (record.kind === 'retag') summary.retags++;
    else summary.end = { dropped: record.dropped, lines: record.lines };
    visit(record);
  };
  let carry: Buffer | null = null;
  const stream = fs.createReadStream(file, { highWaterMark: READ_CHUNK_BYTES });
  for await (const piece of stream as AsyncIterable<Buffer>) {
    let chunk = piece;
    let from = 0;
    if (carry !== null) {
      chunk = Buffer.concat([carry, piece]);
      carry = null;
    }
    for (let at = chunk.indexOf(NEWLINE, from); at >= 0; at = chunk.indexOf(NEWLINE, from)) {
      onLine(chunk.toString('utf8', from, at), true);
      from = at + 1;
    }
    if (from < chunk.length) carry = chunk.subarray(from);
    if (carry !== null && carry.length > LINE_BYTES_MAX) {
      // No line of the format is this long: a binary file, or garbage in the middle of a log.
      if (header === null) throw new TagLogError(`${file} is not a Sky tag log: no line break in its first ${LINE_BYTES_MAX} bytes`);
      onLine('', true);
      summary.malformed++;
      summary.firstMalformedLine ??= summary.lines;
      carry = null;
    }
  }
  if (carry !== null && carry.length > 0) onLine(carry.toString('utf8'), false);
  if (header === null) throw new TagLogError(`${file} is empty: not a Sky tag log`);
  return { header, ...summary };
}

/** Reads only the header (first line) of a log. */
export async function readTagLogHeader(file: string): Promise<TagLogHeader> {
  const handle = await fs.promises.open(file, 'r');
  try {
    const buffer = Buffer.alloc(64 * 1024);
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
    if (bytesRead === 0) throw new TagLogError(`${file} is empty: not a Sky tag log`);
    const end = buffer.subarray(0, bytesRead).indexOf(NEWLINE);
    return parseHeader(buffer.toString('utf8', 0, end < 0 ? bytesRead : end), file);
  } finally {
    await handle.close();
  }
}
