import assert from 'node:assert/strict';
import net from 'node:net';
import {
  BlockError, IoFlags,
  type BlockLayer, type BlockSizeLimits, type Capabilities, type Extent, type IoRequest,
} from '../../volume/types.js';
import { ZERO_BUFFER, ZERO_BUFFER_BYTES } from '../zero-buffer.js';
import { ByteQueue } from './byte-queue.js';
import { NbdConnection } from './connection.js';
import { negotiate, type HandshakeIo, type NegotiatedExport } from './handshake.js';
import * as P from './protocol.js';

export interface NbdClientOptions {
  /** Unix socket path; or give host (and port). */
  socket?: string;
  host?: string;
  port?: number;
  /** Export name; '' is the server's default export. */
  export?: string;
  readOnly?: boolean;
  /** Requests on the wire at once; more wait for a slot. */
  maxInFlight?: number;
  /** Bound on connecting plus the handshake. */
  connectTimeoutMs?: number;
}

export const NBD_DEFAULT_PORT = 10809;
const DEFAULT_MAX_IN_FLIGHT = 64;
const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
const CLOSE_TIMEOUT_MS = 2_000;
const KEEPALIVE_DELAY_MS = 10_000;
const DEVICE_BLOCK_SIZE_MAX = 32 * 1024 * 1024;
/** Trim, zero, cache and block status lengths are u32 on the wire: larger ranges go in pieces of this size. */
const RANGE_PIECE_BYTES = 1024 * 1024 * 1024;

/**
 * Sky as a client of another NBD server (nbdkit, qemu-storage-daemon, another Sky), so a volume can sit in
 * front of remote storage. One connection carries every request of the volume; reconnecting is not attempted:
 * after the server goes away every request fails with EIO.
 */
export class NbdClientDevice implements BlockLayer {
  readonly name = 'nbd';
  readonly next = null;
  private readonly options: NbdClientOptions;
  private connection: NbdConnection | null = null;
  private negotiated: NegotiatedExport | null = null;
  private caps: Capabilities | null = null;

  constructor(options: NbdClientOptions) {
    assert.ok((options.socket === undefined) !== (options.host === undefined), 'give either a socket path or a host');
    this.options = options;
  }

  async open(): Promise<void> {
    assert.ok(this.connection === null, 'NbdClientDevice opened twice');
    const queue = new ByteQueue();
    const socket = await this.connect();
    const channel = new HandshakeChannel(socket, queue);
    socket.on('data', (chunk: Buffer) => {
      queue.push(chunk);
      if (this.connection !== null) this.connection.onBytes();
      else channel.onData();
    });
    const timer = setTimeout(() => socket.destroy(new Error('NBD handshake timed out')), this.connectTimeout());
    try {
      this.negotiated = await negotiate(channel, this.options.export ?? '');
    } catch (error) {
      socket.destroy();
      if (error instanceof BlockError) throw error;
      throw new BlockError('EIO', `NBD handshake: ${String(error)}`, { cause: error });
    } finally {
      clearTimeout(timer);
      channel.dispose();
    }
    this.caps = this.computeCapabilities(this.negotiated);
    this.connection = new NbdConnection(socket, queue, {
      structuredReplies: this.negotiated.structuredReplies,
      baseAllocationId: this.negotiated.baseAllocationId,
      maxInFlight: this.options.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT,
    });
    if (queue.length > 0) this.connection.onBytes();
  }

  size(): number {
    assert.ok(this.negotiated !== null, 'size() before open()');
    return this.negotiated.size;
  }

  capabilities(): Capabilities {
    assert.ok(this.caps !== null, 'capabilities() before open()');
    return this.caps;
  }

  /** What the server agreed to in the handshake (for diagnostics and tests). */
  negotiation(): NegotiatedExport | null {
    return this.negotiated;
  }

  async read(req: IoRequest, into: Buffer): Promise<void> {
    assert.ok(into.length >= req.length, 'read buffer shorter than the request');
    if (req.length === 0) return;
    await this.live().request(P.Cmd.READ, 0, req.offset, req.length, null, into);
  }

