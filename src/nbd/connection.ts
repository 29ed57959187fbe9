import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import { BlockError, IoFlags, newIoRequest, type Capabilities, type Extent, type IoRequest } from '../volume/types.js';
import { BufferPool } from './buffer-pool.js';
import { ByteQueue } from './byte-queue.js';
import {
  BASE_ALLOCATION,
  BASE_ALLOCATION_ID,
  Cmd,
  CmdFlag,
  Errno,
  FLAG_C_FIXED_NEWSTYLE,
  FLAG_C_NO_ZEROES,
  FLAG_FIXED_NEWSTYLE,
  FLAG_NO_ZEROES,
  IHAVEOPT,
  Info,
  Limits,
  NBDMAGIC,
  Opt,
  Rep,
  REPLY_FLAG_DONE,
  REQUEST_MAGIC,
  ReplyType,
  SIMPLE_REPLY_MAGIC,
  STRUCTURED_REPLY_MAGIC,
  TxFlag,
  type NbdErrno,
} from './constants.js';
import {
  errorReply,
  infoBlockSize,
  infoExport,
  infoString,
  matchesBaseAllocation,
  metaContextReply,
  OptionFormatError,
  optionReply,
  parseInfoRequest,
  parseMetaContextRequest,
  serverReply,
} from './options.js';
import type { ExportRegistry, NbdExport } from './target.js';

const enum Phase {
  ClientFlags,
  OptionHeader,
  OptionData,
  OptionDiscard,
  RequestHeader,
  RequestPayload,
  RequestDiscard,
  Closed,
}

/** Read replies put their data here, behind room for the longest header (structured OFFSET_DATA: 20 + 8). */
const READ_DATA_AT = 28;
const SIMPLE_HEADER = 16;
const STRUCTURED_HEADER = 20;
const TWO_TO_32 = 4294967296;
/** Largest high word of a u64 offset that keeps offset a safe integer (2^53 - 1). */
const OFFSET_HIGH_MAX = 0x1fffff;

/** One request in flight. Slots are preallocated and reused; none is freed until its reply left the socket. */
interface Slot {
  readonly index: number;
  readonly request: IoRequest;
  readonly cookie: Buffer;
  command: number;
  commandFlags: number;
  /** Buffer taken from the pool for this request (payload or read reply), released with the slot. */
  pooled: Buffer | null;
  /** Bytes this slot counts against Limits.inflightBytesMax. */
  heldBytes: number;
  busy: boolean;
}

export interface ConnectionOptions {
  socket: Socket;
  registry: ExportRegistry;
  logger: Logger;
  pool: BufferPool;
  isShuttingDown: () => boolean;
  handshakeTimeoutMs: number;
  /**
   * True when the socket reads into one reused buffer (net.Socket `onread`): bytes handed to onData are valid only
   * during the call, so nothing may keep a view of them. False for ordinary 'data' chunks, which we may keep.
   */
  reusedReadBuffer: boolean;
}

/**
 * One client connection: the handshake's option haggling, then the transmission phase. Parses from views over
 * the socket's chunks, answers requests as they complete (in any order), and bounds what a client can make it
 * hold: requests in flight, payload bytes, option sizes. A client's bytes can end only this connection.
 */
export class NbdConnection {
  readonly closed: Promise<void>;
  private readonly socket: Socket;
  private readonly registry: ExportRegistry;
  private readonly log: Logger;
  private readonly pool: BufferPool;
  private readonly isServerShuttingDown: () => boolean;
  private readonly queue = new ByteQueue();
  private readonly headerScratch = Buffer.allocUnsafe(28);
  private phase = Phase.ClientFlags;
  private resolveClosed!: () => void;
  private handshakeTimer: NodeJS.Timeout | null;

  // handshake state
  private noZeroes = false;
  private structuredReplies = false;
  /** The socket is corked until the check phase (see reply). */
  private corked = false;
  private baseAllocationSelected = false;
  private optionCount = 0;
  private option = 0;
  private optionLength = 0;
  private discardRemaining = 0;

