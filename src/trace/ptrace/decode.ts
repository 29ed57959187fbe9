/**
 * strace lines to SyscallEvents. Besides decoding each call this keeps the little process state strace does
 * not print on every line: which thread group a thread belongs to (from clone's flags) and, through the
 * aggregator, the fds that hold storage. strace may print a child's first calls before the clone that made it
 * returns in the parent; those lines wait until the clone says whose child it is.
 */
import assert from 'node:assert/strict';
import { FD_LINK_PATH, type SyscallEvent } from '../events.js';
import {
  AT_FDCWD, AT_REMOVEDIR, CLONE_THREAD, CREAT_FLAGS, F_DUPFD, F_DUPFD_CLOEXEC, F_SETFD, F_SETFL, F_SET_FILE_RW_HINT,
  F_SET_RW_HINT, FICLONE, FICLONERANGE, O_CLOEXEC, O_TRUNC, RWF_APPEND, RWF_NOAPPEND,
} from '../linux.js';
import { RwAggregator } from './aggregate.js';
import {
  Resumer, decoration, fdKindOf, parseBracketedNumber, parseNumber, parseStraceLine, parseString, parseStringArray, seenPath,
  structField, type StraceLine,
} from './parse.js';

type Call = Extract<StraceLine, { type: 'call' }>;
type Base = { ts: number; pid: number; tid: number };

export interface StraceDecoderOptions {
  /** Wall clock minus monotonic clock, in whole seconds and the remaining ns (strace prints wall time). */
  clockOffset: { sec: number; nsec: number };
  /** Threads known before tracing starts (pid targets): tid to thread-group id. */
  threads?: ReadonlyMap<number, number>;
}

/** Lines of threads whose clone has not returned yet; beyond this they are taken as their own group. */
const WAITING_LINES_MAX = 10_000;

/** Read/write calls: does it write, and which argument holds an explicit offset. */
const DATA_CALLS: Record<string, { write: boolean; offsetArg: number | null }> = {
  read: { write: false, offsetArg: null },
  write: { write: true, offsetArg: null },
  pread64: { write: false, offsetArg: 3 },
  pwrite64: { write: true, offsetArg: 3 },
  readv: { write: false, offsetArg: null },
  writev: { write: true, offsetArg: null },
  preadv: { write: false, offsetArg: 3 },
  pwritev: { write: true, offsetArg: 3 },
  preadv2: { write: false, offsetArg: 3 },
  pwritev2: { write: true, offsetArg: 3 },
};

export const TRACED_SYSCALLS = [
  'open', 'openat', 'openat2', 'creat', 'close', 'close_range', 'dup', 'dup2', 'dup3', 'fcntl', 'chdir', 'fchdir',
  'lseek', ...Object.keys(DATA_CALLS), 'truncate', 'ftruncate', 'fallocate', 'fsync', 'fdatasync', 'copy_file_range',
  'sendfile', 'splice', 'ioctl', 'unlink', 'unlinkat', 'rmdir', 'rename', 'renameat', 'renameat2', 'link', 'linkat', 'fadvise64',
  'ioprio_set', 'mmap', 'msync', 'munmap', 'execve', 'execveat', 'clone', 'clone3', 'fork', 'vfork', 'io_setup',
  'io_uring_setup',
] as const;

/** strace would print every AIO/io_uring request's buffer; their setup only says such requests will come, unseen. */
export const RAW_SYSCALLS = [...Object.keys(DATA_CALLS), 'io_setup', 'io_uring_setup'];

const ASYNC_UNSEEN_DETAIL = 'the ptrace backend does not see requests submitted through it';

export class StraceDecoder {
  private readonly resumer = new Resumer();
  private readonly groups = new Map<number, number>();
  private readonly waiting = new Map<number, StraceLine[]>();
  private readonly sharedMappings = new Set<number>();
  private readonly aggregator: RwAggregator;
  private waitingLines = 0;

  constructor(
    private readonly emit: (event: SyscallEvent) => void,
    private readonly options: StraceDecoderOptions,
  ) {
    this.aggregator = new RwAggregator(emit);
    for (const [tid, pid] of options.threads ?? []) this.groups.set(tid, pid);
  }