  async write(req: IoRequest, data: Buffer): Promise<void> {
    this.checkWritable();
    assert.ok(data.length >= req.length, 'write buffer shorter than the request');
    if (req.length === 0) return;
    await this.live().request(P.Cmd.WRITE, this.fuaFlag(req), req.offset, req.length, data, null);
    await this.flushIfFuaEmulated(req);
  }

  async flush(): Promise<void> {
    if (!this.has(P.TxFlag.SEND_FLUSH)) return;
    await this.live().request(P.Cmd.FLUSH, 0, 0, 0, null, null);
  }

  /** Advisory: a server that cannot trim is simply not asked. */
  async trim(req: IoRequest): Promise<void> {
    this.checkWritable();
    if (!this.has(P.TxFlag.SEND_TRIM)) return;
    await this.inPieces(P.Cmd.TRIM, this.fuaFlag(req), req.offset, req.length);
    await this.flushIfFuaEmulated(req);
  }

  async zero(req: IoRequest): Promise<void> {
    this.checkWritable();
    const fast = (req.flags & IoFlags.FAST_ZERO) !== 0;
    const serverZeroes = this.has(P.TxFlag.SEND_WRITE_ZEROES);
    if (fast && !(serverZeroes && this.has(P.TxFlag.SEND_FAST_ZERO))) {
      throw new BlockError('ENOTSUP', 'NBD upstream cannot promise a fast zero');
    }
    if (!serverZeroes) return this.writeZeroes(req);
    let flags = this.fuaFlag(req);
    if ((req.flags & IoFlags.NO_HOLE) !== 0) flags |= P.CmdFlag.NO_HOLE;
    if (fast) flags |= P.CmdFlag.FAST_ZERO;
    await this.inPieces(P.Cmd.WRITE_ZEROES, flags, req.offset, req.length);
    await this.flushIfFuaEmulated(req);
  }

  async cache(req: IoRequest): Promise<void> {
    if (!this.has(P.TxFlag.SEND_CACHE)) return;
    await this.inPieces(P.Cmd.CACHE, 0, req.offset, req.length);
  }

  /** Without base:allocation the server has said nothing about holes, so everything is data. */
  async blockStatus(offset: number, length: number): Promise<Extent[]> {
    assert.ok(length > 0, 'block status of nothing');
    if (this.negotiated?.baseAllocationId == null) return [{ length, flags: 0 }];
    const asked = Math.min(length, RANGE_PIECE_BYTES);
    const extents = await this.live().request(P.Cmd.BLOCK_STATUS, 0, offset, asked, null, null);
    return extents !== null && extents.length > 0 ? extents : [{ length: asked, flags: 0 }];
  }

  async close(): Promise<void> {
    const connection = this.connection;
    if (connection === null) return;
    await connection.close(CLOSE_TIMEOUT_MS);
  }

