/**
 * A tiny raw NBD client for protocol tests: it speaks exactly what it is told, so tests can also send what a
 * real client never would. Byte layouts follow the NBD protocol (doc/proto.md of NetworkBlockDevice/nbd):
 * fixed newstyle handshake, NO_ZEROES, option haggling (GO, EXPORT_NAME, STRUCTURED_REPLY, ...), requests, simple
 * replies and structured reply chunks. All integers are big-endian; handles and offsets are u64 (bigint here).
 */
import { connect, type Socket } from 'node:net';

export const NBD = {
  MAGIC: 0x4e42444d41474943n, // "NBDMAGIC"
  IHAVEOPT: 0x49484156454f5054n, // "IHAVEOPT"
  OPTION_REPLY_MAGIC: 0x3e889045565a9n,
  REQUEST_MAGIC: 0x25609513,
  SIMPLE_REPLY_MAGIC: 0x67446698,
  STRUCTURED_REPLY_MAGIC: 0x668e33ef,

  FLAG_FIXED_NEWSTYLE: 1 << 0,
  FLAG_NO_ZEROES: 1 << 1,
  FLAG_C_FIXED_NEWSTYLE: 1 << 0,
  FLAG_C_NO_ZEROES: 1 << 1,

  OPT_EXPORT_NAME: 1,
  OPT_ABORT: 2,
  OPT_LIST: 3,
  OPT_STARTTLS: 5,
  OPT_INFO: 6,
  OPT_GO: 7,
  OPT_STRUCTURED_REPLY: 8,
  OPT_LIST_META_CONTEXT: 9,
  OPT_SET_META_CONTEXT: 10,

  REP_ACK: 1,
  REP_SERVER: 2,
  REP_INFO: 3,
  REP_META_CONTEXT: 4,
  REP_ERR_UNSUP: 0x80000001,
  REP_ERR_POLICY: 0x80000002,
  REP_ERR_INVALID: 0x80000003,
  REP_ERR_PLATFORM: 0x80000004,
  REP_ERR_TLS_REQD: 0x80000005,
  REP_ERR_UNKNOWN: 0x80000006,
  REP_ERR_SHUTDOWN: 0x80000007,
  REP_ERR_BLOCK_SIZE_REQD: 0x80000008,
  REP_ERR_TOO_BIG: 0x80000009,

  INFO_EXPORT: 0,
  INFO_NAME: 1,
  INFO_DESCRIPTION: 2,
  INFO_BLOCK_SIZE: 3,

  // Transmission flags.
  FLAG_HAS_FLAGS: 1 << 0,
  FLAG_READ_ONLY: 1 << 1,
  FLAG_SEND_FLUSH: 1 << 2,
  FLAG_SEND_FUA: 1 << 3,
  FLAG_ROTATIONAL: 1 << 4,
  FLAG_SEND_TRIM: 1 << 5,
  FLAG_SEND_WRITE_ZEROES: 1 << 6,
  FLAG_SEND_DF: 1 << 7,
  FLAG_CAN_MULTI_CONN: 1 << 8,
  FLAG_SEND_CACHE: 1 << 10,
  FLAG_SEND_FAST_ZERO: 1 << 11,

  CMD_READ: 0,
  CMD_WRITE: 1,
  CMD_DISC: 2,
  CMD_FLUSH: 3,
  CMD_TRIM: 4,
  CMD_CACHE: 5,
  CMD_WRITE_ZEROES: 6,
  CMD_BLOCK_STATUS: 7,

  CMD_FLAG_FUA: 1 << 0,
  CMD_FLAG_NO_HOLE: 1 << 1,
  CMD_FLAG_DF: 1 << 2,
  CMD_FLAG_REQ_ONE: 1 << 3,
  CMD_FLAG_FAST_ZERO: 1 << 4,

  REPLY_FLAG_DONE: 1 << 0,
  REPLY_TYPE_NONE: 0,
  REPLY_TYPE_OFFSET_DATA: 1,
  REPLY_TYPE_OFFSET_HOLE: 2,
  REPLY_TYPE_BLOCK_STATUS: 5,
  REPLY_TYPE_ERROR: 0x8001,
  REPLY_TYPE_ERROR_OFFSET: 0x8002,

  EPERM: 1,
  EIO: 5,
  ENOMEM: 12,
  EINVAL: 22,
  ENOSPC: 28,
  EOVERFLOW: 75,
  ENOTSUP: 95,
  ESHUTDOWN: 108,
} as const;

