/**
 * Per-process file accounting stays at its bound for a process that only writes (tar -x), where the old bound
 * looked for a read-only entry through every entry on each new file and never found one (quadratic, unbounded).
 */
import { describe, expect, it } from 'vitest';
import type { FileRecord } from '../../../src/insight/files.js';
import { trimTarget } from '../../../src/util/bounded.js';
import { COPY_SOURCES_RECENT, fileIo, newProcess, PROCESS_IO_FILES_MAX, recordProcessRead } from '../../../src/insight/process.js';

const file = (n: number) => ({ path: `/f${n}` }) as unknown as FileRecord;

describe('process.io bound', () => {
  it('a writer of many files keeps at most PROCESS_IO_FILES_MAX, the newest, dropping the oldest an eighth at a time', () => {
    const process = newProcess(1, new Map() as never, false);
    const files = Array.from({ length: 3 * PROCESS_IO_FILES_MAX }, (_, n) => file(n));
    for (const f of files) fileIo(process, f).writeBytes += 4096;
    expect(process.io.size).toBeLessThanOrEqual(PROCESS_IO_FILES_MAX);
    expect(process.io.size).toBeGreaterThanOrEqual(trimTarget(PROCESS_IO_FILES_MAX));
    const kept = [...process.io.keys()];
    // The newest, in order, with nothing missing in between.
    expect(kept).toEqual(files.slice(files.length - kept.length));
  });

  it('drops a read-only entry among the oldest before a written one', () => {
    const process = newProcess(1, new Map() as never, false);
    const files = Array.from({ length: PROCESS_IO_FILES_MAX + 1 }, (_, n) => file(n));
    const batch = PROCESS_IO_FILES_MAX + 1 - trimTarget(PROCESS_IO_FILES_MAX);
    const readOnly = batch + 20; // beyond the batch, within the oldest few after it
    files.forEach((f, n) => {
      const io = fileIo(process, f);
      if (n === readOnly) io.readBytes += 1;
      else io.writeBytes += 1;
    });
    expect(process.io.size).toBe(trimTarget(PROCESS_IO_FILES_MAX));
    expect(process.io.has(files[readOnly]!)).toBe(false);
    // The read-only entry went in place of the newest written one of the batch.
    expect(process.io.has(files[batch - 1]!)).toBe(true);
    expect(process.io.has(files[batch - 2]!)).toBe(false);
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
