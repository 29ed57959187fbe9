/**
 * Direct access to bpftrace's BPF maps through the bpf(2) syscall (koffi calls libc's syscall()). bpftrace
 * prints a map as JSON at several µs per entry, which on a small machine costs more CPU than the workload;
 * reading the maps in binary, in batches, costs well under a µs per entry and lets us read-and-delete
 * atomically. We find the maps through bpftrace's open fds (/proc/PID/fdinfo names each map's id) and keep our
 * own fds to them, so they outlive bpftrace and can be drained after it is gone.
 */
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import koffi from 'koffi';

const SYS_BPF = 321; // x86-64
const BPF_MAP_LOOKUP_ELEM = 1;
const BPF_MAP_UPDATE_ELEM = 2;
const BPF_MAP_DELETE_ELEM = 3;
const BPF_MAP_GET_FD_BY_ID = 14;
const BPF_OBJ_GET_INFO_BY_FD = 15;
const BPF_MAP_LOOKUP_AND_DELETE_ELEM = 21;
const BPF_MAP_LOOKUP_BATCH = 24;
const BPF_MAP_LOOKUP_AND_DELETE_BATCH = 25;
const ENOENT = 2;
const ENOSPC = 28;
const ATTR_BYTES = 128;
const MAP_INFO_BYTES = 88;

type SyscallFn = (nr: number, cmd: number, attr: Buffer, size: number) => number | bigint;
let syscallFn: SyscallFn | null = null;

function bpfCall(cmd: number, attr: Buffer): number {
  if (!syscallFn) {
    const libc = koffi.load('libc.so.6');
    syscallFn = libc.func('long syscall(long nr, long cmd, void *attr, unsigned int size)') as SyscallFn;
  }
  const result = Number(syscallFn(SYS_BPF, cmd, attr, ATTR_BYTES));
  return result < 0 ? -koffi.errno() : result;
}

function address(buffer: Buffer): bigint {
  return BigInt(koffi.address(buffer) as unknown as bigint | number);
}

function fail(what: string, errno: number): never {
  throw new Error(`bpf(${what}) failed: errno ${-errno}`);
}

export interface MapInfo {
  id: number;
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  name: string;
}

/** Ids of the BPF maps a process holds open. */
export function mapIdsOf(pid: number): number[] {
  const ids: number[] = [];
  for (const fd of readdirSync(`/proc/${pid}/fdinfo`)) {
    let text: string;
    try {
      text = readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8');
    } catch {
      continue;
    }
    const id = /^map_id:\s+(\d+)/m.exec(text);
    if (id) ids.push(Number(id[1]));
  }
  return ids;
}

/** Number of possible CPUs: per-CPU maps hold one value slot per possible CPU. */
/** Our own fd to the map bpftrace made under `name` (@x is "AT_x" in the kernel); throws if it has none. */
export function openMapNamed(bpftracePid: number, name: string): BpfMap {
  let found: BpfMap | null = null;
  for (const id of mapIdsOf(bpftracePid)) {
    const map = BpfMap.open(id);
    if (found === null && map.info.name === name) found = map;
    else map.close();
  }
  if (found === null) throw new Error(`bpftrace has no map ${name}`);
  return found;
}

export function possibleCpus(): number {
  const text = readFileSync('/sys/devices/system/cpu/possible', 'utf8').trim();
  let count = 0;
  for (const range of text.split(',')) {
    const [first, last] = range.split('-').map(Number);
    count += (last ?? first) - first + 1;
  }
  return count;
}

export class BpfMap {
  private readonly attr = Buffer.alloc(ATTR_BYTES);
  private closed = false;

  private constructor(
    readonly fd: number,
    readonly info: MapInfo,
  ) {}

  static open(id: number): BpfMap {
    const attr = Buffer.alloc(ATTR_BYTES);
    attr.writeUInt32LE(id, 0);
    const fd = bpfCall(BPF_MAP_GET_FD_BY_ID, attr);
    if (fd < 0) fail(`MAP_GET_FD_BY_ID ${id}`, fd);
    const raw = Buffer.alloc(MAP_INFO_BYTES);
    attr.fill(0);
    attr.writeUInt32LE(fd, 0);
    attr.writeUInt32LE(MAP_INFO_BYTES, 4);
    attr.writeBigUInt64LE(address(raw), 8);
    const result = bpfCall(BPF_OBJ_GET_INFO_BY_FD, attr);
    if (result < 0) fail('OBJ_GET_INFO_BY_FD', result);
    const name = raw.toString('latin1', 24, 40).replace(/\0.*$/s, '');
    const info = { id, type: raw.readUInt32LE(0), keySize: raw.readUInt32LE(8), valueSize: raw.readUInt32LE(12), maxEntries: raw.readUInt32LE(16), name };
    return new BpfMap(fd, info);
  }

