/**
 * The one typed stream every tracer backend produces (ebpf, ptrace, replay) and src/insight consumes.
 * A recorded JSONL log (`sky trace --record FILE`) is one SyscallEvent per line, so this shape is a file format:
 * add optional fields freely, never change the meaning of an existing one.
 *
 * Conventions: `pid` is the thread-group id (what userspace calls the pid), `tid` the thread id. `ts` is
 * nanoseconds on CLOCK_MONOTONIC (bpftrace nsecs; strace -ttt converted) and only orders events of one run.
 * `ret` is the syscall's return value (negative errno on failure), as the kernel gives it. Paths are as the
 * process passed them (relative paths resolve against `dirfd` or the process's cwd in src/insight).
 * Numbers are exact up to 2^53; larger 64-bit values (cp asks copy_file_range for ~2^63 bytes) are clamped to
 * ±Number.MAX_SAFE_INTEGER.
 */
export const SYSCALL_EVENT_VERSION = 1;

interface Base {
  ts: number;
  pid: number;
  tid: number;
  /** Task name (comm), when the backend knows it. */
  comm?: string;
  /**
   * A string field (path, argv) reached the backend's length cap and may be cut short: ebpf copies at most
   * 199 bytes per string (bpftrace v0.17 keeps strings on the 512-byte BPF stack). Resolve through the fd instead.
   */
  truncated?: boolean;
}

/** A process's exit status as a shell reports it (128 + the signal that killed it), from its exit event. */
export function exitStatusOf(event: Extract<SyscallEvent, { kind: 'exit' }>): number | null {
  return event.code ?? (event.signal === undefined ? null : 128 + event.signal);
}

/** Now, on the events' clock (CLOCK_MONOTONIC, ns): what `ts` is measured on. */
export function monotonicNowNs(): number {
  return Number(process.hrtime.bigint());
}

/** AT_FDCWD as the kernel passes it (dirfd fields hold it for calls relative to the working directory). */
export { AT_FDCWD } from './linux.js';

/**
 * A magic link to an open fd, as a process names it: /proc/self|thread-self|PID[/task/TID]/fd/N, or /dev/fd/N (its
 * own). Group 1: whose fd (absent for /dev/fd), group 2: the fd. Opening one reopens the file behind that fd.
 */
export const FD_LINK_PATH = /^\/(?:proc\/(self|thread-self|\d+)(?:\/task\/\d+)?|dev)\/fd\/(\d+)$/;

export type FileType = 'regular' | 'directory' | 'other';

/**
 * The directory a dirfd argument referred to at the call (ebpf; absent for AT_FDCWD): a consumer can resolve a
 * relative path by the directory's identity without having followed every close and dup of directory fds.
 */
export interface DirIdentity {
  dirIno?: number;
  dirDev?: number;
}

/** rename/renameat/renameat2 and link/linkat: an old name and a new one, each relative to a directory fd. */
export interface TwoNames {
  olddirfd: number;
  oldpath: string;
  newdirfd: number;
  newpath: string;
  flags: number;
  ret: number;
  /** As DirIdentity, for each of the two directory fds. */
  oldDirIno?: number;
  oldDirDev?: number;
  newDirIno?: number;
  newDirDev?: number;
}

