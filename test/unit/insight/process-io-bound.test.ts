/**
 * Per-process file accounting stays at its bound for a process that only writes (tar -x), where the old bound
 * looked for a read-only entry through every entry on each new file and never found one (quadratic, unbounded).
 */
import { describe, expect, it } from 'vitest';
import type { FileRecord } from '../../../src/insight/files.js';
import { COPY_SOURCES_RECENT, fileIo, newProcess, PROCESS_IO_FILES_MAX, recordProcessRead } from '../../../src/insight/process.js';

const file = (n: number) => ({ path: `/f${n}` }) as unknown as FileRecord;

describe('process.io bound', () => {
  it('a writer of many files keeps the newest PROCESS_IO_FILES_MAX, dropping the oldest', () => {
    const process = newProcess(1, new Map() as never, false);
    const files = Array.from({ length: 3 * PROCESS_IO_FILES_MAX }, (_, n) => file(n));
    for (const f of files) fileIo(process, f).writeBytes += 4096;
    expect(process.io.size).toBe(PROCESS_IO_FILES_MAX);
    expect(process.io.has(files.at(-1)!)).toBe(true);
    expect(process.io.has(files[2 * PROCESS_IO_FILES_MAX - 1]!)).toBe(false);
    expect([...process.io.keys()][0]).toBe(files[2 * PROCESS_IO_FILES_MAX]);
  });

  it('drops a read-only entry among the oldest before a written one', () => {
    const process = newProcess(1, new Map() as never, false);
    const files = Array.from({ length: PROCESS_IO_FILES_MAX + 1 }, (_, n) => file(n));
    files.forEach((f, n) => {
      const io = fileIo(process, f);
      if (n === 10) io.readBytes += 1; // the one file only read
      else io.writeBytes += 1;
    });
    expect(process.io.size).toBe(PROCESS_IO_FILES_MAX);
    expect(process.io.has(files[10]!)).toBe(false);
    expect(process.io.has(files[0]!)).toBe(true);
  });

  it('keeps the COPY_SOURCES_RECENT files read last as copy sources, in order of last read', () => {
    const process = newProcess(1, new Map() as never, false);
    const files = Array.from({ length: 1000 }, (_, n) => file(n));
    for (const f of files) recordProcessRead(process, f, 16_384);
    recordProcessRead(process, files[500]!, 4096); // read again: the newest source now
    const recent = [...process.readIo];
    expect(recent).toHaveLength(COPY_SOURCES_RECENT);
    expect(recent.at(-1)).toBe(files[500]);
    expect(recent[0]).toBe(files[1000 - COPY_SOURCES_RECENT + 1]);
    expect(recent.every((f) => process.io.has(f))).toBe(true);
  });
});
