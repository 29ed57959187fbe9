/**
 * Generates the bpftrace program of the ebpf backend. What shapes it (measured on a 2-core Firecracker VM with
 * `find /usr -name x` over a cached /usr: 15.8k opens, 62k closes, 77k fcntls, 0.26 s of CPU untraced):
 *
 * - A printf per event costs the traced process a perf-buffer wakeup of bpftrace (about 10 µs here), and a
 *   bpftrace map print costs several µs of bpftrace CPU per entry. So events are stored in hash maps and
 *   nothing is printed: user space reads the maps itself, in binary batches (bpf.ts), deleting what it read.
 *   Records are keyed by (tid, ts, sub), so they never collide and sort by time.
 * - Each attached syscall tracepoint costs every call of that syscall, on the whole machine, whatever the
 *   filter says. So every syscall is hooked once, at exit, and its arguments are read from the saved user
 *   registers (pt_regs at the top of the kernel stack) instead of being stashed by an enter probe. The
 *   registers are checked against the exit tracepoint (orig_ax is the syscall number) so a kernel with another
 *   stack layout loses events loudly instead of decoding garbage.
 * - The same registers carry the paper's app hint (extra trailing arguments of read/write/pread64/pwrite64),
 *   so there is no raw_syscalls probe: it would run for every syscall of every process (+15% on find).
 * - Plain reads and writes are aggregated per (pid, fd, inode, generation); user space bumps the generation
 *   (@g) each time it collects, so an aggregate it collects is complete. fsync (and close, dup2 over the fd,
 *   ftruncate, fallocate) moves its fd's aggregate into a record of its own, so the summary precedes the call; a
 *   truncation, which may cut under other fds' counts, starts a generation itself.
 * - An open reports what stat would say of the new fd's inode (size, type, links, mtime), as of the call: a stat
 *   from user space costs ~5 µs here and may describe a later file. *at() calls and fchdir report the identity
 *   of their directory fd, so with 'storage' fd events (the default) user space need not see directory fds
 *   closed and dup'ed: it finds the directory among those the trace saw opened.
 *
 * Where find's cost goes (4 cached kernel trees, 2-core VM): untraced 0.7 s; 'all' fd events (163k events)
 * ~1.5 s, 'storage' (21k events) ~1.2 s. BPF run time (bpftool, kernel.bpf_stats_enabled) is ~0.16 s of that:
 * ~3 µs per openat (the path string ~1.3 µs of it; each probe read ~90 ns), ~0.5 µs per close and per fcntl even
 * when they store nothing (the pid filter's lookup and the probe reads that find the fd's file). The rest is the syscall
 * tracepoints' slow path, which every syscall of every process pays once any is attached (~15% of find with a
 * filter that never matches), and the tracer's own CPU. Workloads that move data (cp, gpg, databases) pay per
 * read/write only an aggregate update, not an event.
 *
 * bpftrace v0.17 limits: strings live on the 512-byte BPF stack, so str() copies at most STRLEN-1 = 199 bytes
 * (longer paths are cut and flagged `truncated`), strings go in a map of their own (@p, same key as their
 * record), and there are no functions. bpftrace compiles each tuple literal separately, so records are built
 * once into a variable (startup time is mostly LLVM time).
 */
import assert from 'node:assert/strict';
import { SKY_HINT_MAGIC } from '../hint-abi.js';
import {
  AT_FDCWD, AT_REMOVEDIR, CLONE_THREAD, CREAT_FLAGS, F_DUPFD, F_DUPFD_CLOEXEC, F_SETFD, F_SETFL, F_SET_FILE_RW_HINT,
  F_SET_RW_HINT, FICLONE, FICLONERANGE, O_ACCMODE, O_APPEND, O_CLOEXEC, O_TRUNC, RWF_APPEND, RWF_NOAPPEND, S_IFBLK,
  S_IFMT, S_IFREG,
} from '../linux.js';

/** Record codes shared by the generated program and the decoder. */
export const Code = {
  open: 1,
  close: 2,
  dup: 3,
  fcntl: 4,
  chdir: 5,
  fchdir: 6,
  truncate: 7,
  ftruncate: 8,
  fallocate: 9,
  fsync: 10,
  copy: 11,
  unlink: 12,
  rename: 13,
  link: 14,
  fadvise: 15,
  ioprio: 16,
  mmap: 17,
  msync: 18,
  munmap: 19,
  rw: 20,
  closeRange: 21,
  /** api (ASYNC_APIS), why (ASYNC_UNSEEN), opcode: first async request of a process the program cannot follow. */
  asyncUnseen: 22,
  fork: 30,
  exit: 31,
  execEnter: 32,
  execExit: 33,
  /** An fd's aggregate moved out at fsync: fd, ino, then the aggregate's fields but tid. */
  summary: 34,
} as const;

/** copy event `call` values, by the number the program stores. */
export const COPY_CALLS = ['copy_file_range', 'sendfile', 'splice', 'FICLONE', 'FICLONERANGE'] as const;

/** asyncUnseen `api` values. */
export const ASYNC_APIS = ['aio', 'io_uring'] as const;
/** asyncUnseen `why` values. */
export const ASYNC_UNSEEN = [
  'a request on a registered (fixed) file',
  'a ring operation that opens, closes, renames, links, unlinks or resizes files',
  'a request whose completion is not reported (IOSQE_CQE_SKIP_SUCCESS)',
  'a vectored AIO request',
  'more AIO requests in one io_submit than are followed',
] as const;
/** AIO requests of one io_submit that are followed (a bounded loop in BPF); the rest are reported unseen. */
export const AIO_BATCH_FOLLOWED = 64;

