import { BlockError, type BlockErrno } from '../volume/types.js';

/**
 * Linux errno names (as Node reports them in `err.code`) to the errnos a layer may report. Quota and file-size
 * limits are "no space" to a block client (NBD says so); permission problems are EPERM.
 */
const CODE_TO_ERRNO: Readonly<Record<string, BlockErrno>> = {
  ENOSPC: 'ENOSPC',
  EDQUOT: 'ENOSPC',
  EFBIG: 'ENOSPC',
  EROFS: 'EPERM',
  EACCES: 'EPERM',
  EPERM: 'EPERM',
  EINVAL: 'EINVAL',
  ENOMEM: 'ENOMEM',
  EOVERFLOW: 'EOVERFLOW',
  EOPNOTSUPP: 'ENOTSUP',
  ENOTSUP: 'ENOTSUP',
  ENOSYS: 'ENOTSUP',
  ESHUTDOWN: 'ESHUTDOWN',
};

/** Linux errno numbers for the codes above; koffi hands us numbers. */
const NUMBER_TO_CODE: ReadonlyMap<number, string> = new Map([
  [1, 'EPERM'], [5, 'EIO'], [12, 'ENOMEM'], [13, 'EACCES'], [22, 'EINVAL'], [27, 'EFBIG'], [28, 'ENOSPC'],
  [30, 'EROFS'], [38, 'ENOSYS'], [75, 'EOVERFLOW'], [95, 'EOPNOTSUPP'], [108, 'ESHUTDOWN'], [122, 'EDQUOT'],
]);

export function errnoFromCode(code: string | undefined): BlockErrno {
  return (code !== undefined && CODE_TO_ERRNO[code]) || 'EIO';
}

export function codeFromNumber(errno: number): string {
  return NUMBER_TO_CODE.get(errno) ?? `errno ${errno}`;
}

/** Wraps an fs/syscall failure as a BlockError; a BlockError passes through unchanged. */
export function toBlockError(error: unknown, what: string): BlockError {
  if (error instanceof BlockError) return error;
  const code = (error as NodeJS.ErrnoException | null)?.code;
  const detail = error instanceof Error ? error.message : String(error);
  return new BlockError(errnoFromCode(code), `${what}: ${detail}`, { cause: error });
}
