import assert from 'node:assert/strict';
import { BlockError, type BlockSizeLimits } from '../../volume/types.js';
import type { ByteQueue } from './byte-queue.js';
import * as P from './protocol.js';

/** How the handshake reads and writes; the client backs it with its socket. */
export interface HandshakeIo {
  queue: ByteQueue;
  /** Resolves once the queue holds at least n bytes; rejects if the connection ends first. */
  need(n: number): Promise<void>;
  send(data: Buffer): void;
}

export interface NegotiatedExport {
  size: number;
  transmissionFlags: number;
  structuredReplies: boolean;
  /** Context id for base:allocation, or null if the server does not offer block status. */
  baseAllocationId: number | null;
  /** The server's block size constraints, if it stated them. */
  blockSize: BlockSizeLimits | null;
}

/** Option replies are small (info, a context name, an error message); anything bigger is a broken server. */
const OPTION_REPLY_MAX = 64 * 1024;
const EXPORT_NAME_PADDING = 124;

interface OptionReply {
  type: number;
  data: Buffer;
}

function handshakeError(message: string): BlockError {
  return new BlockError('EIO', `NBD handshake: ${message}`);
}

/** Fixed newstyle negotiation: structured replies and base:allocation when offered, then NBD_OPT_GO. */
export async function negotiate(io: HandshakeIo, exportName: string): Promise<NegotiatedExport> {
  const serverFlags = await readGreeting(io);
  const noZeroes = (serverFlags & P.FLAG_NO_ZEROES) !== 0;
  io.send(u32(P.FLAG_C_FIXED_NEWSTYLE | (noZeroes ? P.FLAG_C_NO_ZEROES : 0)));
  const structuredReplies = await requestStructuredReplies(io);
  const baseAllocationId = structuredReplies ? await requestBaseAllocation(io, exportName) : null;
  const details = (await go(io, exportName)) ?? (await exportNameFallback(io, exportName, noZeroes));
  return { ...details, structuredReplies, baseAllocationId };
}

async function readGreeting(io: HandshakeIo): Promise<number> {
  await io.need(18);
  const greeting = io.queue.take(18, Buffer.allocUnsafe(18));
  const at = io.queue.takenOffset;
  if (!greeting.subarray(at, at + 8).equals(P.NBDMAGIC)) throw handshakeError('not an NBD server');
  const magicHigh = greeting.readUInt32BE(at + 8);
  if (magicHigh === P.OLDSTYLE_MAGIC_HI) throw handshakeError('oldstyle servers are not supported');
  if (magicHigh !== P.IHAVEOPT_HI || greeting.readUInt32BE(at + 12) !== P.IHAVEOPT_LO) {
    throw handshakeError('unknown handshake magic');
  }
  const flags = greeting.readUInt16BE(at + 16);
  if ((flags & P.FLAG_FIXED_NEWSTYLE) === 0) throw handshakeError('server lacks fixed newstyle negotiation');
  return flags;
}

async function requestStructuredReplies(io: HandshakeIo): Promise<boolean> {
  sendOption(io, P.Opt.STRUCTURED_REPLY, Buffer.alloc(0));
  const reply = await readOptionReply(io, P.Opt.STRUCTURED_REPLY);
  return reply.type === P.Rep.ACK;
}

async function requestBaseAllocation(io: HandshakeIo, exportName: string): Promise<number | null> {
  const name = Buffer.from(exportName, 'utf8');
  const query = Buffer.from(P.BASE_ALLOCATION, 'utf8');
  sendOption(io, P.Opt.SET_META_CONTEXT, Buffer.concat([u32(name.length), name, u32(1), u32(query.length), query]));
  let contextId: number | null = null;
  for (;;) {
    const reply = await readOptionReply(io, P.Opt.SET_META_CONTEXT);
    if (reply.type !== P.Rep.META_CONTEXT) return reply.type === P.Rep.ACK ? contextId : null;
    if (reply.data.length >= 4 && reply.data.toString('utf8', 4) === P.BASE_ALLOCATION) {
      contextId = reply.data.readUInt32BE(0);
    }
  }
}

type ExportDetails = Pick<NegotiatedExport, 'size' | 'transmissionFlags' | 'blockSize'>;

