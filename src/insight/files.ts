/**
 * The files the traced processes touched, keyed by identity (dev, ino) when an insight call could learn it and by
 * path otherwise. Identity survives renames and hard links; the path index is what unlink/rename/truncate name.
 * Bounded: closed files beyond `limit` are forgotten oldest first, an eighth of the limit at a time (the summary says
 * how many).
 */
import assert from 'node:assert/strict';
import { trimTarget } from '../util/bounded.js';
import { BLOCK_BYTES } from './content.js';
import type { FileStat } from './inspector.js';
import type { LifetimeCause } from './types.js';

export interface FileRecord {
  readonly id: number;
  path: string;
  dev: number | null;
  ino: number | null;
  metadata: boolean;
  size: number | null;
  nlink: number | null;
  /** When the bytes now in the file began to live (CLOCK_MONOTONIC ns), and how we know. */
  bornTs: number | null;
  bornFrom: 'created' | 'first-write' | 'mtime' | null;
  /** Open file descriptions referring to the file, across all processes. */
  opens: number;
  /** The copy detector's fingerprint of the first block (see trustedFirstBlock). */
  firstBlock?: FirstBlock;
  /**
   * The file's size and mtime as last looked at (a traced read-only open's view from the kernel, or the copy
   * detector's stat), if no traced process has changed the file since. Cleared by every traced change (noteChange);
   * never set again once the file is mapped shared and writable (stores through a mapping make no syscall).
   */
  lastLook: { size: number; mtimeUs: number } | null;
  mappedShared: boolean;
  /**
   * The first 4 bytes (as a little-endian uint32) traced writes last put at offset 0, when the tracer reported them
   * (rw_summary.writeHead); null when unknown or changed since (noteChange). Like lastLook, a hint that can only
   * make the copy detector miss.
   */
  writtenHead: number | null;
  /** Its other names (hard links a traced process made); `path` is the one insights report. */
  otherNames?: string[];
  /** Removed from the namespace while still open: its blocks die at the last close. */
  doomed: { ts: number; pid: number; cause: LifetimeCause } | null;
  /** A (pid, fd) that may still refer to the file, for reading it back after its name is gone. */
  holder: { pid: number; fd: number } | null;
  openCount: number;
  readBytes: number;
  writeBytes: number;
  uncertain?: string;
  /**
   * The size the events imply may be wrong (lost events, writes at unknown offsets, a size that predates the
   * trace): a stat may replace it. Otherwise the events' size wins over a stat, which always runs late.
   */
  sizeDoubted: boolean;
  /**
   * Past this offset the file has held no data since the trace saw it empty (created, emptied): a size set by
   * ftruncate or fallocate alone is a hole, and its bytes have no life to end. null: unknown (all of `size` counts).
   */
  dataEnd: number | null;
  /**
   * The data may not run unbroken up to dataEnd: a write began past it, a summary's writes covered less than their
   * span, or a hole was punched or inserted. Bytes counted from the size (a cut, an unlink) may then include holes.
   */
  holes: boolean;
}

/** Bytes of the file that may hold data (see FileRecord.dataEnd); null when its size is unknown. */
export function heldBytes(file: FileRecord): number | null {
  return file.size === null ? null : Math.min(file.size, file.dataEnd ?? file.size);
}

/**
 * `bytes` of data were put in the file between `start` and `end` (a summary's span: the calls it sums may have
 * left gaps in it; null: somewhere unknown).
 */
export function noteData(file: FileRecord, start: number | null, end: number | null, bytes: number): void {
  if (start !== null && end !== null && (bytes < end - start || (file.dataEnd !== null && start > file.dataEnd))) file.holes = true;
  if (file.dataEnd === null) return;
  file.dataEnd = end === null ? null : Math.max(file.dataEnd, end);
}

/** The file is empty now (created, emptied): what it holds later is what is written. */
export function noteEmptied(file: FileRecord): void {
  file.dataEnd = 0;
  file.holes = false;
}

/** A flag for bytes counted from the size of a file that may have holes (see FileRecord.holes). */
export function holesDoubt(file: FileRecord): { uncertain?: string } {
  return file.holes ? { uncertain: 'the file has holes: fewer of these bytes may have held data' } : {};
}

export interface Identity {
  dev: number;
  ino: number;
}

