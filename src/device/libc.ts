import koffi from 'koffi';
import { BlockError } from '../volume/types.js';
import { codeFromNumber, errnoFromCode } from './errors.js';

/** The few libc calls Node's fs lacks: hole punching, hole finding and readahead advice. */
export interface Libc {
  fallocate(fd: number, mode: number, offset: number, length: number): number;
  lseek(fd: number, offset: number, whence: number): number;
  posix_fadvise(fd: number, offset: number, length: number, advice: number): number;
}

export const FALLOC_FL_KEEP_SIZE = 0x01;
export const FALLOC_FL_PUNCH_HOLE = 0x02;
export const FALLOC_FL_ZERO_RANGE = 0x10;
export const SEEK_END = 2;
export const SEEK_DATA = 3;
export const SEEK_HOLE = 4;
export const POSIX_FADV_WILLNEED = 3;
export const ENXIO = 6;

let loaded: Libc | null | undefined;

/** Binds libc once per process; null when koffi or glibc is unavailable (callers then degrade, not fail). */
export function libc(): Libc | null {
  if (loaded !== undefined) return loaded;
  try {
    const lib = koffi.load('libc.so.6');
    loaded = {
      fallocate: lib.func('int fallocate(int fd, int mode, int64_t offset, int64_t len)'),
      lseek: lib.func('int64_t lseek(int fd, int64_t offset, int whence)'),
      // Returns the error number itself rather than setting errno.
      posix_fadvise: lib.func('int posix_fadvise(int fd, int64_t offset, int64_t len, int advice)'),
    };
  } catch {
    loaded = null;
  }
  return loaded;
}

export function lastErrno(): number {
  return koffi.errno();
}

/** A BlockError for the errno the last libc call left behind. */
export function libcError(call: string, errno: number): BlockError {
  const code = codeFromNumber(errno);
  return new BlockError(errnoFromCode(code), `${call} failed: ${code}`);
}
