/**
 * Turns the binary records of the program in program.ts into SyscallEvents. A record is a key (tid, ts, sub)
 * and 13 int64 (code, pid, 11 fields); its strings sit in another map under (tid, ts, 0..n); an aggregate is a
 * key (pid, fd, ino, generation) and 10 int64. Decoding allocates the event and its strings, nothing else.
 */
import assert from 'node:assert/strict';
import type { FileType, SyscallEvent } from '../events.js';
import { SKY_HINT_MAGIC } from '../hint-abi.js';
import { int64At } from './bpf.js';
import { S_IFDIR, S_IFMT, S_IFREG } from '../linux.js';
import { AGGREGATE_FIELDS, ARGV_MAX as ARGV_LIMIT, ASYNC_APIS, ASYNC_UNSEEN, COPY_CALLS, Code, RECORD_FIELDS, STRING_BYTES } from './program.js';

type Ev<K extends SyscallEvent['kind']> = Extract<SyscallEvent, { kind: K }>;
type Base = { ts: number; pid: number; tid: number };

export const RECORD_KEY_BYTES = 24;
export const RECORD_VALUE_BYTES = (2 + RECORD_FIELDS) * 8;
export const AGGREGATE_KEY_BYTES = 32;
export const AGGREGATE_VALUE_BYTES = AGGREGATE_FIELDS * 8;

export interface DecodedString {
  value: string;
  truncated: boolean;
}

/** A NUL-terminated string from a STRING_BYTES buffer. Bytes that are not UTF-8 become U+FFFD. */
export function stringAt(buffer: Buffer, offset: number): DecodedString {
  const limit = offset + STRING_BYTES;
  let end = buffer.indexOf(0, offset);
  if (end === -1 || end > limit) end = limit;
  // str() stops one byte short of the buffer, so a string that long may have been cut.
  return { value: buffer.toString('utf8', offset, end), truncated: end - offset >= STRING_BYTES - 1 };
}

/** The key of a record's string `sub`: tid, ts and sub in one string (strings are looked up per record). */
export function stringKey(tid: number, ts: number, sub: number): string {
  return `${tid},${ts},${sub}`;
}

/** Kernel dev_t (major << 20 | minor) to the st_dev encoding of glibc's makedev, which stat(2) and Node report. */
export function userDev(kernelDev: number): number {
  const major = Math.floor(kernelDev / 0x100000);
  const minor = kernelDev % 0x100000;
  return (minor & 0xff) + (major & 0xfff) * 0x100 + Math.floor(minor / 0x100) * 0x100000 + Math.floor(major / 0x1000) * 2 ** 44;
}

function fdsOfMasks(masks: readonly bigint[]): number[] {
  const fds: number[] = [];
  masks.forEach((mask, word) => {
    for (let bit = 0; mask !== 0n && bit < 64; bit++, mask >>= 1n) if (mask & 1n) fds.push(word * 64 + bit);
  });
  return fds;
}

interface PendingExec {
  /** When the entry half ran: its exit names it (0 in an exit that could not, then the latest earlier entry). */
  ts: number;
  path: string;
  truncated: boolean;
  closedFds: number[];
  argv: string[];
}

/** Entry halves kept per pid for exits still to come; beyond, the oldest (whose exit was lost) is dropped. */
const EXEC_ENTRIES_PENDING_MAX = 64;

/** Strings of records, by stringKey; a record whose strings are not (yet) here is retried once, then lost. */
export type StringTable = Map<string, DecodedString>;

/**
 * Records of one collection come in hash order, so an exec's exit half can come before its entry half, and a
 * shell's PATH search puts several failed execs of one process in one collection: an exit names its entry by the
 * entry's timestamp, and the halves meet by (pid, that timestamp). An exit whose entry never comes (it ran before
 * tracing) is reported as is.
 */
export class RecordDecoder {
  /** Entry halves waiting for their exit, per pid, oldest first (bounded: see EXEC_ENTRIES_PENDING_MAX). */
  private readonly execs = new Map<number, PendingExec[]>();
  /** Exit halves waiting for their entry, with the entry's timestamp (0: unknown). */
  private readonly execExits = new Map<number, { exit: Ev<'exec'>; enterTs: number }[]>();
  private base: Base = { ts: 0, pid: 0, tid: 0 };
  private values: Buffer = Buffer.alloc(0);
  private at = 0;

  constructor(private readonly strings: StringTable) {}

