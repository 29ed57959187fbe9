import assert from 'node:assert/strict';
import {
  BlockError, ExtentFlags, IoFlags,
  type BlockLayer, type Capabilities, type Extent, type IoRequest,
} from '../volume/types.js';
import { DEVICE_BLOCK_SIZE_MAX } from './file.js';

export const MEMORY_CHUNK_BYTES = 64 * 1024;
export const MEMORY_EXTENTS_MAX = 1024;
/** Bounds block-status work on a huge, mostly empty device: 65536 chunks is 4 GiB per call. */
const STATUS_CHUNKS_MAX = 65536;

export interface MemoryDeviceOptions {
  size: number;
}

/**
 * A sparse disk in memory: 64 KiB chunks are allocated on first write and freed again by trim and zero, so a
 * large, mostly empty test disk costs little. Nothing survives close().
 */
export class MemoryDevice implements BlockLayer {
  readonly name = 'memory';
  readonly next = null;
  private readonly bytes: number;
  private readonly chunks = new Map<number, Buffer>();
  private opened = false;

  constructor(options: MemoryDeviceOptions) {
    assert.ok(Number.isSafeInteger(options.size) && options.size > 0, 'memory device size must be a positive integer');
    this.bytes = options.size;
  }

  async open(): Promise<void> {
    assert.ok(!this.opened, 'MemoryDevice opened twice');
    this.opened = true;
  }

  size(): number {
    return this.bytes;
  }

  capabilities(): Capabilities {
    return {
      readOnly: false,
      canFlush: true,
      canFua: true,
      canTrim: true,
      canZero: true,
      canFastZero: true,
      canCache: false,
      canMultiConn: true,
      blockSize: { minimum: 1, preferred: 4096, maximum: DEVICE_BLOCK_SIZE_MAX },
    };
  }

  /** Bytes of chunk memory in use (for tests and metrics). */
  allocatedBytes(): number {
    return this.chunks.size * MEMORY_CHUNK_BYTES;
  }

  async read(req: IoRequest, into: Buffer): Promise<void> {
    this.checkRequest(req);
    assert.ok(into.length >= req.length, 'read buffer shorter than the request');
    let done = 0;
    while (done < req.length) {
      const position = req.offset + done;
      const index = Math.floor(position / MEMORY_CHUNK_BYTES);
      const within = position - index * MEMORY_CHUNK_BYTES;
      const count = Math.min(MEMORY_CHUNK_BYTES - within, req.length - done);
      const chunk = this.chunks.get(index);
      if (chunk === undefined) into.fill(0, done, done + count);
      else chunk.copy(into, done, within, within + count);
      done += count;
    }
  }

  async write(req: IoRequest, data: Buffer): Promise<void> {
    this.checkRequest(req);
    assert.ok(data.length >= req.length, 'write buffer shorter than the request');
    let done = 0;
    while (done < req.length) {
      const position = req.offset + done;
      const index = Math.floor(position / MEMORY_CHUNK_BYTES);
      const within = position - index * MEMORY_CHUNK_BYTES;
      const count = Math.min(MEMORY_CHUNK_BYTES - within, req.length - done);
      data.copy(this.chunkFor(index), within, done, done + count);
      done += count;
    }
  }

  async flush(): Promise<void> {
    this.checkOpen();
  }

  async trim(req: IoRequest): Promise<void> {
    this.checkRequest(req);
    this.clear(req.offset, req.length, true);
  }

  /** With NO_HOLE the zeroed chunks stay allocated, as a preallocated region would on a real disk. */
  async zero(req: IoRequest): Promise<void> {
    this.checkRequest(req);
    const keepAllocated = (req.flags & IoFlags.NO_HOLE) !== 0;
    this.clear(req.offset, req.length, !keepAllocated);
  }

  async cache(req: IoRequest): Promise<void> {
    this.checkRequest(req);
  }

  async blockStatus(offset: number, length: number): Promise<Extent[]> {
    this.checkOpen();
    assert.ok(length > 0 && offset >= 0 && offset + length <= this.bytes, 'block status outside the device');
    const end = offset + length;
    const extents: Extent[] = [];
    let position = offset;
    let scanned = 0;
    while (position < end && extents.length < MEMORY_EXTENTS_MAX && scanned < STATUS_CHUNKS_MAX) {
      const index = Math.floor(position / MEMORY_CHUNK_BYTES);
      const stop = Math.min((index + 1) * MEMORY_CHUNK_BYTES, end);
      const flags = this.chunks.has(index) ? 0 : ExtentFlags.HOLE | ExtentFlags.ZERO;
      const last = extents[extents.length - 1];
      if (last !== undefined && last.flags === flags) last.length += stop - position;
      else extents.push({ length: stop - position, flags });
      position = stop;
      scanned++;
    }
    return extents;
  }

  async close(): Promise<void> {
    this.chunks.clear();
    this.opened = false;
  }

  private chunkFor(index: number): Buffer {
    let chunk = this.chunks.get(index);
    if (chunk === undefined) {
      chunk = Buffer.alloc(MEMORY_CHUNK_BYTES);
      this.chunks.set(index, chunk);
    }
    return chunk;
  }

  /** Zeroes a range; whole chunks are dropped unless they must stay allocated. */
  private clear(offset: number, length: number, free: boolean): void {
    if (length === 0) return;
    const end = offset + length;
    const firstWhole = Math.ceil(offset / MEMORY_CHUNK_BYTES);
    const endWhole = Math.floor(end / MEMORY_CHUNK_BYTES);
    if (!free || firstWhole >= endWhole) {
      this.zeroPart(offset, length, !free);
      return;
    }
    this.zeroPart(offset, firstWhole * MEMORY_CHUNK_BYTES - offset, false);
    this.dropWhole(firstWhole, endWhole);
    this.zeroPart(endWhole * MEMORY_CHUNK_BYTES, end - endWhole * MEMORY_CHUNK_BYTES, false);
  }

  /** Cost is the smaller of the range and the allocated set, so trimming a huge empty disk stays cheap. */
  private dropWhole(firstIndex: number, endIndex: number): void {
    if (endIndex - firstIndex <= this.chunks.size) {
      for (let index = firstIndex; index < endIndex; index++) this.chunks.delete(index);
      return;
    }
    for (const index of this.chunks.keys()) {
      if (index >= firstIndex && index < endIndex) this.chunks.delete(index);
    }
  }

  private zeroPart(offset: number, length: number, allocate: boolean): void {
    let done = 0;
    while (done < length) {
      const position = offset + done;
      const index = Math.floor(position / MEMORY_CHUNK_BYTES);
      const within = position - index * MEMORY_CHUNK_BYTES;
      const count = Math.min(MEMORY_CHUNK_BYTES - within, length - done);
      const chunk = allocate ? this.chunkFor(index) : this.chunks.get(index);
      chunk?.fill(0, within, within + count);
      done += count;
    }
  }

  private checkOpen(): void {
    if (!this.opened) throw new BlockError('ESHUTDOWN', 'memory device is not open');
  }

  private checkRequest(req: IoRequest): void {
    this.checkOpen();
    assert.ok(req.length >= 0 && req.offset >= 0 && req.offset + req.length <= this.bytes, 'request outside the device');
  }
}