  // transmission state
  private export: NbdExport | null = null;
  private capabilities: Capabilities | null = null;
  private exportSize = 0;
  private transmissionFlags = 0;
  private readonly slots: Slot[] = [];
  private readonly freeSlots: number[] = [];
  private inflightBytes = 0;
  private readingPaused = false;
  private disconnectRequested = false;
  private writesSinceFlush = false;
  private payloadSlot: Slot | null = null;
  private payloadBuffer: Buffer | null = null;
  private payloadFilled = 0;
  private discardErrno: NbdErrno = Errno.EINVAL;
  private discardCookie = Buffer.alloc(8);
  private finishing = false;
  private readonly reusedReadBuffer: boolean;

  constructor(options: ConnectionOptions) {
    this.socket = options.socket;
    this.registry = options.registry;
    this.log = options.logger;
    this.pool = options.pool;
    this.isServerShuttingDown = options.isShuttingDown;
    this.reusedReadBuffer = options.reusedReadBuffer;
    this.closed = new Promise((resolve) => (this.resolveClosed = resolve));
    for (let i = 0; i < Limits.inflightRequestsMax; i++) {
      this.slots.push({ index: i, request: newIoRequest(), cookie: Buffer.alloc(8), command: 0, commandFlags: 0, pooled: null, heldBytes: 0, busy: false });
      this.freeSlots.push(Limits.inflightRequestsMax - 1 - i);
    }
    this.handshakeTimer = setTimeout(() => this.abort('handshake timed out'), options.handshakeTimeoutMs);
    this.handshakeTimer.unref();
    if (!this.reusedReadBuffer) this.socket.on('data', (chunk: Buffer) => this.onData(chunk));
    this.socket.on('error', (err) => this.log.debug({ err }, 'socket error'));
    this.socket.on('close', () => this.onClose());
    this.sendGreeting();
  }

  /** Graceful shutdown: in handshake, hang up; in transmission, answer new requests ESHUTDOWN, drain, flush, close. */
  shutdown(): void {
    if (this.phase === Phase.Closed) return;
    if (this.export === null) {
      this.abort('server shutting down');
      return;
    }
    this.disconnectRequested = true;
    this.finishIfIdle();
  }

  /** Hang up now (used after a grace period on shutdown, and for protocol violations). */
  abort(reason: string): void {
    if (this.phase === Phase.Closed) return;
    this.log.info({ reason }, 'closing connection');
    this.phase = Phase.Closed;
    this.socket.destroy();
  }

  // ───────────────────────────── input ─────────────────────────────

  /** Bytes from the socket. With a reused read buffer, whatever the parser leaves is copied out before returning. */
  onData(chunk: Buffer): void {
    if (this.phase === Phase.Closed) return;
    this.queue.push(chunk);
    try {
      this.pump();
      if (this.reusedReadBuffer) this.queue.detach();
    } catch (err) {
      // A bug on a client's input must cost that client its connection, never the server.
      this.log.error({ err }, 'internal error while parsing; closing connection');
      this.abort('internal error');
    }
  }

  private pump(): void {
    while (this.phase !== Phase.Closed && !this.readingPaused && this.step());
  }

  /** Advance the parser by one unit of work; false when it needs more bytes (or must wait). */
  private step(): boolean {
    switch (this.phase) {
      case Phase.ClientFlags:
        return this.readClientFlags();
      case Phase.OptionHeader:
        return this.readOptionHeader();
      case Phase.OptionData:
        return this.readOptionData();
      case Phase.OptionDiscard:
        return this.discardOption();
      case Phase.RequestHeader:
        return this.readRequestHeader();
      case Phase.RequestPayload:
        return this.readPayload();
      case Phase.RequestDiscard:
        return this.discardPayload();
      case Phase.Closed:
        return false;
    }
  }

  private onClose(): void {
    this.phase = Phase.Closed;
    if (this.handshakeTimer) clearTimeout(this.handshakeTimer);
    this.queue.clear();
    if (this.payloadSlot) this.releaseSlot(this.payloadSlot);
    this.payloadSlot = null;
    this.resolveClosed();
  }

  // ───────────────────────────── handshake ─────────────────────────────

  private sendGreeting(): void {
    const greeting = Buffer.allocUnsafe(18);
    greeting.writeBigUInt64BE(NBDMAGIC, 0);
    greeting.writeBigUInt64BE(IHAVEOPT, 8);
    greeting.writeUInt16BE(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES, 16);
    this.socket.write(greeting);
  }