/** BPFTRACE_STRLEN: the largest bpftrace v0.17 accepts with our tuples on the stack. */
export const STRING_BYTES = 200;
/** exec argv elements copied; more are dropped and the exec is flagged truncated. */
export const ARGV_MAX = 32;
/** Numeric fields of a record after its code and pid. */
export const RECORD_FIELDS = 11;
/**
 * An aggregate: readCalls, readBytes, writeCalls, writeBytes, writeStart, writeEnd, position, ts, tid, dev; dev's
 * upper half holds the written head (writeHead).
 */
export const AGGREGATE_FIELDS = 10;

/** `cgroup`: the ids (cgroup v2 directory inodes) of the target cgroup and those below it; user space adds later ones. */
export type ProgramFilter = { kind: 'pids'; pids: readonly number[] } | { kind: 'cgroup'; path: string; ids: readonly number[] };

export interface ProgramOptions {
  filter: ProgramFilter;
  /** THREAD_SIZE of the running kernel: pt_regs sit at the top of a task's kernel stack. */
  kernelStackBytes: number;
  /**
   * F_SETFD with FD_CLOEXEC is the commonest fcntl (find: one per directory) and exec events carry the kernel's
   * own close-on-exec set, so by default it is not reported. Clearing the flag is always reported.
   */
  reportSetCloexec: boolean;
  /**
   * 'all': every close, dup and fcntl. 'storage': only those of fds that refer to a regular file or a block
   * device (plus every dup2/dup3 and close_range, which can close such an fd implicitly); directory, pipe and
   * socket fds are not bookkept (a dirfd is named by identity instead). find's directory walk is almost nothing
   * but such churn (8 of every 9 events).
   */
  fdEvents: 'all' | 'storage';
  /**
   * The kernel's inode has i_mtime_sec/i_mtime_nsec (Linux 6.11 and later): open records then carry the opened
   * file's size, type, link count and mtime as the kernel had them at the call, so user space need not stat it.
   */
  inodeTimes: boolean;
  /** io_uring's tracepoints and struct io_rw are there (system.ts kernelIoUringTraceable): follow ring reads and writes. */
  ioUring: boolean;
}

/** Register holding syscall argument i on x86-64. */
const ARG_REGISTER = ['di', 'si', 'dx', 'r10', 'r8', 'r9'] as const;

/** Argument i as a signed 64-bit value (sizes, offsets, addresses). */
function arg(i: number): string {
  return `(int64)$r->${ARG_REGISTER[i]}`;
}

/** Argument i declared `int` (fds, flags): the upper half of the register is not defined by the ABI. */
function intArg(i: number): string {
  return `(int64)(int32)$r->${ARG_REGISTER[i]}`;
}

/** A C string argument, read from user memory at exit (the kernel has touched it, so it is resident). */
function pathArg(i: number): string {
  return `str(uptr($r->${ARG_REGISTER[i]}))`;
}

/** Read once per probe into $ret: LLVM may otherwise derive several loads from one moved ctx pointer,
 * which the verifier refuses ("dereference of modified ctx ptr"). */
const RET = '$ret';

/**
 * Stores a record: up to 11 numeric fields in @n, and each string in @p under the same key with sub-index
 * 0, 1, ... (a tuple holding a 200-byte string would not fit the BPF stack next to str()'s buffer).
 */
function emit(code: number, fields: readonly string[], strings: readonly string[] = [], stamped = false, sub = 0): string {
  assert.ok(fields.length <= RECORD_FIELDS, `record ${code} has ${fields.length} fields, at most ${RECORD_FIELDS} fit`);
  assert.ok(sub === 0 || (stamped && strings.length === 0), 'a second record under one stamp carries no strings');
  const padded = [...fields, ...Array(RECORD_FIELDS - fields.length).fill('0')].map((field) => `(int64)(${field})`);
  const tuple = [`(int64)${code}`, '(int64)pid', ...padded].join(', ');
  const texts = strings.map((text, i) => `@p[(int64)tid, $ts, (int64)${i}] = ${text};`);
  // The clock is read only when a record is stored: most probe runs store nothing (find's closes and fcntls).
  const stamp = stamped ? '' : '$ts = (int64)nsecs; ';
  return `${stamp}${texts.join(' ')} $nv = (${tuple}); @n[(int64)tid, $ts, (int64)${sub}] = $nv; @c = count();`;
}

function predicate(filter: ProgramFilter): string {
  if (filter.kind === 'pids') return '/@t[pid]/';
  return '/@cg[cgroup]/';
}

interface ExitProbe {
  syscall: string;
  nr: number;
  body: string;
}

/** The probe around a syscall body: find the saved registers, check them, and time-stamp the record. */
function exitProbe(options: ProgramOptions, probe: ExitProbe): string {
  const top = `(uint64)curtask->stack + ${options.kernelStackBytes}`;
  // With FRED (x86, 6.9+) the registers sit 16 bytes lower; tried only when the usual place does not match.
  return `tracepoint:syscalls:sys_exit_${probe.syscall} ${predicate(options.filter)} {
  $r = (struct pt_regs *)(${top} - sizeof(struct pt_regs)); $nr = (int64)$r->orig_ax;
  if ($nr != ${probe.nr}) { $r = (struct pt_regs *)(${top} - 16 - sizeof(struct pt_regs)); $nr = (int64)$r->orig_ax; }
  if ($nr == ${probe.nr}) {
    $ret = (int64)args->ret;
    ${probe.body}
  } else { @x = count(); }
}`;
}

/** $f = the struct file behind fd expression `fd` in the current task (valid while the call's fd is open). */
function fileOf(fd: string, fdt = 'curtask->files->fdt'): string {
  return `$f = *(${fdt}->fd + ${fd});`;
}