  /**
   * The event of the record at `keyOffset`/`valueOffset`; null when it produced none (an exec's entry half) and
   * undefined when one of its strings is missing.
   */
  decode(keys: Buffer, keyOffset: number, values: Buffer, valueOffset: number): SyscallEvent | null | undefined {
    const tid = int64At(keys, keyOffset);
    const ts = int64At(keys, keyOffset + 8);
    this.values = values;
    this.at = valueOffset;
    this.base = { ts, pid: this.field(-1), tid };
    return this.record(int64At(values, valueOffset));
  }

  /** Field i of the current record (-1 is the pid). */
  private field(i: number): number {
    return int64At(this.values, this.at + 16 + i * 8);
  }

  private text(sub: number): DecodedString | undefined {
    return this.strings.get(stringKey(this.base.tid, this.base.ts, sub));
  }

  private forget(count: number): void {
    for (let sub = 0; sub < count; sub++) this.strings.delete(stringKey(this.base.tid, this.base.ts, sub));
  }

  private record(code: number): SyscallEvent | null | undefined {
    const b = this.base;
    const f = (i: number) => this.field(i);
    switch (code) {
      case Code.close:
        return { kind: 'close', ...b, fd: f(0), ret: f(1) };
      case Code.dup:
        return { kind: 'dup', ...b, fd: f(0), cloexec: f(1) !== 0, ret: f(2), ...identity(f(3), f(4)) };
      case Code.fcntl:
        return { kind: 'fcntl', ...b, fd: f(0), cmd: f(1), arg: f(2), ret: f(3) };
      case Code.fchdir:
        return { kind: 'fchdir', ...b, fd: f(0), ret: f(1), ...identity(f(2), f(3)) };
      case Code.ftruncate:
        return { kind: 'ftruncate', ...b, fd: f(0), length: f(1), ret: f(2) };
      case Code.fallocate:
        return { kind: 'fallocate', ...b, fd: f(0), mode: f(1), offset: f(2), length: f(3), ret: f(4) };
      case Code.fsync:
        return { kind: 'fsync', ...b, fd: f(0), dataOnly: f(1) !== 0, ret: f(2) };
      case Code.copy:
        return this.copy();
      case Code.fadvise:
        return { kind: 'fadvise', ...b, fd: f(0), offset: f(1), length: f(2), advice: f(3), ret: f(4) };
      case Code.ioprio:
        return { kind: 'ioprio', ...b, which: f(0), who: f(1), ioprio: f(2), ret: f(3) };
      case Code.mmap:
        return { kind: 'mmap', ...b, addr: f(0), length: f(1), prot: f(2), flags: f(3), fd: f(4), offset: f(5), ret: f(6) };
      case Code.msync:
        return { kind: 'msync', ...b, addr: f(0), length: f(1), flags: f(2), ret: f(3) };
      case Code.munmap:
        return { kind: 'munmap', ...b, addr: f(0), length: f(1), ret: f(2) };
      case Code.rw:
        return this.hinted();
      case Code.closeRange:
        return { kind: 'close_range', ...b, first: f(0), last: f(1), flags: f(2), ret: f(3) };
      case Code.fork: {
        const thread = f(1) !== 0;
        return { kind: 'fork', ...b, child: thread ? b.pid : f(0), childTid: f(0), thread };
      }
      case Code.summary:
        return this.detachedSummary();
      case Code.asyncUnseen: {
        const api = ASYNC_APIS[f(0)];
        const why = ASYNC_UNSEEN[f(1)];
        assert.ok(api !== undefined && why !== undefined, `async record with api ${f(0)}, why ${f(1)}`);
        return { kind: 'async_unseen', ...b, api, detail: `${why} (opcode ${f(2)})` };
      }
      default:
        return this.withStrings(code);
    }
  }

  private withStrings(code: number): SyscallEvent | null | undefined {
    const b = this.base;
    const f = (i: number) => this.field(i);
    const text = this.text(0);
    if (!text) return undefined;
    const cut = text.truncated ? { truncated: true } : {};
    switch (code) {
      case Code.open:
        this.forget(1);
        return {
          kind: 'open', ...b, ...cut, dirfd: f(0), path: text.value, flags: f(1), mode: f(2), ret: f(3),
          ...identity(f(4), f(5)), ...inode(f(6), f(7), f(8)), ...dirIdentity(f(9), f(10)),
        };
      case Code.chdir:
        this.forget(1);
        return { kind: 'chdir', ...b, ...cut, path: text.value, ret: f(0) };
      case Code.truncate:
        this.forget(1);
        return { kind: 'truncate', ...b, ...cut, path: text.value, length: f(0), ret: f(1) };
      case Code.unlink:
        this.forget(1);
        return { kind: 'unlink', ...b, ...cut, dirfd: f(0), path: text.value, flags: f(1), ret: f(2), ...dirIdentity(f(3), f(4)) };
      case Code.rename:
        return this.twoNames('rename', text);
      case Code.link:
        return this.twoNames('link', text);
      case Code.exit:
        return this.exit(text.value);
      case Code.execEnter:
        return this.execEnter(text);
      case Code.execExit:
        return this.execExit(text.value);
      default:
        throw new Error(`bpftrace record with unknown code ${code}`);
    }
  }

