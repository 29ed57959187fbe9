/**
 * The one libc call this folder needs, ioctl(2), bound through koffi once per process. The argument is a Buffer the
 * kernel reads and writes in place (koffi passes its memory, not a copy). `null` when koffi or glibc is missing:
 * callers fall back to command-line tools instead of failing.
 */
import koffi from 'koffi';

export interface IoctlResult {
  /** 0 on success. */
  rc: number;
  /** errno when rc is -1, else 0. */
  errno: number;
}

type IoctlFn = (fd: number, request: number, argument: Buffer) => number;

let bound: IoctlFn | null | undefined;

function binding(): IoctlFn | null {
  if (bound !== undefined) return bound;
  try {
    const lib = koffi.load('libc.so.6');
    // ioctl is variadic in C; on x86-64 and aarch64 a fixed pointer third argument is passed the same way.
    bound = lib.func('int ioctl(int fd, unsigned long request, void *argument)') as IoctlFn;
  } catch {
    bound = null;
  }
  return bound;
}

export function ioctlAvailable(): boolean {
  return binding() !== null;
}

/** ioctl(fd, request, buffer); null when there is no libc binding. */
export function ioctl(fd: number, request: number, argument: Buffer): IoctlResult | null {
  const call = binding();
  if (call === null) return null;
  const rc = call(fd, request, argument);
  return { rc, errno: rc === -1 ? koffi.errno() : 0 };
}

/** Linux errno numbers seen by this folder. */
export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  EBADF: 9,
  EFAULT: 14,
  ENOTDIR: 20,
  EINVAL: 22,
  ENOTTY: 25,
  EOPNOTSUPP: 95,
  EBADR: 53,
} as const;

export function errnoName(errno: number): string {
  for (const [name, value] of Object.entries(Errno)) if (value === errno) return name;
  return `errno ${errno}`;
}

/** A u64 field as a JS number; the offsets this folder reads are byte offsets on real devices, far below 2^53. */
export function readSafeU64(buffer: Buffer, offset: number, what: string): number {
  const value = buffer.readBigUInt64LE(offset);
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new RangeError(`${what} ${value} is beyond 2^53`);
  return Number(value);
}