/** $ino, $dev = the file behind the fd a call returned (0 when it failed), read while that fd is certainly open. */
const RET_IDENTITY = `$ino = (int64)0; $dev = (int64)0;
    if (${RET} >= 0) { ${fileOf(RET)} $ino = (int64)$f->f_inode->i_ino; $dev = (int64)$f->f_inode->i_sb->s_dev; }`;

/**
 * RET_IDENTITY plus what stat would say of the file: $size, $tn (i_mode | i_nlink << 16) and $mt (mtime in µs;
 * 0 where the kernel's inode has no i_mtime_sec, which tells user space to stat instead).
 */
function retInode(options: ProgramOptions): string {
  const more = options.inodeTimes
    ? '$size = (int64)$i->i_size; $tn = ((int64)$i->i_mode & 0xffff) | (((int64)$i->i_nlink & 0xffffffff) << 16); $mt = (int64)$i->i_mtime_sec * 1000000 + (int64)$i->i_mtime_nsec / 1000;'
    : '';
  return `$ino = (int64)0; $dev = (int64)0; $size = (int64)0; $tn = (int64)0; $mt = (int64)0; $fdt = curtask->files->fdt;
    if (${RET} >= 0) { ${fileOf(RET, '$fdt')} $i = $f->f_inode; $ino = (int64)$i->i_ino; $dev = (int64)$i->i_sb->s_dev; ${more} }`;
}

/**
 * $<name>i, $<name>d = identity of the file behind fd argument `fd` of a call that succeeded (0 for AT_FDCWD or a
 * failed call). For a dirfd, user space finds the directory by identity, so it need not follow every close and dup
 * of directory fds; for a pipe, it tells whether the pipe it remembers at that fd number is still the one there.
 * A call that succeeded used the fd, so it is inside the table (which never shrinks under a live process): no
 * bound check, whose three probe reads cost ~0.3 µs here. `fdt` is a variable already holding the table, if any.
 */
function fdIdentity(fd: string, name: string, fdt = 'curtask->files->fdt'): string {
  return `$${name}i = (int64)0; $${name}d = (int64)0; $${name}fd = ${fd};
    if ($${name}fd >= 0 && ${RET} >= 0) {
      $${name}f = *(${fdt}->fd + $${name}fd);
      if ($${name}f != 0) { $${name}n = $${name}f->f_inode; $${name}i = (int64)$${name}n->i_ino; $${name}d = (int64)$${name}n->i_sb->s_dev; }
    }`;
}

function openProbes(options: ProgramOptions): ExitProbe[] {
  const calls = [
    { syscall: 'open', nr: 2, dirfd: `${AT_FDCWD}`, flags: intArg(1), mode: intArg(2), path: pathArg(0) },
    { syscall: 'openat', nr: 257, dirfd: intArg(0), flags: intArg(2), mode: intArg(3), path: pathArg(1) },
    { syscall: 'creat', nr: 85, dirfd: `${AT_FDCWD}`, flags: `${CREAT_FLAGS}`, mode: intArg(1), path: pathArg(0) },
    {
      syscall: 'openat2',
      nr: 437,
      dirfd: intArg(0),
      flags: '*(int64 *)uptr($r->dx)',
      mode: '*(int64 *)uptr($r->dx + 8)',
      path: pathArg(1),
    },
  ];
  const opens = calls.map(({ syscall, nr, dirfd, flags, mode, path }) => ({
    syscall,
    nr,
    body: `${retInode(options)} ${fdIdentity(dirfd, 'dir', '$fdt')} ${emit(Code.open, [dirfd, flags, mode, RET, '$ino', '$dev', '$size', '$tn', '$mt', '$diri', '$dird'], [path])}`,
  }));
  // A second program per open (one would not fit the BPF stack). Both run before the call returns, so before
  // any call through the new fd; the detached summary is timed by its last call, so it sorts before the open.
  // O_TRUNC (whatever the access mode: Linux truncates an O_RDONLY open too) cuts under what other fds have counted
  // (`: > log` while a writer appends), as a truncation by name does: it starts a generation — only when some
  // other description has the file open for writing (i_writecount counts this one's too), as a shell's `> f` or a
  // program's open('w') of a file nobody else writes is the common case and need not split every aggregate.
  const detach = calls.map(({ syscall, nr, flags }) => ({
    syscall,
    nr,
    body: `if (${RET} >= 0) { ${detachAggregate(RET)}
      if ($dm == ${S_IFREG} && (${flags} & ${O_TRUNC}) != 0) {
        $own = (int64)0; if ((${flags} & ${O_ACCMODE}) != 0) { $own = 1; }
        if ((int64)$f->f_inode->i_writecount.counter > $own) { @g = @g + 1; }
      }
    }`,
  }));
  return [...detach, ...opens];
}

/** Sets $storage: does `fd` refer to a regular file or a block device? (false for an fd that is not open) */
function storageCheck(fd: string): string {
  return `$sf = *(curtask->files->fdt->fd + ${fd}); $sm = $sf->f_inode->i_mode & ${S_IFMT}; $storage = $sm == ${S_IFREG} || $sm == ${S_IFBLK};`;
}

