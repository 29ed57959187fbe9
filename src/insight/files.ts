/**
 * The files the traced processes touched, keyed by identity (dev, ino) when an insight call could learn it and by
 * path otherwise. Identity survives renames and hard links; the path index is what unlink/rename/truncate name.
 * Bounded: closed files beyond `limit` are forgotten oldest first (the summary says how many).
 */
import assert from 'node:assert/strict';
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
  /** The copy detector's fingerprint of the first block, valid while the file's size and mtime are these. */
  firstBlock?: { size: number; mtimeNs: number; print: Buffer };
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

export class FileTable {
  private nextId = 1;
  private readonly byId = new Map<number, FileRecord>();
  private readonly byIdentity = new Map<string, FileRecord>();
  private readonly byPath = new Map<string, FileRecord>();
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
    const known = identity ? this.byIdentity.get(identityKey(identity.dev, identity.ino)) : undefined;
    if (known) {
      this.bindPath(known, path);
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
      sizeDoubted: false,
    };
    this.byId.set(record.id, record);
    if (identity) this.bindIdentity(record, identity);
    this.bindPath(record, path);
    this.evictBeyondLimit();
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

  /** The name is gone (unlink, or replaced by a rename); returns what it named. */
  unbind(path: string): FileRecord | undefined {
    const record = this.byPath.get(path);
    if (record) this.byPath.delete(path);
    return record;
  }

  /** Moves `from` (and, for a directory, everything below it) to `to`; returns the record `to` used to name. */
  rename(from: string, to: string): FileRecord | undefined {
    const moved = this.byPath.get(from);
    const replaced = this.byPath.get(to);
    if (replaced === moved) return undefined;
    if (replaced) this.byPath.delete(to);
    if (moved) this.bindPath(moved, to);
    if (!moved || moved.metadata) this.renameBelow(from, to);
    return replaced;
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

  private renameBelow(from: string, to: string): void {
    const prefix = from.endsWith('/') ? from : `${from}/`;
    const moves = [...this.byPath.entries()].filter(([path]) => path.startsWith(prefix));
    for (const [path, record] of moves) this.bindPath(record, to + path.slice(prefix.length - 1));
  }

  private evictBeyondLimit(): void {
    if (this.byId.size <= this.limit) return;
    for (const record of this.byId.values()) {
      if (this.byId.size <= this.limit) return;
      if (record.opens > 0 || record.doomed) continue;
      this.forget(record);
    }
  }

  private forget(record: FileRecord): void {
    this.byId.delete(record.id);
    if (this.byPath.get(record.path) === record) this.byPath.delete(record.path);
    if (record.dev !== null && record.ino !== null) {
      const key = identityKey(record.dev, record.ino);
      if (this.byIdentity.get(key) === record) this.byIdentity.delete(key);
    }
    this.forgotten++;
  }
}

export function sameIdentity(a: { dev: number | null; ino: number | null }, b: Identity): boolean {
  return a.dev === b.dev && a.ino === b.ino;
}
