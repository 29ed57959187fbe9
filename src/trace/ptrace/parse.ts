/**
 * Parses strace's output in the fixed format the ptrace backend asks for:
 *
 *   strace -f -q -X raw -yy --timestamps=unix,ns -s 65535 -e signal=none -e raw=<read/write family> ...
 *   PID  SEC.NSEC name(args) = ret
 *   PID  SEC.NSEC name(args <unfinished ...>          and later   PID  SEC.NSEC <... name resumed>args) = ret
 *   PID  SEC.NSEC +++ exited with N +++   |   +++ killed by SIGNAME (core dumped) +++
 *
 * Pure functions: a line in, a value out. The argument grammar is strace's: quoted C strings, [arrays],
 * {structs}, fds decorated with their target (`3</etc/passwd>`, `1</dev/null<char 1:3>>`), comments.
 */
import { constants } from 'node:os';

export type StraceLine =
  /** `start` is when an unfinished call began, for calls strace printed in two halves. */
  | { type: 'call'; tid: number; sec: number; nsec: number; name: string; args: string[]; ret: StraceReturn; start?: { sec: number; nsec: number } }
  | { type: 'exit'; tid: number; sec: number; nsec: number; code: number }
  | { type: 'killed'; tid: number; sec: number; nsec: number; signal: number }
  /** A call that has not returned yet, or its continuation; `Resumer` joins them into one call line. */
  | { type: 'unfinished'; tid: number; sec: number; nsec: number; text: string }
  | { type: 'resumed'; tid: number; sec: number; nsec: number; name: string; text: string }
  | { type: 'other'; tid: number; text: string };

export interface StraceReturn {
  /** The return value as the kernel gave it (negative errno on failure); null for `?` (no return). */
  value: number | null;
  /** The decoration of a returned fd (`3</path>` gives "/path"), if any. */
  target: string | null;
}

const RESTART_ERRNOS: Record<string, number> = {
  ERESTARTSYS: 512, ERESTARTNOINTR: 513, ERESTARTNOHAND: 514, ENOIOCTLCMD: 515, ERESTART_RESTARTBLOCK: 516, ENOTSUPP: 524,
};

export function errnoNumber(name: string): number | null {
  return (constants.errno as Record<string, number>)[name] ?? RESTART_ERRNOS[name] ?? null;
}

export function signalNumber(name: string): number | null {
  return (constants.signals as Record<string, number>)[name] ?? null;
}

const HEAD = /^(\d+) +(\d+)\.(\d+) (.*)$/s;

/** One line of strace output, without its newline. */
export function parseStraceLine(line: string): StraceLine {
  const head = HEAD.exec(line);
  if (!head) return { type: 'other', tid: 0, text: line };
  const tid = Number(head[1]);
  const sec = Number(head[2]);
  const nsec = Number(head[3].padEnd(9, '0'));
  const body = head[4];
  const time = { tid, sec, nsec };
  if (body.startsWith('+++ ')) return exitLine(time, body);
  if (body.startsWith('<... ')) {
    const end = body.indexOf(' resumed>');
    if (end === -1) return { type: 'other', tid, text: body };
    return { type: 'resumed', ...time, name: body.slice(5, end), text: body.slice(end + ' resumed>'.length) };
  }
  if (body.endsWith(' <unfinished ...>')) return { type: 'unfinished', ...time, text: body.slice(0, -' <unfinished ...>'.length) };
  const call = parseCall(body);
  return call ? { type: 'call', ...time, ...call } : { type: 'other', tid, text: body };
}

function exitLine(time: { tid: number; sec: number; nsec: number }, body: string): StraceLine {
  const exited = /^\+\+\+ exited with (\d+) \+\+\+$/.exec(body);
  if (exited) return { type: 'exit', ...time, code: Number(exited[1]) };
  const killed = /^\+\+\+ killed by (SIG\w+)/.exec(body);
  const signal = killed ? signalNumber(killed[1]) : null;
  if (signal !== null) return { type: 'killed', ...time, signal };
  return { type: 'other', tid: time.tid, text: body };
}

/** `name(args) = ret`: the argument list is scanned with nesting, so `) = ` inside a string does not end it. */
export function parseCall(body: string): { name: string; args: string[]; ret: StraceReturn } | null {
  const open = body.indexOf('(');
  if (open <= 0) return null;
  const close = matchingParen(body, open);
  if (close === -1) return null;
  const rest = body.slice(close + 1).trimStart();
  if (!rest.startsWith('=')) return null;
  return { name: body.slice(0, open), args: splitArgs(body.slice(open + 1, close)), ret: parseReturn(rest.slice(1).trim()) };
}