/** An identity from a pair of optional event fields (both present or it is unknown). */
export function identityOf(ino: number | undefined, dev: number | undefined): Identity | null {
  return ino !== undefined && dev !== undefined ? { ino, dev } : null;
}

function identityKey(dev: number, ino: number): string {
  return `${dev}:${ino}`;
}

/**
 * Files by name, knowing which directories have named files below them: a rename of a directory no file was seen
 * under (most renames of names never opened) costs one lookup instead of a scan of every name.
 */
class PathMap {
  private readonly records = new Map<string, FileRecord>();
  /**
   * Directory → its entries that lead to a name: names directly in it, and subdirectories with such entries. A
   * directory is here exactly when some name lies below it; adding a name in a directory that has one already
   * touches that directory only.
   */
  private readonly entries = new Map<string, number>();

  get(path: string): FileRecord | undefined {
    return this.records.get(path);
  }

  set(path: string, record: FileRecord): void {
    if (!this.records.has(path)) this.countEntry(path, 1);
    this.records.set(path, record);
  }

  delete(path: string): void {
    if (this.records.delete(path)) this.countEntry(path, -1);
  }

  /** The names strictly below directory `dir`. */
  namesBelow(dir: string): Array<[string, FileRecord]> {
    const prefix = dir.endsWith('/') ? dir : `${dir}/`;
    if (!this.entries.has(prefix.length > 1 ? prefix.slice(0, -1) : prefix)) return [];
    return [...this.records.entries()].filter(([path]) => path.startsWith(prefix));
  }

  /** `child` appeared in (delta 1) or left (delta -1) its directory; a directory that became (non-)empty likewise. */
  private countEntry(child: string, delta: 1 | -1): void {
    for (;;) {
      const slash = child.lastIndexOf('/');
      if (slash < 0) return;
      const dir = slash === 0 ? '/' : child.slice(0, slash);
      const count = (this.entries.get(dir) ?? 0) + delta;
      assert.ok(count >= 0, `entries of ${dir} went negative`);
      if (count === 0) this.entries.delete(dir);
      else this.entries.set(dir, count);
      const emptinessChanged = delta > 0 ? count === 1 : count === 0;
      if (!emptinessChanged || dir === '/') return;
      child = dir;
    }
  }
}

export class FileTable {
  private nextId = 1;
  private readonly byId = new Map<number, FileRecord>();
  private readonly byIdentity = new Map<string, FileRecord>();
  private readonly byPath = new PathMap();
  forgotten = 0;

  constructor(private readonly limit: number) {
    assert.ok(limit > 0);
  }

  all(): IterableIterator<FileRecord> {
    return this.byId.values();
  }

  get size(): number {
    return this.byId.size;
  }

  atPath(path: string): FileRecord | undefined {
    return this.byPath.get(path);
  }

  withIdentity(identity: Identity): FileRecord | undefined {
    return this.byIdentity.get(identityKey(identity.dev, identity.ino));
  }

  /**
   * The record for what `path` names now, identified by `stat` or, when the file could not be inspected, by an
   * identity the backend read in-kernel; `created` when it is new to us.
   */
  lookup(path: string, stat: FileStat | null, identity: Identity | null = stat): { record: FileRecord; created: boolean } {
    let known = identity ? this.byIdentity.get(identityKey(identity.dev, identity.ino)) : undefined;
    // A directory and a regular file under one inode number: the number was freed and reused (a directory removed
    // where the trace did not see it go, then a file created), so the record is another file's.
    if (known && stat !== null && stat.kind !== 'other' && (stat.kind === 'directory') !== known.metadata) {
      this.retire(known);
      known = undefined;
    }
    if (known) {
      // Opened through another name we know it by (a hard link): reported by that name now, the other kept.
      if (this.byPath.get(path) === known && known.path !== path) this.promoteOtherName(known, path);
      else this.bindPath(known, path);
      return { record: known, created: false };
    }
    const named = this.byPath.get(path);
    if (named && (named.dev === null || !identity)) {
      if (identity) this.bindIdentity(named, identity);
      return { record: named, created: false };
    }
    return { record: this.create(path, stat, identity), created: true };
  }