  line(text: string): void {
    const line = this.resumer.feed(parseStraceLine(text));
    if (!line || line.type === 'other' || line.type === 'unfinished' || line.type === 'resumed') return;
    if (!this.groups.has(line.tid)) {
      if (this.groups.size === 0) this.groups.set(line.tid, line.tid);
      else return this.wait(line);
    }
    this.handle(line);
  }

  /** Reports what is still aggregated (periodically, and when tracing ends). */
  flush(): void {
    this.aggregator.flushAll();
  }

  /** Tracing ended: threads whose clone never showed up are taken as their own thread group. */
  finish(): void {
    for (const tid of [...this.waiting.keys()]) this.adopt(tid, tid);
    this.aggregator.flushAll();
  }

  private wait(line: StraceLine): void {
    const lines = this.waiting.get(line.tid) ?? [];
    lines.push(line);
    this.waiting.set(line.tid, lines);
    if (++this.waitingLines > WAITING_LINES_MAX) this.finishWaiting();
  }

  private finishWaiting(): void {
    for (const tid of [...this.waiting.keys()]) this.adopt(tid, tid);
  }

  private adopt(tid: number, pid: number): void {
    this.groups.set(tid, pid);
    const lines = this.waiting.get(tid) ?? [];
    this.waiting.delete(tid);
    this.waitingLines -= lines.length;
    for (const line of lines) this.handle(line);
  }

  private handle(line: StraceLine): void {
    const pid = this.groups.get(line.tid);
    assert.ok(pid !== undefined);
    if (line.type === 'call') return this.call(line, { ts: this.ts(line), pid, tid: line.tid });
    if (line.type === 'exit' || line.type === 'killed') return this.exit(line, pid);
  }

  private ts(line: { sec: number; nsec: number }): number {
    const offset = this.options.clockOffset;
    return (line.sec - offset.sec) * 1e9 + (line.nsec - offset.nsec);
  }

  private exit(line: Extract<StraceLine, { type: 'exit' | 'killed' }>, pid: number): void {
    const group = line.tid === pid;
    const event: Extract<SyscallEvent, { kind: 'exit' }> = { kind: 'exit', ts: this.ts(line), pid, tid: line.tid, group };
    if (group && line.type === 'exit') event.code = line.code;
    if (group && line.type === 'killed') event.signal = line.signal;
    if (group) {
      this.aggregator.exited(pid);
      this.sharedMappings.delete(pid);
    }
    this.groups.delete(line.tid);
    this.emit(event);
  }

  private call(line: Call, b: Base): void {
    const { name, args } = line;
    const ret = line.ret.value;
    if (ret === null) return; // exit, exit_group: the +++ line reports them
    for (const arg of args) this.learn(b.pid, arg);
    const data = DATA_CALLS[name];
    if (data) return this.data(b, args, ret, data, line.name);
    const event = this.decode(line, b, ret);
    if (event) this.emit(event);
  }

  /** Any fd argument strace decorated tells us what it is. */
  private learn(pid: number, arg: string): void {
    const target = decoration(arg);
    const fd = target === null ? -1 : parseNumber(arg);
    if (fd >= 0) this.aggregator.learned(pid, fd, fdKindOf(target!), seenPath(target!));
  }

  private data(b: Base, args: string[], ret: number, call: { write: boolean; offsetArg: number | null }, name: string): void {
    const offset = call.offsetArg === null ? null : parseNumber(args[call.offsetArg]);
    const explicit = offset === null || offset === -1 ? null : offset; // preadv2/pwritev2: -1 is the position
    // pwritev2(fd, iov, iovcnt, pos_l, pos_h, flags), printed raw: RWF_APPEND appends whatever the offset,
    // RWF_NOAPPEND does not even on an O_APPEND fd.
    const flags = name === 'pwritev2' ? parseNumber(args[5] ?? '') : 0;
    const append = (flags & RWF_APPEND) !== 0 ? true : (flags & RWF_NOAPPEND) !== 0 ? false : null;
    this.aggregator.data(b.pid, b.tid, b.ts, parseNumber(args[0]), call.write, explicit, ret, append);
  }