function fdTableProbes(options: ProgramOptions): ExitProbe[] {
  const storageOnly = options.fdEvents === 'storage';
  const when = (fd: string, body: string) => (storageOnly ? `${storageCheck(fd)} if ($storage) { ${body} }` : body);
  // The new fd's file is the source's: its identity, for a source the stream never showed.
  const dup = (cloexec: string) => `${RET_IDENTITY} ${emit(Code.dup, [intArg(0), cloexec, RET, '$ino', '$dev'])}`;
  const cloexecSet = options.reportSetCloexec ? '1' : `(${arg(2)} & 1) == 0`;
  const rwHint = `$h = *(int64 *)uptr($r->dx); ${emit(Code.fcntl, [intArg(0), '$cmd', '$h', RET])}`;
  const fcntl = `$cmd = ${intArg(1)};
    if ($cmd == ${F_DUPFD} || $cmd == ${F_DUPFD_CLOEXEC}) { ${when(RET, dup(`$cmd == ${F_DUPFD_CLOEXEC}`))} }
    else if (($cmd == ${F_SETFD} && ${cloexecSet}) || $cmd == ${F_SETFL}) { ${when(intArg(0), emit(Code.fcntl, [intArg(0), '$cmd', arg(2), RET]))} }
    else if ($cmd == ${F_SET_RW_HINT} || $cmd == ${F_SET_FILE_RW_HINT}) { ${rwHint} }`;
  const close: ExitProbe[] = storageOnly ? [] : [{ syscall: 'close', nr: 3, body: emit(Code.close, [intArg(0), RET]) }];
  return [
    ...close,
    { syscall: 'close_range', nr: 436, body: emit(Code.closeRange, ['(uint32)$r->di', '(uint32)$r->si', arg(2), RET]) },
    { syscall: 'dup', nr: 32, body: when(RET, dup('0')) },
    { syscall: 'dup2', nr: 33, body: dup('0') },
    { syscall: 'dup3', nr: 292, body: dup(`(${arg(2)} & ${O_CLOEXEC}) != 0`) },
    { syscall: 'fcntl', nr: 72, body: fcntl },
    { syscall: 'chdir', nr: 80, body: emit(Code.chdir, [RET], [pathArg(0)]) },
    { syscall: 'fchdir', nr: 81, body: `${fdIdentity(intArg(0), 'dir')} ${emit(Code.fchdir, [intArg(0), RET, '$diri', '$dird'])}` },
  ];
}

/**
 * 'storage' fd events: a close is reported at entry, where the fd still says what it refers to. It is
 * reported with ret 0: the fd is released whatever close returns (EINTR, EIO), and an fd that was not open is
 * not storage, so not reported.
 */
function storageCloseProbe(options: ProgramOptions): string {
  if (options.fdEvents !== 'storage') {
    return `tracepoint:syscalls:sys_enter_close ${predicate(options.filter)} {
  ${detachAggregate('(int64)args->fd')}
}`;
  }
  // The fd's aggregate of this generation goes with it (a shell's `echo a > f; echo b >> f` writes both through fd
  // 1): a record of its own, under the close's stamp (sub-record 1), so the close's counts are its own.
  return `tracepoint:syscalls:sys_enter_close ${predicate(options.filter)} {
  $fd = (int64)args->fd; ${storageCheck('$fd')}
  if ($storage) {
    $ts = (int64)nsecs; ${moveAggregate('$sf', 1)}
    ${emit(Code.close, ['$fd', '0'], [], true)}
  }
}`;
}

/**
 * dup2/dup3 over an open fd replace its file: that fd's aggregate is detached first (as at close), while the fd
 * still names the file it counts. Entry probes: dup2 and dup3 are rare (shells), so running for every call costs
 * nothing that matters.
 */
function dupOverProbes(options: ProgramOptions): string {
  return ['dup2', 'dup3']
    .map((syscall) => `tracepoint:syscalls:sys_enter_${syscall} ${predicate(options.filter)} {
  $nfd = (int64)args->newfd; if (args->oldfd != args->newfd && $nfd >= 0 && $nfd < (int64)curtask->files->fdt->max_fds) { ${detachAggregate('$nfd')} }
}`)
    .join('\n');
}

/**
 * A detached aggregate as a record: fd with the tid of its last call above it (the record's own tid is the thread
 * that closed, synced or reopened, not always the one that wrote), ino, the counts, the offsets, ts, dev+head.
 */
const SUMMARY_FIELDS = ['$fd | ((int64)$a.8 << 32)', '$ino', '$a.0', '$a.1', '$a.2', '$a.3', '$a.4', '$a.5', '$a.6', '$a.7', '$a.9'];

/**
 * Moves the aggregate of (fd, its file) of this generation into a record of its own: at fsync, so the summary
 * precedes the fsync; at open, so calls through an earlier description of the same file at the same fd number
 * are not counted as this one's.
 */
function detachAggregate(fd: string): string {
  // Only regular files and block devices have aggregates: the map lookup is skipped for the rest (find opens
  // nothing but directories).
  return `$fd = ${fd}; ${fileOf('$fd')} $dm = $f->f_inode->i_mode & ${S_IFMT};
    if ($dm == ${S_IFREG} || $dm == ${S_IFBLK}) { ${moveAggregate('$f')} }`;
}

/**
 * The move itself, for $fd whose file (a regular file or block device) is in `file`. `sub` > 0: under a stamp $ts
 * the caller set, as that sub-record (the caller stores its own record at sub 0 under the same stamp).
 */
function moveAggregate(file: string, sub = 0): string {
  return `$ino = (int64)${file}->f_inode->i_ino; $g = @g;
      $a = @r[(int64)pid, $fd, $ino, $g];
      if ($a.0 + $a.2 > 0) { delete(@r[(int64)pid, $fd, $ino, $g]); ${emit(Code.summary, SUMMARY_FIELDS, [], sub > 0, sub)} }`;
}