/** Null when the server does not know NBD_OPT_GO (then the old NBD_OPT_EXPORT_NAME is used). */
async function go(io: HandshakeIo, exportName: string): Promise<ExportDetails | null> {
  const name = Buffer.from(exportName, 'utf8');
  const infoRequest = Buffer.alloc(4);
  infoRequest.writeUInt16BE(1, 0);
  infoRequest.writeUInt16BE(P.Info.BLOCK_SIZE, 2);
  sendOption(io, P.Opt.GO, Buffer.concat([u32(name.length), name, infoRequest]));
  const details: ExportDetails = { size: -1, transmissionFlags: 0, blockSize: null };
  for (;;) {
    const reply = await readOptionReply(io, P.Opt.GO);
    if (reply.type === P.Rep.ERR_UNSUP) return null;
    if (reply.type >= P.REP_FLAG_ERROR) throw optionError(reply, exportName);
    if (reply.type === P.Rep.ACK) break;
    if (reply.type === P.Rep.INFO) readInfo(reply.data, details);
  }
  if (details.size < 0) throw handshakeError('server finished NBD_OPT_GO without export information');
  return details;
}

function readInfo(data: Buffer, details: ExportDetails): void {
  if (data.length < 2) throw handshakeError('short NBD_REP_INFO');
  const infoType = data.readUInt16BE(0);
  if (infoType === P.Info.EXPORT && data.length >= 12) {
    details.size = exportSize(data, 2);
    details.transmissionFlags = data.readUInt16BE(10);
  } else if (infoType === P.Info.BLOCK_SIZE && data.length >= 14) {
    const [minimum, preferred, maximum] = [data.readUInt32BE(2), data.readUInt32BE(6), data.readUInt32BE(10)];
    details.blockSize = { minimum, preferred, maximum };
  }
}

/** The pre-GO way in: no reply header; an unknown export makes the server hang up. */
async function exportNameFallback(io: HandshakeIo, exportName: string, noZeroes: boolean): Promise<ExportDetails> {
  sendOption(io, P.Opt.EXPORT_NAME, Buffer.from(exportName, 'utf8'));
  const length = 10 + (noZeroes ? 0 : EXPORT_NAME_PADDING);
  await io.need(length);
  const data = io.queue.take(length, Buffer.allocUnsafe(length));
  const at = io.queue.takenOffset;
  return { size: exportSize(data, at), transmissionFlags: data.readUInt16BE(at + 8), blockSize: null };
}

function exportSize(data: Buffer, at: number): number {
  const size = P.readU64(data, at);
  if (size === null) throw handshakeError('export larger than 2^53 bytes');
  return size;
}

function sendOption(io: HandshakeIo, option: number, data: Buffer): void {
  const header = Buffer.alloc(16);
  header.writeUInt32BE(P.IHAVEOPT_HI, 0);
  header.writeUInt32BE(P.IHAVEOPT_LO, 4);
  header.writeUInt32BE(option, 8);
  header.writeUInt32BE(data.length, 12);
  io.send(data.length === 0 ? header : Buffer.concat([header, data]));
}

async function readOptionReply(io: HandshakeIo, option: number): Promise<OptionReply> {
  await io.need(20);
  const header = io.queue.take(20, Buffer.allocUnsafe(20));
  const at = io.queue.takenOffset;
  if (header.readUInt32BE(at) !== P.OPTION_REPLY_MAGIC_HI || header.readUInt32BE(at + 4) !== P.OPTION_REPLY_MAGIC_LO) {
    throw handshakeError('bad option reply magic');
  }
  const repliedTo = header.readUInt32BE(at + 8);
  if (repliedTo !== option) throw handshakeError(`reply to option ${repliedTo}, not ${option}`);
  const type = header.readUInt32BE(at + 12);
  const length = header.readUInt32BE(at + 16);
  if (length > OPTION_REPLY_MAX) throw handshakeError(`option reply of ${length} bytes`);
  await io.need(length);
  const data = Buffer.allocUnsafe(length);
  io.queue.copyTo(data, 0, length);
  return { type, data };
}

function optionError(reply: OptionReply, exportName: string): BlockError {
  const name = P.optionErrorName(reply.type);
  const message = reply.data.toString('utf8');
  if (reply.type === P.Rep.ERR_TLS_REQD) return handshakeError('server requires TLS, which this client lacks');
  return handshakeError(`export "${exportName}" refused: NBD_REP_ERR_${name}${message ? ` (${message})` : ''}`);
}

function u32(value: number): Buffer {
  assert.ok(Number.isInteger(value) && value >= 0 && value <= 0xffffffff);
  const buffer = Buffer.alloc(4);
  buffer.writeUInt32BE(value, 0);
  return buffer;
}