  private decode(line: Call, b: Base, ret: number): SyscallEvent | null {
    const a = line.args;
    const n = (i: number) => parseNumber(a[i] ?? '');
    switch (line.name) {
      case 'open':
        return this.open(b, AT_FDCWD, a[0], n(1), a.length > 2 ? n(2) : 0, line);
      case 'openat':
        return this.open(b, n(0), a[1], n(2), a.length > 3 ? n(3) : 0, line);
      case 'creat':
        return this.open(b, AT_FDCWD, a[0], CREAT_FLAGS, n(1), line);
      case 'openat2':
        return this.open(b, n(0), a[1], structField(a[2], 'flags') ?? 0, structField(a[2], 'mode') ?? 0, line);
      case 'close':
        this.aggregator.closed(b.pid, n(0));
        return { kind: 'close', ...b, fd: n(0), ret };
      case 'close_range':
        this.aggregator.closedRange(b.pid, n(0), n(1));
        return { kind: 'close_range', ...b, first: n(0), last: n(1), flags: n(2), ret };
      case 'dup':
      case 'dup2':
      case 'dup3':
        return this.dup(b, n(0), line.name === 'dup3' && (n(2) & O_CLOEXEC) !== 0, line);
      case 'fcntl':
        return this.fcntl(b, n(0), n(1), a[2], line);
      case 'chdir':
        return this.withPath(a[0], (path) => ({ kind: 'chdir', ...b, path, ret }));
      case 'fchdir':
        return { kind: 'fchdir', ...b, fd: n(0), ret };
      case 'lseek':
        if (ret >= 0) this.aggregator.seeked(b.pid, n(0), ret, n(2), n(1));
        return { kind: 'lseek', ...b, fd: n(0), offset: n(1), whence: n(2), ret };
      // A size change goes after the writes before it: their summary first (as at fsync), or appends on both sides
      // of a truncation would be summed into one that lands past the cut. truncate(path) may name a file any fd
      // writes to: every pending summary goes (it is rare).
      case 'truncate':
        if (ret === 0) this.aggregator.cutSomewhere();
        return this.withPath(a[0], (path) => ({ kind: 'truncate', ...b, path, length: n(1), ret }));
      case 'ftruncate':
        this.aggregator.resized(b.pid, n(0), ret === 0 ? n(1) : null);
        return { kind: 'ftruncate', ...b, fd: n(0), length: n(1), ret };
      case 'fallocate':
        // A fallocate that changes the size (most modes can) leaves an append's end unknown: the file system knows it.
        this.aggregator.resized(b.pid, n(0), null);
        return { kind: 'fallocate', ...b, fd: n(0), mode: n(1), offset: n(2), length: n(3), ret };
      case 'fsync':
      case 'fdatasync':
        this.aggregator.flush(b.pid, n(0));
        return { kind: 'fsync', ...b, fd: n(0), dataOnly: line.name === 'fdatasync', ret };
      default:
        return this.decodeMore(line, b, ret);
    }
  }

