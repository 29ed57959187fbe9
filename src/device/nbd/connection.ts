import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { BlockError, type Extent } from '../../volume/types.js';
import type { ByteQueue } from './byte-queue.js';
import * as P from './protocol.js';

/** Non-data chunks (block status, errors) bigger than this mean a broken or hostile server. */
const CHUNK_PAYLOAD_MAX = 1024 * 1024 + 16;

/** One request in flight. Slots are made once per connection and reused; the cookie is (generation, index). */
interface Slot {
  readonly index: number;
  readonly header: Buffer;
  generation: number;
  busy: boolean;
  command: number;
  offset: number;
  length: number;
  into: Buffer | null;
  covered: number;
  extents: Extent[] | null;
  error: BlockError | null;
  resolve: (() => void) | null;
  reject: ((error: BlockError) => void) | null;
}

interface Waiter {
  resolve: (slot: Slot) => void;
  reject: (error: BlockError) => void;
}

type ParseState = 'header' | 'simple-payload' | 'data-offset' | 'data-payload' | 'chunk-payload';

export interface ConnectionOptions {
  structuredReplies: boolean;
  baseAllocationId: number | null;
  maxInFlight: number;
}

function protocolError(message: string): BlockError {
  return new BlockError('EIO', `NBD upstream protocol error: ${message}`);
}

/**
 * The transmission phase of one client connection: a bounded table of requests in flight, replies matched by
 * cookie in whatever order they come, parsed from the socket's chunks as they arrive. Any protocol violation
 * or a dropped socket fails every request in flight with EIO; nothing waits forever on a dead server.
 */
export class NbdConnection {
  private readonly slots: Slot[] = [];
  private readonly freeSlots: number[] = [];
  private readonly waiters: Waiter[] = [];
  private readonly scratch = Buffer.alloc(P.STRUCTURED_REPLY_BYTES);
  private drainResolvers: Array<() => void> = [];
  private state: ParseState = 'header';
  private current: Slot | null = null;
  private remaining = 0;
  private dataPosition = 0;
  private chunkFlags = 0;
  private chunkType = 0;
  private failure: BlockError | null = null;
  private closing = false;

  constructor(
    private readonly socket: Socket,
    private readonly queue: ByteQueue,
    private readonly options: ConnectionOptions,
  ) {
    assert.ok(options.maxInFlight >= 1 && options.maxInFlight <= 0xffff, 'maxInFlight out of range');
    for (let index = options.maxInFlight - 1; index >= 0; index--) {
      this.slots[index] = newSlot(index);
      this.freeSlots.push(index);
    }
    socket.on('close', () => {
      const closed = this.closing ? new BlockError('ESHUTDOWN', 'NBD upstream closed') : null;
      this.fail(closed ?? new BlockError('EIO', 'NBD upstream closed the connection'));
    });
    socket.on('error', (error) => this.fail(new BlockError('EIO', `NBD upstream: ${error.message}`, { cause: error })));
  }

  get failed(): BlockError | null {
    return this.failure;
  }

  /**
   * Sends one request and resolves when its reply is complete; block status resolves to its extents. `payload`
   * and `into` belong to the caller until then. Socket backpressure is not awaited: the slot table bounds what
   * can be queued, and queued payloads are the callers' buffers, not copies.
   */
  async request(
    command: number, flags: number, offset: number, length: number, payload: Buffer | null, into: Buffer | null,
  ): Promise<Extent[] | null> {
    const slot = await this.acquire();
    try {
      if (this.failure !== null) throw this.failure;
      const done = this.arm(slot, command, offset, length, into);
      this.send(slot, command, flags, offset, length, payload);
      await done;
      return slot.extents;
    } finally {
      this.release(slot);
    }
  }

  /** New bytes are in the queue: parse as far as they go. */
  onBytes(): void {
    if (this.failure !== null) return this.queue.clear();
    try {
      while (this.step()) {
        // each step consumes bytes or changes state; it returns false when it needs more bytes
      }
    } catch (error) {
      this.fail(error instanceof BlockError ? error : protocolError(String(error)));
    }
  }

  /** Lets requests in flight finish, says goodbye (NBD_CMD_DISC) and closes the socket. */
  async close(timeoutMs: number): Promise<void> {
    if (this.failure === null) {
      await this.drained();
      const header = Buffer.alloc(P.REQUEST_HEADER_BYTES);
      header.writeUInt32BE(P.REQUEST_MAGIC, 0);
      header.writeUInt16BE(P.Cmd.DISC, 6);
      this.closing = true;
      this.socket.end(header);
      await this.socketClosed(timeoutMs);
    }
    this.fail(new BlockError('ESHUTDOWN', 'NBD upstream closed'));
  }