  private readClientFlags(): boolean {
    if (this.queue.length < 4) return false;
    const flags = this.queue.take(4, this.headerScratch).readUInt32BE(0);
    if ((flags & ~(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES)) !== 0) {
      this.abort(`unknown client flags 0x${flags.toString(16)}`);
      return false;
    }
    this.noZeroes = (flags & FLAG_C_NO_ZEROES) !== 0;
    this.phase = Phase.OptionHeader;
    return true;
  }

  private readOptionHeader(): boolean {
    if (this.queue.length < 16) return false;
    const header = this.queue.take(16, this.headerScratch);
    if (header.readBigUInt64BE(0) !== IHAVEOPT) {
      this.abort('bad option magic');
      return false;
    }
    this.option = header.readUInt32BE(8);
    this.optionLength = header.readUInt32BE(12);
    if (++this.optionCount > Limits.optionsPerHandshakeMax) {
      this.abort('too many options');
      return false;
    }
    if (this.optionLength > Limits.optionDiscardBytesMax) {
      this.abort(`option of ${this.optionLength} bytes`);
      return false;
    }
    if (this.optionLength > Limits.optionBytesMax) {
      this.discardRemaining = this.optionLength;
      this.phase = Phase.OptionDiscard;
    } else {
      this.phase = Phase.OptionData;
    }
    return true;
  }

  private discardOption(): boolean {
    this.discardRemaining -= this.queue.skip(this.discardRemaining);
    if (this.discardRemaining > 0) return false;
    this.phase = Phase.OptionHeader;
    this.socket.write(errorReply(this.option, Rep.ERR_TOO_BIG, `option longer than ${Limits.optionBytesMax} bytes`));
    return true;
  }

  private readOptionData(): boolean {
    if (this.queue.length < this.optionLength) return false;
    // Bounded by Limits.optionBytesMax; the handshake is not a hot path.
    const data = Buffer.allocUnsafe(this.optionLength);
    this.queue.copyInto(data, 0, this.optionLength);
    this.phase = Phase.OptionHeader;
    this.handleOption(this.option, data);
    return (this.phase as Phase) !== Phase.Closed;
  }

  private handleOption(option: number, data: Buffer): void {
    if (this.isServerShuttingDown() && option !== Opt.ABORT) {
      this.socket.write(errorReply(option, Rep.ERR_SHUTDOWN, 'server is shutting down'));
      return;
    }
    try {
      this.dispatchOption(option, data);
    } catch (err) {
      if (!(err instanceof OptionFormatError)) throw err;
      this.socket.write(errorReply(option, Rep.ERR_INVALID, err.message));
    }
  }

  private dispatchOption(option: number, data: Buffer): void {
    switch (option) {
      case Opt.EXPORT_NAME:
        return this.optExportName(data);
      case Opt.ABORT:
        this.socket.end(optionReply(option, Rep.ACK));
        this.phase = Phase.Closed;
        return;
      case Opt.LIST:
        return this.optList(data);
      case Opt.STARTTLS:
        this.socket.write(errorReply(option, Rep.ERR_POLICY, 'TLS is not configured on this server'));
        return;
      case Opt.INFO:
      case Opt.GO:
        return this.optInfoOrGo(option, data);
      case Opt.STRUCTURED_REPLY:
        if (data.length !== 0) throw new OptionFormatError('STRUCTURED_REPLY takes no data');
        this.structuredReplies = true;
        this.socket.write(optionReply(option, Rep.ACK));
        return;
      case Opt.LIST_META_CONTEXT:
      case Opt.SET_META_CONTEXT:
        return this.optMetaContext(option, data);
      default:
        this.socket.write(errorReply(option, Rep.ERR_UNSUP, `option ${option} is not supported`));
    }
  }

  private optExportName(data: Buffer): void {
    const found = this.registry.find(data.toString('utf8'));
    if (!found) {
      // EXPORT_NAME has no error reply: the protocol says hang up.
      this.abort(`unknown export ${JSON.stringify(data.toString('utf8').slice(0, 256))}`);
      return;
    }
    this.selectExport(found);
    const tail = this.noZeroes ? 10 : 134;
    const reply = Buffer.alloc(tail);
    reply.writeBigUInt64BE(BigInt(this.exportSize), 0);
    reply.writeUInt16BE(this.transmissionFlags, 8);
    this.socket.write(reply);
    this.enterTransmission();
  }