export class ConnectionClosed extends Error {
  constructor(what: string) {
    super(`connection closed by the server while ${what}`);
  }
}

export class ReadTimeout extends Error {
  constructor(what: string, ms: number) {
    super(`no answer from the server within ${ms} ms while ${what}`);
  }
}

export interface OptionReply {
  option: number;
  type: number;
  data: Buffer;
}

export interface ExportInfo {
  size: bigint;
  transmissionFlags: number;
  blockSize?: { minimum: number; preferred: number; maximum: number };
  replies: OptionReply[];
}

export interface StructuredChunk {
  flags: number;
  type: number;
  handle: bigint;
  payload: Buffer;
}

export interface Reply {
  handle: bigint;
  /** NBD error (0 = success). For structured replies, the first error chunk's error. */
  error: number;
  /** Read data (simple reply payload, or structured data/hole chunks reassembled relative to `offset`). */
  data: Buffer;
  structured: boolean;
  chunks: StructuredChunk[];
}

const READ_TIMEOUT_MS_DEFAULT = 10_000;

/** A socket with an exact-length reader on top (test code: clarity over zero-copy). */
export class RawNbd {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private ended = false;
  private waiter: (() => void) | null = null;
  private nextHandle = 1n;
  /** True once STRUCTURED_REPLY was acknowledged (replies to READ are then structured). */
  structured = false;

