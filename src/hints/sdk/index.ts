/**
 * Node SDK for the paper's application hints: iwrite/iread/ipwrite/ipread are write/read/pwrite64/pread64 with
 * two extra trailing syscall arguments, the hint magic and an I/O class. The kernel ignores arguments a syscall
 * does not take; Sky's eBPF tracer reads them from raw_syscalls:sys_enter and reports the call with its class.
 * Without a tracer these behave exactly like the plain calls.
 *
 * Synchronous like fs.writeSync: koffi cannot call variadic functions asynchronously, and a hint is about one
 * specific call anyway. Errors throw like Node's fs errors (`code`, `errno`, `syscall`).
 */
import assert from 'node:assert/strict';
import { constants } from 'node:os';
import koffi from 'koffi';
import { SKY_HINT_MAGIC as HINT_MAGIC, SKY_HINT_SYSCALLS, type HintedSyscall } from '../../trace/hint-abi.js';

type SyscallFn = (number: number, ...typedArgs: unknown[]) => number;

let syscallFn: SyscallFn | null = null;

function libcSyscall(): SyscallFn {
  if (syscallFn) return syscallFn;
  assert.equal(process.arch, 'x64', 'Sky hint syscalls are defined for x86_64 only');
  const libc = koffi.load('libc.so.6');
  syscallFn = libc.func('long syscall(long, ...)') as unknown as SyscallFn;
  return syscallFn;
}

const ERRNO_NAMES = new Map(Object.entries(constants.errno).map(([name, value]) => [value, name]));

function errnoError(syscall: string, errno: number): NodeJS.ErrnoException {
  const code = ERRNO_NAMES.get(errno) ?? `E${errno}`;
  const error: NodeJS.ErrnoException = new Error(`${code}: ${syscall} failed (hinted)`);
  error.code = code;
  error.errno = -errno;
  error.syscall = syscall;
  return error;
}

function checkArgs(fd: number, buffer: ArrayBufferView, ioClass: number, offset?: number): void {
  assert.ok(Number.isInteger(fd) && fd >= 0, `fd must be a non-negative integer, got ${fd}`);
  assert.ok(ArrayBuffer.isView(buffer), 'buffer must be a Buffer, TypedArray or DataView');
  assert.ok(Number.isInteger(ioClass) && ioClass >= 0 && ioClass <= 0xffff, `ioClass must be an integer in 0..65535, got ${ioClass}`);
  if (offset !== undefined) assert.ok(Number.isSafeInteger(offset) && offset >= 0, `offset must be a safe non-negative integer, got ${offset}`);
}

/** The regular arguments, then the hint as the next two: (magic, ioClass). */
function hinted(name: HintedSyscall, fd: number, buffer: ArrayBufferView, ioClass: number, offset?: number): number {
  checkArgs(fd, buffer, ioClass, offset);
  const regular: unknown[] = ['long', fd, 'void *', buffer, 'size_t', buffer.byteLength];
  if (offset !== undefined) regular.push('long', offset);
  assert.equal(regular.length / 2, SKY_HINT_SYSCALLS[name].magicArg, 'the magic must land where the tracer reads it');
  const result = libcSyscall()(SKY_HINT_SYSCALLS[name].nr, ...regular, 'long', HINT_MAGIC, 'long', ioClass);
  if (result < 0) throw errnoError(name, koffi.errno());
  return result;
}

/** write(2) with an I/O class hint; returns the bytes written (maybe fewer than buffer.byteLength). */
export function iwrite(fd: number, buffer: ArrayBufferView, ioClass: number): number {
  return hinted('write', fd, buffer, ioClass);
}

/** read(2) with an I/O class hint; returns the bytes read into buffer (0 at end of file). */
export function iread(fd: number, buffer: ArrayBufferView, ioClass: number): number {
  return hinted('read', fd, buffer, ioClass);
}

/** pwrite64(2) with an I/O class hint: writes at `offset` without moving the file position. */
export function ipwrite(fd: number, buffer: ArrayBufferView, offset: number, ioClass: number): number {
  return hinted('pwrite64', fd, buffer, ioClass, offset);
}

/** pread64(2) with an I/O class hint: reads at `offset` without moving the file position. */
export function ipread(fd: number, buffer: ArrayBufferView, offset: number, ioClass: number): number {
  return hinted('pread64', fd, buffer, ioClass, offset);
}

export { HINT_MAGIC };