  private copy(): SyscallEvent {
    const f = (i: number) => this.field(i);
    const call = COPY_CALLS[f(0)];
    assert.ok(call !== undefined, `copy record with call ${f(0)}`);
    const nulls = f(7);
    const event: Ev<'copy'> = {
      kind: 'copy', ...this.base, call, fdIn: f(1), fdOut: f(2),
      offsetIn: (nulls & 1) !== 0 ? null : f(3), offsetOut: (nulls & 2) !== 0 ? null : f(4), length: f(5), ret: f(6),
    };
    if (f(8) !== 0) event.inIno = f(8);
    if (f(9) !== 0) event.outIno = f(9);
    return event;
  }

  private hinted(): SyscallEvent {
    const f = (i: number) => this.field(i);
    const flags = f(0);
    return {
      kind: 'rw', ...this.base, op: (flags & 1) !== 0 ? 'write' : 'read', fd: f(1), offset: (flags & 2) !== 0 ? f(2) : null,
      count: f(3), ret: f(4), hint: { magic: SKY_HINT_MAGIC, ioClass: f(5) }, position: f(6),
    };
  }

  /**
   * An aggregate moved out (fsync, close, dup2 over its fd, a reopen): fd with its last call's tid above it, ino,
   * readCalls, readBytes, writeCalls, writeBytes, ws, we, pos, ts, dev+head.
   */
  private detachedSummary(): SyscallEvent {
    const f = (i: number) => this.field(i);
    const wrote = f(5) > 0;
    const fd = f(0) % 2 ** 32;
    const tid = Math.floor(f(0) / 2 ** 32);
    const event: Ev<'rw_summary'> = {
      kind: 'rw_summary', ts: f(9), pid: this.base.pid, tid: tid > 0 ? tid : this.base.tid, fd,
      readCalls: f(2), readBytes: f(3), writeCalls: f(4), writeBytes: f(5),
      writeStart: wrote ? f(6) : -1, writeEnd: wrote ? f(7) : -1, position: f(8), ino: f(1), dev: 0,
    };
    return withDevAndHead(event, this.values, this.at + 16 + 10 * 8);
  }

  private twoNames(kind: 'rename' | 'link', old: DecodedString): SyscallEvent | undefined {
    const next = this.text(1);
    if (!next) return undefined;
    this.forget(2);
    const f = (i: number) => this.field(i);
    const event: Ev<'rename'> | Ev<'link'> = { kind, ...this.base, olddirfd: f(0), oldpath: old.value, newdirfd: f(1), newpath: next.value, flags: f(2), ret: f(3) };
    if (f(4) !== 0) Object.assign(event, { oldDirIno: f(4), oldDirDev: userDev(f(5)) });
    if (f(6) !== 0) Object.assign(event, { newDirIno: f(6), newDirDev: userDev(f(7)) });
    if (old.truncated || next.truncated) event.truncated = true;
    return event;
  }

  private exit(comm: string): SyscallEvent {
    this.forget(1);
    const group = this.field(0) !== 0;
    const status = this.field(1);
    const event: Ev<'exit'> = { kind: 'exit', ...this.base, comm, group };
    if (group && (status & 0x7f) === 0) event.code = (status >> 8) & 0xff;
    else if (group) event.signal = status & 0x7f;
    return event;
  }

  /** Exec exits still waiting for their entry half at the end of a collection: they will not get it. */
  unpairedExecs(): SyscallEvent[] {
    const events = [...this.execExits.values()].flatMap((waiting) => waiting.map((w) => w.exit));
    this.execExits.clear();
    return events;
  }