  private optList(data: Buffer): void {
    if (data.length !== 0) throw new OptionFormatError('LIST takes no data');
    for (const e of this.registry.list()) this.socket.write(serverReply(Opt.LIST, e.name));
    this.socket.write(optionReply(Opt.LIST, Rep.ACK));
  }

  private optInfoOrGo(option: number, data: Buffer): void {
    const request = parseInfoRequest(data);
    const found = this.registry.find(request.exportName);
    if (!found) {
      this.socket.write(errorReply(option, Rep.ERR_UNKNOWN, `no export named ${JSON.stringify(request.exportName)}`));
      return;
    }
    const caps = found.layer.capabilities();
    const flags = transmissionFlagsFor(found, caps, this.structuredReplies);
    this.socket.write(infoExport(option, found.layer.size(), flags));
    if (request.infos.includes(Info.NAME)) this.socket.write(infoString(option, Info.NAME, found.name));
    if (request.infos.includes(Info.DESCRIPTION) && found.description) {
      this.socket.write(infoString(option, Info.DESCRIPTION, found.description));
    }
    const bs = caps.blockSize;
    this.socket.write(infoBlockSize(option, bs.minimum, bs.preferred, Math.min(bs.maximum, Limits.payloadBytesMax)));
    this.socket.write(optionReply(option, Rep.ACK));
    if (option === Opt.GO) {
      this.selectExport(found);
      this.enterTransmission();
    }
  }

  private optMetaContext(option: number, data: Buffer): void {
    const listing = option === Opt.LIST_META_CONTEXT;
    if (!listing && !this.structuredReplies) {
      this.socket.write(errorReply(option, Rep.ERR_INVALID, 'SET_META_CONTEXT needs STRUCTURED_REPLY first'));
      return;
    }
    const request = parseMetaContextRequest(data);
    if (!this.registry.find(request.exportName)) {
      this.socket.write(errorReply(option, Rep.ERR_UNKNOWN, `no export named ${JSON.stringify(request.exportName)}`));
      return;
    }
    if (!listing) this.baseAllocationSelected = false;
    const wanted = listing && request.queries.length === 0 ? true : request.queries.some((q) => matchesBaseAllocation(q, listing));
    if (wanted) {
      if (!listing) this.baseAllocationSelected = true;
      this.socket.write(metaContextReply(option, listing ? 0 : BASE_ALLOCATION_ID, BASE_ALLOCATION));
    }
    this.socket.write(optionReply(option, Rep.ACK));
  }

  private selectExport(found: NbdExport): void {
    this.export = found;
    this.capabilities = found.layer.capabilities();
    this.exportSize = found.layer.size();
    this.transmissionFlags = transmissionFlagsFor(found, this.capabilities, this.structuredReplies);
  }

  private enterTransmission(): void {
    assert.ok(this.export !== null, 'transmission without an export');
    if (this.handshakeTimer) clearTimeout(this.handshakeTimer);
    this.handshakeTimer = null;
    this.phase = Phase.RequestHeader;
    this.log.debug({ export: this.export.name, flags: this.transmissionFlags }, 'transmission phase');
  }

  // ───────────────────────────── transmission: requests ─────────────────────────────

  private readRequestHeader(): boolean {
    if (this.queue.length < 28) return false;
    if (this.freeSlots.length === 0 || this.inflightBytes >= Limits.inflightBytesMax) {
      this.pauseReading();
      return false;
    }
    const header = this.queue.take(28, this.headerScratch);
    if (header.readUInt32BE(0) !== REQUEST_MAGIC) {
      this.abort('bad request magic');
      return false;
    }
    const commandFlags = header.readUInt16BE(4);
    const command = header.readUInt16BE(6);
    const offsetHigh = header.readUInt32BE(16);
    const offset = offsetHigh > OFFSET_HIGH_MAX ? Number.MAX_SAFE_INTEGER : offsetHigh * TWO_TO_32 + header.readUInt32BE(20);
    const length = header.readUInt32BE(24);
    if (command === Cmd.DISC) {
      this.disconnectRequested = true;
      this.pauseReading();
      this.finishIfIdle();
      return false;
    }
    const errno = this.validate(command, commandFlags, offset, length);
    if (errno !== 0) {
      this.rejectRequest(header, command, errno, length);
      return true;
    }
    const slot = this.takeSlot(header, command, commandFlags, offset, length);
    if (command === Cmd.WRITE) return this.startPayload(slot);
    this.execute(slot);
    return true;
  }