  private constructor(readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
      this.wake();
    });
    const end = () => {
      this.ended = true;
      this.wake();
    };
    socket.on('end', end);
    socket.on('close', end);
    socket.on('error', end);
  }

  static connect(path: string, timeout_ms = 5_000): Promise<RawNbd> {
    return new Promise((resolve, reject) => {
      const socket = connect(path);
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`connect ${path}: timed out`));
      }, timeout_ms);
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        resolve(new RawNbd(socket));
      });
      socket.once('error', (error) => {
        clearTimeout(timer);
        reject(error);
      });
    });
  }

  /** Connects, negotiates fixed newstyle + NO_ZEROES, optionally structured replies, and GOes to `name`. */
  static async open(path: string, name: string, options: { structured?: boolean } = {}): Promise<{ client: RawNbd; info: ExportInfo }> {
    const client = await RawNbd.connect(path);
    try {
      await client.greet();
      if (options.structured) {
        const reply = await client.option(NBD.OPT_STRUCTURED_REPLY);
        if (reply.type !== NBD.REP_ACK) throw new Error(`STRUCTURED_REPLY refused: ${reply.type.toString(16)}`);
        client.structured = true;
      }
      const info = await client.go(name);
      return { client, info };
    } catch (error) {
      client.destroy();
      throw error;
    }
  }

  private wake(): void {
    const waiter = this.waiter;
    this.waiter = null;
    waiter?.();
  }

  get closed(): boolean {
    return this.ended && this.buffered === 0;
  }

  /** Reads exactly `length` bytes; throws ConnectionClosed on EOF and ReadTimeout after `timeout_ms`. */
  async readExact(length: number, what = 'reading', timeout_ms = READ_TIMEOUT_MS_DEFAULT): Promise<Buffer> {
    const deadline = Date.now() + timeout_ms;
    while (this.buffered < length) {
      if (this.ended) throw new ConnectionClosed(what);
      const remaining_ms = deadline - Date.now();
      if (remaining_ms <= 0) throw new ReadTimeout(what, timeout_ms);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, remaining_ms);
        this.waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    const out = all.subarray(0, length);
    const rest = all.subarray(length);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.buffered = rest.length;
    return Buffer.from(out);
  }

  /**
   * Waits until the server closes the connection, discarding anything it sends. Returns true when closed within
   * `timeout_ms`, false otherwise.
   */
  async waitClosed(timeout_ms = 5_000): Promise<boolean> {
    const deadline = Date.now() + timeout_ms;
    while (!this.ended) {
      const remaining_ms = deadline - Date.now();
      if (remaining_ms <= 0) return false;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, remaining_ms);
        this.waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.chunks = [];
      this.buffered = 0;
    }
    return true;
  }

  /** Bytes the server sent that nobody read yet. */
  pending(): number {
    return this.buffered;
  }

  write(bytes: Buffer): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.socket.destroyed) {
        reject(new ConnectionClosed('writing'));
        return;
      }
      this.socket.write(bytes, (error) => (error ? reject(error) : resolve()));
    });
  }

  /** Writes, ignoring an error from a server that already closed (EPIPE, ECONNRESET). */
  async writeTolerant(bytes: Buffer): Promise<boolean> {
    try {
      await this.write(bytes);
      return true;
    } catch {
      return false;
    }
  }

  destroy(): void {
    this.socket.destroy();
  }

  /** Half-close: the server sees EOF on its read side. */
  end(): void {
    this.socket.end();
  }

  // ---- handshake ----

  /** Reads the server greeting (NBDMAGIC, IHAVEOPT, handshake flags). */
  async readGreeting(): Promise<number> {
    const greeting = await this.readExact(18, 'reading the greeting');
    if (greeting.readBigUInt64BE(0) !== NBD.MAGIC) throw new Error('bad NBDMAGIC');
    if (greeting.readBigUInt64BE(8) !== NBD.IHAVEOPT) throw new Error('server is not newstyle (no IHAVEOPT)');
    return greeting.readUInt16BE(16);
  }

  async sendClientFlags(flags: number): Promise<void> {
    const bytes = Buffer.alloc(4);
    bytes.writeUInt32BE(flags >>> 0);
    await this.write(bytes);
  }

  /** Greeting + client flags FIXED_NEWSTYLE | NO_ZEROES (both required from the server). */
  async greet(): Promise<number> {
    const flags = await this.readGreeting();
    if (!(flags & NBD.FLAG_FIXED_NEWSTYLE)) throw new Error('server lacks FIXED_NEWSTYLE');
    if (!(flags & NBD.FLAG_NO_ZEROES)) throw new Error('server lacks NO_ZEROES');
    await this.sendClientFlags(NBD.FLAG_C_FIXED_NEWSTYLE | NBD.FLAG_C_NO_ZEROES);
    return flags;
  }

  static optionHeader(option: number, length: number, magic: bigint = NBD.IHAVEOPT): Buffer {
    const header = Buffer.alloc(16);
    header.writeBigUInt64BE(magic, 0);
    header.writeUInt32BE(option >>> 0, 8);
    header.writeUInt32BE(length >>> 0, 12);
    return header;
  }

  async sendOption(option: number, data: Buffer = Buffer.alloc(0)): Promise<void> {
    await this.write(Buffer.concat([RawNbd.optionHeader(option, data.length), data]));
  }

  async readOptionReply(timeout_ms = READ_TIMEOUT_MS_DEFAULT): Promise<OptionReply> {
    const header = await this.readExact(20, 'reading an option reply', timeout_ms);
    const magic = header.readBigUInt64BE(0);
    if (magic !== NBD.OPTION_REPLY_MAGIC) throw new Error(`bad option reply magic 0x${magic.toString(16)}`);
    const option = header.readUInt32BE(8);
    const type = header.readUInt32BE(12);
    const length = header.readUInt32BE(16);
    if (length > 16 * 1024 * 1024) throw new Error(`option reply too long: ${length}`);
    const data = length > 0 ? await this.readExact(length, 'reading option reply data', timeout_ms) : Buffer.alloc(0);
    return { option, type, data };
  }

  /** Sends one option and returns its (single) reply. */
  async option(option: number, data?: Buffer): Promise<OptionReply> {
    await this.sendOption(option, data);
    return this.readOptionReply();
  }

  /** NBD_OPT_LIST: the export names, then ACK (or throws on an error reply). */
  async list(): Promise<string[]> {
    await this.sendOption(NBD.OPT_LIST);
    const names: string[] = [];
    for (;;) {
      const reply = await this.readOptionReply();
      if (reply.type === NBD.REP_ACK) return names;
      if (reply.type !== NBD.REP_SERVER) throw new Error(`OPT_LIST: reply type 0x${reply.type.toString(16)}`);
      const length = reply.data.readUInt32BE(0);
      names.push(reply.data.subarray(4, 4 + length).toString('utf8'));
    }
  }

  static goData(name: string, infoRequests: number[] = [NBD.INFO_BLOCK_SIZE]): Buffer {
    const nameBytes = Buffer.from(name, 'utf8');
    const data = Buffer.alloc(4 + nameBytes.length + 2 + 2 * infoRequests.length);
    data.writeUInt32BE(nameBytes.length, 0);
    nameBytes.copy(data, 4);
    data.writeUInt16BE(infoRequests.length, 4 + nameBytes.length);
    infoRequests.forEach((request, index) => data.writeUInt16BE(request, 6 + nameBytes.length + 2 * index));
    return data;
  }

  /**
   * NBD_OPT_GO (or INFO): collects NBD_REP_INFO replies until ACK. On an error reply, returns it in `error` and the
   * session stays in option haggling.
   */
  async goRaw(name: string, option: number = NBD.OPT_GO): Promise<{ info?: ExportInfo; error?: OptionReply }> {
    await this.sendOption(option, RawNbd.goData(name));
    const replies: OptionReply[] = [];
    let size: bigint | undefined;
    let transmissionFlags = 0;
    let blockSize: ExportInfo['blockSize'];
    for (;;) {
      const reply = await this.readOptionReply();
      replies.push(reply);
      if (reply.type & 0x80000000) return { error: reply };
      if (reply.type === NBD.REP_ACK) break;
      if (reply.type !== NBD.REP_INFO) throw new Error(`GO: unexpected reply type 0x${reply.type.toString(16)}`);
      const infoType = reply.data.readUInt16BE(0);
      if (infoType === NBD.INFO_EXPORT) {
        size = reply.data.readBigUInt64BE(2);
        transmissionFlags = reply.data.readUInt16BE(10);
      } else if (infoType === NBD.INFO_BLOCK_SIZE) {
        blockSize = { minimum: reply.data.readUInt32BE(2), preferred: reply.data.readUInt32BE(6), maximum: reply.data.readUInt32BE(10) };
      }
    }
    if (size === undefined) throw new Error('GO: ACK without NBD_INFO_EXPORT');
    return { info: { size, transmissionFlags, blockSize, replies } };
  }

  async go(name: string): Promise<ExportInfo> {
    const { info, error } = await this.goRaw(name);
    if (error) throw new Error(`GO ${name}: error reply 0x${error.type.toString(16)} ${error.data.toString('utf8')}`);
    return info!;
  }

  /** NBD_OPT_EXPORT_NAME with NO_ZEROES negotiated: 8-byte size + 2-byte flags, or the server closes. */
  async exportName(name: string, timeout_ms = READ_TIMEOUT_MS_DEFAULT): Promise<{ size: bigint; transmissionFlags: number }> {
    await this.sendOption(NBD.OPT_EXPORT_NAME, Buffer.from(name, 'utf8'));
    const reply = await this.readExact(10, 'reading the EXPORT_NAME reply', timeout_ms);
    return { size: reply.readBigUInt64BE(0), transmissionFlags: reply.readUInt16BE(8) };
  }

  // ---- transmission ----

  static requestHeader(type: number, flags: number, handle: bigint, offset: bigint, length: number, magic: number = NBD.REQUEST_MAGIC): Buffer {
    const header = Buffer.alloc(28);
    header.writeUInt32BE(magic >>> 0, 0);
    header.writeUInt16BE(flags & 0xffff, 4);
    header.writeUInt16BE(type & 0xffff, 6);
    header.writeBigUInt64BE(handle, 8);
    header.writeBigUInt64BE(BigInt.asUintN(64, offset), 16);
    header.writeUInt32BE(length >>> 0, 24);
    return header;
  }

  /** Sends one request (with `payload` for WRITE) and returns its handle. */
  async send(type: number, offset: bigint | number, length: number, options: { flags?: number; payload?: Buffer } = {}): Promise<bigint> {
    const handle = this.nextHandle++;
    const header = RawNbd.requestHeader(type, options.flags ?? 0, handle, BigInt(offset), length);
    await this.write(options.payload ? Buffer.concat([header, options.payload]) : header);
    return handle;
  }

  /**
   * Reads one complete reply. `readLength` is how many data bytes a successful simple reply to a READ carries
   * (simple replies are not self-describing); 0 for other commands.
   */
  async readReply(readLength = 0, timeout_ms = READ_TIMEOUT_MS_DEFAULT): Promise<Reply> {
    const magicBytes = await this.readExact(4, 'reading a reply', timeout_ms);
    const magic = magicBytes.readUInt32BE(0);
    if (magic === NBD.SIMPLE_REPLY_MAGIC) {
      const rest = await this.readExact(12, 'reading a simple reply', timeout_ms);
      const error = rest.readUInt32BE(0);
      const handle = rest.readBigUInt64BE(4);
      const data = error === 0 && readLength > 0 ? await this.readExact(readLength, 'reading read data', timeout_ms) : Buffer.alloc(0);
      return { handle, error, data, structured: false, chunks: [] };
    }
    if (magic !== NBD.STRUCTURED_REPLY_MAGIC) throw new Error(`bad reply magic 0x${magic.toString(16)}`);
    return this.readStructured(timeout_ms, true);
  }

  private async readStructured(timeout_ms: number, magicConsumed: boolean): Promise<Reply> {
    const chunks: StructuredChunk[] = [];
    let first = magicConsumed;
    for (;;) {
      if (!first) {
        const magic = (await this.readExact(4, 'reading a structured chunk', timeout_ms)).readUInt32BE(0);
        if (magic !== NBD.STRUCTURED_REPLY_MAGIC) throw new Error(`bad structured reply magic 0x${magic.toString(16)}`);
      }
      first = false;
      const header = await this.readExact(16, 'reading a structured chunk header', timeout_ms);
      const flags = header.readUInt16BE(0);
      const type = header.readUInt16BE(2);
      const handle = header.readBigUInt64BE(4);
      const length = header.readUInt32BE(12);
      if (length > 64 * 1024 * 1024) throw new Error(`structured chunk too long: ${length}`);
      const payload = length > 0 ? await this.readExact(length, 'reading a structured chunk payload', timeout_ms) : Buffer.alloc(0);
      chunks.push({ flags, type, handle, payload });
      if (chunks.length > 1 && handle !== chunks[0]!.handle) throw new Error('interleaved structured replies are not handled by this client');
      if (flags & NBD.REPLY_FLAG_DONE) break;
    }
    const errorChunk = chunks.find((chunk) => chunk.type & 0x8000);
    return {
      handle: chunks[0]!.handle,
      error: errorChunk ? errorChunk.payload.readUInt32BE(0) : 0,
      data: Buffer.alloc(0),
      structured: true,
      chunks,
    };
  }

  /** READ at `offset`; returns the reply with `data` reassembled (holes as zeroes) on success. */
  async read(offset: bigint | number, length: number, flags = 0): Promise<Reply> {
    const handle = await this.send(NBD.CMD_READ, offset, length, { flags });
    const reply = await this.readReply(length);
    if (reply.handle !== handle) throw new Error(`reply handle ${reply.handle} != ${handle}`);
    if (reply.structured && reply.error === 0) reply.data = assemble(reply.chunks, BigInt(offset), length);
    return reply;
  }

  /** Any non-READ command; WRITE takes `payload`. */
  async command(type: number, offset: bigint | number, length: number, options: { flags?: number; payload?: Buffer } = {}): Promise<Reply> {
    const handle = await this.send(type, offset, length, options);
    const reply = await this.readReply(0);
    if (reply.handle !== handle) throw new Error(`reply handle ${reply.handle} != ${handle}`);
    return reply;
  }

  /** NBD_CMD_DISC, then waits for the server to close. */
  async disconnect(): Promise<boolean> {
    await this.writeTolerant(RawNbd.requestHeader(NBD.CMD_DISC, 0, this.nextHandle++, 0n, 0));
    const closed = await this.waitClosed(5_000);
    this.destroy();
    return closed;
  }
}

function assemble(chunks: StructuredChunk[], offset: bigint, length: number): Buffer {
  const data = Buffer.alloc(length);
  let covered = 0;
  for (const chunk of chunks) {
    if (chunk.type === NBD.REPLY_TYPE_OFFSET_DATA) {
      const at = Number(chunk.payload.readBigUInt64BE(0) - offset);
      const bytes = chunk.payload.subarray(8);
      if (at < 0 || at + bytes.length > length) throw new Error('data chunk outside the request');
      bytes.copy(data, at);
      covered += bytes.length;
    } else if (chunk.type === NBD.REPLY_TYPE_OFFSET_HOLE) {
      const at = Number(chunk.payload.readBigUInt64BE(0) - offset);
      const size = chunk.payload.readUInt32BE(8);
      if (at < 0 || at + size > length) throw new Error('hole chunk outside the request');
      covered += size;
    }
  }
  if (covered !== length) throw new Error(`structured read covered ${covered} of ${length} bytes`);
  return data;
}
