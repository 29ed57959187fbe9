import type { BlockErrno } from '../../volume/types.js';

/** Constants of the NBD protocol (NetworkBlockDevice/nbd doc/proto.md), client side. */
export const NBDMAGIC = Buffer.from('NBDMAGIC', 'latin1');
export const IHAVEOPT_HI = 0x49484156;
export const IHAVEOPT_LO = 0x454f5054;
export const OLDSTYLE_MAGIC_HI = 0x00004202;
export const OPTION_REPLY_MAGIC_HI = 0x0003e889;
export const OPTION_REPLY_MAGIC_LO = 0x045565a9;

export const NBD_FLAG_FIXED_NEWSTYLE = 1 << 0;
export const NBD_FLAG_NO_ZEROES = 1 << 1;
export const NBD_FLAG_C_FIXED_NEWSTYLE = 1 << 0;
export const NBD_FLAG_C_NO_ZEROES = 1 << 1;

export const NBD_OPT_EXPORT_NAME = 1;
export const NBD_OPT_GO = 7;
export const NBD_OPT_STRUCTURED_REPLY = 8;
export const NBD_OPT_SET_META_CONTEXT = 10;

export const NBD_REP_ACK = 1;
export const NBD_REP_INFO = 3;
export const NBD_REP_META_CONTEXT = 4;
export const NBD_REP_FLAG_ERROR = 0x80000000;
export const NBD_REP_ERR_UNSUP = NBD_REP_FLAG_ERROR + 1;
export const NBD_REP_ERR_TLS_REQD = NBD_REP_FLAG_ERROR + 5;
const OPTION_ERROR_NAMES = [
  'UNKNOWN_ERROR', 'UNSUP', 'POLICY', 'INVALID', 'PLATFORM', 'TLS_REQD', 'UNKNOWN', 'SHUTDOWN', 'BLOCK_SIZE_REQD',
  'TOO_BIG', 'EXT_HEADER_REQD',
];

export const NBD_INFO_EXPORT = 0;
export const NBD_INFO_BLOCK_SIZE = 3;

export const NBD_FLAG_HAS_FLAGS = 1 << 0;
export const NBD_FLAG_READ_ONLY = 1 << 1;
export const NBD_FLAG_SEND_FLUSH = 1 << 2;
export const NBD_FLAG_SEND_FUA = 1 << 3;
export const NBD_FLAG_SEND_TRIM = 1 << 5;
export const NBD_FLAG_SEND_WRITE_ZEROES = 1 << 6;
export const NBD_FLAG_SEND_CACHE = 1 << 10;
export const NBD_FLAG_SEND_FAST_ZERO = 1 << 11;

export const NBD_REQUEST_MAGIC = 0x25609513;
export const NBD_SIMPLE_REPLY_MAGIC = 0x67446698;
export const NBD_STRUCTURED_REPLY_MAGIC = 0x668e33ef;
export const REQUEST_HEADER_BYTES = 28;
export const SIMPLE_REPLY_BYTES = 16;
export const STRUCTURED_REPLY_BYTES = 20;

export const NBD_CMD_READ = 0;
export const NBD_CMD_WRITE = 1;
export const NBD_CMD_DISC = 2;
export const NBD_CMD_FLUSH = 3;
export const NBD_CMD_TRIM = 4;
export const NBD_CMD_CACHE = 5;
export const NBD_CMD_WRITE_ZEROES = 6;
export const NBD_CMD_BLOCK_STATUS = 7;

export const NBD_CMD_FLAG_FUA = 1 << 0;
export const NBD_CMD_FLAG_NO_HOLE = 1 << 1;
export const NBD_CMD_FLAG_FAST_ZERO = 1 << 4;

export const NBD_REPLY_FLAG_DONE = 1 << 0;
export const NBD_REPLY_TYPE_NONE = 0;
export const NBD_REPLY_TYPE_OFFSET_DATA = 1;
export const NBD_REPLY_TYPE_OFFSET_HOLE = 2;
export const NBD_REPLY_TYPE_BLOCK_STATUS = 5;
export const NBD_REPLY_TYPE_ERROR_BIT = 1 << 15;
export const NBD_REPLY_TYPE_ERROR_OFFSET = NBD_REPLY_TYPE_ERROR_BIT + 2;

export const BASE_ALLOCATION = 'base:allocation';

/** NBD's wire errnos; anything else a server sends is treated as EIO. */
const WIRE_ERRNOS: ReadonlyMap<number, BlockErrno> = new Map([
  [1, 'EPERM'], [5, 'EIO'], [12, 'ENOMEM'], [22, 'EINVAL'], [28, 'ENOSPC'], [75, 'EOVERFLOW'], [95, 'ENOTSUP'],
  [108, 'ESHUTDOWN'],
]);

export function errnoFromWire(error: number): BlockErrno {
  return WIRE_ERRNOS.get(error) ?? 'EIO';
}

export function optionErrorName(replyType: number): string {
  return OPTION_ERROR_NAMES[replyType - NBD_REP_FLAG_ERROR] ?? `error ${replyType - NBD_REP_FLAG_ERROR}`;
}

/** A u64 on the wire as a JS number; null when it exceeds 2^53 - 1. */
export function readU64(buffer: Buffer, at: number): number | null {
  const high = buffer.readUInt32BE(at);
  if (high >= 0x200000) return null;
  return high * 0x100000000 + buffer.readUInt32BE(at + 4);
}

export function writeU64(buffer: Buffer, value: number, at: number): void {
  buffer.writeUInt32BE(Math.floor(value / 0x100000000), at);
  buffer.writeUInt32BE(value >>> 0, at + 4);
}