  /** The one place client requests are checked; layers below trust what passes. Returns 0 or an NBD errno. */
  private validate(command: number, flags: number, offset: number, length: number): NbdErrno | 0 {
    if (this.disconnectRequested || this.isServerShuttingDown()) return Errno.ESHUTDOWN;
    const tx = this.transmissionFlags;
    let allowedFlags = tx & TxFlag.SEND_FUA ? CmdFlag.FUA : 0;
    const writes = command === Cmd.WRITE || command === Cmd.WRITE_ZEROES || command === Cmd.TRIM;
    switch (command) {
      case Cmd.READ:
        if (this.structuredReplies) allowedFlags |= CmdFlag.DF;
        break;
      case Cmd.WRITE:
      case Cmd.FLUSH:
        break;
      case Cmd.TRIM:
        if (!(tx & TxFlag.SEND_TRIM) && !this.export!.readOnly) return Errno.EINVAL;
        break;
      case Cmd.WRITE_ZEROES:
        allowedFlags |= CmdFlag.NO_HOLE | (tx & TxFlag.SEND_FAST_ZERO ? CmdFlag.FAST_ZERO : 0);
        break;
      case Cmd.CACHE:
        if (!(tx & TxFlag.SEND_CACHE)) return Errno.EINVAL;
        break;
      case Cmd.BLOCK_STATUS:
        if (!this.structuredReplies || !this.baseAllocationSelected) return Errno.EINVAL;
        allowedFlags |= CmdFlag.REQ_ONE;
        break;
      default:
        return Errno.EINVAL;
    }
    if ((flags & ~allowedFlags) !== 0) return Errno.EINVAL;
    if (writes && this.export!.readOnly) return Errno.EPERM;
    if (command === Cmd.FLUSH) return 0;
    if (length === 0) return Errno.EINVAL;
    if ((command === Cmd.READ || command === Cmd.WRITE) && length > Limits.payloadBytesMax) return Errno.EINVAL;
    const alignment = this.capabilities!.blockSize.minimum;
    if (alignment > 1 && (offset % alignment !== 0 || length % alignment !== 0)) return Errno.EINVAL;
    if (offset > this.exportSize || length > this.exportSize - offset) {
      return command === Cmd.WRITE || command === Cmd.WRITE_ZEROES ? Errno.ENOSPC : Errno.EINVAL;
    }
    return 0;
  }

  /** Answer a request that failed validation; a rejected WRITE's payload is still read (and dropped) to stay in sync. */
  private rejectRequest(header: Buffer, command: number, errno: NbdErrno, length: number): void {
    if (command !== Cmd.WRITE) {
      const cookie = header.subarray(8, 16);
      this.sendError(cookie, command, errno, null);
      return;
    }
    header.copy(this.discardCookie, 0, 8, 16);
    this.discardErrno = errno;
    this.discardRemaining = length;
    this.phase = Phase.RequestDiscard;
  }

  private discardPayload(): boolean {
    this.discardRemaining -= this.queue.skip(this.discardRemaining);
    if (this.discardRemaining > 0) return false;
    this.phase = Phase.RequestHeader;
    this.sendError(this.discardCookie, Cmd.WRITE, this.discardErrno, null);
    return true;
  }

  private takeSlot(header: Buffer, command: number, commandFlags: number, offset: number, length: number): Slot {
    const index = this.freeSlots.pop();
    assert.ok(index !== undefined, 'no free slot (checked before parsing)');
    const slot = this.slots[index]!;
    assert.ok(!slot.busy, 'free list holds a busy slot');
    slot.busy = true;
    header.copy(slot.cookie, 0, 8, 16);
    slot.command = command;
    slot.commandFlags = commandFlags;
    const request = slot.request;
    request.offset = offset;
    request.length = length;
    request.flags = ioFlagsFor(commandFlags);
    request.tag = null;
    request.fingerprints = null;
    return slot;
  }