function sizeProbes(): ExitProbe[] {
  // Two programs per call (the first detaches, the second reports): one would not fit the BPF stack.
  const fsync = (syscall: string, nr: number, dataOnly: number): ExitProbe[] => [
    { syscall, nr, body: detachAggregate(intArg(0)) },
    { syscall, nr, body: emit(Code.fsync, [intArg(0), `${dataOnly}`, RET]) },
  ];
  // ftruncate and fallocate change the size under the writes counted so far: those go first, in a summary of their
  // own, or an append before `truncate(fd, 1000)` would be summed with the appends after it and land past the cut.
  const resize = (syscall: string, nr: number, report: string): ExitProbe[] => [
    { syscall, nr, body: detachAggregate(intArg(0)) },
    { syscall, nr, body: report },
  ];
  // A truncation through a name, or through another process's fd (`truncate -s 0 log`, logrotate's copytruncate),
  // cuts under writes other fds have counted, which this program cannot find: it starts a new generation, so what
  // they write from now on is counted apart from what they wrote before (collect.ts takes the old generation).
  const newGeneration = `if (${RET} == 0) { @g = @g + 1; }`;
  return [
    { syscall: 'truncate', nr: 76, body: `${emit(Code.truncate, [arg(1), RET], [pathArg(0)])} ${newGeneration}` },
    ...resize('ftruncate', 77, `${emit(Code.ftruncate, [intArg(0), arg(1), RET])} ${newGeneration}`),
    ...resize('fallocate', 285, emit(Code.fallocate, [intArg(0), intArg(1), arg(2), arg(3), RET])),
    ...fsync('fsync', 74, 0),
    ...fsync('fdatasync', 75, 1),
  ];
}

/**
 * An offset passed by pointer (copy_file_range, splice, sendfile): the kernel advanced it by what it copied, so
 * the start is the value now minus the return value. A null pointer sets bit `bit` of $null.
 */
function offsetByPointer(register: string, name: string, bit: number): string {
  return `$${name} = 0; if ($r->${register} == 0) { $null = $null | ${bit}; } else { $${name} = *(int64 *)uptr($r->${register}); if (${RET} > 0) { $${name} = $${name} - ${RET}; } }`;
}

function copyProbes(): ExitProbe[] {
  const copy = (call: number, fdIn: string, fdOut: string, length: string) =>
    `${fdIdentity(fdIn, 'cin')} ${fdIdentity(fdOut, 'cout')} ${emit(Code.copy, [`${call}`, fdIn, fdOut, '$in', '$out', length, RET, '$null', '$cini', '$couti'])}`;
  const pairOfPointers = `$null = 0; ${offsetByPointer('si', 'in', 1)} ${offsetByPointer('r10', 'out', 2)}`;
  const ioctl = `$cmd = (uint32)$r->si;
    if ($cmd == ${FICLONE}) { $null = 3; $in = 0; $out = 0; ${copy(3, intArg(2), intArg(0), '0')} }
    else if ($cmd == ${FICLONERANGE}) {
      $range = $r->dx; $null = 0; $in = *(int64 *)uptr($range + 8); $out = *(int64 *)uptr($range + 24);
      ${copy(4, '*(int64 *)uptr($range)', intArg(0), '*(int64 *)uptr($range + 16)')}
    }`;
  return [
    { syscall: 'copy_file_range', nr: 326, body: `${pairOfPointers} ${copy(0, intArg(0), intArg(2), arg(4))}` },
    { syscall: 'splice', nr: 275, body: `${pairOfPointers} ${copy(2, intArg(0), intArg(2), arg(4))}` },
    {
      syscall: 'sendfile64',
      nr: 40,
      body: `$null = 2; $out = 0; ${offsetByPointer('dx', 'in', 1)} ${copy(1, intArg(1), intArg(0), arg(3))}`,
    },
    { syscall: 'ioctl', nr: 16, body: ioctl },
  ];
}

function lifetimeProbes(): ExitProbe[] {
  const twoNames = (code: number) => (olddirfd: string, old: string, newdirfd: string, next: string, flags: string) =>
    `${fdIdentity(olddirfd, 'old')} ${fdIdentity(newdirfd, 'new')} ${emit(code, [olddirfd, newdirfd, flags, RET, '$oldi', '$oldd', '$newi', '$newd'], [old, next])}`;
  const rename = twoNames(Code.rename);
  // A hard link gives a file another name: unlinking one of them frees nothing (git stores every object so).
  const link = twoNames(Code.link);
  const cwd = `${AT_FDCWD}`;
  return [
    { syscall: 'unlink', nr: 87, body: emit(Code.unlink, [cwd, '0', RET], [pathArg(0)]) },
    { syscall: 'unlinkat', nr: 263, body: `${fdIdentity(intArg(0), 'dir')} ${emit(Code.unlink, [intArg(0), intArg(2), RET, '$diri', '$dird'], [pathArg(1)])}` },
    { syscall: 'rmdir', nr: 84, body: emit(Code.unlink, [cwd, `${AT_REMOVEDIR}`, RET], [pathArg(0)]) },
    { syscall: 'rename', nr: 82, body: rename(cwd, pathArg(0), cwd, pathArg(1), '0') },
    { syscall: 'renameat', nr: 264, body: rename(intArg(0), pathArg(1), intArg(2), pathArg(3), '0') },
    { syscall: 'renameat2', nr: 316, body: rename(intArg(0), pathArg(1), intArg(2), pathArg(3), arg(4)) },
    { syscall: 'link', nr: 86, body: link(cwd, pathArg(0), cwd, pathArg(1), '0') },
    { syscall: 'linkat', nr: 265, body: link(intArg(0), pathArg(1), intArg(2), pathArg(3), intArg(4)) },
  ];
}