export type SyscallEvent =
  // process management: followed so children and threads are traced automatically
  | (Base & { kind: 'fork'; child: number; childTid: number; thread: boolean })
  | (Base & {
      kind: 'exec';
      path: string;
      argv?: string[];
      ret: number;
      /**
       * Descriptors below 128 that were open and close-on-exec when the call entered, read from the kernel's fd
       * table (ebpf). The kernel closed exactly these if ret is 0; absent when the backend cannot see them.
       */
      closedFds?: number[];
    })
  /** `code` is the exit status (0..255) of a group exit; `signal` the signal that killed the group instead. */
  | (Base & { kind: 'exit'; group: boolean; code?: number; signal?: number })
  // file descriptors
  | (Base & {
      kind: 'open';
      dirfd: number;
      path: string;
      flags: number;
      mode: number;
      ret: number;
      /** Identity of the file the new fd refers to (st_ino, st_dev as stat(2) reports them), read in-kernel (ebpf). */
      ino?: number;
      dev?: number;
      /**
       * The opened inode as the kernel had it when the call returned (ebpf, on kernels whose inode has
       * i_mtime_sec): what a stat would say, but of the moment of the open rather than of whenever we look.
       */
      size?: number;
      fileType?: FileType;
      nlink?: number;
      /** Last modification, wall-clock microseconds. */
      mtimeUs?: number;
    } & DirIdentity)
  | (Base & { kind: 'close'; fd: number; ret: number })
  | (Base & { kind: 'close_range'; first: number; last: number; flags: number; ret: number })
  /**
   * dup, dup2, dup3 and fcntl(F_DUPFD[_CLOEXEC]); `ret` is the new fd. What the new fd (so the source) refers to at
   * the call, when the backend saw it: the file's identity read in-kernel (ebpf; a pipe or socket has one too), or
   * the path strace printed (ptrace; '' for what is not a path: pipe, socket, anon inode). Insight needs it for a
   * source fd it never saw opened, whose /proc entry may have been re-pointed by the time it looks.
   */
  | (Base & { kind: 'dup'; fd: number; cloexec: boolean; ret: number; ino?: number; dev?: number; seenPath?: string })
  /**
   * fcntl other than dup: F_SETFL (O_APPEND), F_SETFD (FD_CLOEXEC), F_SET_RW_HINT (a hint). For F_SET_RW_HINT and
   * F_SET_FILE_RW_HINT `arg` is the hint value (RWH_WRITE_LIFE_*) the pointer argument points at, not the pointer.
   * Backends report only commands that change state (no F_GET*, no locks).
   */
  | (Base & { kind: 'fcntl'; fd: number; cmd: number; arg: number; ret: number })
  | (Base & { kind: 'chdir'; path: string; ret: number })
  /** ino/dev: the directory the fd referred to at the call (ebpf). */
  | (Base & { kind: 'fchdir'; fd: number; ret: number; ino?: number; dev?: number })
  // data: one event per call (ptrace, replay, and ebpf for calls insights need individually)
  | (Base & {
      kind: 'rw';
      op: 'read' | 'write';
      fd: number;
      /** Explicit offset for pread/pwrite/preadv/pwritev; null for calls that use and move the file position. */
      offset: number | null;
      count: number;
      ret: number;
      /** Paper's app hint: extra trailing arguments (magic, ioClass), seen by the ebpf backend only. */
      hint?: { magic: number; ioClass: number };
      /** File position after the call, read from the kernel's open file (ebpf). */
      position?: number;
    })
  /**
   * In-kernel aggregate of plain reads/writes on one fd since the last summary (ebpf emits these at close,
   * fsync, exit and on an interval instead of an event per call). Offsets are file offsets.
   */
  | (Base & {
      kind: 'rw_summary';
      fd: number;
      readCalls: number;
      readBytes: number;
      writeCalls: number;
      writeBytes: number;
      /** Lowest file offset written and highest offset+length written, or -1 when nothing was written. */
      writeStart: number;
      writeEnd: number;
      /** File position after the last call, when known (-1 otherwise). */
      position: number;
      /** Identity of the file behind fd (st_ino, st_dev), read in-kernel (ebpf): a summary is per fd and file. */
      ino?: number;
      dev?: number;
      /**
       * The first 4 bytes (little-endian) the last write at offset 0 put there (ebpf, write and pwrite64 of at
       * least 4 bytes); absent when unknown or all zero. A hint for the copy detector, not proof: a later write
       * overlapping those bytes at another offset, or through a mapping, is not seen.
       */
      writeHead?: number;
      /**
       * The file the backend saw the fd name at its calls (ptrace: strace's -yy decoration, as /proc would name it);
       * absent when it did not say. Lets a consumer find the file of an fd it never saw opened (one received over a
       * unix socket) once /proc can no longer name it.
       */
      path?: string;
    })
  | (Base & { kind: 'lseek'; fd: number; offset: number; whence: number; ret: number })
  // sizes
  | (Base & { kind: 'truncate'; path: string; length: number; ret: number })
  | (Base & { kind: 'ftruncate'; fd: number; length: number; ret: number })
  | (Base & { kind: 'fallocate'; fd: number; mode: number; offset: number; length: number; ret: number })
  | (Base & { kind: 'fsync'; fd: number; dataOnly: boolean; ret: number })
  // explicit copies (no data through user space)
  | (Base & {
      kind: 'copy';
      call: 'copy_file_range' | 'sendfile' | 'splice' | 'FICLONE' | 'FICLONERANGE';
      fdIn: number;
      fdOut: number;
      offsetIn: number | null;
      offsetOut: number | null;
      length: number;
      ret: number;
      /** Inode numbers of what fdIn and fdOut referred to at the call (ebpf): pipes are told apart by them. */
      inIno?: number;
      outIno?: number;
    })
  // lifetimes
  | (Base & { kind: 'unlink'; dirfd: number; path: string; flags: number; ret: number } & DirIdentity)
  | (Base & { kind: 'rename' } & TwoNames)
  /** link/linkat: a second name for oldpath's file (flags: linkat's AT_* flags). */
  | (Base & { kind: 'link' } & TwoNames)
  // hints applications already give
  | (Base & { kind: 'fadvise'; fd: number; offset: number; length: number; advice: number; ret: number })
  | (Base & { kind: 'ioprio'; which: number; who: number; ioprio: number; ret: number })
  // shared writable mappings
  | (Base & { kind: 'mmap'; addr: number; length: number; prot: number; flags: number; fd: number; offset: number; ret: number })
  | (Base & { kind: 'msync'; addr: number; length: number; flags: number; ret: number })
  | (Base & { kind: 'munmap'; addr: number; length: number; ret: number })
  /**
   * The process submits I/O through io_uring or Linux AIO in a way the backend does not follow (ptrace: any; ebpf:
   * requests on registered files, vectored AIO, ring opcodes that open, close, rename or resize files). Reported
   * once per process and API: its files' sizes and byte counts are then re-read rather than counted.
   */
  | (Base & { kind: 'async_unseen'; api: 'io_uring' | 'aio'; detail: string })
  /** The backend dropped events (bpftrace "Lost N events"): state derived since then is uncertain. */
  | (Base & { kind: 'lost'; count: number });

export type SyscallEventKind = SyscallEvent['kind'];
