/**
 * The insight engine's data_written and file_synced (opt-in with reportWrites): the ranges it derives from each
 * way a backend reports writes — in-kernel aggregates (ebpf and ptrace both emit rw_summary), hinted calls one by
 * one, explicit copies — and that `sky trace` (reportWrites off) sees none of them.
 */
import { describe, expect, it } from 'vitest';
import { InsightEngine } from '../../../src/insight/index.js';
import { CREATE, Clock, O_APPEND, O_WRONLY, Task, ofKind, run } from '../insight/helpers.js';

function engine(reportWrites = true): InsightEngine {
  return new InsightEngine({ inspector: 'none', reportWrites });
}

describe('data_written', () => {
  it('reports the span of aggregated writes, with the file identity the kernel gave', () => {
    const t = new Task(new Clock(), 10);
    const insights = run(engine(), [
      { ...t.open('/mnt/a', CREATE, 3), ino: 77, dev: 2049 } as ReturnType<Task['open']>,
      t.summary(3, { writeCalls: 4, writeBytes: 16384, writeStart: 0, writeEnd: 16384, position: 16384 }),
      t.summary(3, { writeCalls: 1, writeBytes: 100, writeStart: 65536, writeEnd: 65636, position: 65636 }),
    ]);
    expect(ofKind(insights, 'data_written').map((i) => ({ path: i.path, dev: i.dev, ino: i.ino, fd: i.fd, range: i.range, via: i.via, pid: i.pid }))).toEqual([
      { path: '/mnt/a', dev: 2049, ino: 77, fd: 3, range: { offset: 0, length: 16384 }, via: 'write', pid: 10 },
      { path: '/mnt/a', dev: 2049, ino: 77, fd: 3, range: { offset: 65536, length: 100 }, via: 'write', pid: 10 },
    ]);
  });

  it('places O_APPEND writes a backend could not place at the end of the file as the engine knows it', () => {
    const t = new Task(new Clock(), 11);
    const insights = run(engine(), [
      t.open('/mnt/log', O_WRONLY | O_APPEND, 3),
      t.summary(3, { writeCalls: 1, writeBytes: 500, writeStart: -1, writeEnd: -1, position: -1 }),
    ]);
    // Size unknown (no inspector): the offsets are unknown, so the whole file is named and flagged.
    expect(ofKind(insights, 'data_written')).toMatchObject([{ range: { offset: 0, length: 500 }, uncertain: 'write offsets unknown: the whole file is named' }]);
    const u = new Task(new Clock(), 12);
    const known = run(engine(), [
      u.open('/mnt/log2', CREATE, 3),
      u.summary(3, { writeCalls: 1, writeBytes: 300, writeStart: 0, writeEnd: 300, position: 300 }),
      u.ev('fcntl', { fd: 3, cmd: 4, arg: O_APPEND, ret: 0 }),
      u.summary(3, { writeCalls: 1, writeBytes: 200, writeStart: -1, writeEnd: -1, position: -1 }),
    ]);
    expect(ofKind(known, 'data_written').map((i) => i.range)).toEqual([{ offset: 0, length: 300 }, { offset: 300, length: 200 }]);
  });

  it('reports hinted single writes and explicit copies into a file', () => {
    const t = new Task(new Clock(), 13);
    const insights = run(engine(), [
      t.open('/mnt/src', 0, 3),
      t.open('/mnt/dst', CREATE, 4),
      t.write(4, 4096, 8192, { magic: 0x5ca1ab1e, ioClass: 2 }),
      t.copy('copy_file_range', 3, 4, 65536),
    ]);
    // The pwrite at 8192; then copy_file_range at the position (0: the pwrite did not move it).
    expect(ofKind(insights, 'data_written').map((i) => [i.fd, i.range, i.via])).toEqual([
      [4, { offset: 8192, length: 4096 }, 'write'],
      [4, { offset: 0, length: 65536 }, 'copy_file_range'],
    ]);
  });

  it('reports fsync as file_synced, and nothing of the kind without reportWrites', () => {
    const t = new Task(new Clock(), 14);
    const events = [
      t.open('/mnt/db', CREATE, 3),
      t.summary(3, { writeCalls: 1, writeBytes: 4096, writeStart: 0, writeEnd: 4096, position: 4096 }),
      t.ev('fsync', { fd: 3, dataOnly: true, ret: 0 }),
    ];
    const on = run(engine(true), events);
    expect(ofKind(on, 'file_synced')).toMatchObject([{ path: '/mnt/db', fd: 3, dataOnly: true, pid: 14 }]);
    const t2 = new Task(new Clock(), 14);
    const off = run(engine(false), [
      t2.open('/mnt/db', CREATE, 3),
      t2.summary(3, { writeCalls: 1, writeBytes: 4096, writeStart: 0, writeEnd: 4096, position: 4096 }),
      t2.ev('fsync', { fd: 3, dataOnly: true, ret: 0 }),
    ]);
    expect(off.filter((i) => i.kind === 'data_written' || i.kind === 'file_synced')).toEqual([]);
    expect(off.length).toBe(on.length - 2);
  });
});
