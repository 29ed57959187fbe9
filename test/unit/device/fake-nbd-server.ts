import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

/**
 * A scripted NBD server for what real servers do not do on demand: answer a batch of reads in reverse order,
 * split every reply into odd-sized pieces, or send a reply for a cookie nobody used.
 */
export interface FakeServerOptions {
  size: number;
  structured: boolean;
  /** Requests to collect before answering all of them, last first. */
  batch: number;
  /** Send the first reply of each batch with a cookie that was never used. */
  corruptCookie?: boolean;
}

export interface FakeServer {
  socket: string;
  stop(): Promise<void>;
}

/** Content of the fake disk: a byte is a function of its offset, so misplaced data shows. */
export function fakeByte(offset: number): number {
  return (offset * 7 + (offset >>> 8)) & 0xff;
}

export async function startFakeServer(options: FakeServerOptions): Promise<FakeServer> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sky-fake-nbd-'));
  const socket = path.join(dir, 'fake.sock');
  const connections = new Set<net.Socket>();
  const server = net.createServer((connection) => {
    connections.add(connection);
    connection.on('close', () => connections.delete(connection));
    connection.on('error', () => undefined);
    void serve(connection, options);
  });
  await new Promise<void>((resolve) => server.listen(socket, resolve));
  return {
    socket,
    stop: async () => {
      for (const connection of connections) connection.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Reads exactly n bytes from a connection (test code: simple concatenation is fine here). */
function reader(connection: net.Socket): (n: number) => Promise<Buffer> {
  let pending = Buffer.alloc(0);
  let wake: (() => void) | null = null;
  connection.on('data', (chunk: Buffer) => {
    pending = Buffer.concat([pending, chunk]);
    wake?.();
  });
  connection.on('close', () => wake?.());
  return async (n) => {
    while (pending.length < n) {
      if (connection.destroyed) throw new Error('closed');
      await new Promise<void>((resolve) => (wake = resolve));
    }
    const out = pending.subarray(0, n);
    pending = pending.subarray(n);
    return out;
  };
}

interface Request {
  type: number;
  cookie: Buffer;
  offset: number;
  length: number;
}

async function serve(connection: net.Socket, options: FakeServerOptions): Promise<void> {
  const read = reader(connection);
  try {
    await handshake(connection, read, options);
    for (;;) {
      const batch: Request[] = [];
      while (batch.length < options.batch) batch.push(await readRequest(read));
      // Answered last first: spoil the reply that goes out first, so every request is still waiting.
      if (options.corruptCookie === true) batch[batch.length - 1]!.cookie = Buffer.from('\xff\xff\xff\xff\xff\xff\xff\xff', 'latin1');
      await dribble(connection, Buffer.concat(batch.reverse().map((request) => reply(request, options))));
    }
  } catch {
    connection.destroy();
  }
}

async function handshake(connection: net.Socket, read: (n: number) => Promise<Buffer>, options: FakeServerOptions): Promise<void> {
  connection.write(Buffer.concat([Buffer.from('NBDMAGICIHAVEOPT', 'latin1'), u16(3)]));
  await read(4);
  for (;;) {
    const header = await read(16);
    const option = header.readUInt32BE(8);
    await read(header.readUInt32BE(12));
    if (option === 8) connection.write(optionReply(option, options.structured ? 1 : 0x80000001, Buffer.alloc(0)));
    else if (option === 10) {
      connection.write(optionReply(option, 4, Buffer.concat([u32(7), Buffer.from('base:allocation')])));
      connection.write(optionReply(option, 1, Buffer.alloc(0)));
    } else if (option === 7) {
      const info = Buffer.concat([u16(0), u64(options.size), u16(1 | 4)]);
      connection.write(optionReply(option, 3, info));
      connection.write(optionReply(option, 1, Buffer.alloc(0)));
      return;
    } else connection.write(optionReply(option, 0x80000001, Buffer.alloc(0)));
  }
}

async function readRequest(read: (n: number) => Promise<Buffer>): Promise<Request> {
  const header = await read(28);
  const request = {
    type: header.readUInt16BE(6),
    cookie: Buffer.from(header.subarray(8, 16)),
    offset: Number(header.readBigUInt64BE(16)),
    length: header.readUInt32BE(24),
  };
  if (request.type === 1) await read(request.length);
  return request;
}

function content(offset: number, length: number): Buffer {
  const data = Buffer.alloc(length);
  for (let i = 0; i < length; i++) data[i] = fakeByte(offset + i);
  return data;
}

/** Reads come back in two data chunks, second half first, then a NONE chunk that ends the reply. */
function reply(request: Request, options: FakeServerOptions): Buffer {
  if (!options.structured || request.type !== 0) {
    const header = Buffer.concat([u32(0x67446698), u32(0), request.cookie]);
    return request.type === 0 ? Buffer.concat([header, content(request.offset, request.length)]) : header;
  }
  const half = Math.floor(request.length / 2);
  const second = dataChunk(request, request.offset + half, request.length - half);
  const first = dataChunk(request, request.offset, half);
  const done = Buffer.concat([u32(0x668e33ef), u16(1), u16(0), request.cookie, u32(0)]);
  return Buffer.concat([second, first, done]);
}

function dataChunk(request: Request, offset: number, length: number): Buffer {
  return Buffer.concat([u32(0x668e33ef), u16(0), u16(1), request.cookie, u32(length + 8), u64(offset), content(offset, length)]);
}

/** Writes in pieces of 1 to 13 bytes with a turn of the event loop between, so the client sees split headers. */
async function dribble(connection: net.Socket, data: Buffer): Promise<void> {
  let position = 0;
  for (let piece = 1; position < data.length; piece = (piece % 13) + 1) {
    connection.write(data.subarray(position, position + piece));
    position += piece;
    await new Promise((resolve) => setImmediate(resolve));
  }
}

function optionReply(option: number, type: number, data: Buffer): Buffer {
  return Buffer.concat([Buffer.from('0003e889045565a9', 'hex'), u32(option), u32(type), u32(data.length), data]);
}

function u16(value: number): Buffer {
  const buffer = Buffer.alloc(2);
  buffer.writeUInt16BE(value);
  return buffer;
}

function u32(value: number): Buffer {
  const buffer = Buffer.alloc(4);
  buffer.writeUInt32BE(value);
  return buffer;
}

function u64(value: number): Buffer {
  const buffer = Buffer.alloc(8);
  buffer.writeBigUInt64BE(BigInt(value));
  return buffer;
}