  private decodeMore(line: Call, b: Base, ret: number): SyscallEvent | null {
    const a = line.args;
    const n = (i: number) => parseNumber(a[i] ?? '');
    switch (line.name) {
      case 'copy_file_range':
      case 'splice':
        return { kind: 'copy', ...b, call: line.name, fdIn: n(0), fdOut: n(2), offsetIn: parseBracketedNumber(a[1]), offsetOut: parseBracketedNumber(a[3]), length: n(4), ret };
      case 'sendfile':
        return { kind: 'copy', ...b, call: 'sendfile', fdIn: n(1), fdOut: n(0), offsetIn: parseBracketedNumber(a[2]), offsetOut: null, length: n(3), ret };
      case 'ioctl':
        return this.ioctl(b, n(0), n(1), a[2] ?? '', ret);
      case 'unlink':
      case 'rmdir':
        return this.withPath(a[0], (path) => ({ kind: 'unlink', ...b, dirfd: AT_FDCWD, path, flags: line.name === 'rmdir' ? AT_REMOVEDIR : 0, ret }));
      case 'unlinkat':
        return this.withPath(a[1], (path) => ({ kind: 'unlink', ...b, dirfd: n(0), path, flags: n(2), ret }));
      case 'rename':
        return this.rename(b, AT_FDCWD, a[0], AT_FDCWD, a[1], 0, ret);
      case 'renameat':
      case 'renameat2':
        return this.rename(b, n(0), a[1], n(2), a[3], a.length > 4 ? n(4) : 0, ret);
      case 'link':
        return this.rename(b, AT_FDCWD, a[0], AT_FDCWD, a[1], 0, ret, 'link');
      case 'linkat':
        return this.rename(b, n(0), a[1], n(2), a[3], n(4), ret, 'link');
      case 'fadvise64':
        return { kind: 'fadvise', ...b, fd: n(0), offset: n(1), length: n(2), advice: n(3), ret };
      case 'ioprio_set':
        return { kind: 'ioprio', ...b, which: n(0), who: n(1), ioprio: n(2), ret };
      case 'mmap':
        return this.mmap(b, n(0), n(1), n(2), n(3), n(4), n(5), ret);
      case 'msync':
        return this.sharedMappings.has(b.pid) ? { kind: 'msync', ...b, addr: n(0), length: n(1), flags: n(2), ret } : null;
      case 'munmap':
        return this.sharedMappings.has(b.pid) ? { kind: 'munmap', ...b, addr: n(0), length: n(1), ret } : null;
      case 'execve':
        return this.exec(b, a[0], a[1], ret);
      case 'execveat':
        return this.exec(b, a[1], a[2], ret);
      case 'clone':
      case 'clone3':
      case 'fork':
      case 'vfork':
        return this.fork(line, b, ret);
      case 'io_setup':
        return ret === 0 ? { kind: 'async_unseen', ...b, api: 'aio', detail: ASYNC_UNSEEN_DETAIL } : null;
      case 'io_uring_setup':
        return ret >= 0 ? { kind: 'async_unseen', ...b, api: 'io_uring', detail: ASYNC_UNSEEN_DETAIL } : null;
      default:
        return null;
    }
  }

  private withPath(arg: string | undefined, make: (path: string) => SyscallEvent): SyscallEvent | null {
    const parsed = parseString(arg ?? '');
    if (!parsed) return null;
    const event = make(parsed.value);
    if (parsed.truncated) event.truncated = true;
    return event;
  }

  private open(b: Base, dirfd: number, pathArg: string, flags: number, mode: number, line: Call): SyscallEvent | null {
    const ret = line.ret.value!;
    // O_TRUNC (whatever the access mode) cuts the file under counts other fds have pending (`: > log` while a
    // writer appends): those go first, as at a truncation by name.
    if (ret >= 0 && (flags & O_TRUNC) !== 0) this.aggregator.cutSomewhere();
    if (ret >= 0) this.aggregator.opened(b.pid, ret, fdKindOf(line.ret.target ?? ''), flags, seenPath(line.ret.target ?? ''));
    return this.withPath(pathArg, (path) => {
      // A reopen of some fd's link reaches a file other processes may have pending counts on: those go first.
      if (ret >= 0 && FD_LINK_PATH.test(path) && (flags & O_TRUNC) === 0) this.aggregator.flushAll();
      return { kind: 'open', ...b, dirfd, path, flags, mode, ret };
    });
  }

  private dup(b: Base, fd: number, cloexec: boolean, line: Call): SyscallEvent {
    const ret = line.ret.value!;
    const target = line.ret.target;
    if (ret >= 0) this.aggregator.duplicated(b.pid, fd, ret, target === null ? null : fdKindOf(target));
    const event: Extract<SyscallEvent, { kind: 'dup' }> = { kind: 'dup', ...b, fd, cloexec, ret };
    if (ret >= 0 && target !== null) event.seenPath = seenPath(target);
    return event;
  }