  /** The entry half of an exec: path and argv, kept until the exit half says how it went. */
  private execEnter(path: DecodedString): SyscallEvent | null | undefined {
    const argc = this.field(3);
    const argv: string[] = [];
    let truncated = path.truncated || argc > ARGV_LIMIT;
    for (let i = 1; i <= Math.min(argc, ARGV_LIMIT); i++) {
      const arg = this.text(i);
      if (!arg) return undefined;
      truncated ||= arg.truncated;
      argv.push(arg.value);
    }
    this.forget(argc + 1);
    const masks = [this.values.readBigUInt64LE(this.at + 24), this.values.readBigUInt64LE(this.at + 32)];
    const pending: PendingExec = { ts: this.base.ts, path: path.value, truncated, closedFds: fdsOfMasks(masks), argv };
    const pid = this.base.pid;
    const exits = this.execExits.get(pid);
    const at = exits?.findIndex((w) => w.enterTs === pending.ts || (w.enterTs === 0 && w.exit.ts > pending.ts)) ?? -1;
    if (exits && at >= 0) {
      const { exit } = exits.splice(at, 1)[0]!;
      if (exits.length === 0) this.execExits.delete(pid);
      return completeExec(exit, pending);
    }
    const entries = this.execs.get(pid) ?? [];
    entries.push(pending);
    entries.sort((a, b) => a.ts - b.ts);
    if (entries.length > EXEC_ENTRIES_PENDING_MAX) entries.shift();
    this.execs.set(pid, entries);
    return null;
  }

  private execExit(comm: string): SyscallEvent | null {
    this.forget(1);
    const event: Ev<'exec'> = { kind: 'exec', ...this.base, comm, path: '', ret: this.field(0) };
    const enterTs = this.field(1);
    const pid = this.base.pid;
    const entries = this.execs.get(pid);
    // Its own entry; or, when the exit could not name it (0), the latest entry before it.
    let at = -1;
    if (entries) {
      if (enterTs !== 0) at = entries.findIndex((e) => e.ts === enterTs);
      else for (let i = 0; i < entries.length; i++) if (entries[i]!.ts < event.ts) at = i;
    }
    if (entries && at >= 0) {
      const [pending] = entries.splice(at, 1);
      if (entries.length === 0) this.execs.delete(pid);
      return completeExec(event, pending!);
    }
    const waiting = this.execExits.get(pid) ?? [];
    waiting.push({ exit: event, enterTs });
    this.execExits.set(pid, waiting);
    return null;
  }
}

function completeExec(event: Ev<'exec'>, entry: PendingExec): Ev<'exec'> {
  event.path = entry.path;
  event.argv = entry.argv;
  event.closedFds = entry.closedFds;
  if (entry.truncated) event.truncated = true;
  return event;
}

function identity(ino: number, dev: number): { ino?: number; dev?: number } {
  return ino === 0 ? {} : { ino, dev: userDev(dev) };
}

function dirIdentity(ino: number, dev: number): { dirIno?: number; dirDev?: number } {
  return ino === 0 ? {} : { dirIno: ino, dirDev: userDev(dev) };
}

const FILE_TYPES: ReadonlyMap<number, FileType> = new Map([[S_IFREG, 'regular'], [S_IFDIR, 'directory']]);

/** The inode at open (program.ts retInode): typeAndLinks is i_mode | i_nlink << 16; mtimeUs 0 when not read. */
function inode(size: number, typeAndLinks: number, mtimeUs: number): Partial<Ev<'open'>> {
  if (mtimeUs <= 0) return {};
  const mode = typeAndLinks % 0x10000;
  return { size, fileType: FILE_TYPES.get(mode & S_IFMT) ?? 'other', nlink: Math.floor(typeAndLinks / 0x10000), mtimeUs };
}

/** An aggregate (key pid, fd, ino, generation) as the rw_summary of its generation. */
export function aggregateEvent(keys: Buffer, keyOffset: number, values: Buffer, at: number): SyscallEvent {
  const v = (i: number) => int64At(values, at + i * 8);
  const wrote = v(3) > 0;
  const event: Ev<'rw_summary'> = {
    kind: 'rw_summary', ts: v(7), pid: int64At(keys, keyOffset), tid: v(8), fd: int64At(keys, keyOffset + 8),
    readCalls: v(0), readBytes: v(1), writeCalls: v(2), writeBytes: v(3),
    writeStart: wrote ? v(4) : -1, writeEnd: wrote ? v(5) : -1, position: v(6),
    ino: int64At(keys, keyOffset + 16), dev: 0,
  };
  return withDevAndHead(event, values, at + 9 * 8);
}

/** The aggregate's last field: the kernel dev_t in the lower half, the written head (program.ts writeHead) in the upper. */
function withDevAndHead(event: Ev<'rw_summary'>, values: Buffer, at: number): Ev<'rw_summary'> {
  event.dev = userDev(values.readUInt32LE(at));
  const head = values.readUInt32LE(at + 4);
  if (head !== 0 && event.writeStart === 0) event.writeHead = head;
  return event;
}
