/**
 * Checks that an untrusted object (a line of a recorded log) is a SyscallEvent this version understands. The
 * schema is a table, one row per kind, so it is read next to events.ts and cannot grow a code path per kind.
 */
import type { SyscallEvent, SyscallEventKind } from './events.js';

type FieldType = 'int' | 'int|null' | 'str' | 'bool' | 'strs' | 'ints' | 'hint';
type Fields = Record<string, FieldType>;

const BASE: Fields = { ts: 'int', pid: 'int', tid: 'int' };
const BASE_OPTIONAL: Fields = { comm: 'str', truncated: 'bool' };

interface KindSchema {
  required: Fields;
  optional?: Fields;
}

const SCHEMA: Record<SyscallEventKind, KindSchema> = {
  fork: { required: { child: 'int', childTid: 'int', thread: 'bool' } },
  exec: { required: { path: 'str', ret: 'int' }, optional: { argv: 'strs', closedFds: 'ints' } },
  exit: { required: { group: 'bool' }, optional: { code: 'int', signal: 'int' } },
  open: {
    required: { dirfd: 'int', path: 'str', flags: 'int', mode: 'int', ret: 'int' },
    optional: { ino: 'int', dev: 'int', size: 'int', fileType: 'str', nlink: 'int', mtimeUs: 'int', dirIno: 'int', dirDev: 'int' },
  },
  close: { required: { fd: 'int', ret: 'int' } },
  close_range: { required: { first: 'int', last: 'int', flags: 'int', ret: 'int' } },
  dup: { required: { fd: 'int', cloexec: 'bool', ret: 'int' }, optional: { ino: 'int', dev: 'int', seenPath: 'str' } },
  fcntl: { required: { fd: 'int', cmd: 'int', arg: 'int', ret: 'int' } },
  chdir: { required: { path: 'str', ret: 'int' } },
  fchdir: { required: { fd: 'int', ret: 'int' }, optional: { ino: 'int', dev: 'int' } },
  rw: {
    required: { op: 'str', fd: 'int', offset: 'int|null', count: 'int', ret: 'int' },
    optional: { hint: 'hint', position: 'int' },
  },
  rw_summary: {
    required: {
      fd: 'int', readCalls: 'int', readBytes: 'int', writeCalls: 'int', writeBytes: 'int',
      writeStart: 'int', writeEnd: 'int', position: 'int',
    },
    optional: { ino: 'int', dev: 'int', writeHead: 'int', path: 'str' },
  },
  lseek: { required: { fd: 'int', offset: 'int', whence: 'int', ret: 'int' } },
  truncate: { required: { path: 'str', length: 'int', ret: 'int' } },
  ftruncate: { required: { fd: 'int', length: 'int', ret: 'int' } },
  fallocate: { required: { fd: 'int', mode: 'int', offset: 'int', length: 'int', ret: 'int' } },
  fsync: { required: { fd: 'int', dataOnly: 'bool', ret: 'int' } },
  copy: {
    required: {
      call: 'str', fdIn: 'int', fdOut: 'int', offsetIn: 'int|null', offsetOut: 'int|null', length: 'int', ret: 'int',
    },
    optional: { inIno: 'int', outIno: 'int' },
  },
  unlink: { required: { dirfd: 'int', path: 'str', flags: 'int', ret: 'int' }, optional: { dirIno: 'int', dirDev: 'int' } },
  rename: {
    required: { olddirfd: 'int', oldpath: 'str', newdirfd: 'int', newpath: 'str', flags: 'int', ret: 'int' },
    optional: { oldDirIno: 'int', oldDirDev: 'int', newDirIno: 'int', newDirDev: 'int' },
  },
  link: {
    required: { olddirfd: 'int', oldpath: 'str', newdirfd: 'int', newpath: 'str', flags: 'int', ret: 'int' },
    optional: { oldDirIno: 'int', oldDirDev: 'int', newDirIno: 'int', newDirDev: 'int' },
  },
  fadvise: { required: { fd: 'int', offset: 'int', length: 'int', advice: 'int', ret: 'int' } },
  ioprio: { required: { which: 'int', who: 'int', ioprio: 'int', ret: 'int' } },
  mmap: {
    required: { addr: 'int', length: 'int', prot: 'int', flags: 'int', fd: 'int', offset: 'int', ret: 'int' },
  },
  msync: { required: { addr: 'int', length: 'int', flags: 'int', ret: 'int' } },
  munmap: { required: { addr: 'int', length: 'int', ret: 'int' } },
  async_unseen: { required: { api: 'str', detail: 'str' } },
  lost: { required: { count: 'int' } },
};

const ENUMS: Record<string, readonly string[]> = {
  op: ['read', 'write'],
  call: ['copy_file_range', 'sendfile', 'splice', 'FICLONE', 'FICLONERANGE'],
  fileType: ['regular', 'directory', 'other'],
  api: ['io_uring', 'aio'],
};

function typeError(value: unknown, type: FieldType): string | null {
  switch (type) {
    case 'int':
      return Number.isSafeInteger(value) ? null : 'an integer';
    case 'int|null':
      return value === null || Number.isSafeInteger(value) ? null : 'an integer or null';
    case 'str':
      return typeof value === 'string' ? null : 'a string';
    case 'bool':
      return typeof value === 'boolean' ? null : 'a boolean';
    case 'strs':
      return Array.isArray(value) && value.every((item) => typeof item === 'string') ? null : 'an array of strings';
    case 'ints':
      return Array.isArray(value) && value.every((item) => Number.isSafeInteger(item)) ? null : 'an array of integers';
    case 'hint':
      return isHint(value) ? null : 'an object {magic, ioClass} of integers';
  }
}

function isHint(value: unknown): boolean {
  if (typeof value !== 'object' || value === null) return false;
  const hint = value as Record<string, unknown>;
  return Number.isSafeInteger(hint.magic) && Number.isSafeInteger(hint.ioClass) && Object.keys(hint).length === 2;
}

function checkFields(record: Record<string, unknown>, fields: Fields, required: boolean): string | null {
  for (const [name, type] of Object.entries(fields)) {
    const value = record[name];
    if (value === undefined) {
      if (required) return `field "${name}" is missing`;
      continue;
    }
    const expected = typeError(value, type);
    if (expected) return `field "${name}" must be ${expected}`;
    const allowed = ENUMS[name];
    if (allowed && !allowed.includes(value as string)) return `field "${name}" must be one of ${allowed.join(', ')}`;
  }
  return null;
}

/**
 * Returns why `value` is not a valid SyscallEvent, or null when it is. Fields this version does not know are
 * allowed: later versions add optional fields, and an older reader must still replay their logs.
 */
export function syscallEventError(value: unknown): string | null {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'not a JSON object';
  const record = value as Record<string, unknown>;
  const kind = record.kind;
  if (typeof kind !== 'string' || !Object.hasOwn(SCHEMA, kind)) return `unknown event kind ${JSON.stringify(kind)}`;
  const schema = SCHEMA[kind as SyscallEventKind];
  const problem =
    checkFields(record, BASE, true) ??
    checkFields(record, schema.required, true) ??
    checkFields(record, BASE_OPTIONAL, false) ??
    checkFields(record, schema.optional ?? {}, false);
  return problem ? `${kind} event: ${problem}` : null;
}

export function isSyscallEvent(value: unknown): value is SyscallEvent {
  return syscallEventError(value) === null;
}