  private startPayload(slot: Slot): boolean {
    const length = slot.request.length;
    this.hold(slot, length);
    if (this.queue.length >= length && !this.reusedReadBuffer) {
      // The whole payload is here: a view if it sits in one chunk, one copy into a pooled buffer if not.
      const pooled = this.pool.acquire(length);
      const data = this.queue.take(length, pooled);
      if (data.buffer === pooled.buffer && data.byteOffset === pooled.byteOffset) slot.pooled = pooled;
      else this.pool.release(pooled);
      this.executeWrite(slot, data);
      return true;
    }
    this.payloadSlot = slot;
    this.payloadBuffer = this.pool.acquire(length);
    slot.pooled = this.payloadBuffer;
    this.payloadFilled = 0;
    this.phase = Phase.RequestPayload;
    return true;
  }

  private readPayload(): boolean {
    const slot = this.payloadSlot!;
    const buffer = this.payloadBuffer!;
    const length = slot.request.length;
    this.payloadFilled += this.queue.copyInto(buffer, this.payloadFilled, length - this.payloadFilled);
    if (this.payloadFilled < length) return false;
    this.payloadSlot = null;
    this.payloadBuffer = null;
    this.phase = Phase.RequestHeader;
    this.executeWrite(slot, buffer.subarray(0, length));
    return true;
  }

  // ───────────────────────────── transmission: execution ─────────────────────────────

  private executeWrite(slot: Slot, data: Buffer): void {
    this.writesSinceFlush = true;
    this.export!.layer.write(slot.request, data).then(
      () => this.sendSimple(slot, 0),
      (err) => this.fail(slot, err),
    );
  }

  private execute(slot: Slot): void {
    const layer = this.export!.layer;
    const request = slot.request;
    let pending: Promise<unknown>;
    switch (slot.command) {
      case Cmd.READ:
        return this.executeRead(slot);
      case Cmd.BLOCK_STATUS:
        return this.executeBlockStatus(slot);
      case Cmd.FLUSH:
        this.writesSinceFlush = false;
        pending = layer.flush();
        break;
      case Cmd.TRIM:
        this.writesSinceFlush = true;
        pending = layer.trim(request);
        break;
      case Cmd.WRITE_ZEROES:
        this.writesSinceFlush = true;
        pending = layer.zero(request);
        break;
      case Cmd.CACHE:
        pending = layer.cache(request);
        break;
      default:
        assert.fail(`validated command ${slot.command} has no handler`);
    }
    pending.then(
      () => this.sendSimple(slot, 0),
      (err) => this.fail(slot, err),
    );
  }

  private executeRead(slot: Slot): void {
    const length = slot.request.length;
    const buffer = this.pool.acquire(READ_DATA_AT + length);
    slot.pooled = buffer;
    this.hold(slot, length);
    this.export!.layer.read(slot.request, buffer.subarray(READ_DATA_AT, READ_DATA_AT + length)).then(
      () => this.sendReadReply(slot, buffer, length),
      (err) => this.fail(slot, err),
    );
  }

  private sendReadReply(slot: Slot, buffer: Buffer, length: number): void {
    if (this.phase === Phase.Closed) return this.releaseSlot(slot);
    let start: number;
    if (this.structuredReplies) {
      start = READ_DATA_AT - STRUCTURED_HEADER - 8;
      buffer.writeUInt32BE(STRUCTURED_REPLY_MAGIC, start);
      buffer.writeUInt16BE(REPLY_FLAG_DONE, start + 4);
      buffer.writeUInt16BE(ReplyType.OFFSET_DATA, start + 6);
      slot.cookie.copy(buffer, start + 8);
      buffer.writeUInt32BE(8 + length, start + 16);
      writeU64(buffer, start + 20, slot.request.offset);
    } else {
      start = READ_DATA_AT - SIMPLE_HEADER;
      buffer.writeUInt32BE(SIMPLE_REPLY_MAGIC, start);
      buffer.writeUInt32BE(0, start + 4);
      slot.cookie.copy(buffer, start + 8);
    }
    this.reply(buffer.subarray(start, READ_DATA_AT + length), () => this.releaseSlot(slot));
  }