  private connect(): Promise<net.Socket> {
    const { socket: path, host } = this.options;
    const port = this.options.port ?? NBD_DEFAULT_PORT;
    const socket = path !== undefined ? net.createConnection({ path }) : net.createConnection({ host: host!, port });
    const where = path ?? `${host}:${port}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => socket.destroy(new Error('connect timed out')), this.connectTimeout());
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        if (path === undefined) {
          socket.setNoDelay(true);
          // A peer that vanishes without a FIN (host down, partition) is found by keepalive probes, not never.
          socket.setKeepAlive(true, KEEPALIVE_DELAY_MS);
        }
        resolve(socket);
      });
      socket.once('error', (error) => {
        clearTimeout(timer);
        reject(new BlockError('EIO', `NBD connect to ${where}: ${error.message}`, { cause: error }));
      });
    });
  }

  private computeCapabilities(negotiated: NegotiatedExport): Capabilities {
    const readOnly = this.options.readOnly === true || this.has(P.TxFlag.READ_ONLY, negotiated);
    const writable = !readOnly;
    const canFlush = this.has(P.TxFlag.SEND_FLUSH, negotiated);
    return {
      readOnly,
      canFlush: writable && canFlush,
      canFua: writable && (canFlush || this.has(P.TxFlag.SEND_FUA, negotiated)),
      canTrim: writable && this.has(P.TxFlag.SEND_TRIM, negotiated),
      canZero: writable,
      canFastZero: writable && this.has(P.TxFlag.SEND_WRITE_ZEROES | P.TxFlag.SEND_FAST_ZERO, negotiated),
      canCache: this.has(P.TxFlag.SEND_CACHE, negotiated),
      // Every Sky handle shares this one connection, so a flush on it covers every completed write.
      canMultiConn: true,
      blockSize: blockSizeLimits(negotiated.blockSize),
    };
  }

  /** True if the server set every flag in `mask` (transmission flags mean nothing without HAS_FLAGS). */
  private has(mask: number, negotiated: NegotiatedExport | null = this.negotiated): boolean {
    const flags = negotiated?.transmissionFlags ?? 0;
    return (flags & P.TxFlag.HAS_FLAGS) !== 0 && (flags & mask) === mask;
  }

  private fuaFlag(req: IoRequest): number {
    return (req.flags & IoFlags.FUA) !== 0 && this.has(P.TxFlag.SEND_FUA) ? P.CmdFlag.FUA : 0;
  }

  /** A server without FUA but with flush gets a flush after the request instead. */
  private async flushIfFuaEmulated(req: IoRequest): Promise<void> {
    if ((req.flags & IoFlags.FUA) !== 0 && !this.has(P.TxFlag.SEND_FUA)) await this.flush();
  }

  private async inPieces(command: number, flags: number, offset: number, length: number): Promise<void> {
    for (let done = 0; done < length; done += RANGE_PIECE_BYTES) {
      const piece = Math.min(RANGE_PIECE_BYTES, length - done);
      await this.live().request(command, flags, offset + done, piece, null, null);
    }
  }

  private async writeZeroes(req: IoRequest): Promise<void> {
    const chunk = Math.min(ZERO_BUFFER_BYTES, this.capabilities().blockSize.maximum);
    for (let done = 0; done < req.length; done += chunk) {
      const piece = Math.min(chunk, req.length - done);
      await this.live().request(P.Cmd.WRITE, this.fuaFlag(req), req.offset + done, piece, ZERO_BUFFER, null);
    }
    await this.flushIfFuaEmulated(req);
  }

  private live(): NbdConnection {
    if (this.connection === null) throw new BlockError('ESHUTDOWN', 'NBD upstream is not connected');
    return this.connection;
  }

  private checkWritable(): void {
    if (this.caps?.readOnly === true) throw new BlockError('EPERM', 'NBD upstream is read-only');
  }

  private connectTimeout(): number {
    return this.options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  }
}

function blockSizeLimits(server: BlockSizeLimits | null): BlockSizeLimits {
  if (server === null) return { minimum: 1, preferred: 4096, maximum: DEVICE_BLOCK_SIZE_MAX };
  const maximum = Math.min(server.maximum, DEVICE_BLOCK_SIZE_MAX);
  return { minimum: server.minimum, preferred: Math.min(Math.max(server.preferred, 4096), maximum), maximum };
}

/** Byte waiting during the handshake; after it, the connection's parser takes the same queue. */
class HandshakeChannel implements HandshakeIo {
  private wanted = 0;
  private wake: (() => void) | null = null;
  private abort: ((error: BlockError) => void) | null = null;
  private ended: BlockError | null = null;
  private readonly onEnd: (error?: Error) => void;

  constructor(private readonly socket: net.Socket, readonly queue: ByteQueue) {
    this.onEnd = (error?: Error) => {
      this.ended = new BlockError('EIO', `NBD server hung up during the handshake${error ? `: ${error.message}` : ''}`);
      this.abort?.(this.ended);
    };
    socket.on('close', this.onEnd);
    socket.on('error', this.onEnd);
  }

  need(n: number): Promise<void> {
    if (this.queue.length >= n) return Promise.resolve();
    if (this.ended !== null) return Promise.reject(this.ended);
    this.wanted = n;
    return new Promise((resolve, reject) => {
      this.wake = resolve;
      this.abort = reject;
    });
  }

  onData(): void {
    if (this.wake === null || this.queue.length < this.wanted) return;
    const wake = this.wake;
    this.wake = null;
    this.abort = null;
    wake();
  }

  send(data: Buffer): void {
    this.socket.write(data);
  }

  dispose(): void {
    this.socket.off('close', this.onEnd);
    this.socket.off('error', this.onEnd);
  }
}