/** Index of the `)` closing the `(` at `open`, skipping strings and nested brackets; -1 if none. */
function matchingParen(text: string, open: number): number {
  let depth = 0;
  for (let i = open; i < text.length; i++) {
    const c = text[i];
    if (c === '"') i = skipString(text, i);
    else if (c === '(' || c === '[' || c === '{') depth++;
    else if (c === ')' || c === ']' || c === '}') {
      depth--;
      if (depth === 0) return c === ')' ? i : -1;
    }
  }
  return -1;
}

/** Index of the closing quote of the string opening at `start`. */
function skipString(text: string, start: number): number {
  for (let i = start + 1; i < text.length; i++) {
    if (text[i] === '\\') i++;
    else if (text[i] === '"') return i;
  }
  return text.length;
}

/**
 * Splits an argument list at top-level commas. Decorations (`<...>` right after an fd number or a path's `>`)
 * and comments nest like brackets; `=>` (an argument changed by the call) is not a bracket.
 */
export function splitArgs(text: string): string[] {
  const args: string[] = [];
  let depth = 0;
  let angle = 0;
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') i = skipString(text, i);
    else if (c === '/' && text[i + 1] === '*') i = Math.max(i, text.indexOf('*/', i + 2) + 1);
    else if (c === '(' || c === '[' || c === '{') depth++;
    else if (c === ')' || c === ']' || c === '}') depth--;
    else if (c === '<' && i > 0 && /[\d>]/.test(text[i - 1])) angle++;
    else if (c === '>' && angle > 0 && text[i - 1] !== '=') angle--;
    else if (c === ',' && depth === 0 && angle === 0) {
      args.push(text.slice(start, i).trim());
      start = i + 1;
    }
  }
  const last = text.slice(start).trim();
  if (last !== '' || args.length > 0) args.push(last);
  return args;
}

function parseReturn(text: string): StraceReturn {
  if (text.startsWith('?')) return { value: null, target: null };
  const error = /^-1 ([A-Z][A-Z0-9_]*)/.exec(text);
  if (error) {
    const errno = errnoNumber(error[1]);
    return { value: errno === null ? -1 : -errno, target: null };
  }
  return { value: parseNumber(text), target: decoration(text) };
}

/**
 * A numeric argument or return value: decimal, 0x hex, 0-prefixed octal (modes), NULL, AT_FDCWD, or an fd with
 * its decoration. NaN when the text is not a number (a pointer strace decoded, a struct).
 */
export function parseNumber(text: string): number {
  if (text.startsWith('NULL')) return 0;
  if (text.startsWith('AT_FDCWD')) return -100;
  let end = 0;
  while (end < text.length && /[-0-9a-fA-Fx]/.test(text[end])) end++;
  const token = text.slice(0, end);
  if (/^-?0x[0-9a-fA-F]+$/.test(token)) return clamp(hexNumber(token));
  if (/^0[0-7]+$/.test(token)) return clamp(parseInt(token, 8));
  if (/^-?\d+$/.test(token)) return clamp(Number(token));
  return Number.NaN;
}

/** Beyond 2^53 a number is not exact; such values are "as much as possible" lengths. Same rule as ebpf. */
function clamp(value: number): number {
  return Math.max(-Number.MAX_SAFE_INTEGER, Math.min(Number.MAX_SAFE_INTEGER, value));
}

/** Hex values above 2^63 are negative numbers printed unsigned (mmap failures, -1 offsets). */
function hexNumber(token: string): number {
  const negative = token.startsWith('-');
  const value = BigInt.asIntN(64, BigInt(negative ? token.slice(1) : token));
  return Number(negative ? -value : value);
}

/** What an fd argument or result refers to: `3</a/b>` is "/a/b", `1</dev/null<char 1:3>>` is "/dev/null<char 1:3>". */
export function decoration(text: string): string | null {
  const open = text.indexOf('<');
  if (open === -1 || !/^-?\d+$/.test(text.slice(0, open).trim())) return null;
  let depth = 0;
  for (let i = open; i < text.length; i++) {
    if (text[i] === '<') depth++;
    else if (text[i] === '>' && --depth === 0) return text.slice(open + 1, i);
  }
  return text.slice(open + 1);
}

export type FdKind = 'file' | 'other';

/** Regular files and block devices hold storage; pipes, sockets, ttys, /dev/null and friends do not. */
export function fdKindOf(target: string): FdKind {
  if (!target.startsWith('/')) return 'other';
  if (target.includes('<char ')) return 'other';
  return 'file';
}

