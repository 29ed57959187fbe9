import assert from 'node:assert/strict';
import fs from 'node:fs';
import {
  BlockError, ExtentFlags, IoFlags,
  type BlockLayer, type Capabilities, type Extent, type IoRequest,
} from '../volume/types.js';
import { toBlockError } from './errors.js';
import { ZERO_BUFFER, ZERO_BUFFER_BYTES } from './zero-buffer.js';

/**
 * Requests at least this large use the libuv thread pool: their copy costs far more than the hand-off, and it
 * then runs beside the socket work on the event loop (measured on 1 MiB QD8: +10-70% over synchronous I/O).
 * Smaller ones stay synchronous, where the hand-off would dominate.
 */
const ASYNC_IO_BYTES_MIN = 64 * 1024;

function readAsync(fd: number, into: Buffer, at: number, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => fs.read(fd, into, at, length, position, (err, n) => (err ? reject(err) : resolve(n))));
}

function writeAsync(fd: number, data: Buffer, at: number, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => fs.write(fd, data, at, length, position, (err, n) => (err ? reject(err) : resolve(n))));
}
import {
  ENXIO, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE, POSIX_FADV_WILLNEED, SEEK_DATA, SEEK_END,
  SEEK_HOLE, lastErrno, libc, libcError, type Libc,
} from './libc.js';

export interface FileDeviceOptions {
  path: string;
  /** Device size in bytes. A smaller file is extended sparsely; omitted, the file's (or block device's) size. */
  size?: number;
  readOnly?: boolean;
}

/** Upper bound of block-status work per call: the caller asks again from where we stopped. */
export const FILE_EXTENTS_MAX = 1024;
export const DEVICE_BLOCK_SIZE_MAX = 32 * 1024 * 1024;
const PROBE_ALIGNMENT = 4096;
const EOPNOTSUPP = 95;
const ENOSYS = 38;
const EINVAL = 22;


/**
 * A disk image in a (sparse) file or a block device. I/O is synchronous on purpose: a 4 KiB pread through the
 * libuv thread pool measured 0.4x nbdkit, a direct readSync 1.0x; the event loop does nothing else meanwhile.
 */
export class FileDevice implements BlockLayer {
  readonly name = 'file';
  readonly next = null;
  readonly path: string;
  private readonly options: FileDeviceOptions;
  private fd = -1;
  private bytes = 0;
  private canPunchHole = false;
  private canZeroRange = false;
  private canSeekHoles = false;
  private caps: Capabilities | null = null;

  constructor(options: FileDeviceOptions) {
    assert.ok(options.path.length > 0, 'a file device needs a path');
    assert.ok(options.size === undefined || Number.isSafeInteger(options.size), 'size must be a safe integer');
    this.options = options;
    this.path = options.path;
  }

  async open(): Promise<void> {
    assert.equal(this.fd, -1, 'FileDevice opened twice');
    try {
      this.fd = this.openFile();
      this.bytes = this.establishSize();
    } catch (error) {
      this.closeQuietly();
      throw toBlockError(error, `open ${this.path}`);
    }
    this.probe();
    this.caps = this.computeCapabilities();
  }

  size(): number {
    assert.ok(this.caps !== null, 'size() before open()');
    return this.bytes;
  }

  capabilities(): Capabilities {
    assert.ok(this.caps !== null, 'capabilities() before open()');
    return this.caps;
  }

  async read(req: IoRequest, into: Buffer): Promise<void> {
    this.checkRequest(req);
    assert.ok(into.length >= req.length, 'read buffer shorter than the request');
    try {
      if (req.length >= ASYNC_IO_BYTES_MIN) await this.readAtAsync(into, req.length, req.offset);
      else this.readAt(into, req.length, req.offset);
    } catch (error) {
      throw toBlockError(error, `read ${this.path} at ${req.offset}+${req.length}`);
    }
  }

  async write(req: IoRequest, data: Buffer): Promise<void> {
    this.checkWrite(req);
    assert.ok(data.length >= req.length, 'write buffer shorter than the request');
    try {
      if (req.length >= ASYNC_IO_BYTES_MIN) await this.writeAtAsync(data, req.length, req.offset);
      else this.writeAt(data, req.length, req.offset);
      if ((req.flags & IoFlags.FUA) !== 0) fs.fdatasyncSync(this.fd);
    } catch (error) {
      throw toBlockError(error, `write ${this.path} at ${req.offset}+${req.length}`);
    }
  }

  async flush(): Promise<void> {
    this.checkOpen();
    if (this.options.readOnly === true) return;
    try {
      fs.fdatasyncSync(this.fd);
    } catch (error) {
      throw toBlockError(error, `flush ${this.path}`);
    }
  }