function hintAndMappingProbes(): ExitProbe[] {
  const sharedWritable = `(${arg(3)} & 1) != 0 && (${arg(2)} & 2) != 0 && ${intArg(4)} >= 0 && ${RET} >= 0`;
  const mmap = `if (${sharedWritable}) { @m[pid] = 1; ${emit(Code.mmap, [arg(0), arg(1), arg(2), arg(3), intArg(4), arg(5), RET])} }`;
  return [
    { syscall: 'fadvise64', nr: 221, body: emit(Code.fadvise, [intArg(0), arg(1), arg(2), intArg(3), RET]) },
    { syscall: 'ioprio_set', nr: 251, body: emit(Code.ioprio, [intArg(0), intArg(1), intArg(2), RET]) },
    { syscall: 'mmap', nr: 9, body: mmap },
    { syscall: 'msync', nr: 26, body: `if (@m[pid]) { ${emit(Code.msync, [arg(0), arg(1), intArg(2), RET])} }` },
    { syscall: 'munmap', nr: 11, body: `if (@m[pid]) { ${emit(Code.munmap, [arg(0), arg(1), RET])} }` },
  ];
}

interface DataCall {
  syscall: string;
  nr: number;
  write: boolean;
  /** Register index of an explicit file offset, or null when the call uses the file position. */
  offsetArg: number | null;
  /** Register indexes of the app hint's magic and class, for the calls that can carry one. */
  hint: [number, number] | null;
}

const DATA_CALLS: readonly DataCall[] = [
  { syscall: 'read', nr: 0, write: false, offsetArg: null, hint: [3, 4] },
  { syscall: 'write', nr: 1, write: true, offsetArg: null, hint: [3, 4] },
  { syscall: 'pread64', nr: 17, write: false, offsetArg: 3, hint: [4, 5] },
  { syscall: 'pwrite64', nr: 18, write: true, offsetArg: 3, hint: [4, 5] },
  { syscall: 'readv', nr: 19, write: false, offsetArg: null, hint: null },
  { syscall: 'writev', nr: 20, write: true, offsetArg: null, hint: null },
  { syscall: 'preadv', nr: 295, write: false, offsetArg: 3, hint: null },
  { syscall: 'pwritev', nr: 296, write: true, offsetArg: 3, hint: null },
  { syscall: 'preadv2', nr: 327, write: false, offsetArg: 3, hint: null },
  { syscall: 'pwritev2', nr: 328, write: true, offsetArg: 3, hint: null },
];

/**
 * The aggregate tuple: (readCalls, readBytes, writeCalls, writeBytes, writeStart, writeEnd, position, ts, tid, dev).
 * A new aggregate is counted in @k once stored, as a record is in @c: an unchanged count tells user space that a
 * scan of the map would find nothing new (collect.ts).
 */
function aggregate(call: DataCall): string {
  // preadv2/pwritev2 take -1 for "the file position".
  let start =
    call.offsetArg === null
      ? '$start = $pos - $ret;'
      : `$start = ${arg(call.offsetArg)}; if ($start < 0) { $start = $pos - $ret; }`;
  if (call.write && call.offsetArg !== null) {
    // A positional write appends whatever its offset when the fd is O_APPEND (Linux's pwrite does) or pwritev2 says
    // RWF_APPEND (unless RWF_NOAPPEND): it went to the end of the file, which its size now ends.
    const flags = call.syscall === 'pwritev2'
      ? `if ((${arg(5)} & ${RWF_APPEND}) != 0) { $ap = 1; } if ((${arg(5)} & ${RWF_NOAPPEND}) != 0) { $ap = 0; }`
      : '';
    start = `${start} $ap = (int64)0; if (((uint64)$f->f_flags & ${O_APPEND}) != 0) { $ap = 1; } ${flags}
      if ($ap != 0) { $start = (int64)$f->f_inode->i_size - $ret; }`;
  }
  return aggregateUpdate(call.write, start, writeHead(call));
}

/**
 * Adds one call of `$ret` bytes to the aggregate of ($fd, its file $f): `start` sets $start, `head` adjusts $dev's
 * upper half (the written head). Expects $fd, $f, $pos and $ret.
 */
function aggregateUpdate(write: boolean, start: string, head: string): string {
  const next = write
    ? `$ws = $a.4; $we = $a.5;
      if ($ret > 0) { if ($a.3 == 0 || $start < $ws) { $ws = $start; } if ($a.3 == 0 || $start + $ret > $we) { $we = $start + $ret; } }
      ${head}
      $v = ($a.0, $a.1, $a.2 + 1, $a.3 + $ret, $ws, $we, $pos, $ts, (int64)tid, $dev);`
    : '$v = ($a.0 + 1, $a.1 + $ret, $a.2, $a.3, $a.4, $a.5, $pos, $ts, (int64)tid, $dev);';
  return `$mode = $f->f_inode->i_mode & ${S_IFMT};
    if ($ret >= 0 && ($mode == ${S_IFREG} || $mode == ${S_IFBLK})) {
      $ts = (int64)nsecs; $ino = (int64)$f->f_inode->i_ino; ${start} $g = @g;
      $a = @r[(int64)pid, $fd, $ino, $g];
      $fresh = $a.0 + $a.2 == 0; $dev = $a.9; if ($fresh) { $dev = (int64)$f->f_inode->i_sb->s_dev; }
      ${next}
      @r[(int64)pid, $fd, $ino, $g] = $v;
      if ($fresh) { @k = count(); }
    }`;
}

/**
 * The head of what a write put at offset 0: its first 4 bytes, kept in the upper half of the aggregate's dev field
 * (a dev_t is 32 bits). The copy detector compares it with the head of each file the process read before it reads
 * the written file back: most candidates differ there. Only plain write/pwrite64 buffers are read (one probe read,
 * only for a write at offset 0); a vectored write at 0 forgets the head, as 0 means "not known".
 */