/**
 * The path an fd decoration names, as /proc/PID/fd would: `/dev/null<char 1:3>` is /dev/null, `/a/b (deleted)` is
 * /a/b; '' for what is not a path (pipe:[..], socket:[..], anon_inode:..).
 */
export function seenPath(target: string): string {
  if (!target.startsWith('/')) return '';
  const device = target.indexOf('<');
  const path = device === -1 ? target : target.slice(0, device);
  return path.endsWith(DELETED) ? path.slice(0, -DELETED.length) : path;
}

const DELETED = ' (deleted)';

export interface ParsedString {
  value: string;
  truncated: boolean;
}

/** A quoted C string as strace prints it (escapes, `...` when cut at -s). Null when `text` is not a string. */
export function parseString(text: string): ParsedString | null {
  if (!text.startsWith('"')) return null;
  const end = skipString(text, 0);
  const bytes: number[] = [];
  for (let i = 1; i < end; i++) {
    const c = text.charCodeAt(i);
    if (c !== 92) {
      if (c < 0x80) bytes.push(c);
      else bytes.push(...Buffer.from(text[i], 'utf8'));
      continue;
    }
    i = unescape(text, i + 1, bytes);
  }
  return { value: Buffer.from(bytes).toString('utf8'), truncated: text.slice(end + 1).startsWith('...') };
}

const SIMPLE_ESCAPES: Record<string, number> = { n: 10, t: 9, r: 13, v: 11, f: 12, a: 7, b: 8, '\\': 92, '"': 34, "'": 39 };

/** Decodes the escape starting after the backslash at `i - 1`; returns the index of its last character. */
function unescape(text: string, i: number, bytes: number[]): number {
  const c = text[i];
  if (c in SIMPLE_ESCAPES) {
    bytes.push(SIMPLE_ESCAPES[c]);
    return i;
  }
  if (c === 'x') {
    const hex = /^[0-9a-fA-F]{1,2}/.exec(text.slice(i + 1, i + 3))![0];
    bytes.push(parseInt(hex, 16));
    return i + hex.length;
  }
  const octal = /^[0-7]{1,3}/.exec(text.slice(i, i + 3));
  if (octal) {
    bytes.push(parseInt(octal[0], 8) & 0xff);
    return i + octal[0].length - 1;
  }
  bytes.push(text.charCodeAt(i));
  return i;
}

/** `["a", "b"]` (argv); `...` inside or after the list means strace left elements out. */
export function parseStringArray(text: string): { values: string[]; truncated: boolean } | null {
  if (!text.startsWith('[')) return null;
  const inner = text.slice(1, text.lastIndexOf(']'));
  let truncated = text.endsWith('...');
  const values: string[] = [];
  for (const item of splitArgs(inner)) {
    const parsed = parseString(item);
    if (!parsed) {
      truncated = true;
      continue;
    }
    truncated ||= parsed.truncated;
    values.push(parsed.value);
  }
  return { values, truncated };
}

/** `[100]` or `[100 => 1100]` (an offset the call read through a pointer): the value at entry. */
export function parseBracketedNumber(text: string): number | null {
  if (!text.startsWith('[')) return null;
  const value = parseNumber(text.slice(1).trim());
  return Number.isNaN(value) ? null : value;
}

/** `{flags=0x3d0f00, ...}`: one field of a struct strace printed. */
export function structField(text: string, field: string): number | null {
  const match = new RegExp(`[{ ]${field}=([^,}]+)`).exec(text);
  if (!match) return null;
  const value = parseNumber(match[1]);
  return Number.isNaN(value) ? null : value;
}

/** Joins `unfinished` and `resumed` halves per thread into complete call lines. */
export class Resumer {
  private readonly pending = new Map<number, Extract<StraceLine, { type: 'unfinished' }>>();

  /** Returns the complete call, or null while one half is missing. */
  feed(line: StraceLine): StraceLine | null {
    if (line.type === 'unfinished') {
      this.pending.set(line.tid, line);
      return null;
    }
    if (line.type !== 'resumed') return line;
    const first = this.pending.get(line.tid);
    this.pending.delete(line.tid);
    if (first === undefined) return null;
    const call = parseCall(first.text + line.text);
    if (!call) return null;
    return { type: 'call', tid: line.tid, sec: line.sec, nsec: line.nsec, ...call, start: { sec: first.sec, nsec: first.nsec } };
  }
}
