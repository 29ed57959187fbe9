/**
 * The application-hint ABI of the paper: an application passes a magic number and an I/O class as two extra
 * trailing arguments of read/write/pread64/pwrite64, e.g. `syscall(SYS_write, fd, buf, n, SKY_HINT_MAGIC, 3)`.
 * The kernel ignores arguments a syscall does not take, but they stay in the saved user registers, where the ebpf
 * tracer reads them. The SDKs (src/hints/sdk) and the tracer must agree on these numbers; this file owns them.
 */

/** 'SKYH' in ASCII. Chosen to be an implausible value for a stray register. */
export const SKY_HINT_MAGIC = 0x534b5948;

/** Where the extra arguments sit (0-based syscall argument index) for each hinted syscall on x86-64. */
export const SKY_HINT_SYSCALLS = {
  read: { nr: 0, magicArg: 3, classArg: 4 },
  write: { nr: 1, magicArg: 3, classArg: 4 },
  pread64: { nr: 17, magicArg: 4, classArg: 5 },
  pwrite64: { nr: 18, magicArg: 4, classArg: 5 },
} as const;

export type HintedSyscall = keyof typeof SKY_HINT_SYSCALLS;