  private create(path: string, stat: FileStat | null, identity: Identity | null): FileRecord {
    const record: FileRecord = {
      id: this.nextId++,
      path,
      dev: null,
      ino: null,
      metadata: stat?.kind === 'directory',
      size: stat ? stat.size : null,
      nlink: stat ? stat.nlink : null,
      bornTs: null,
      bornFrom: null,
      opens: 0,
      doomed: null,
      holder: null,
      openCount: 0,
      readBytes: 0,
      writeBytes: 0,
      lastLook: null,
      mappedShared: false,
      writtenHead: null,
      sizeDoubted: false,
      dataEnd: null,
      holes: false,
    };
    this.byId.set(record.id, record);
    if (identity) this.bindIdentity(record, identity);
    this.bindPath(record, path);
    this.evictBeyondLimit(record);
    return record;
  }

  private bindIdentity(record: FileRecord, identity: Identity): void {
    record.dev = identity.dev;
    record.ino = identity.ino;
    this.byIdentity.set(identityKey(identity.dev, identity.ino), record);
  }

  private bindPath(record: FileRecord, path: string): void {
    if (this.byPath.get(record.path) === record) this.byPath.delete(record.path);
    record.path = path;
    this.byPath.set(path, record);
  }

  /** `path`, one of the record's other names, becomes the name it is reported by; the old one becomes another name. */
  private promoteOtherName(record: FileRecord, path: string): void {
    const others = record.otherNames ?? [];
    const at = others.indexOf(path);
    if (at >= 0) others[at] = record.path;
    else others.push(record.path);
    record.otherNames = others;
    record.path = path;
  }

  /** `path` is another name of `record` (a hard link): it finds the record too. */
  alias(path: string, record: FileRecord): void {
    const previous = this.byPath.get(path);
    if (previous === record) return;
    if (previous) this.unbind(path);
    this.byPath.set(path, record);
    (record.otherNames ??= []).push(path);
  }

  /** `record` is known by `path` from now on, instead of the name it had (an O_TMPFILE file linked into place). */
  rebind(record: FileRecord, path: string): void {
    if (this.byPath.get(path) !== record) this.unbind(path);
    this.bindPath(record, path);
  }

  /** The name is gone (unlink, or replaced by a rename); returns what it named. */
  unbind(path: string): FileRecord | undefined {
    const record = this.byPath.get(path);
    if (!record) return undefined;
    this.byPath.delete(path);
    const others = record.otherNames;
    if (others) {
      const at = others.indexOf(path);
      if (at >= 0) others.splice(at, 1);
      else if (record.path === path && others.length > 0) record.path = others.shift()!; // reported by a name it still has
    }
    return record;
  }

  /**
   * Moves `from` (and, for a directory, everything below it) to `to`. Returns the record `to` used to name, and the
   * files below a directory that are now reported by another name (`from`: the name they were reported by).
   */
  rename(from: string, to: string): { replaced: FileRecord | undefined; movedBelow: Array<{ record: FileRecord; from: string }> } {
    const moved = this.byPath.get(from);
    const replaced = this.byPath.get(to);
    if (replaced === moved && moved !== undefined) return { replaced: undefined, movedBelow: [] };
    if (replaced) this.unbind(to);
    if (moved && moved.path !== from) this.renameOtherName(moved, from, to);
    else if (moved) this.bindPath(moved, to);
    const movedBelow = !moved || moved.metadata ? this.renameBelow(from, to) : [];
    return { replaced, movedBelow };
  }

  exchange(a: string, b: string): void {
    const first = this.byPath.get(a);
    const second = this.byPath.get(b);
    this.byPath.delete(a);
    this.byPath.delete(b);
    if (first) {
      first.path = b;
      this.byPath.set(b, first);
    }
    if (second) {
      second.path = a;
      this.byPath.set(a, second);
    }
  }

  /** The file's life is over: its inode number may be reused by the next file created. */
  retire(record: FileRecord): void {
    if (record.dev === null || record.ino === null) return;
    const key = identityKey(record.dev, record.ino);
    if (this.byIdentity.get(key) === record) this.byIdentity.delete(key);
  }

  private renameOtherName(record: FileRecord, from: string, to: string): void {
    this.byPath.delete(from);
    this.byPath.set(to, record);
    const others = record.otherNames ?? [];
    const at = others.indexOf(from);
    if (at >= 0) others[at] = to;
  }