function writeHead(call: DataCall): string {
  const vectored = call.syscall.includes('writev');
  if (vectored) return 'if ($start == 0) { $dev = $dev & 0xffffffff; }';
  return 'if ($start == 0) { $dev = $dev & 0xffffffff; if ($ret >= 4) { $dev = $dev | ((int64)*(uint32 *)uptr($r->si) << 32); } }';
}

function hinted(call: DataCall, magic: number): string {
  assert.ok(call.hint);
  const [magicArg, classArg] = call.hint;
  const offset = call.offsetArg === null ? '-1' : arg(call.offsetArg);
  const flags = `${call.write ? 1 : 0} | ${call.offsetArg === null ? 0 : 2}`;
  const fields = [flags, '$fd', offset, arg(2), '$ret', arg(classArg), '$pos'];
  return `if ($r->${ARG_REGISTER[magicArg]} == ${magic}) { ${emit(Code.rw, fields)} } else`;
}

function dataProbes(magic: number): ExitProbe[] {
  return DATA_CALLS.map((call) => {
    const head = `$fd = ${intArg(0)}; ${fileOf('$fd')} $pos = (int64)$f->f_pos;`;
    const body = call.hint ? `${hinted(call, magic)} { ${aggregate(call)} }` : aggregate(call);
    return { syscall: call.syscall, nr: call.nr, body: `${head} ${body}` };
  });
}

const IOCB_CMD_PREAD = 0;
const IOCB_CMD_PWRITE = 1;
const IOCB_CMD_PREADV = 7;
const IOCB_CMD_PWRITEV = 8;
const IORING_READS = [1, 4, 22, 60]; // READV, READ_FIXED, READ, READV_FIXED
const IORING_WRITES = [2, 5, 23, 61]; // WRITEV, WRITE_FIXED, WRITE, WRITEV_FIXED
/** FALLOCATE, OPENAT, CLOSE, OPENAT2, SPLICE, TEE, RENAMEAT, UNLINKAT, LINKAT, URING_CMD, FIXED_FD_INSTALL, FTRUNCATE. */
const IORING_UNFOLLOWED = [17, 18, 19, 28, 30, 33, 35, 36, 39, 46, 54, 55];
const REQ_F_FIXED_FILE = 1;
const REQ_F_CQE_SKIP = 1 << 6;

function oneOf(value: string, options: readonly number[]): string {
  return options.map((option) => `${value} == ${option}`).join(' || ');
}

/** Reports, once per process and API, a request the program cannot follow (user space then re-reads sizes). */
function asyncUnseen(api: (typeof ASYNC_APIS)[number], why: number, opcode: string): string {
  const apiCode = ASYNC_APIS.indexOf(api);
  return `if (!@q[(int64)pid, ${apiCode}]) { @q[(int64)pid, ${apiCode}] = 1; ${emit(Code.asyncUnseen, [`${apiCode}`, `${why}`, opcode])} }`;
}

/** A read or write whose offset is known and whose written head is not (its buffer is not read). */
const FORGET_HEAD = 'if ($start == 0) { $dev = $dev & 0xffffffff; }';

/**
 * Linux AIO: io_submit returns how many of its iocbs the kernel accepted (each one's fd was checked), so those are
 * counted, as their requested length, when submitted: a failed AIO request is counted all the same.
 */
function aioProbe(): ExitProbe {
  const count = (write: boolean) => `$ret = $len; ${aggregateUpdate(write, '$start = $off;', FORGET_HEAD)}`;
  const body = `$n = ${RET};
    if ($n > ${AIO_BATCH_FOLLOWED}) { $n = ${AIO_BATCH_FOLLOWED}; ${asyncUnseen('aio', 4, '0')} }
    $i = 0;
    while ($i < ${AIO_BATCH_FOLLOWED}) {
      if ($i >= $n) { break; }
      $cb = *(uint64 *)uptr($r->dx + (uint64)$i * 8);
      $op = (int64)*(uint16 *)uptr($cb + 16);
      if ($op == ${IOCB_CMD_PREAD} || $op == ${IOCB_CMD_PWRITE}) {
        $fd = (int64)*(uint32 *)uptr($cb + 20); $len = *(int64 *)uptr($cb + 32); $off = *(int64 *)uptr($cb + 40);
        ${fileOf('$fd')} $pos = (int64)$f->f_pos;
        if ($op == ${IOCB_CMD_PWRITE}) { ${count(true)} } else { ${count(false)} }
      } else if ($op == ${IOCB_CMD_PREADV} || $op == ${IOCB_CMD_PWRITEV}) { ${asyncUnseen('aio', 3, '$op')} }
      $i++;
    }`;
  return { syscall: 'io_submit', nr: 209, body };
}

/**
 * io_uring: a read or write is remembered at submission (after its prep: the fd and the offset, -1 for "the file
 * position") by request address, and counted at completion with its result; completions run in the submitting
 * task or one of its io threads, which share its pid and files. The ring's other file operations are not followed.
 */