  /** Trim is advisory: where holes cannot be punched it does nothing, and reads keep returning old data. */
  async trim(req: IoRequest): Promise<void> {
    this.checkWrite(req);
    if (this.canPunchHole && req.length > 0) {
      this.fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, req.offset, req.length);
    }
    if ((req.flags & IoFlags.FUA) !== 0) await this.flush();
  }

  async zero(req: IoRequest): Promise<void> {
    this.checkWrite(req);
    if (req.length === 0) return;
    const mayPunch = (req.flags & IoFlags.NO_HOLE) === 0;
    if (mayPunch && this.canPunchHole) {
      this.fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, req.offset, req.length);
    } else if (!this.tryZeroRange(req.offset, req.length)) {
      if ((req.flags & IoFlags.FAST_ZERO) !== 0) {
        throw new BlockError('ENOTSUP', `${this.path}: zeroing without a hole needs writes here (no fast zero)`);
      }
      this.writeZeroes(req.offset, req.length);
    }
    if ((req.flags & IoFlags.FUA) !== 0) await this.flush();
  }

  /** Readahead advice only; a failure to advise is not worth failing a request over. */
  async cache(req: IoRequest): Promise<void> {
    this.checkRequest(req);
    if (req.length === 0) return;
    libc()?.posix_fadvise(this.fd, req.offset, req.length, POSIX_FADV_WILLNEED);
  }

  async blockStatus(offset: number, length: number): Promise<Extent[]> {
    this.checkOpen();
    assert.ok(length > 0 && offset + length <= this.bytes, 'block status outside the device');
    if (!this.canSeekHoles) return [{ length, flags: 0 }];
    return this.seekExtents(offset, offset + length);
  }

  async close(): Promise<void> {
    if (this.fd < 0) return;
    const fd = this.fd;
    this.fd = -1;
    try {
      fs.closeSync(fd);
    } catch (error) {
      throw toBlockError(error, `close ${this.path}`);
    }
  }

  private openFile(): number {
    const { readOnly, size } = this.options;
    if (readOnly === true) return fs.openSync(this.path, fs.constants.O_RDONLY);
    const create = size === undefined ? 0 : fs.constants.O_CREAT;
    return fs.openSync(this.path, fs.constants.O_RDWR | create, 0o600);
  }

  /** A file never shrinks here: data past the device's end is left alone, not truncated away. */
  private establishSize(): number {
    const current = this.currentLength();
    const wanted = this.options.size;
    if (wanted === undefined) {
      if (current === 0) throw new BlockError('EINVAL', `${this.path} is empty and no size was given`);
      return current;
    }
    if (wanted > current && this.options.readOnly !== true) {
      if (fs.fstatSync(this.fd).isBlockDevice()) {
        throw new BlockError('EINVAL', `${this.path} is a block device of ${current} bytes, smaller than ${wanted}`);
      }
      fs.ftruncateSync(this.fd, wanted);
    }
    return wanted;
  }

  private currentLength(): number {
    const stat = fs.fstatSync(this.fd);
    if (!stat.isBlockDevice()) return stat.size;
    const c = libc();
    if (c === null) throw new BlockError('ENOTSUP', 'sizing a block device needs libc (koffi)');
    const end = c.lseek(this.fd, 0, SEEK_END);
    if (end < 0) throw libcError('lseek(SEEK_END)', lastErrno());
    return end;
  }

  /**
   * Learns once at open what the file system offers. Punching a hole just past the end of the file (KEEP_SIZE)
   * changes nothing on a regular file, so it is a safe test; ZERO_RANGE has no such harmless probe, so it is
   * assumed until the first EOPNOTSUPP.
   */
  private probe(): void {
    const c = libc();
    this.canSeekHoles = c !== null;
    this.canZeroRange = c !== null && this.options.readOnly !== true;
    if (c === null || this.options.readOnly === true) return;
    const fileEnd = Math.max(this.bytes, fs.fstatSync(this.fd).size);
    const probeAt = Math.ceil(fileEnd / PROBE_ALIGNMENT) * PROBE_ALIGNMENT;
    this.canPunchHole = c.fallocate(this.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, probeAt, PROBE_ALIGNMENT) === 0;
  }

  private computeCapabilities(): Capabilities {
    const writable = this.options.readOnly !== true;
    return {
      readOnly: !writable,
      canFlush: writable,
      canFua: writable,
      canTrim: writable && this.canPunchHole,
      canZero: writable,
      canFastZero: writable && this.canPunchHole,
      canCache: true,
      canMultiConn: true,
      blockSize: { minimum: 1, preferred: 4096, maximum: DEVICE_BLOCK_SIZE_MAX },
    };
  }

  /** A region past the end of a shorter (read-only) file reads as zeroes, like a hole. */
  private readAt(into: Buffer, length: number, position: number): void {
    let done = 0;
    while (done < length) {
      const n = fs.readSync(this.fd, into, done, length - done, position + done);
      if (n === 0) {
        into.fill(0, done, length);
        return;
      }
      done += n;
    }
  }

  /** Large reads go through the libuv pool so the copy overlaps the event loop's socket work. */
  private async readAtAsync(into: Buffer, length: number, position: number): Promise<void> {
    let done = 0;
    while (done < length) {
      const n = await readAsync(this.fd, into, done, length - done, position + done);
      if (n === 0) {
        into.fill(0, done, length);
        return;
      }
      done += n;
    }
  }

  private async writeAtAsync(data: Buffer, length: number, position: number): Promise<void> {
    let done = 0;
    while (done < length) done += await writeAsync(this.fd, data, done, length - done, position + done);
  }

  /** writeSync may write less than asked (signal, nearly full disk); the retry then reports the real error. */
  private writeAt(data: Buffer, length: number, position: number): void {
    let done = 0;
    while (done < length) {
      done += fs.writeSync(this.fd, data, done, length - done, position + done);
    }
  }

  private writeZeroes(offset: number, length: number): void {
    try {
      for (let done = 0; done < length; done += ZERO_BUFFER_BYTES) {
        this.writeAt(ZERO_BUFFER, Math.min(ZERO_BUFFER_BYTES, length - done), offset + done);
      }
    } catch (error) {
      throw toBlockError(error, `zero ${this.path} at ${offset}+${length}`);
    }
  }

  private fallocate(mode: number, offset: number, length: number): void {
    const c = libc();
    assert.ok(c !== null, 'fallocate used without libc');
    if (c.fallocate(this.fd, mode, offset, length) !== 0) throw libcError(`fallocate(${this.path})`, lastErrno());
  }

  private tryZeroRange(offset: number, length: number): boolean {
    if (!this.canZeroRange) return false;
    const c = libc() as Libc;
    if (c.fallocate(this.fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, offset, length) === 0) return true;
    const errno = lastErrno();
    if (errno !== EOPNOTSUPP && errno !== ENOSYS) throw libcError(`fallocate(${this.path}, ZERO_RANGE)`, errno);
    this.canZeroRange = false;
    return false;
  }

  /** Alternating SEEK_DATA / SEEK_HOLE yields alternating extents, so neighbours never share flags. */
  private seekExtents(start: number, end: number): Extent[] {
    const extents: Extent[] = [];
    let position = start;
    while (position < end && extents.length < FILE_EXTENTS_MAX) {
      const dataAt = this.seek(position, SEEK_DATA);
      if (dataAt === null) return [{ length: end - start, flags: 0 }];
      const isHole = dataAt > position;
      const stop = Math.min(isHole ? dataAt : (this.seek(position, SEEK_HOLE) ?? end), end);
      assert.ok(stop > position, 'lseek went backwards');
      extents.push({ length: stop - position, flags: isHole ? ExtentFlags.HOLE | ExtentFlags.ZERO : 0 });
      position = stop;
    }
    return extents;
  }

  /** Infinity past the last data (ENXIO); null if this file system cannot tell holes (then all is data). */
  private seek(position: number, whence: number): number | null {
    const result = (libc() as Libc).lseek(this.fd, position, whence);
    if (result >= 0) return result;
    const errno = lastErrno();
    if (errno === ENXIO) return Number.POSITIVE_INFINITY;
    if (errno === EINVAL || errno === EOPNOTSUPP) {
      this.canSeekHoles = false;
      return null;
    }
    throw libcError(`lseek(${this.path})`, errno);
  }

  private checkOpen(): void {
    if (this.fd < 0) throw new BlockError('ESHUTDOWN', `${this.path} is not open`);
  }

  private checkRequest(req: IoRequest): void {
    this.checkOpen();
    assert.ok(req.length >= 0 && req.offset >= 0 && req.offset + req.length <= this.bytes, 'request outside the device');
  }

  private checkWrite(req: IoRequest): void {
    this.checkRequest(req);
    if (this.options.readOnly === true) throw new BlockError('EPERM', `${this.path} is read-only`);
  }

  private closeQuietly(): void {
    if (this.fd >= 0) fs.closeSync(this.fd);
    this.fd = -1;
  }
}