  private acquire(): Promise<Slot> {
    if (this.failure !== null) return Promise.reject(this.failure);
    const index = this.freeSlots.pop();
    if (index !== undefined) {
      const slot = this.slots[index]!;
      slot.busy = true;
      return Promise.resolve(slot);
    }
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  /** A freed slot goes straight to the oldest waiter; its generation changes so a stale cookie cannot match. */
  private release(slot: Slot): void {
    assert.ok(slot.busy, 'released a free slot');
    slot.generation = (slot.generation + 1) >>> 0;
    slot.into = null;
    slot.extents = null;
    slot.error = null;
    slot.resolve = null;
    slot.reject = null;
    const waiter = this.waiters.shift();
    if (waiter !== undefined) return waiter.resolve(slot);
    slot.busy = false;
    this.freeSlots.push(slot.index);
    if (this.freeSlots.length === this.slots.length) this.wakeDrained();
  }

  private arm(slot: Slot, command: number, offset: number, length: number, into: Buffer | null): Promise<void> {
    slot.command = command;
    slot.offset = offset;
    slot.length = length;
    slot.into = into;
    slot.covered = 0;
    return new Promise((resolve, reject) => {
      slot.resolve = resolve;
      slot.reject = reject;
    });
  }

  /** Header and payload leave in one corked write; the payload is the caller's buffer, not a copy. */
  private send(slot: Slot, command: number, flags: number, offset: number, length: number, payload: Buffer | null): void {
    const header = slot.header;
    header.writeUInt16BE(flags, 4);
    header.writeUInt16BE(command, 6);
    header.writeUInt32BE(slot.generation, 8);
    header.writeUInt32BE(slot.index, 12);
    P.writeU64(header, offset, 16);
    header.writeUInt32BE(length, 24);
    this.socket.cork();
    this.socket.write(header);
    if (payload !== null) this.socket.write(payload.length === length ? payload : payload.subarray(0, length));
    this.socket.uncork();
  }

  private step(): boolean {
    switch (this.state) {
      case 'header':
        return this.parseHeader();
      case 'simple-payload':
      case 'data-payload':
        return this.parseData();
      case 'data-offset':
        return this.parseDataOffset();
      case 'chunk-payload':
        return this.parseChunkPayload();
    }
  }

  private parseHeader(): boolean {
    if (this.queue.length < 4) return false;
    const magic = this.queue.peekUInt32BE(0);
    if (magic === P.SIMPLE_REPLY_MAGIC) return this.parseSimpleHeader();
    if (magic === P.STRUCTURED_REPLY_MAGIC && this.options.structuredReplies) return this.parseStructuredHeader();
    throw protocolError(`bad reply magic 0x${magic.toString(16)}`);
  }

  private parseSimpleHeader(): boolean {
    if (this.queue.length < P.SIMPLE_REPLY_BYTES) return false;
    const header = this.queue.take(P.SIMPLE_REPLY_BYTES, this.scratch);
    const at = this.queue.takenOffset;
    const slot = this.lookup(header.readUInt32BE(at + 8), header.readUInt32BE(at + 12));
    const error = header.readUInt32BE(at + 4);
    if (error !== 0) {
      slot.error = new BlockError(P.errnoFromWire(error), `NBD upstream failed command ${slot.command} (error ${error})`);
      return this.finish(slot);
    }
    if (slot.command !== P.Cmd.READ) return this.finish(slot);
    this.current = slot;
    this.remaining = slot.length;
    this.dataPosition = 0;
    slot.covered = slot.length;
    this.state = 'simple-payload';
    return true;
  }

  private parseStructuredHeader(): boolean {
    if (this.queue.length < P.STRUCTURED_REPLY_BYTES) return false;
    const header = this.queue.take(P.STRUCTURED_REPLY_BYTES, this.scratch);
    const at = this.queue.takenOffset;
    this.current = this.lookup(header.readUInt32BE(at + 8), header.readUInt32BE(at + 12));
    this.chunkFlags = header.readUInt16BE(at + 4);
    this.chunkType = header.readUInt16BE(at + 6);
    this.remaining = header.readUInt32BE(at + 16);
    if (this.chunkType === P.ReplyType.OFFSET_DATA) {
      if (this.remaining < 8) throw protocolError('data chunk without an offset');
      this.state = 'data-offset';
    } else {
      if (this.remaining > CHUNK_PAYLOAD_MAX) throw protocolError(`chunk of ${this.remaining} bytes`);
      this.state = 'chunk-payload';
    }
    return true;
  }

  private parseDataOffset(): boolean {
    if (this.queue.length < 8) return false;
    const slot = this.current!;
    const buffer = this.queue.take(8, this.scratch);
    this.remaining -= 8;
    this.dataPosition = this.readPosition(slot, P.readU64(buffer, this.queue.takenOffset), this.remaining);
    slot.covered += this.remaining;
    this.state = 'data-payload';
    return true;
  }

  /** Payload bytes go straight from the socket's chunks into the reader's buffer. */
  private parseData(): boolean {
    const slot = this.current!;
    const count = Math.min(this.queue.length, this.remaining);
    if (count === 0 && this.remaining > 0) return false;
    this.queue.copyTo(slot.into!, this.dataPosition, count);
    this.dataPosition += count;
    this.remaining -= count;
    if (this.remaining > 0) return true;
    return this.state === 'simple-payload' ? this.finish(slot) : this.endChunk(slot);
  }

  private parseChunkPayload(): boolean {
    if (this.queue.length < this.remaining) return false;
    const slot = this.current!;
    const payload = this.queue.take(this.remaining, this.scratch);
    this.handleChunk(slot, payload, this.queue.takenOffset, this.remaining);
    return this.endChunk(slot);
  }

  private handleChunk(slot: Slot, payload: Buffer, at: number, length: number): void {
    const type = this.chunkType;
    if (type === P.ReplyType.OFFSET_HOLE) return this.handleHole(slot, payload, at, length);
    if (type === P.ReplyType.BLOCK_STATUS) return this.handleBlockStatus(slot, payload, at, length);
    if ((type & P.REPLY_TYPE_ERROR_BIT) !== 0) return this.handleError(slot, payload, at, length);
    // NBD_REPLY_TYPE_NONE and unknown informational chunks carry nothing we need.
  }

  private handleHole(slot: Slot, payload: Buffer, at: number, length: number): void {
    if (length !== 12) throw protocolError('hole chunk of the wrong size');
    const holeLength = payload.readUInt32BE(at + 8);
    const position = this.readPosition(slot, P.readU64(payload, at), holeLength);
    slot.into!.fill(0, position, position + holeLength);
    slot.covered += holeLength;
  }

  private handleBlockStatus(slot: Slot, payload: Buffer, at: number, length: number): void {
    if (slot.command !== P.Cmd.BLOCK_STATUS || length < 12 || (length - 4) % 8 !== 0) {
      throw protocolError('malformed block status chunk');
    }
    if (payload.readUInt32BE(at) !== this.options.baseAllocationId) return;
    const extents: Extent[] = [];
    let total = 0;
    for (let position = at + 4; position < at + length && total < slot.length; position += 8) {
      const extentLength = Math.min(payload.readUInt32BE(position), slot.length - total);
      if (extentLength === 0) continue;
      extents.push({ length: extentLength, flags: payload.readUInt32BE(position + 4) & 3 });
      total += extentLength;
    }
    slot.extents = extents;
  }

  private handleError(slot: Slot, payload: Buffer, at: number, length: number): void {
    const errno = length >= 4 ? payload.readUInt32BE(at) : 5;
    const messageLength = length >= 6 ? Math.min(payload.readUInt16BE(at + 4), length - 6) : 0;
    const message = payload.toString('utf8', at + 6, at + 6 + messageLength);
    slot.error ??= new BlockError(P.errnoFromWire(errno), `NBD upstream error ${errno}${message ? `: ${message}` : ''}`);
  }

  /** Where a chunk at wire offset `offset` lands in the read buffer; a chunk outside the request is fatal. */
  private readPosition(slot: Slot, offset: number | null, length: number): number {
    const inside = offset !== null && offset >= slot.offset && offset + length <= slot.offset + slot.length;
    if (slot.command !== P.Cmd.READ || !inside) throw protocolError('read chunk outside its request');
    return offset - slot.offset;
  }

  private endChunk(slot: Slot): boolean {
    this.state = 'header';
    this.current = null;
    if ((this.chunkFlags & P.REPLY_FLAG_DONE) !== 0) this.finish(slot);
    return true;
  }

  /** Settles the request; a read must have been covered entirely unless an error chunk said otherwise. */
  private finish(slot: Slot): boolean {
    this.state = 'header';
    this.current = null;
    const { resolve, reject } = slot;
    assert.ok(resolve !== null && reject !== null, 'finished a request twice');
    slot.resolve = null;
    slot.reject = null;
    if (slot.error === null && slot.command === P.Cmd.READ && slot.covered < slot.length) {
      slot.error = protocolError(`read reply covered ${slot.covered} of ${slot.length} bytes`);
    }
    if (slot.error !== null) reject(slot.error);
    else resolve();
    return true;
  }

  private lookup(generation: number, index: number): Slot {
    const slot = this.slots[index];
    if (slot === undefined || slot.resolve === null || slot.generation !== generation) {
      throw protocolError(`reply for unknown cookie ${generation}:${index}`);
    }
    return slot;
  }

  private fail(error: BlockError): void {
    if (this.failure !== null) return;
    this.failure = error;
    this.queue.clear();
    for (const slot of this.slots) {
      const reject = slot.reject;
      slot.resolve = null;
      slot.reject = null;
      reject?.(error);
    }
    for (const waiter of this.waiters.splice(0)) waiter.reject(error);
    this.wakeDrained();
    this.socket.destroy();
  }

  private drained(): Promise<void> {
    if (this.freeSlots.length === this.slots.length && this.waiters.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.drainResolvers.push(resolve));
  }

  private wakeDrained(): void {
    for (const resolve of this.drainResolvers.splice(0)) resolve();
  }

  private socketClosed(timeoutMs: number): Promise<void> {
    if (this.socket.closed) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.socket.destroy();
        resolve();
      }, timeoutMs);
      this.socket.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}

function newSlot(index: number): Slot {
  const header = Buffer.alloc(P.REQUEST_HEADER_BYTES);
  header.writeUInt32BE(P.REQUEST_MAGIC, 0);
  return {
    index, header, generation: 0, busy: false, command: 0, offset: 0, length: 0, into: null, covered: 0,
    extents: null, error: null, resolve: null, reject: null,
  };
}