  private executeBlockStatus(slot: Slot): void {
    const request = slot.request;
    this.export!.layer.blockStatus(request.offset, request.length).then(
      (extents) => this.sendBlockStatus(slot, extents),
      (err) => this.fail(slot, err),
    );
  }

  private sendBlockStatus(slot: Slot, extents: Extent[]): void {
    if (this.phase === Phase.Closed) return this.releaseSlot(slot);
    const limit = slot.commandFlags & CmdFlag.REQ_ONE ? 1 : Limits.extentsPerReplyMax;
    const count = Math.min(extents.length, limit);
    assert.ok(count > 0, 'block status returned no extent');
    const reply = Buffer.allocUnsafe(STRUCTURED_HEADER + 4 + count * 8);
    reply.writeUInt32BE(STRUCTURED_REPLY_MAGIC, 0);
    reply.writeUInt16BE(REPLY_FLAG_DONE, 4);
    reply.writeUInt16BE(ReplyType.BLOCK_STATUS, 6);
    slot.cookie.copy(reply, 8);
    reply.writeUInt32BE(4 + count * 8, 16);
    reply.writeUInt32BE(BASE_ALLOCATION_ID, 20);
    let remaining = slot.request.length;
    let written = 0;
    for (let i = 0; i < count && remaining > 0; i++) {
      const length = Math.min(extents[i]!.length, remaining, 0xffffffff);
      assert.ok(length > 0, 'empty extent');
      reply.writeUInt32BE(length, 24 + written * 8);
      reply.writeUInt32BE(extents[i]!.flags & 3, 28 + written * 8);
      remaining -= length;
      written++;
    }
    const used = reply.subarray(0, 24 + written * 8);
    used.writeUInt32BE(4 + written * 8, 16);
    this.reply(used, () => this.releaseSlot(slot));
  }

  private fail(slot: Slot, err: unknown): void {
    const errno = errnoOf(err);
    if (errno === Errno.EIO || !(err instanceof BlockError)) {
      this.log.error({ err, command: slot.command, offset: slot.request.offset, length: slot.request.length }, 'request failed');
    }
    if (this.phase === Phase.Closed) return this.releaseSlot(slot);
    this.sendError(slot.cookie, slot.command, errno, slot);
  }

  // ───────────────────────────── transmission: replies ─────────────────────────────

  private sendSimple(slot: Slot, errno: number): void {
    if (this.phase === Phase.Closed) return this.releaseSlot(slot);
    const reply = Buffer.allocUnsafe(SIMPLE_HEADER);
    reply.writeUInt32BE(SIMPLE_REPLY_MAGIC, 0);
    reply.writeUInt32BE(errno, 4);
    slot.cookie.copy(reply, 8);
    this.reply(reply, () => this.releaseSlot(slot));
  }

  /** Error reply; structured for READ and BLOCK_STATUS once negotiated (the spec requires it for READ). */
  private sendError(cookie: Buffer, command: number, errno: NbdErrno, slot: Slot | null): void {
    const done = slot ? () => this.releaseSlot(slot) : undefined;
    const structured = this.structuredReplies && (command === Cmd.READ || command === Cmd.BLOCK_STATUS);
    if (!structured) {
      const reply = Buffer.allocUnsafe(SIMPLE_HEADER);
      reply.writeUInt32BE(SIMPLE_REPLY_MAGIC, 0);
      reply.writeUInt32BE(errno, 4);
      cookie.copy(reply, 8);
      this.reply(reply, done);
      return;
    }
    const reply = Buffer.allocUnsafe(STRUCTURED_HEADER + 6);
    reply.writeUInt32BE(STRUCTURED_REPLY_MAGIC, 0);
    reply.writeUInt16BE(REPLY_FLAG_DONE, 4);
    reply.writeUInt16BE(ReplyType.ERROR, 6);
    cookie.copy(reply, 8);
    reply.writeUInt32BE(6, 16);
    reply.writeUInt32BE(errno, 20);
    reply.writeUInt16BE(0, 24);
    this.reply(reply, done);
  }

