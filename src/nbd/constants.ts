/** NBD protocol numbers (NetworkBlockDevice/nbd doc/proto.md). Grouped as on the wire; no behaviour here. */

export const NBDMAGIC = 0x4e42444d41474943n;
export const IHAVEOPT = 0x49484156454f5054n;
export const OPTION_REPLY_MAGIC = 0x3e889045565a9n;
export const REQUEST_MAGIC = 0x25609513;
export const SIMPLE_REPLY_MAGIC = 0x67446698;
export const STRUCTURED_REPLY_MAGIC = 0x668e33ef;

// handshake flags (server → client) and client flags
export const FLAG_FIXED_NEWSTYLE = 1 << 0;
export const FLAG_NO_ZEROES = 1 << 1;
export const FLAG_C_FIXED_NEWSTYLE = 1 << 0;
export const FLAG_C_NO_ZEROES = 1 << 1;

export const Opt = {
  EXPORT_NAME: 1,
  ABORT: 2,
  LIST: 3,
  PEEK_EXPORT: 4,
  STARTTLS: 5,
  INFO: 6,
  GO: 7,
  STRUCTURED_REPLY: 8,
  LIST_META_CONTEXT: 9,
  SET_META_CONTEXT: 10,
  EXTENDED_HEADERS: 11,
} as const;

/** Set in every option error reply type. */
export const REP_FLAG_ERROR = 0x80000000;
const REP_ERR = REP_FLAG_ERROR;
export const Rep = {
  ACK: 1,
  SERVER: 2,
  INFO: 3,
  META_CONTEXT: 4,
  ERR_UNSUP: REP_ERR + 1,
  ERR_POLICY: REP_ERR + 2,
  ERR_INVALID: REP_ERR + 3,
  ERR_PLATFORM: REP_ERR + 4,
  ERR_TLS_REQD: REP_ERR + 5,
  ERR_UNKNOWN: REP_ERR + 6,
  ERR_SHUTDOWN: REP_ERR + 7,
  ERR_BLOCK_SIZE_REQD: REP_ERR + 8,
  ERR_TOO_BIG: REP_ERR + 9,
} as const;

export const Info = {
  EXPORT: 0,
  NAME: 1,
  DESCRIPTION: 2,
  BLOCK_SIZE: 3,
} as const;

export const TxFlag = {
  HAS_FLAGS: 1 << 0,
  READ_ONLY: 1 << 1,
  SEND_FLUSH: 1 << 2,
  SEND_FUA: 1 << 3,
  ROTATIONAL: 1 << 4,
  SEND_TRIM: 1 << 5,
  SEND_WRITE_ZEROES: 1 << 6,
  SEND_DF: 1 << 7,
  CAN_MULTI_CONN: 1 << 8,
  SEND_RESIZE: 1 << 9,
  SEND_CACHE: 1 << 10,
  SEND_FAST_ZERO: 1 << 11,
} as const;

export const Cmd = {
  READ: 0,
  WRITE: 1,
  DISC: 2,
  FLUSH: 3,
  TRIM: 4,
  CACHE: 5,
  WRITE_ZEROES: 6,
  BLOCK_STATUS: 7,
} as const;

export const CmdFlag = {
  FUA: 1 << 0,
  NO_HOLE: 1 << 1,
  DF: 1 << 2,
  REQ_ONE: 1 << 3,
  FAST_ZERO: 1 << 4,
} as const;

export const ReplyType = {
  NONE: 0,
  OFFSET_DATA: 1,
  OFFSET_HOLE: 2,
  BLOCK_STATUS: 5,
  ERROR: (1 << 15) + 1,
  ERROR_OFFSET: (1 << 15) + 2,
} as const;
export const REPLY_FLAG_DONE = 1 << 0;
/** Set in every error reply chunk type. */
export const REPLY_TYPE_ERROR_BIT = 1 << 15;

export const Errno = {
  EPERM: 1,
  EIO: 5,
  ENOMEM: 12,
  EINVAL: 22,
  ENOSPC: 28,
  EOVERFLOW: 75,
  ENOTSUP: 95,
  ESHUTDOWN: 108,
} as const;
export type NbdErrno = (typeof Errno)[keyof typeof Errno];

export const BASE_ALLOCATION = 'base:allocation';
/** Context id we hand out for base:allocation (any non-zero-meaning u32 works; clients echo nothing back). */
export const BASE_ALLOCATION_ID = 1;

/** Limits that bound what a client can make us hold. */
export const Limits = {
  /** Longest option payload we accept into memory; longer ones are discarded unread (ERR_TOO_BIG). */
  optionBytesMax: 64 * 1024,
  /** Past this we do not even discard: the client is not speaking NBD in good faith; close. */
  optionDiscardBytesMax: 16 * 1024 * 1024,
  /** NBD_MAX_STRING: longest export name or meta context query. */
  stringBytesMax: 4096,
  /** Options per handshake before we give up on a client that never ends it. */
  optionsPerHandshakeMax: 1024,
  /** Largest READ/WRITE payload; advertised as the maximum block size. */
  payloadBytesMax: 32 * 1024 * 1024,
  /** Requests in flight per connection; reading from the socket pauses when the table is full. */
  inflightRequestsMax: 64,
  /** Payload bytes held per connection (writes waiting + reads being answered) before reading pauses. */
  inflightBytesMax: 128 * 1024 * 1024,
  /** Block status descriptors per reply. */
  extentsPerReplyMax: 1024,
} as const;
