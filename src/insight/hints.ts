/**
 * Application hints: the paper's extra syscall arguments (magic, class) on read/write/pread64/pwrite64, and the
 * hints applications already give the kernel (posix_fadvise, F_SET_RW_HINT, ioprio_set), all mapped onto the
 * same class scale by the tables in ioclass.ts.
 */
import type { SyscallEvent } from '../trace/events.js';
import { FADVISE_CLASS, RW_HINT_CLASS, ioprioClass, type IoClass } from './ioclass.js';
import type { FdEntry, Process } from './process.js';
import type { EngineState } from './state.js';
import type { ByteRange, HintSource } from './types.js';

type Ev<K extends SyscallEvent['kind']> = Extract<SyscallEvent, { kind: K }>;

const IOPRIO_WHO_PROCESS = 1;

function emitFileHint(
  state: EngineState,
  process: Process,
  fd: number,
  entry: FdEntry,
  hint: { ioClass: IoClass; source: HintSource; raw: number; range?: ByteRange },
  ts: number,
): void {
  const file = entry.file.file;
  state.emit({
    kind: 'app_hint',
    ts,
    pid: process.pid,
    path: file?.path ?? entry.file.path,
    fd,
    ...hint,
    ...state.uncertainty(entry.file, file),
  });
}

/** A hinted read/write: `start` is the file offset the call used, when known. */
export function syscallArgsHint(
  state: EngineState,
  process: Process,
  ev: Ev<'rw'>,
  entry: FdEntry,
  start: number | null,
): void {
  if (!ev.hint) return;
  if (ev.hint.magic !== state.hintMagic) {
    state.counters.foreignHints++;
    return;
  }
  const range = start === null ? undefined : { offset: start, length: Math.max(ev.ret, 0) };
  const ioClass = ev.hint.ioClass;
  emitFileHint(state, process, ev.fd, entry, { ioClass, source: 'syscall-args', raw: ioClass, range }, ev.ts);
}

export function onFadvise(state: EngineState, ev: Ev<'fadvise'>): void {
  const ioClass = FADVISE_CLASS[ev.advice] ?? null;
  if (ev.ret !== 0 || ioClass === null) return;
  const process = state.processFor(ev);
  const entry = state.fdEntry(process, ev.fd, ev.ts);
  if (!entry?.file.file) return;
  const range = { offset: ev.offset, length: ev.length };
  emitFileHint(state, process, ev.fd, entry, { ioClass, source: 'fadvise', raw: ev.advice, range }, ev.ts);
}

/** F_SET_RW_HINT / F_SET_FILE_RW_HINT; `value` is the RWH_WRITE_LIFE_* the application passed. */
export function rwHint(state: EngineState, process: Process, fd: number, value: number, ts: number): void {
  const ioClass = RW_HINT_CLASS[value] ?? null;
  if (ioClass === null) return;
  const entry = state.fdEntry(process, fd, ts);
  if (!entry?.file.file) return;
  emitFileHint(state, process, fd, entry, { ioClass, source: 'rw_hint', raw: value }, ts);
}

export function onIoprio(state: EngineState, ev: Ev<'ioprio'>): void {
  const ioClass = ioprioClass(ev.ioprio);
  if (ev.ret !== 0 || ioClass === null) return;
  const process = state.processFor(ev);
  // ioprio_set(IOPRIO_WHO_PROCESS, 0, …) means the caller; other targets name a pid (or pgrp/user, kept as is).
  const pid = ev.which === IOPRIO_WHO_PROCESS && ev.who !== 0 ? ev.who : process.pid;
  state.emit({ kind: 'app_hint', ts: ev.ts, pid, path: null, fd: null, ioClass, source: 'ioprio', raw: ev.ioprio });
}