  /**
   * A transmission reply. Replies written in one turn of the event loop leave in one writev: requests parsed from
   * one chunk of socket data complete together, and one write system call per 16-byte reply was most of the
   * engine's time under 4 KiB I/O. The socket is uncorked in the check phase, after this turn's I/O callbacks.
   */
  private reply(bytes: Buffer, done?: () => void): void {
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      setImmediate(this.uncork);
    }
    this.socket.write(bytes, done);
  }

  private readonly uncork = (): void => {
    this.corked = false;
    this.socket.uncork();
  };

  // ───────────────────────────── flow control and teardown ─────────────────────────────

  private hold(slot: Slot, bytes: number): void {
    slot.heldBytes = bytes;
    this.inflightBytes += bytes;
  }

  private releaseSlot(slot: Slot): void {
    assert.ok(slot.busy, 'slot freed twice');
    slot.busy = false;
    this.inflightBytes -= slot.heldBytes;
    slot.heldBytes = 0;
    if (slot.pooled) this.pool.release(slot.pooled);
    slot.pooled = null;
    slot.request.tag = null;
    slot.request.fingerprints = null;
    this.freeSlots.push(slot.index);
    if (this.readingPaused && !this.disconnectRequested) this.resumeReading();
    this.finishIfIdle();
  }

  private pauseReading(): void {
    if (this.readingPaused) return;
    this.readingPaused = true;
    this.socket.pause();
  }

  private resumeReading(): void {
    this.readingPaused = false;
    this.socket.resume();
    if (this.phase !== Phase.Closed && this.queue.length > 0) {
      try {
        this.pump();
      } catch (err) {
        this.log.error({ err }, 'internal error while parsing; closing connection');
        this.abort('internal error');
      }
    }
  }

  private get inflightCount(): number {
    return Limits.inflightRequestsMax - this.freeSlots.length;
  }

  /** After DISC or shutdown: once every reply is out, flush what this connection wrote and close. */
  private finishIfIdle(): void {
    if (!this.disconnectRequested || this.finishing || this.phase === Phase.Closed) return;
    if (this.inflightCount > 0 || this.payloadSlot !== null) return;
    this.finishing = true;
    const flush = this.writesSinceFlush && this.export ? this.export.layer.flush() : Promise.resolve();
    // Reading is paused by now, so the peer's EOF may never be seen: once our last bytes are out, close outright.
    const hangUp = () => this.socket.end(() => this.socket.destroy());
    flush.then(hangUp, (err) => {
      this.log.error({ err }, 'flush on disconnect failed');
      hangUp();
    });
  }
}

function transmissionFlagsFor(found: NbdExport, caps: Capabilities, structured: boolean): number {
  let flags = TxFlag.HAS_FLAGS;
  const readOnly = found.readOnly || caps.readOnly;
  if (readOnly) flags |= TxFlag.READ_ONLY;
  if (caps.canFlush) flags |= TxFlag.SEND_FLUSH;
  if (caps.canFua) flags |= TxFlag.SEND_FUA;
  if (!readOnly && caps.canTrim) flags |= TxFlag.SEND_TRIM;
  if (!readOnly) flags |= TxFlag.SEND_WRITE_ZEROES;
  if (!readOnly && caps.canFastZero) flags |= TxFlag.SEND_FAST_ZERO;
  if (structured) flags |= TxFlag.SEND_DF;
  // A flush on any connection reaches the one shared stack, so it covers every connection's writes.
  if (caps.canMultiConn && caps.canFlush) flags |= TxFlag.CAN_MULTI_CONN;
  if (caps.canCache) flags |= TxFlag.SEND_CACHE;
  return flags;
}

function ioFlagsFor(commandFlags: number): number {
  let flags = 0;
  if (commandFlags & CmdFlag.FUA) flags |= IoFlags.FUA;
  if (commandFlags & CmdFlag.NO_HOLE) flags |= IoFlags.NO_HOLE;
  if (commandFlags & CmdFlag.FAST_ZERO) flags |= IoFlags.FAST_ZERO;
  return flags;
}

function errnoOf(err: unknown): NbdErrno {
  if (!(err instanceof BlockError)) return Errno.EIO;
  return Errno[err.errno] ?? Errno.EIO;
}

function writeU64(buffer: Buffer, at: number, value: number): void {
  buffer.writeUInt32BE(Math.floor(value / TWO_TO_32), at);
  buffer.writeUInt32BE(value >>> 0, at + 4);
}
