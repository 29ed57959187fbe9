/**
 * Shared writable file mappings. Stores through them never pass a write syscall, so the only moments storage
 * can learn about them are msync, munmap, fsync of the file, and the mapping's end at exit or execve: each of
 * those reports the mapped file range as written back.
 */
import type { SyscallEvent } from '../trace/events.js';
import { noteChange, noteData } from './files.js';
import { isSharedWritableMapping } from '../trace/linux.js';
import type { Mapping, Process } from './process.js';
import type { EngineState } from './state.js';
import type { WritebackTrigger } from './types.js';

type Ev<K extends SyscallEvent['kind']> = Extract<SyscallEvent, { kind: K }>;

/** mmap returns an address; failures are -errno, which never look like a user-space address. */
function failed(ret: number): boolean {
  return ret < 0 && ret > -4096;
}

export function onMmap(state: EngineState, ev: Ev<'mmap'>): void {
  if (failed(ev.ret) || !isSharedWritableMapping(ev.prot, ev.flags, ev.fd)) return;
  const process = state.processFor(ev);
  const file = state.fdEntry(process, ev.fd, ev.ts)?.file.file;
  if (!file || file.metadata) return;
  file.mappedShared = true; // stores through it make no syscall: nothing about its bytes is trusted again
  noteData(file, null, null, 0); // where stores through it put data is unknown
  noteChange(file, null);
  process.mappings.push({ start: ev.ret, length: ev.length, file, fileOffset: ev.offset });
}

export function onMsync(state: EngineState, ev: Ev<'msync'>): void {
  if (ev.ret !== 0) return;
  const process = state.processFor(ev);
  for (const mapping of process.mappings) writeBackOverlap(state, process, mapping, ev.addr, ev.length, 'msync', ev.ts);
}

export function onMunmap(state: EngineState, ev: Ev<'munmap'>): void {
  if (ev.ret !== 0) return;
  const process = state.processFor(ev);
  const kept: Mapping[] = [];
  for (const mapping of process.mappings) {
    writeBackOverlap(state, process, mapping, ev.addr, ev.length, 'munmap', ev.ts);
    kept.push(...remainder(mapping, ev.addr, ev.length));
  }
  process.mappings = kept;
}

/** fsync writes back every dirty page of the file, whichever process dirtied it. */
export function writeBackFile(state: EngineState, fileId: number, ts: number): void {
  for (const process of state.processes.values()) {
    for (const mapping of process.mappings) {
      if (mapping.file.id === fileId) emitWriteback(state, process, mapping, mapping.start, mapping.length, 'fsync', ts);
    }
  }
}

/** exit and execve unmap everything; the kernel writes the dirty pages back later, but they are written. */
export function endMappings(state: EngineState, process: Process, trigger: WritebackTrigger, ts: number): void {
  for (const mapping of process.mappings) emitWriteback(state, process, mapping, mapping.start, mapping.length, trigger, ts);
  process.mappings = [];
}

function writeBackOverlap(
  state: EngineState,
  process: Process,
  mapping: Mapping,
  addr: number,
  length: number,
  trigger: WritebackTrigger,
  ts: number,
): void {
  const start = Math.max(mapping.start, addr);
  const end = Math.min(mapping.start + mapping.length, addr + length);
  if (start < end) emitWriteback(state, process, mapping, start, end - start, trigger, ts);
}

function emitWriteback(
  state: EngineState,
  process: Process,
  mapping: Mapping,
  addr: number,
  length: number,
  trigger: WritebackTrigger,
  ts: number,
): void {
  const range = { offset: mapping.fileOffset + (addr - mapping.start), length };
  state.emit({
    kind: 'mmap_writeback',
    ts,
    pid: process.pid,
    ...state.fileRef(mapping.file),
    range,
    trigger,
    ...state.uncertainty(process, mapping.file),
  });
}

/** What is left of a mapping after unmapping [addr, addr+length): nothing, one piece, or two. */
function remainder(mapping: Mapping, addr: number, length: number): Mapping[] {
  const end = mapping.start + mapping.length;
  const cutEnd = addr + length;
  if (cutEnd <= mapping.start || addr >= end) return [mapping];
  const pieces: Mapping[] = [];
  if (addr > mapping.start) pieces.push({ ...mapping, length: addr - mapping.start });
  if (cutEnd < end) {
    pieces.push({ ...mapping, start: cutEnd, length: end - cutEnd, fileOffset: mapping.fileOffset + (cutEnd - mapping.start) });
  }
  return pieces;
}
