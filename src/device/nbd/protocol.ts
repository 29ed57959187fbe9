import type { BlockErrno } from '../../volume/types.js';
import { IHAVEOPT, OPTION_REPLY_MAGIC, REP_FLAG_ERROR } from '../../nbd/constants.js';

/**
 * The client side of the NBD protocol: the numbers are the server's (src/nbd/constants.ts, one source), plus the
 * framing helpers only a client needs. The magics are split into u32 halves because the client reads them so.
 */
export {
  Opt, Rep, Info, TxFlag, Cmd, CmdFlag, ReplyType, REPLY_FLAG_DONE, REPLY_TYPE_ERROR_BIT, REP_FLAG_ERROR,
  FLAG_FIXED_NEWSTYLE, FLAG_NO_ZEROES, FLAG_C_FIXED_NEWSTYLE, FLAG_C_NO_ZEROES,
  REQUEST_MAGIC, SIMPLE_REPLY_MAGIC, STRUCTURED_REPLY_MAGIC, BASE_ALLOCATION,
} from '../../nbd/constants.js';
export const NBDMAGIC = Buffer.from('NBDMAGIC', 'latin1');
export const IHAVEOPT_HI = Number(IHAVEOPT >> 32n);
export const IHAVEOPT_LO = Number(IHAVEOPT & 0xffffffffn);
export const OLDSTYLE_MAGIC_HI = 0x00004202;
export const OPTION_REPLY_MAGIC_HI = Number(OPTION_REPLY_MAGIC >> 32n);
export const OPTION_REPLY_MAGIC_LO = Number(OPTION_REPLY_MAGIC & 0xffffffffn);

const OPTION_ERROR_NAMES = [
  'UNKNOWN_ERROR', 'UNSUP', 'POLICY', 'INVALID', 'PLATFORM', 'TLS_REQD', 'UNKNOWN', 'SHUTDOWN', 'BLOCK_SIZE_REQD',
  'TOO_BIG', 'EXT_HEADER_REQD',
];

export const REQUEST_HEADER_BYTES = 28;
export const SIMPLE_REPLY_BYTES = 16;
export const STRUCTURED_REPLY_BYTES = 20;

/** NBD's wire errnos; anything else a server sends is treated as EIO. */
const WIRE_ERRNOS: ReadonlyMap<number, BlockErrno> = new Map([
  [1, 'EPERM'], [5, 'EIO'], [12, 'ENOMEM'], [22, 'EINVAL'], [28, 'ENOSPC'], [75, 'EOVERFLOW'], [95, 'ENOTSUP'],
  [108, 'ESHUTDOWN'],
]);

export function errnoFromWire(error: number): BlockErrno {
  return WIRE_ERRNOS.get(error) ?? 'EIO';
}

export function optionErrorName(replyType: number): string {
  return OPTION_ERROR_NAMES[replyType - REP_FLAG_ERROR] ?? `error ${replyType - REP_FLAG_ERROR}`;
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
