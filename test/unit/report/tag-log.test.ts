/**
 * The tag-log layer under a real classify layer on a memory device: exact lines (header, requests with their tags,
 * re-tags, end), and that a log that cannot be written never fails or holds up a request.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MemoryDevice } from '../../../src/device/index.js';
import { ClassifyLayer, SemanticIndex } from '../../../src/semantics/index.js';
import { TagLogLayer, readTagLog, TagLogError, type TagLogRecord } from '../../../src/report/index.js';
import { newIoRequest } from '../../../src/volume/index.js';
import { makeTempDir, removeTempDirs } from '../../helpers/tmp.js';

const KiB = 1024;
const MiB = 1024 * KiB;

afterAll(() => removeTempDirs());

async function stack(logPath: string, options: { maxQueuedBytes?: number } = {}) {
  let now = 5000;
  const warnings: string[] = [];
  const index = new SemanticIndex();
  const tagLog = new TagLogLayer(new MemoryDevice({ size: 64 * MiB }), {
    path: logPath, volume: 'vol', clock: () => now, startedAt: new Date('2026-11-26T10:00:00Z'),
    onWarning: (w) => warnings.push(w), maxQueuedBytes: options.maxQueuedBytes,
  });
  const top = new ClassifyLayer(tagLog, { index });
  await top.open();
  return { index, tagLog, top, warnings, advance: (ms: number) => (now += ms) };
}

const lines = (file: string) => readFileSync(file, 'utf8').split('\n').filter((l) => l.length > 0).map((l) => JSON.parse(l) as Record<string, unknown>);

describe('TagLogLayer', () => {
  it('logs the header, each request with the tag classify gave it, re-tags, and an end line', async () => {
    const file = path.join(makeTempDir('sky-taglog-'), 'tags.jsonl');
    const { index, top, advance } = await stack(file);
    await top.write(newIoRequest(0, 4096), Buffer.alloc(4096, 1));
    advance(1.2346);
    // Before any hint: unknown. After FileExtents: reads in the extent are data of the file, the rest metadata.
    expect(index.accept({ type: 'FileExtents', fileId: 'f1', path: '/a/b.txt', size: 3000, extents: [{ volumeOffset: 1 * MiB, length: 8192 }], pid: 42, process: 'cat' })).toEqual({ ok: true });
    await top.read(newIoRequest(1 * MiB, 8192), Buffer.alloc(8192));
    advance(10);
    await top.read(newIoRequest(0, 512), Buffer.alloc(512));
    await top.trim(newIoRequest(8192, 4096));
    await top.zero(newIoRequest(12288, 4096));
    await top.cache(newIoRequest(0, 4096));
    // The file grows past 1 MiB: its class changes, and the range already seen is re-tagged.
    expect(index.accept({ type: 'FileClass', fileId: 'f1', size: 1_500_000, ioClass: 3 })).toEqual({ ok: true });
    advance(1);
    expect(index.accept({ type: 'FileGone', fileId: 'f1', cause: 'unlink' })).toEqual({ ok: true });
    await top.flush();
    await top.close();
    const f1 = { origin: 'data', ioClass: 4, fileId: 'f1', path: '/a/b.txt', fileSize: 3000, pid: 42, exe: 'cat' };
    const meta = { origin: 'metadata', ioClass: 5 };
    expect(lines(file)).toEqual([
      { sky: 'tag-log', v: 1, volume: 'vol', size: 64 * MiB, started: '2026-11-26T10:00:00.000Z' },
      { t: 0, op: 'write', offset: 0, length: 4096, tag: { origin: 'unknown', ioClass: 0 } },
      { t: 1.235, op: 'read', offset: 1 * MiB, length: 8192, tag: f1 },
      { t: 11.235, op: 'read', offset: 0, length: 512, tag: meta },
      { t: 11.235, op: 'trim', offset: 8192, length: 4096, tag: meta },
      { t: 11.235, op: 'zero', offset: 12288, length: 4096, tag: meta },
      { t: 11.235, op: 'cache', offset: 0, length: 4096, tag: meta },
      { t: 11.235, op: 'retag', cause: 'class', offset: 1 * MiB, length: 8192, tag: { ...f1, ioClass: 3, fileSize: 1_500_000 } },
      { t: 12.235, op: 'retag', cause: 'gone', offset: 1 * MiB, length: 8192, tag: { origin: 'unknown', ioClass: 0, hints: ['gone'] } },
      { t: 12.235, op: 'end', dropped: 0, lines: 8 },
    ]);
  });

  it('writes offsets past 2^31 and up to 2^53 - 1 digit for digit', async () => {
    const file = path.join(makeTempDir('sky-taglog-'), 'tags.jsonl');
    const { tagLog, top } = await stack(file);
    const offsets = [2 ** 31 - 1, 2 ** 31, 1e9, 1e9 + 7, 4_000_000_000_123, 10 * 2 ** 40, Number.MAX_SAFE_INTEGER];
    const tag = { origin: 'data' as const, ioClass: 0, fileId: 'big', fileSize: 2 ** 45, hints: new Set(['copy', 'app']) };
    tagLog.applyRetag(offsets.map((offset, k) => ({ offset, length: k * 1_000_000_007, tag })), 'extents');
    await top.close();
    const retags = lines(file).filter((line) => line.op === 'retag');
    expect(retags.map((line) => [line.offset, line.length])).toEqual(offsets.map((offset, k) => [offset, k * 1_000_000_007]));
    expect(retags[0]!.tag).toEqual({ origin: 'data', ioClass: 0, fileId: 'big', fileSize: 2 ** 45, hints: ['app', 'copy'] });
  });

  it('reads back what it wrote, record by record', async () => {
    const file = path.join(makeTempDir('sky-taglog-'), 'tags.jsonl');
    const { top } = await stack(file);
    for (let k = 0; k < 1000; k++) await top.write(newIoRequest(k * 4096, 4096), Buffer.alloc(4096, k & 0xff));
    await top.close();
    const records: TagLogRecord[] = [];
    const summary = await readTagLog(file, (r) => records.push(r));
    expect(summary).toMatchObject({ lines: 1002, requests: 1000, retags: 0, truncated: false, malformed: 0, end: { dropped: 0, lines: 1000 } });
    expect(records[999]).toEqual({ kind: 'request', line: 1001, t: 0, op: 'write', offset: 999 * 4096, length: 4096, tag: { origin: 'unknown', ioClass: 0 } });
  });

  it('drops lines (and counts them) when the writer falls more than the bound behind', async () => {
    const file = path.join(makeTempDir('sky-taglog-'), 'tags.jsonl');
    const { top, tagLog } = await stack(file, { maxQueuedBytes: 1 * MiB });
    // 40,000 requests issued without yielding: the writer gets no chance to run, so the queue (1 MiB) and the
    // chunk being filled (1 MiB) are all there is room for; ~96 bytes a line, so about 21,800 lines fit.
    const pending: Promise<void>[] = [];
    const data = Buffer.alloc(4096);
    for (let k = 0; k < 40_000; k++) pending.push(top.write(newIoRequest((k % 16_000) * 4096, 4096), data));
    await Promise.all(pending);
    await top.close();
    const { lines: logged, dropped } = tagLog.stats();
    expect(logged + dropped).toBe(40_000);
    expect(dropped).toBeGreaterThan(10_000);
    const all = lines(file);
    expect(all).toHaveLength(logged + 2);
    expect(all[all.length - 1]).toMatchObject({ op: 'end', dropped, lines: logged });
  });

  it('on a full disk gives one warning, stops logging, and every request still succeeds', async () => {
    const { top, tagLog, warnings } = await stack('/dev/full');
    const data = Buffer.alloc(64 * KiB, 7);
    // 40 MiB of writes and reads: many flushes of the log, each failing with ENOSPC (only the first one is tried).
    for (let k = 0; k < 320; k++) {
      await top.write(newIoRequest(k * 64 * KiB, 64 * KiB), data);
      const into = Buffer.alloc(64 * KiB);
      await top.read(newIoRequest(k * 64 * KiB, 64 * KiB), into);
      expect(into.equals(data)).toBe(true);
      if (k % 32 === 0) await new Promise((r) => setTimeout(r, 5));
    }
    await new Promise((r) => setTimeout(r, 250));
    await top.close();
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/writing tag log \/dev\/full failed \(ENOSPC\); logging stops, requests go on/);
    expect(tagLog.stats()).toMatchObject({ failed: true, bytesWritten: 0 });
  });

  it('on a path that cannot be opened fails the open with the path and the reason', async () => {
    const dir = makeTempDir('sky-taglog-');
    const notADirectory = path.join(dir, 'plain-file');
    writeFileSync(notADirectory, 'x');
    await expect(stack(path.join(notADirectory, 'tags.jsonl'))).rejects.toThrow(/^tag-log: cannot open .*plain-file\/tags.jsonl: ENOTDIR/);
  });
});

describe('readTagLog', () => {
  const header = JSON.stringify({ sky: 'tag-log', v: 1, volume: 'v', size: 1 * MiB, started: 'x' });
  const write = (text: string) => {
    const file = path.join(makeTempDir('sky-taglog-read-'), 'log.jsonl');
    writeFileSync(file, text);
    return file;
  };

  it('refuses a file that is not a tag log, naming why', async () => {
    await expect(readTagLog(write(''), () => undefined)).rejects.toThrow(/is empty: not a Sky tag log/);
    await expect(readTagLog(write('hello\n'), () => undefined)).rejects.toThrow(/is not a Sky tag log: its first line is not JSON/);
    await expect(readTagLog(write('{"t":0,"op":"read","offset":0,"length":1,"tag":null}\n'), () => undefined)).rejects.toThrow(TagLogError);
    await expect(readTagLog(write('{"sky":"tag-log","v":2,"size":1}\n'), () => undefined)).rejects.toThrow(/version 2; this sky reads version 1/);
  });

  it('skips a cut-short last line and reports it; counts malformed lines in the middle', async () => {
    const file = write(`${header}\n{"t":1,"op":"read","offset":0,"length":512,"tag":null}\nnot json\n{"t":2,"op":"write","offset":0,"length":512,"tag":nul`);
    const records: TagLogRecord[] = [];
    const summary = await readTagLog(file, (r) => records.push(r));
    expect(records).toEqual([{ kind: 'request', line: 2, t: 1, op: 'read', offset: 0, length: 512, tag: null }]);
    expect(summary).toMatchObject({ lines: 4, requests: 1, malformed: 1, firstMalformedLine: 3, truncated: true, end: null });
  });

  it('splits lines across read chunks (a 3 MiB log)', async () => {
    const line = (k: number) => JSON.stringify({ t: k, op: 'read', offset: k * 512, length: 512, tag: { origin: 'metadata', ioClass: 5, exe: 'x'.repeat(k % 50) } });
    const body = Array.from({ length: 30_000 }, (_, k) => line(k)).join('\n');
    let count = 0;
    let offsets = 0;
    const summary = await readTagLog(write(`${header}\n${body}\n`), (r) => {
      count++;
      if (r.kind === 'request') offsets += r.offset / 512;
    });
    expect(count).toBe(30_000);
    expect(offsets).toBe((30_000 * 29_999) / 2);
    expect(summary).toMatchObject({ truncated: false, malformed: 0 });
  });
});