  private elem(cmd: number, key: Buffer, value: Buffer | null): number {
    assert.ok(!this.closed && key.length >= this.info.keySize);
    const attr = this.attr.fill(0);
    attr.writeUInt32LE(this.fd, 0);
    attr.writeBigUInt64LE(address(key), 8);
    if (value) attr.writeBigUInt64LE(address(value), 16);
    return bpfCall(cmd, attr);
  }

  /** Copies the value of `key` into `value`; false when the key is absent. */
  lookup(key: Buffer, value: Buffer): boolean {
    const result = this.elem(BPF_MAP_LOOKUP_ELEM, key, value);
    if (result === -ENOENT) return false;
    if (result < 0) fail(`MAP_LOOKUP_ELEM ${this.info.name}`, result);
    return true;
  }

  /** Like lookup, and removes the entry in the same step (nothing written in between is lost). */
  take(key: Buffer, value: Buffer): boolean {
    const result = this.elem(BPF_MAP_LOOKUP_AND_DELETE_ELEM, key, value);
    if (result === -ENOENT) return false;
    if (result < 0) fail(`MAP_LOOKUP_AND_DELETE_ELEM ${this.info.name}`, result);
    return true;
  }

  update(key: Buffer, value: Buffer): void {
    const result = this.elem(BPF_MAP_UPDATE_ELEM, key, value);
    if (result < 0) fail(`MAP_UPDATE_ELEM ${this.info.name}`, result);
  }

  delete(key: Buffer): void {
    const result = this.elem(BPF_MAP_DELETE_ELEM, key, null);
    if (result < 0 && result !== -ENOENT) fail(`MAP_DELETE_ELEM ${this.info.name}`, result);
  }

  /**
   * Visits every entry in batches through `batch` (reused buffers). With `remove`, each batch is deleted as it is
   * read (atomically per entry), so an entry written meanwhile lands in this pass or the next, never nowhere.
   */
  scan(batch: BatchBuffers, remove: boolean, visit: (keys: Buffer, values: Buffer, count: number) => void): void {
    assert.ok(!this.closed && batch.keySize === this.info.keySize && batch.valueSize === this.info.valueSize);
    const cmd = remove ? BPF_MAP_LOOKUP_AND_DELETE_BATCH : BPF_MAP_LOOKUP_BATCH;
    let first = true;
    for (;;) {
      const attr = this.attr.fill(0);
      if (!first) attr.writeBigUInt64LE(address(batch.inToken), 0);
      attr.writeBigUInt64LE(address(batch.outToken), 8);
      attr.writeBigUInt64LE(address(batch.keys), 16);
      attr.writeBigUInt64LE(address(batch.values), 24);
      attr.writeUInt32LE(batch.capacity, 32);
      attr.writeUInt32LE(this.fd, 36);
      const result = bpfCall(cmd, attr);
      const count = attr.readUInt32LE(32);
      if (result < 0 && result !== -ENOENT) {
        if (result === -ENOSPC) fail(`batch of ${batch.capacity} smaller than a hash bucket of ${this.info.name}`, result);
        fail(`MAP_LOOKUP_BATCH ${this.info.name}`, result);
      }
      if (count > 0) visit(batch.keys, batch.values, count);
      if (result === -ENOENT) return;
      batch.outToken.copy(batch.inToken);
      first = false;
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    koffiClose(this.fd);
  }
}

let closeFn: ((fd: number) => number) | null = null;

function koffiClose(fd: number): void {
  if (!closeFn) closeFn = koffi.load('libc.so.6').func('int close(int fd)') as (fd: number) => number;
  closeFn(fd);
}

/** Reusable buffers for batch reads of one map shape. */
export class BatchBuffers {
  readonly keys: Buffer;
  readonly values: Buffer;
  readonly inToken = Buffer.alloc(64);
  readonly outToken = Buffer.alloc(64);

  constructor(
    readonly keySize: number,
    readonly valueSize: number,
    readonly capacity: number,
  ) {
    this.keys = Buffer.alloc(keySize * capacity);
    this.values = Buffer.alloc(valueSize * capacity);
  }
}

/**
 * A signed 64-bit little-endian field as a number: exact below 2^53 (ids, sizes, offsets); beyond, clamped to
 * ±Number.MAX_SAFE_INTEGER (such values are "as much as possible" lengths, e.g. cp's copy_file_range).
 */
export function int64At(buffer: Buffer, offset: number): number {
  const high = buffer.readInt32LE(offset + 4);
  if (high >= 0x200000) return Number.MAX_SAFE_INTEGER;
  if (high < -0x200000) return -Number.MAX_SAFE_INTEGER;
  return high * 4294967296 + buffer.readUInt32LE(offset);
}