  /** Like the ebpf backend: dups as dup events, state changes as fcntl events, queries not at all. */
  private fcntl(b: Base, fd: number, cmd: number, arg: string | undefined, line: Call): SyscallEvent | null {
    if (cmd === F_DUPFD || cmd === F_DUPFD_CLOEXEC) return this.dup(b, fd, cmd === F_DUPFD_CLOEXEC, line);
    const ret = line.ret.value!;
    // strace 6.1 does not know the rw-hint commands, so their pointer argument is not followed: value unknown.
    if (cmd === F_SET_RW_HINT || cmd === F_SET_FILE_RW_HINT) return { kind: 'fcntl', ...b, fd, cmd, arg: -1, ret };
    if (cmd === F_SETFL && ret === 0) this.aggregator.flagsSet(b.pid, fd, parseNumber(arg ?? ''));
    if (cmd === F_SETFD || cmd === F_SETFL) return { kind: 'fcntl', ...b, fd, cmd, arg: parseNumber(arg ?? ''), ret };
    return null;
  }

  private ioctl(b: Base, fd: number, cmd: number, arg: string, ret: number): SyscallEvent | null {
    const unsigned = cmd >>> 0;
    if (unsigned === FICLONE) {
      return { kind: 'copy', ...b, call: 'FICLONE', fdIn: parseNumber(arg), fdOut: fd, offsetIn: null, offsetOut: null, length: 0, ret };
    }
    if (unsigned !== FICLONERANGE) return null;
    return {
      kind: 'copy', ...b, call: 'FICLONERANGE', fdIn: structField(arg, 'src_fd') ?? -1, fdOut: fd,
      offsetIn: structField(arg, 'src_offset'), offsetOut: structField(arg, 'dest_offset'), length: structField(arg, 'src_length') ?? 0, ret,
    };
  }

  private rename(b: Base, olddirfd: number, oldArg: string, newdirfd: number, newArg: string, flags: number, ret: number, kind: 'rename' | 'link' = 'rename'): SyscallEvent | null {
    const oldpath = parseString(oldArg ?? '');
    const newpath = parseString(newArg ?? '');
    if (!oldpath || !newpath) return null;
    const event: SyscallEvent = { kind, ...b, olddirfd, oldpath: oldpath.value, newdirfd, newpath: newpath.value, flags, ret };
    if (oldpath.truncated || newpath.truncated) event.truncated = true;
    return event;
  }

  /** Only shared writable file mappings, as in the ebpf backend: other mappings cannot write a file. */
  private mmap(b: Base, addr: number, length: number, prot: number, flags: number, fd: number, offset: number, ret: number): SyscallEvent | null {
    if ((flags & 1) === 0 || (prot & 2) === 0 || fd < 0 || ret < 0) return null;
    this.sharedMappings.add(b.pid);
    return { kind: 'mmap', ...b, addr, length, prot, flags, fd, offset, ret };
  }

  private exec(b: Base, pathArg: string, argvArg: string | undefined, ret: number): SyscallEvent | null {
    if (ret === 0) this.aggregator.flushProcess(b.pid);
    const argv = parseStringArray(argvArg ?? '');
    return this.withPath(pathArg, (path) => {
      const event: SyscallEvent = { kind: 'exec', ...b, path, ret };
      if (argv) event.argv = argv.values;
      if (argv?.truncated) event.truncated = true;
      return event;
    });
  }

  private fork(line: Call, b: Base, ret: number): SyscallEvent | null {
    if (ret <= 0) return null;
    const flags = line.name === 'clone' ? cloneFlags(line.args) : line.name === 'clone3' ? structField(line.args[0], 'flags') ?? 0 : 0;
    const thread = (flags & CLONE_THREAD) !== 0;
    const child = thread ? b.pid : ret;
    if (!thread) this.aggregator.forked(b.pid, ret);
    // The child may have run (and strace printed its calls) before clone returned in the parent: time the
    // fork when clone began, so it comes before everything the child did.
    const ts = line.start ? this.ts(line.start) : b.ts;
    this.emit({ kind: 'fork', ...b, ts, child, childTid: ret, thread });
    this.adopt(ret, child);
    return null;
  }
}

function cloneFlags(args: string[]): number {
  const flags = args.find((arg) => arg.startsWith('flags='));
  return flags ? parseNumber(flags.slice('flags='.length)) : 0;
}