function ioUringProbes(options: ProgramOptions): string {
  if (!options.ioUring) return '';
  const submit = `tracepoint:io_uring:io_uring_submit_req ${predicate(options.filter)} {
  $op = (int64)args->opcode;
  if (${oneOf('$op', [...IORING_READS, ...IORING_WRITES])}) {
    $q = (struct io_kiocb *)args->req;
    if (($q->flags & ${REQ_F_FIXED_FILE}) != 0) { ${asyncUnseen('io_uring', 0, '$op')} }
    else if (($q->flags & ${REQ_F_CQE_SKIP}) != 0) { ${asyncUnseen('io_uring', 2, '$op')} }
    else { $w = (struct io_rw *)args->req; @u[(uint64)args->req] = ((int64)pid, (int64)$q->cqe.fd, (int64)$w->kiocb.ki_pos, $op); }
  } else if (${oneOf('$op', IORING_UNFOLLOWED)}) { ${asyncUnseen('io_uring', 1, '$op')} }
}`;
  const start = '$start = $u.2; if ($start < 0) { $start = (int64)$w->kiocb.ki_pos - $ret; }';
  const complete = `tracepoint:io_uring:io_uring_complete {
  $u = @u[(uint64)args->req];
  if ($u.0 != 0) {
    delete(@u[(uint64)args->req]);
    if ($u.0 == (int64)pid) {
      $q = (struct io_kiocb *)args->req; $w = (struct io_rw *)args->req;
      $f = $q->file; $fd = $u.1; $ret = (int64)args->res; $pos = (int64)$f->f_pos;
      if (${oneOf('$u.3', IORING_WRITES)}) { ${aggregateUpdate(true, start, FORGET_HEAD)} }
      else { ${aggregateUpdate(false, start, '')} }
    }
  }
}`;
  return `${submit}\n${complete}`;
}

/** exec: path and argv must be read at entry (a successful exec replaces the memory they live in). */
function execProbes(options: ProgramOptions): string {
  const filter = predicate(options.filter);
  const closeOnExec = `$fdt = curtask->files->fdt; $m0 = *$fdt->open_fds & *$fdt->close_on_exec; $m1 = (uint64)0;
  if ($fdt->max_fds > 64) { $m1 = *($fdt->open_fds + 1) & *($fdt->close_on_exec + 1); }`;
  const argv = `$i = 0;
  while ($i < ${ARGV_MAX + 1}) {
    $p = *(args->argv + $i);
    if ($p == 0) { break; }
    @p[(int64)tid, $ts, (int64)($i + 1)] = str($p);
    $i++;
  }`;
  const enter = (syscall: string, dirfd: string) => `tracepoint:syscalls:sys_enter_${syscall} ${filter} {
  $ts = (int64)nsecs; ${closeOnExec}
  ${argv}
  ${emit(Code.execEnter, [dirfd, '$m0', '$m1', '$i'], ['str(args->filename)'], true)}
  @e[tid] = $ts;
}`;
  // The exit names its entry by the entry's timestamp: a shell's PATH search makes one failed exec after another,
  // and the halves of one collection come in hash order.
  const exit = (syscall: string) => `tracepoint:syscalls:sys_exit_${syscall} ${filter} {
  $ret = (int64)args->ret; $e = @e[tid]; delete(@e[tid]); ${emit(Code.execExit, ['$ret', '$e'], ['comm'])}
}`;
  return [enter('execve', `${AT_FDCWD}`), enter('execveat', '(int64)args->fd'), exit('execve'), exit('execveat')].join('\n');
}

function processProbes(options: ProgramOptions): string {
  const filter = predicate(options.filter);
  const follow = options.filter.kind === 'pids' ? 'if (!$thread) { @t[args->pid] = 1; }' : '';
  const forgetAsync = 'delete(@q[(int64)pid, 0]); delete(@q[(int64)pid, 1]);';
  const forget = options.filter.kind === 'pids' ? `delete(@t[pid]); delete(@m[pid]); ${forgetAsync}` : `delete(@m[pid]); ${forgetAsync}`;
  return `tracepoint:task:task_newtask ${filter} {
  $thread = (args->clone_flags & ${CLONE_THREAD}) != 0;
  ${follow}
  ${emit(Code.fork, ['args->pid', '$thread'])}
}
tracepoint:sched:sched_process_exit ${filter} {
  ${emit(Code.exit, ['args->group_dead', 'curtask->exit_code'], ['comm'])}
  delete(@e[tid]);
  if (args->group_dead) { ${forget} }
}`;
}

/** bpftrace types a map at its first assignment in program order; the aggregates are read before they are written. */
function declareMaps(): string {
  const zero = Array(AGGREGATE_FIELDS).fill('(int64)0').join(', ');
  return `@g = (int64)0; @q[(int64)0, (int64)0] = (int64)0; delete(@q[(int64)0, (int64)0]); @r[(int64)0, (int64)0, (int64)0, (int64)0] = (${zero}); delete(@r[(int64)0, (int64)0, (int64)0, (int64)0]);`;
}

function beginProbe(options: ProgramOptions): string {
  const seeds = options.filter.kind === 'pids'
    ? options.filter.pids.map((pid) => `@t[${pid}] = 1;`).join(' ')
    : options.filter.ids.map((id) => `@cg[(uint64)${id}] = (int64)1;`).join(' ');
  return `BEGIN { ${declareMaps()} ${seeds} printf("R\\n"); }`;
}

export function buildProgram(options: ProgramOptions): string {
  assert.ok(options.kernelStackBytes > 0 && options.kernelStackBytes % 4096 === 0);
  if (options.filter.kind === 'pids') {
    assert.ok(options.filter.pids.length > 0 && options.filter.pids.every((pid) => Number.isSafeInteger(pid) && pid > 0));
  } else {
    assert.ok(options.filter.ids.length > 0 && options.filter.ids.every((id) => Number.isSafeInteger(id) && id > 0));
  }
  const probes = [
    ...openProbes(options),
    ...fdTableProbes(options),
    ...sizeProbes(),
    ...copyProbes(),
    ...lifetimeProbes(),
    ...hintAndMappingProbes(),
    ...dataProbes(SKY_HINT_MAGIC),
    aioProbe(),
  ].map((probe) => exitProbe(options, probe));
  return [beginProbe(options), processProbes(options), execProbes(options), storageCloseProbe(options), dupOverProbes(options), ioUringProbes(options), ...probes, ''].join('\n');
}