  private renameBelow(from: string, to: string): Array<{ record: FileRecord; from: string }> {
    const prefix = from.endsWith('/') ? from : `${from}/`;
    const moves = this.byPath.namesBelow(from);
    const reported: Array<{ record: FileRecord; from: string }> = [];
    for (const [path, record] of moves) {
      const newPath = to + path.slice(prefix.length - 1);
      // A second (hard-link) name below the directory moves without changing the name the file is reported by.
      if (record.path !== path) {
        this.renameOtherName(record, path, newPath);
        continue;
      }
      this.bindPath(record, newPath);
      reported.push({ record, from: path });
    }
    return reported;
  }

  /** Forgets closed files down to an eighth below the limit at once (one at a time walks the Map's holes: util/bounded.ts). */
  private evictBeyondLimit(created: FileRecord): void {
    if (this.byId.size <= this.limit) return;
    const target = trimTarget(this.limit);
    for (const record of this.byId.values()) {
      if (this.byId.size <= target) return;
      if (record.opens > 0 || record.doomed || record === created) continue;
      this.forget(record);
    }
  }

  private forget(record: FileRecord): void {
    this.byId.delete(record.id);
    for (const name of [record.path, ...(record.otherNames ?? [])]) if (this.byPath.get(name) === record) this.byPath.delete(name);
    if (record.dev !== null && record.ino !== null) {
      const key = identityKey(record.dev, record.ino);
      if (this.byIdentity.get(key) === record) this.byIdentity.delete(key);
    }
    this.forgotten++;
  }
}

/** Bytes of a file's head the tracer reports (FileRecord.writtenHead). */
export const HEAD_BYTES = 4;

/** The first block of a file as the copy detector read it, and the file's size and mtime (µs) then. */
export interface FirstBlock {
  size: number;
  mtimeUs: number;
  /** Bytes fingerprinted: min(BLOCK_BYTES, size). */
  length: number;
  print: Buffer;
  /** Its first HEAD_BYTES as a little-endian uint32 (null for a shorter file), to compare with a writeHead. */
  head: number | null;
  /** Traced writes since changed the file only beyond this block: its size and mtime are those of the next look. */
  rekey: boolean;
}

/** Records what a look at the file saw (see FileRecord.lastLook). */
export function noteLook(file: FileRecord, stat: { size: number; mtimeNs: number }): void {
  if (file.mappedShared) return;
  const look = { size: stat.size, mtimeUs: Math.floor(stat.mtimeNs / 1000) };
  file.lastLook = look;
  const cached = file.firstBlock;
  if (cached?.rekey) Object.assign(cached, { size: look.size, mtimeUs: look.mtimeUs, rekey: false });
}

/**
 * A traced process changed the file's bytes from `start` on (null: somewhere unknown) — a write, a copy into it, a
 * truncation, fallocate, O_TRUNC, a shared mapping. The one place the detector's knowledge of a file's start is
 * invalidated: the written head goes if the change reached it (a write that reports its head sets it again after
 * this), a cached first block it touched is dropped, and one it left alone (a mail server appends to the mails it
 * reads) stays, to be re-keyed at the next look.
 */
export function noteChange(file: FileRecord, start: number | null): void {
  file.lastLook = null;
  if (start === null || start < HEAD_BYTES) file.writtenHead = null;
  const cached = file.firstBlock;
  if (!cached) return;
  if (start !== null && start >= BLOCK_BYTES && cached.length === BLOCK_BYTES) cached.rekey = true;
  else file.firstBlock = undefined;
}

/**
 * The cached first block, while nothing says it changed: the last look at the file (kernel facts at a read-only
 * open, or a stat) found the size and mtime it was read at, or only traced writes beyond it came since. The
 * detector then needs no stat to rule a candidate out. A change by an untraced writer after the last look can
 * only make it miss a copy, never report a false one: a match is always verified by reading both files.
 */
export function trustedFirstBlock(file: FileRecord): FirstBlock | null {
  const cached = file.firstBlock;
  if (!cached) return null;
  if (cached.rekey) return cached;
  const look = file.lastLook;
  return look && look.size === cached.size && look.mtimeUs === cached.mtimeUs ? cached : null;
}

export function sameIdentity(a: { dev: number | null; ino: number | null }, b: Identity): boolean {
  return a.dev === b.dev && a.ino === b.ino;
}
