/**
 * Where a file's bytes live on its file system's device: FS_IOC_FIEMAP through koffi, and `filefrag -v -b1` as the
 * fallback when the ioctl is unavailable or refused (filefrag then tries FIBMAP, which some file systems without
 * FIEMAP still answer).
 *
 * Physical offsets are in bytes on the device the file system sits on (for btrfs: in its logical address space,
 * which volume-map.ts translates through the chunk tree). An extent's `location` says whether `physical` may be used:
 * inline data lives inside a metadata block, delayed-allocation and unknown extents have no place yet, and encoded
 * (e.g. compressed) extents hold other bytes than the file's.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { ioctl, errnoName, readSafeU64 } from './ioctl.js';
import { parseFilefrag } from './filefrag.js';
import { ExtentFlag, makeExtent, type FileExtent } from './extent.js';

export { ExtentFlag, FILEFRAG_FLAG_NAMES, extentLocation, flagNames, makeExtent } from './extent.js';
export type { ExtentLocation, FileExtent } from './extent.js';

export const FS_IOC_FIEMAP = 0xc020660b;
export const FIEMAP_FLAG_SYNC = 0x1;
export const FIEMAP_HEADER_BYTES = 32;
export const FIEMAP_EXTENT_BYTES = 56;
/** Extents asked for per ioctl; a file with more takes several calls. */
export const FIEMAP_EXTENTS_PER_CALL = 512;
/** Bound on ioctl calls for one file (each call makes progress or ends the loop). */
const FIEMAP_CALLS_MAX = 1 << 20;

export interface ExtentReport {
  extents: FileExtent[];
  source: 'fiemap' | 'filefrag';
  /** Why the ioctl was not used, when the fallback answered. */
  fiemapError?: string;
}

export interface FileExtentOptions {
  /** FIEMAP_FLAG_SYNC: write back dirty data first so delayed allocations get a place (default true). */
  sync?: boolean;
  /** Use `filefrag` when the ioctl fails (default true). */
  fallback?: boolean;
  /** Extents per ioctl call (tests use small numbers to exercise the loop). */
  extentsPerCall?: number;
}

export class ExtentMapError extends Error {
  constructor(message: string, readonly errno?: number) {
    super(message);
    this.name = 'ExtentMapError';
  }
}

/** The extents of a path or an open fd (the fd is not closed). */
export function fileExtents(target: string | number, options: FileExtentOptions = {}): FileExtent[] {
  return fileExtentReport(target, options).extents;
}

export function fileExtentReport(target: string | number, options: FileExtentOptions = {}): ExtentReport {
  const fd = typeof target === 'number' ? target : fs.openSync(target, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  try {
    return extentReportOfFd(fd, target, options);
  } finally {
    if (typeof target !== 'number') fs.closeSync(fd);
  }
}

function extentReportOfFd(fd: number, target: string | number, options: FileExtentOptions): ExtentReport {
  let fiemapError: string;
  try {
    return { extents: fiemapExtents(fd, options), source: 'fiemap' };
  } catch (error) {
    if (!(error instanceof ExtentMapError)) throw error;
    fiemapError = error.message;
  }
  if (options.fallback === false) throw new ExtentMapError(fiemapError);
  // filefrag runs in a child process: name the fd through our pid, not /proc/self.
  const path = typeof target === 'string' ? target : `/proc/${process.pid}/fd/${fd}`;
  const output = runFilefrag(path, options.sync ?? true);
  if (output.error !== null) throw new ExtentMapError(`${fiemapError}; filefrag: ${output.error}`);
  return { extents: parseFilefrag(output.stdout).extents, source: 'filefrag', fiemapError };
}

/** FIEMAP in a loop: each call starts where the previous call's last extent ended, until an extent says LAST. */
export function fiemapExtents(fd: number, options: FileExtentOptions = {}): FileExtent[] {
  const perCall = options.extentsPerCall ?? FIEMAP_EXTENTS_PER_CALL;
  assert.ok(Number.isInteger(perCall) && perCall > 0 && perCall <= 1 << 16, 'extents per FIEMAP call');
  const buffer = Buffer.alloc(FIEMAP_HEADER_BYTES + FIEMAP_EXTENT_BYTES * perCall);
  const extents: FileExtent[] = [];
  let start = 0;
  for (let call = 0; call < FIEMAP_CALLS_MAX; call++) {
    writeFiemapRequest(buffer, start, perCall, options.sync ?? true);
    const result = ioctl(fd, FS_IOC_FIEMAP, buffer);
    if (result === null) throw new ExtentMapError('FIEMAP: no libc binding (koffi)');
    if (result.rc !== 0) throw new ExtentMapError(`FIEMAP failed: ${errnoName(result.errno)}`, result.errno);
    const batch = parseFiemapBuffer(buffer);
    extents.push(...batch);
    const last = batch[batch.length - 1];
    if (last === undefined || batch.length < perCall || last.flags & ExtentFlag.LAST) return extents;
    const next = last.logical + last.length;
    assert.ok(next > start, 'FIEMAP must make progress');
    start = next;
  }
  throw new ExtentMapError(`FIEMAP: more than ${FIEMAP_CALLS_MAX} calls for one file`);
}

export function writeFiemapRequest(buffer: Buffer, start: number, extentCount: number, sync: boolean): void {
  assert.ok(buffer.length >= FIEMAP_HEADER_BYTES + FIEMAP_EXTENT_BYTES * extentCount, 'FIEMAP buffer too small');
  buffer.fill(0, 0, FIEMAP_HEADER_BYTES);
  buffer.writeBigUInt64LE(BigInt(start), 0); // fm_start
  buffer.writeBigUInt64LE(0xffffffffffffffffn, 8); // fm_length: to the end
  buffer.writeUInt32LE(sync ? FIEMAP_FLAG_SYNC : 0, 16); // fm_flags
  buffer.writeUInt32LE(extentCount, 24); // fm_extent_count
}

/** Decodes struct fiemap after the call: fm_mapped_extents entries of struct fiemap_extent. */
export function parseFiemapBuffer(buffer: Buffer): FileExtent[] {
  const mapped = buffer.readUInt32LE(20);
  const capacity = buffer.readUInt32LE(24);
  assert.ok(mapped <= capacity, 'the kernel never maps more extents than asked for');
  assert.ok(buffer.length >= FIEMAP_HEADER_BYTES + mapped * FIEMAP_EXTENT_BYTES, 'FIEMAP buffer holds the extents');
  const extents: FileExtent[] = [];
  for (let index = 0; index < mapped; index++) {
    const at = FIEMAP_HEADER_BYTES + index * FIEMAP_EXTENT_BYTES;
    const logical = readSafeU64(buffer, at, 'fe_logical');
    const physical = readSafeU64(buffer, at + 8, 'fe_physical');
    const length = readSafeU64(buffer, at + 16, 'fe_length');
    const flags = buffer.readUInt32LE(at + 40);
    extents.push(makeExtent(logical, physical, length, flags));
  }
  return extents;
}

function runFilefrag(path: string, sync: boolean): { stdout: string; error: string | null } {
  const args = ['-v', '-e', '-b1', ...(sync ? ['-s'] : []), path];
  try {
    const stdout = execFileSync('filefrag', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000 });
    return { stdout, error: null };
  } catch (error) {
    const failed = error as { stderr?: string; message: string };
    return { stdout: '', error: (failed.stderr ?? '').trim() || failed.message };
  }
}
