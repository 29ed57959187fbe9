import { BASE_ALLOCATION, Info, Limits, OPTION_REPLY_MAGIC, Rep } from './constants.js';

/** Encoders and decoders for option haggling. Pure functions over buffers; the connection owns the socket. */

export function optionReply(option: number, replyType: number, payload?: Buffer): Buffer {
  const length = payload?.length ?? 0;
  const reply = Buffer.allocUnsafe(20 + length);
  reply.writeBigUInt64BE(OPTION_REPLY_MAGIC, 0);
  reply.writeUInt32BE(option, 8);
  reply.writeUInt32BE(replyType, 12);
  reply.writeUInt32BE(length, 16);
  if (payload) payload.copy(reply, 20);
  return reply;
}

export function errorReply(option: number, replyType: number, message: string): Buffer {
  return optionReply(option, replyType, Buffer.from(message, 'utf8'));
}

export function serverReply(option: number, name: string): Buffer {
  const nameBytes = Buffer.from(name, 'utf8');
  const payload = Buffer.allocUnsafe(4 + nameBytes.length);
  payload.writeUInt32BE(nameBytes.length, 0);
  nameBytes.copy(payload, 4);
  return optionReply(option, Rep.SERVER, payload);
}

export function infoExport(option: number, size: number, transmissionFlags: number): Buffer {
  const payload = Buffer.allocUnsafe(12);
  payload.writeUInt16BE(Info.EXPORT, 0);
  payload.writeBigUInt64BE(BigInt(size), 2);
  payload.writeUInt16BE(transmissionFlags, 10);
  return optionReply(option, Rep.INFO, payload);
}

export function infoString(option: number, infoType: number, text: string): Buffer {
  const bytes = Buffer.from(text, 'utf8');
  const payload = Buffer.allocUnsafe(2 + bytes.length);
  payload.writeUInt16BE(infoType, 0);
  bytes.copy(payload, 2);
  return optionReply(option, Rep.INFO, payload);
}

export function infoBlockSize(option: number, minimum: number, preferred: number, maximum: number): Buffer {
  const payload = Buffer.allocUnsafe(14);
  payload.writeUInt16BE(Info.BLOCK_SIZE, 0);
  payload.writeUInt32BE(minimum, 2);
  payload.writeUInt32BE(preferred, 6);
  payload.writeUInt32BE(maximum, 10);
  return optionReply(option, Rep.INFO, payload);
}

export function metaContextReply(option: number, contextId: number, name: string): Buffer {
  const bytes = Buffer.from(name, 'utf8');
  const payload = Buffer.allocUnsafe(4 + bytes.length);
  payload.writeUInt32BE(contextId, 0);
  bytes.copy(payload, 4);
  return optionReply(option, Rep.META_CONTEXT, payload);
}

/** Export name plus the list of requested info items (NBD_OPT_INFO / NBD_OPT_GO). */
export interface InfoRequest {
  exportName: string;
  infos: number[];
}

/** Export name plus meta context queries (NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT). */
export interface MetaContextRequest {
  exportName: string;
  queries: string[];
}

/** A decoding failure: the message goes back to the client in ERR_INVALID. */
export class OptionFormatError extends Error {}

function readString(data: Buffer, at: number, what: string): [string, number] {
  if (at + 4 > data.length) throw new OptionFormatError(`${what}: length field truncated`);
  const length = data.readUInt32BE(at);
  if (length > Limits.stringBytesMax) throw new OptionFormatError(`${what}: ${length} bytes is longer than ${Limits.stringBytesMax}`);
  if (at + 4 + length > data.length) throw new OptionFormatError(`${what}: ${length} bytes declared, fewer sent`);
  return [data.toString('utf8', at + 4, at + 4 + length), at + 4 + length];
}

export function parseInfoRequest(data: Buffer): InfoRequest {
  const [exportName, afterName] = readString(data, 0, 'export name');
  if (afterName + 2 > data.length) throw new OptionFormatError('info request count truncated');
  const count = data.readUInt16BE(afterName);
  if (afterName + 2 + count * 2 !== data.length) throw new OptionFormatError(`option length does not match ${count} info requests`);
  const infos: number[] = [];
  for (let i = 0; i < count; i++) infos.push(data.readUInt16BE(afterName + 2 + i * 2));
  return { exportName, infos };
}

export function parseMetaContextRequest(data: Buffer): MetaContextRequest {
  const [exportName, afterName] = readString(data, 0, 'export name');
  if (afterName + 4 > data.length) throw new OptionFormatError('query count truncated');
  const count = data.readUInt32BE(afterName);
  // Each query takes at least its 4-byte length: a count the payload cannot hold is a lie, not a reason to loop.
  if (count > (data.length - afterName - 4) / 4) throw new OptionFormatError(`${count} queries cannot fit in the option`);
  const queries: string[] = [];
  let at = afterName + 4;
  for (let i = 0; i < count; i++) {
    const [query, next] = readString(data, at, 'meta context query');
    queries.push(query);
    at = next;
  }
  if (at !== data.length) throw new OptionFormatError('trailing bytes after meta context queries');
  return { exportName, queries };
}

/** Which of our contexts a query names. We serve exactly one: base:allocation. */
export function matchesBaseAllocation(query: string, listing: boolean): boolean {
  if (query === BASE_ALLOCATION) return true;
  // In LIST, a namespace-only query asks for every context in it.
  return listing && query === 'base:';
}
