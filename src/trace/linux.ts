/**
 * Linux x86_64 ABI numbers: the backends use them to decide what to follow (the eBPF program is generated with
 * them), and the insight engine to interpret the raw syscall arguments the events carry. Backends pass flags
 * through as the kernel saw them, so these must be the kernel's values, not libc's.
 */

export const O_ACCMODE = 0o3;
export const O_WRONLY = 0o1;
export const O_RDWR = 0o2;
export const O_CREAT = 0o100;
export const O_EXCL = 0o200;
export const O_TRUNC = 0o1000;
export const O_APPEND = 0o2000;
export const O_DIRECTORY = 0o200000;
export const O_CLOEXEC = 0o2000000;
export const O_PATH = 0o10000000;
/** O_TMPFILE includes O_DIRECTORY in its value; test for the whole value. */
export const O_TMPFILE = 0o20000000 | O_DIRECTORY;
/** The flags creat(2) opens with. */
export const CREAT_FLAGS = O_CREAT | O_WRONLY | O_TRUNC;

/** pwritev2 flags: append whatever the offset; or not, even on an O_APPEND fd. */
export const RWF_APPEND = 0x10;
export const RWF_NOAPPEND = 0x20;

export const CLONE_THREAD = 0x10000;

/** File type bits of i_mode / st_mode. */
export const S_IFMT = 0o170000;
export const S_IFREG = 0o100000;
export const S_IFDIR = 0o40000;
export const S_IFBLK = 0o60000;

export const FICLONE = 0x40049409;
export const FICLONERANGE = 0x4020940d;

export const F_DUPFD = 0;
export const F_SETFD = 2;
export const F_SETFL = 4;
export const F_DUPFD_CLOEXEC = 1030;
export const F_SET_RW_HINT = 1036;
export const F_SET_FILE_RW_HINT = 1038;
export const FD_CLOEXEC = 1;

export const SEEK_SET = 0;
export const SEEK_END = 2;

export const CLOSE_RANGE_UNSHARE = 2;
export const CLOSE_RANGE_CLOEXEC = 4;

export const AT_FDCWD = -100;
export const AT_REMOVEDIR = 0x200;
export const AT_SYMLINK_FOLLOW = 0x400;
export const AT_EMPTY_PATH = 0x1000;

export const RENAME_NOREPLACE = 1;
export const RENAME_EXCHANGE = 2;

export const FALLOC_FL_KEEP_SIZE = 0x01;
export const FALLOC_FL_PUNCH_HOLE = 0x02;
export const FALLOC_FL_COLLAPSE_RANGE = 0x08;
export const FALLOC_FL_INSERT_RANGE = 0x20;

export const PROT_WRITE = 0x2;
export const MAP_SHARED = 0x01;
export const MAP_TYPE = 0x0f;
export const MAP_SHARED_VALIDATE = 0x03;
export const MAP_ANONYMOUS = 0x20;

export const POSIX_FADV = {
  NORMAL: 0,
  RANDOM: 1,
  SEQUENTIAL: 2,
  WILLNEED: 3,
  DONTNEED: 4,
  NOREUSE: 5,
} as const;

export const IOPRIO_CLASS_SHIFT = 13;
export const IOPRIO_CLASS = { NONE: 0, RT: 1, BE: 2, IDLE: 3 } as const;

/** An open that reads a file already there (not write-only, not creating it). */
export function opensExistingForReading(flags: number): boolean {
  return (flags & O_ACCMODE) !== O_WRONLY && (flags & O_CREAT) === 0;
}

export function isWritable(flags: number): boolean {
  const mode = flags & O_ACCMODE;
  return mode === O_WRONLY || mode === O_RDWR;
}

export function isSharedWritableMapping(prot: number, flags: number, fd: number): boolean {
  const type = flags & MAP_TYPE;
  const shared = type === MAP_SHARED || type === MAP_SHARED_VALIDATE;
  return shared && (prot & PROT_WRITE) !== 0 && (flags & MAP_ANONYMOUS) === 0 && fd >= 0;
}
