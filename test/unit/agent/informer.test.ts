/**
 * The Informer on synthetic insights and an in-memory file system: exact messages for opens, written ranges
 * (coalesced, aligned, zero-padded tail), refreshes after close, copies, lifetimes, hints, bounds, and files that
 * vanish. Routing is per device: the fake's locate() counts its calls.
 */
import { describe, expect, it } from 'vitest';
import { Informer, insertRange, mergeExtents, takeRanges, type AgentFileSystem, type OpenedFile, type VolumePlacement } from '../../../src/agent/index.js';
import type { Insight } from '../../../src/insight/index.js';
import { FINGERPRINTS_PER_MESSAGE_MAX, fingerprintBlocksHex, fingerprintHex, quickKey, quickKeysOf, type SemanticMessage, type VolumeExtent } from '../../../src/semantics/index.js';

const ON = 1;
const OFF = 2;
const KiB = 1024;

interface FakeFile {
  dev: number;
  ino: number;
  data: Buffer;
  extents: VolumeExtent[];
  /** Every byte placed (no delayed allocation); undefined: the file system does not say. */
  settled?: boolean;
}

class FakeFs implements AgentFileSystem {
  readonly files = new Map<string, FakeFile>();
  readonly locates: number[] = [];
  readonly opened: string[] = [];
  /** Blocks placed at write() (like ext2/ext3): set before the first file is seen. */
  allocatesAtWrite = false;
  fingerprintBlockBytes: 1024 | 2048 | undefined = undefined;
  private placementMade: VolumePlacement | null = null;
  private get placement(): VolumePlacement {
    return (this.placementMade ??= {
      label: 'fake volume',
      ...(this.allocatesAtWrite ? { allocatesAtWrite: true } : {}),
      ...(this.fingerprintBlockBytes ? { fingerprintBlockBytes: this.fingerprintBlockBytes } : {}),
    });
  }
  /** Set: the file system keeps file data apart (like btrfs's data block groups), in these ranges. */
  dataRegions: VolumeExtent[] | null = null;
  dataRegionsFail = false;
  private readonly regionPlacement: VolumePlacement = {
    label: 'fake btrfs',
    dataRegions: () => {
      if (this.dataRegionsFail) throw new Error('BTRFS_IOC_TREE_SEARCH failed: EIO');
      return (this.dataRegions ?? []).map((r) => ({ ...r }));
    },
  };

  add(path: string, ino: number, data: Buffer, extents: VolumeExtent[] = [], dev = ON): FakeFile {
    const file = { dev, ino, data, extents };
    this.files.set(path, file);
    return file;
  }

  locate(dev: number): VolumePlacement | null {
    this.locates.push(dev);
    return dev === ON ? (this.dataRegions ? this.regionPlacement : this.placement) : null;
  }

  // No directories: its placement names no mount point, so extent read-ahead never walks it.
  list(): never {
    throw Object.assign(new Error('ENOTDIR'), { code: 'ENOTDIR' });
  }

  identify(): never {
    throw Object.assign(new Error('ENOTDIR'), { code: 'ENOTDIR' });
  }

  open(path: string): OpenedFile {
    this.opened.push(path);
    const file = this.files.get(path);
    if (!file) throw Object.assign(new Error(`ENOENT: ${path}`), { code: 'ENOENT' });
    return {
      dev: file.dev,
      ino: file.ino,
      size: file.data.length,
      read: (into, length, position) => file.data.copy(into, 0, position, Math.min(position + length, file.data.length)),
      extents: () => file.extents.map((e) => ({ ...e })),
      ...(file.settled === undefined ? {} : { settled: () => file.settled! }),
      close: () => undefined,
    };
  }
}

function setup(options: Partial<ConstructorParameters<typeof Informer>[0]> = {}) {
  const fs = new FakeFs();
  const sent: SemanticMessage[] = [];
  const informer = new Informer({ sink: (m) => sent.push(m), fs, debounceMs: 5, refreshDelaysMs: [40], ...options });
  return { fs, sent, informer };
}

const base = { ts: 1, pid: 100 };
const ref = (path: string, ino: number, dev = ON) => ({ path, dev, ino });

function opened(path: string, ino: number, fd: number, dev = ON): Insight {
  return { kind: 'file_opened', ...base, ...ref(path, ino, dev), fd, flags: 0, size: null, ioClass: 4, metadata: false, exe: '/usr/bin/dd', discovered: false };
}
function written(path: string, ino: number, fd: number, offset: number, length: number, via: 'write' | 'copy_file_range' | 'FICLONE' = 'write'): Insight {
  return { kind: 'data_written', ...base, ...ref(path, ino), fd, range: { offset, length }, via };
}
function closed(path: string, ino: number, fd: number, writeBytes: number): Insight {
  return {
    kind: 'file_closed', ...base, ...ref(path, ino), fd, size: null, ioClass: 4, metadata: false, readBytes: 0, writeBytes, position: null, cause: 'close',
  };
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Bytes the file system writes for [start, end) of `data`: whole blocks, the tail zero-padded. */
/** The whole blocks covering [start, end) of `data`, the last one zero-padded (as the agent reads them back). */
function paddedBlocks(data: Buffer, start: number, end: number): Buffer {
  const padded = Buffer.alloc(Math.ceil(data.length / 4096) * 4096);
  data.copy(padded);
  return padded.subarray(Math.floor(start / 4096) * 4096, Math.min(Math.ceil(end / 4096) * 4096, padded.length));
}

function blocksOf(data: Buffer, start: number, end: number): string[] {
  return fingerprintBlocksHex(paddedBlocks(data, start, end));
}

function keysOf(data: Buffer, start: number, end: number): number[] {
  return quickKeysOf(paddedBlocks(data, start, end));
}

describe('Informer', () => {
  it('maps a file on open and ignores files on other devices, deciding once per device', () => {
    const { fs, sent, informer } = setup();
    fs.add('/mnt/a', 10, Buffer.alloc(8192, 1), [{ volumeOffset: 1 << 20, length: 4096 }, { volumeOffset: (1 << 20) + 4096, length: 4096 }]);
    fs.add('/elsewhere/x', 11, Buffer.alloc(10), [], OFF);
    fs.add('/elsewhere/y', 12, Buffer.alloc(10), [], OFF);
    informer.handle(opened('/mnt/a', 10, 3));
    informer.handle(opened('/elsewhere/x', 11, 4, OFF));
    informer.handle(opened('/elsewhere/y', 12, 5, OFF));
    informer.handle(opened('/mnt/a', 10, 6)); // unchanged since: not sent again
    expect(sent).toEqual([
      // Contiguous extents are merged; the process is the exe's name.
      { type: 'FileExtents', fileId: '1:10', path: '/mnt/a', size: 8192, extents: [{ volumeOffset: 1 << 20, length: 8192 }], pid: 100, process: 'dd' },
    ]);
    expect(fs.locates).toEqual([ON, OFF]);
    // The file was opened by its path (the writer's fd is the fallback, for renamed or unlinked files).
    expect(fs.opened[0]).toBe('/mnt/a');
    const stats = informer.stats();
    expect(stats.files).toBe(1);
    expect(stats.skippedFiles).toBe(2);
    expect(stats.devices).toEqual({ onVolume: 1, elsewhere: 1 });
  });

  it('tells the engine where a file system keeps only file data, again when that changes, and keeps the last set when it cannot read it', async () => {
    const { fs, sent, informer } = setup({ dataRegionsRefreshMs: 20 });
    fs.dataRegions = [{ volumeOffset: 64 << 20, length: 1 << 30 }, { volumeOffset: 8 << 20, length: 8 << 20 }];
    fs.add('/mnt/a', 10, Buffer.alloc(10), []);
    informer.handle(opened('/mnt/a', 10, 3));
    const regions = () => sent.filter((m) => m.type === 'DataRegions');
    expect(regions()).toEqual([
      { type: 'DataRegions', regions: [{ volumeOffset: 8 << 20, length: 8 << 20 }, { volumeOffset: 64 << 20, length: 1 << 30 }], source: 'btrfs data block groups' },
    ]);
    await sleep(60);
    expect(regions()).toHaveLength(1); // unchanged: not sent again
    fs.dataRegions.push({ volumeOffset: 2 * 2 ** 30, length: 2 ** 30 }); // a block group allocated as the file system fills
    await sleep(60);
    expect(regions()).toHaveLength(2);
    expect(regions()[1]).toMatchObject({ regions: [{}, {}, { volumeOffset: 2 * 2 ** 30 }] });
    expect(informer.stats().dataRegionBytes).toBe((8 << 20) + 2 * 2 ** 30);
    fs.dataRegionsFail = true;
    await sleep(60);
    expect(regions()).toHaveLength(2);
    expect(informer.stats().lastError).toMatch(/where fake btrfs keeps file data: BTRFS_IOC_TREE_SEARCH failed: EIO/);
    await informer.flush();
  });

  it('maps a closed file instead of reading it back where the file system placed its blocks at write()', async () => {
    const { fs, sent, informer } = setup();
    fs.allocatesAtWrite = true;
    fs.add('/mnt/w', 40, Buffer.alloc(8192, 7), [{ volumeOffset: 16 << 20, length: 8192 }]).settled = true;
    informer.handle({ ...opened('/mnt/w', 40, 3), flags: 0o1101, size: 0 } as Insight);
    informer.handle(written('/mnt/w', 40, 3, 0, 8192));
    informer.handle(closed('/mnt/w', 40, 3, 8192));
    expect(sent).toMatchObject([{ type: 'FileExtents', fileId: '1:40', extents: [{ volumeOffset: 16 << 20, length: 8192 }] }]);
    await sleep(80);
    expect(sent.map((m) => m.type)).toEqual(['FileExtents']); // nothing read back, no refresh due
    expect(informer.stats().readbacksMapped).toBe(1);
    // A byte without a place yet (delayed allocation after all): read back as everywhere else.
    fs.add('/mnt/d', 41, Buffer.alloc(4096, 8), []).settled = false;
    informer.handle({ ...opened('/mnt/d', 41, 4), flags: 0o1101, size: 0 } as Insight);
    informer.handle(written('/mnt/d', 41, 4, 0, 4096));
    informer.handle(closed('/mnt/d', 41, 4, 4096));
    expect(sent.slice(1).map((m) => m.type)).toContain('WriteFingerprints');
    expect(informer.stats().readbacksMapped).toBe(1);
    // A file still being written (no close yet) is mapped when its readback falls due.
    fs.add('/mnt/big', 42, Buffer.alloc(8192, 9), [{ volumeOffset: 32 << 20, length: 8192 }]).settled = true;
    informer.handle({ ...opened('/mnt/big', 42, 5), flags: 0o1101, size: 0 } as Insight);
    informer.handle(written('/mnt/big', 42, 5, 0, 8192));
    await sleep(30);
    expect(sent.at(-1)).toMatchObject({ type: 'FileExtents', fileId: '1:42' });
    expect(informer.stats().readbacksMapped).toBe(2);
    await informer.flush();
  });

  it('fingerprints in the file system\'s own blocks where they are under 4 KiB (a 1 KiB ext4), zero-padding the last', async () => {
    const { fs, sent, informer } = setup();
    fs.fingerprintBlockBytes = 1024;
    const data = Buffer.alloc(2500);
    for (let i = 0; i < data.length; i++) data[i] = (i * 31 + 1) & 0xff;
    fs.add('/mnt/k', 43, data);
    informer.handle({ ...opened('/mnt/k', 43, 3), flags: 0o1101, size: 0 } as Insight);
    informer.handle(written('/mnt/k', 43, 3, 0, 2500));
    informer.handle(closed('/mnt/k', 43, 3, 2500));
    await informer.flush();
    const prints = sent.find((m) => m.type === 'WriteFingerprints');
    const padded = Buffer.concat([data, Buffer.alloc(3 * 1024 - 2500)]);
    const blocks = [0, 1, 2].map((k) => padded.subarray(k * 1024, (k + 1) * 1024));
    expect(prints).toMatchObject({ blockSize: 1024, fingerprints: blocks.map((b) => fingerprintHex(b)), quickKeys: blocks.map((b) => quickKey(b, 0, 1024)) });
  });

  it('maps nothing at an open that created or truncated the file (size 0), and maps it once written and closed', async () => {
    const { fs, sent, informer } = setup();
    fs.add('/mnt/new', 30, Buffer.alloc(4096, 5), [{ volumeOffset: 8 << 20, length: 4096 }]);
    informer.handle({ ...opened('/mnt/new', 30, 3), flags: 0o1101, size: 0 } as Insight);
    expect(sent).toEqual([]);
    expect(fs.opened).toEqual([]);
    informer.handle(written('/mnt/new', 30, 3, 0, 4096));
    informer.handle(closed('/mnt/new', 30, 3, 4096));
    expect(sent.map((m) => m.type)).toEqual(['WriteFingerprints']); // read back at once, mapped at the refresh
    await sleep(80);
    expect(sent.map((m) => m.type)).toEqual(['WriteFingerprints', 'FileExtents']);
    expect(sent[1]).toMatchObject({ fileId: '1:30', extents: [{ volumeOffset: 8 << 20, length: 4096 }] });
  });

  it('coalesces small writes into one readback of whole blocks, zero-padding the tail', async () => {
    const { fs, sent, informer } = setup({ ttlMs: 90_000 });
    const data = Buffer.alloc(4 * 4096 + 100);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7 + 3) & 0xff;
    fs.add('/proc/100/fd/3', 10, data);
    informer.handle(opened('/mnt/a', 10, 3));
    sent.length = 0;
    for (let k = 0; k < 4; k++) informer.handle(written('/mnt/a', 10, 3, k * 4096, 4096));
    informer.handle(written('/mnt/a', 10, 3, 4 * 4096, 100));
    await informer.flush();
    expect(sent).toEqual([
      { type: 'WriteFingerprints', fileId: '1:10', blockSize: 4096, fingerprints: blocksOf(data, 0, data.length), quickKeys: keysOf(data, 0, data.length), ttlMs: 90_000, path: '/mnt/a', size: data.length, pid: 100, process: 'dd' },
    ]);
    expect(sent[0]!.type === 'WriteFingerprints' && sent[0]!.fingerprints.length).toBe(5);
    const stats = informer.stats();
    expect(stats.readbacks).toBe(1);
    expect(stats.bytesFingerprinted).toBe(data.length);
    expect(stats.blocksFingerprinted).toBe(5);
  });

  it('reads back after the debounce without a flush, only the blocks written (clamped to the size), never zero blocks', async () => {
    const { fs, sent, informer } = setup();
    const data = Buffer.alloc(64 * KiB, 9);
    data.fill(0, 8 * KiB, 12 * KiB); // a zero block: ambiguous, never sent
    fs.add('/mnt/b', 20, data);
    informer.handle(written('/mnt/b', 20, 7, 5000, 9000)); // blocks 1..3 (4096..16384)
    informer.handle(written('/mnt/b', 20, 7, 60 * KiB, 100 * KiB)); // beyond the end: clamped to block 15
    await sleep(60);
    expect(sent.map((m) => m.type)).toEqual(['WriteFingerprints']);
    const expected = [...blocksOf(data, 4096, 16384), ...blocksOf(data, 60 * KiB, 64 * KiB)].filter((_, i) => i !== 1);
    expect(sent[0]).toMatchObject({ fileId: '1:20', fingerprints: expected, size: 64 * KiB });
    expect(informer.stats().zeroBlocks).toBe(1);
    // The path names the file: the writer's fd was not needed.
    expect(fs.opened).toEqual(['/mnt/b']);
  });

  it('splits fingerprints at FINGERPRINTS_PER_MESSAGE_MAX', async () => {
    const { fs, sent, informer } = setup();
    const blocks = FINGERPRINTS_PER_MESSAGE_MAX + 10;
    const data = Buffer.alloc(blocks * 4096);
    for (let b = 0; b < blocks; b++) data.writeUInt32LE(b + 1, b * 4096);
    fs.add('/mnt/big', 30, data);
    informer.handle(written('/mnt/big', 30, 3, 0, data.length));
    await informer.flush();
    const counts = sent.map((m) => (m.type === 'WriteFingerprints' ? m.fingerprints.length : -1));
    expect(counts).toEqual([FINGERPRINTS_PER_MESSAGE_MAX, 10]);
    expect(new Set(sent.flatMap((m) => (m.type === 'WriteFingerprints' ? m.fingerprints : []))).size).toBe(blocks);
    // Each message's quick keys are its own blocks', in order.
    expect(sent.flatMap((m) => (m.type === 'WriteFingerprints' ? m.quickKeys! : []))).toEqual(keysOf(data, 0, data.length));
  });

  it('refreshes extents at close of a written file and again after the delay', async () => {
    const { fs, sent, informer } = setup();
    const file = fs.add('/mnt/c', 40, Buffer.alloc(8192, 5));
    informer.handle(opened('/mnt/c', 40, 3));
    informer.handle(written('/mnt/c', 40, 3, 0, 8192));
    informer.handle(closed('/mnt/c', 40, 3, 8192));
    // At close: the readback first, then the extents (still delayed allocation: none placed), sent once.
    expect(sent.map((m) => m.type)).toEqual(['FileExtents', 'WriteFingerprints']);
    file.extents = [{ volumeOffset: 4096 * 100, length: 8192 }];
    await sleep(80);
    expect(sent.map((m) => m.type)).toEqual(['FileExtents', 'WriteFingerprints', 'FileExtents']);
    expect(sent[2]).toEqual({ type: 'FileExtents', fileId: '1:40', path: '/mnt/c', size: 8192, extents: [{ volumeOffset: 409600, length: 8192 }], pid: 100, process: 'dd' });
    expect(informer.backlog).toEqual({ readbacks: 0, refreshes: 0 });
  });

  it('drops the refreshes of a file whose every byte is placed, keeps them while allocation is delayed', () => {
    const { fs, informer } = setup({ refreshDelaysMs: [60_000, 120_000] });
    const placed = fs.add('/mnt/p', 44, Buffer.alloc(4096, 1), [{ volumeOffset: 4096, length: 4096 }]);
    placed.settled = true;
    const delayed = fs.add('/mnt/q', 45, Buffer.alloc(4096, 2));
    delayed.settled = false;
    const synced = (path: string, ino: number): Insight => ({ kind: 'file_synced', ...base, ...ref(path, ino), fd: 3, dataOnly: false });
    informer.handle(written('/mnt/p', 44, 3, 0, 4096));
    informer.handle(synced('/mnt/p', 44));
    expect(informer.backlog.refreshes).toBe(0);
    informer.handle(written('/mnt/q', 45, 4, 0, 4096));
    informer.handle(synced('/mnt/q', 45));
    expect(informer.backlog.refreshes).toBe(2);
  });

  it('flush runs scheduled refreshes at once', async () => {
    const { fs, sent, informer } = setup({ refreshDelaysMs: [60_000] });
    const file = fs.add('/mnt/d', 41, Buffer.alloc(4096, 5));
    informer.handle(written('/mnt/d', 41, 3, 0, 4096));
    informer.handle({ kind: 'file_synced', ...base, ...ref('/mnt/d', 41), fd: 3, dataOnly: true });
    file.extents = [{ volumeOffset: 8192, length: 4096 }];
    expect(informer.backlog.refreshes).toBe(1);
    await informer.flush();
    // The sync put the written block on the disk before we heard of it: nothing to read back, only extents.
    expect(sent.map((m) => m.type)).toEqual(['FileExtents', 'FileExtents']);
    expect(sent[1]).toMatchObject({ extents: [{ volumeOffset: 8192, length: 4096 }] });
    expect(informer.stats()).toMatchObject({ readbacks: 0, bytesSyncedUnread: 4096 });
  });

  it('a close right after a sync neither reads back nor maps the file again; a write in between does', async () => {
    const { fs, informer } = setup({ refreshDelaysMs: [60_000], syncedBacklogBytes: 0 });
    fs.add('/mnt/f', 43, Buffer.alloc(8192, 7));
    const synced: Insight = { kind: 'file_synced', ...base, ...ref('/mnt/f', 43), fd: 3, dataOnly: false };
    informer.handle(written('/mnt/f', 43, 3, 0, 4096));
    informer.handle(synced);
    informer.handle(closed('/mnt/f', 43, 3, 4096));
    expect(fs.opened).toEqual(['/mnt/f']); // the sync's mapping only
    informer.handle(written('/mnt/f', 43, 4, 4096, 4096));
    informer.handle(synced);
    informer.handle(written('/mnt/f', 43, 4, 0, 4096));
    informer.handle(closed('/mnt/f', 43, 4, 8192));
    expect(fs.opened).toEqual(['/mnt/f', '/mnt/f', '/mnt/f']); // sync: map; close: read back (mapped at the refresh)
    expect(informer.stats()).toMatchObject({ readbacks: 1, bytesSyncedUnread: 8192 });
  });

  it("a process that syncs gets time for its next sync before its writes are read back; others do not", async () => {
    const { fs, sent, informer } = setup({ refreshDelaysMs: [60_000], debounceMs: 5, syncWaitMs: 1000, syncedBacklogBytes: 0 });
    for (const [path, ino] of [['/mnt/wal1', 60], ['/mnt/wal2', 61], ['/mnt/other', 62]] as const) fs.add(path, ino, Buffer.alloc(8192, ino));
    const syncedBy = (path: string, ino: number, pid: number): Insight => ({ kind: 'file_synced', ts: 1, pid, ...ref(path, ino), fd: 3, dataOnly: true });
    informer.handle({ ...written('/mnt/wal1', 60, 3, 0, 8192), pid: 7 } as Insight);
    informer.handle(syncedBy('/mnt/wal1', 60, 7)); // pid 7 syncs what it writes
    informer.handle({ ...written('/mnt/wal2', 61, 3, 0, 8192), pid: 7 } as Insight);
    informer.handle({ ...written('/mnt/other', 62, 4, 0, 8192), pid: 8 } as Insight);
    await sleep(60);
    // pid 8's write was read back after the debounce; pid 7's waits for its sync, which comes and makes it moot.
    expect(sent.filter((m) => m.type === 'WriteFingerprints').map((m) => m.fileId)).toEqual(['1:62']);
    informer.handle(syncedBy('/mnt/wal2', 61, 7));
    await sleep(1100);
    expect(sent.filter((m) => m.type === 'WriteFingerprints').map((m) => m.fileId)).toEqual(['1:62']);
    expect(informer.stats()).toMatchObject({ readbacks: 1, bytesSyncedUnread: 16_384 });
    // Without the sync, the wait ends and the write is read back all the same.
    informer.handle({ ...written('/mnt/wal2', 61, 3, 8192, 4096), pid: 7 } as Insight);
    await sleep(60);
    expect(informer.stats().readbacks).toBe(1);
    await sleep(1100);
    expect(informer.stats().readbacks).toBe(2);
  });

  it('reads synced writes back in the background, oldest dropped beyond the backlog bound', async () => {
    const { fs, sent, informer } = setup({ refreshDelaysMs: [60_000], syncedBacklogBytes: 12 * KiB });
    for (const [path, ino] of [['/mnt/s1', 70], ['/mnt/s2', 71]] as const) fs.add(path, ino, Buffer.alloc(8192, ino));
    for (const [path, ino] of [['/mnt/s1', 70], ['/mnt/s2', 71]] as const) {
      informer.handle(written(path, ino, 3, 0, 8192));
      informer.handle({ kind: 'file_synced', ...base, ...ref(path, ino), fd: 3, dataOnly: true });
    }
    expect(sent.filter((m) => m.type === 'WriteFingerprints')).toEqual([]); // nothing read before the sync was heard
    await sleep(100);
    // 16 KiB synced, 12 KiB may wait: /mnt/s1 (the oldest) was dropped, /mnt/s2 read in the background.
    expect(sent.filter((m) => m.type === 'WriteFingerprints').map((m) => [m.fileId, m.type === 'WriteFingerprints' ? m.fingerprints.length : 0])).toEqual([['1:71', 2]]);
    expect(informer.stats()).toMatchObject({ bytesSyncedRead: 8192, bytesSyncedUnread: 8192 });
  });

  it('reads back what was written after the last sync, not what the sync covered', async () => {
    const { fs, sent, informer } = setup({ refreshDelaysMs: [60_000] });
    fs.add('/mnt/e', 42, Buffer.alloc(3 * 4096, 6));
    informer.handle(written('/mnt/e', 42, 3, 0, 8192));
    informer.handle({ kind: 'file_synced', ...base, ...ref('/mnt/e', 42), fd: 3, dataOnly: false });
    informer.handle(written('/mnt/e', 42, 3, 8192, 4096));
    await informer.flush();
    const fingerprints = sent.filter((m) => m.type === 'WriteFingerprints');
    expect(fingerprints.flatMap((m) => (m.type === 'WriteFingerprints' ? m.fingerprints : []))).toHaveLength(1);
    expect(informer.stats().bytesSyncedUnread).toBe(8192);
  });

  it('turns sizes, copies, encryption, hints and lifetimes into messages', async () => {
    const { fs, sent, informer } = setup();
    fs.add('/mnt/src', 50, Buffer.alloc(4096, 1));
    fs.add('/mnt/dst', 51, Buffer.alloc(4096, 1));
    informer.handle(opened('/mnt/src', 50, 3));
    informer.handle(opened('/mnt/dst', 51, 4));
    informer.handle(written('/mnt/dst', 51, 4, 0, 4096, 'copy_file_range'));
    sent.length = 0;
    informer.handle({ kind: 'file_size_changed', ...base, ...ref('/mnt/dst', 51), oldSize: 0, size: 3 << 20, ioClass: 2, cause: 'copy' });
    informer.handle({ kind: 'copy_detected', ...base, srcPath: '/mnt/src', dstPath: '/mnt/dst', bytes: 4096, method: 'copy_file_range', exe: '/usr/bin/cp', verified: true });
    informer.handle({ kind: 'copy_detected', ...base, srcPath: '/mnt/src', dstPath: '/mnt/dst', bytes: 4096, method: 'read-write', exe: '/usr/bin/cat', verified: true });
    informer.handle({ kind: 'encryption_detected', ...base, path: '/mnt/dst', exe: '/usr/bin/gpg', evidence: ['exe:gpg'], entropy: 7.99 });
    informer.handle({ kind: 'app_hint', ...base, path: '/mnt/src', fd: 3, ioClass: 4, source: 'fadvise', raw: 3 });
    informer.handle({ kind: 'app_hint', ...base, path: '/mnt/src', fd: 3, ioClass: 4, source: 'fadvise', raw: 3 }); // no news
    informer.handle({ kind: 'app_hint', ...base, path: null, fd: null, ioClass: 1, source: 'ioprio', raw: 0 });
    informer.handle({ kind: 'lifetime_ended', ...base, ...ref('/mnt/dst', 51), bytes: 4096, livedMs: 1, bornFrom: 'created', cause: 'unlink' });
    informer.handle({ kind: 'lifetime_ended', ...base, ...ref('/elsewhere/z', 9, OFF), bytes: 1, livedMs: 1, bornFrom: 'created', cause: 'unlink' });
    await informer.flush();
    expect(sent).toEqual([
      { type: 'FileClass', fileId: '1:51', size: 3 << 20, ioClass: 2 },
      { type: 'FilePattern', fileId: '1:51', pattern: 'copy', sourceFileId: '1:50' },
      { type: 'CopyFingerprints', sourceFileId: '1:50', targetFileId: '1:51', ttlMs: 120_000 },
      { type: 'FilePattern', fileId: '1:51', pattern: 'copy', sourceFileId: '1:50' },
      { type: 'FilePattern', fileId: '1:51', pattern: 'encrypted' },
      { type: 'AppHint', fileId: '1:50', ioClass: 4 },
      // The pending readback of the unlinked file is dropped with it.
      { type: 'FileGone', fileId: '1:51', cause: 'unlink' },
    ]);
  });

  it('a clone reads nothing back (the blocks are shared); it refreshes extents instead', async () => {
    const { fs, sent, informer } = setup({ refreshDelaysMs: [60_000] });
    fs.add('/mnt/clone', 60, Buffer.alloc(8192, 3), [{ volumeOffset: 0, length: 8192 }]);
    informer.handle(written('/mnt/clone', 60, 3, 0, 8192, 'FICLONE'));
    await informer.flush();
    expect(sent).toEqual([{ type: 'FileExtents', fileId: '1:60', path: '/mnt/clone', size: 8192, extents: [{ volumeOffset: 0, length: 8192 }], pid: 100 }]);
    expect(informer.stats().bytesFingerprinted).toBe(0);
  });


  it('a truncated or punched file is mapped again (its extents say what it still owns), not reported gone', async () => {
    for (const cause of ['truncate', 'hole'] as const) {
      const { fs, sent, informer } = setup({ refreshDelaysMs: [60_000] });
      fs.add('/mnt/holey', 61, Buffer.alloc(8192, 3), [{ volumeOffset: 0, length: 4096 }]);
      informer.handle({ kind: 'lifetime_ended', ...base, ...ref('/mnt/holey', 61), bytes: 4096, livedMs: 1, bornFrom: 'created', cause });
      await informer.flush();
      expect(sent).toEqual([{ type: 'FileExtents', fileId: '1:61', path: '/mnt/holey', size: 8192, extents: [{ volumeOffset: 0, length: 4096 }], pid: 100 }]);
    }
  });
  it('counts vanished files and unidentified ones, and never throws', async () => {
    const { sent, informer } = setup();
    informer.handle(written('/mnt/gone', 70, 3, 0, 4096));
    informer.handle(opened('/mnt/gone2', 71, 4));
    informer.handle({ kind: 'data_written', ...base, path: '/x', dev: null, ino: null, fd: 3, range: { offset: 0, length: 1 }, via: 'write' });
    await informer.flush();
    expect(sent).toEqual([]);
    const stats = informer.stats();
    expect(stats.vanished).toBe(2);
    expect(stats.unidentified).toBe(1);
    expect(stats.errors).toBe(0);
  });

  it('bounds pending readbacks: beyond pendingFilesMax the oldest is read back at once', () => {
    const { fs, sent, informer } = setup({ pendingFilesMax: 2, debounceMs: 60_000 });
    for (let k = 0; k < 3; k++) fs.add(`/mnt/p${k}`, 80 + k, Buffer.alloc(4096, k + 1));
    for (let k = 0; k < 3; k++) informer.handle(written(`/mnt/p${k}`, 80 + k, 3, 0, 4096));
    expect(sent.map((m) => m.type === 'WriteFingerprints' && m.fileId)).toEqual(['1:80']);
    expect(informer.backlog.readbacks).toBe(2);
    return informer.flush();
  });

  it('a sink that throws is counted, not propagated', () => {
    const fs = new FakeFs();
    fs.add('/mnt/a', 10, Buffer.alloc(10));
    const informer = new Informer({ sink: () => { throw new Error('queue closed'); }, fs });
    informer.handle(opened('/mnt/a', 10, 3));
    expect(informer.stats()).toMatchObject({ sinkErrors: 1, lastError: 'sink: queue closed', messages: { FileExtents: 0 } });
  });
});

describe('range helpers', () => {
  it('insertRange keeps sorted disjoint pairs, merging what touches', () => {
    let r: number[] = [];
    r = insertRange(r, 10, 20);
    r = insertRange(r, 30, 40);
    r = insertRange(r, 0, 5);
    expect(r).toEqual([0, 5, 10, 20, 30, 40]);
    r = insertRange(r, 20, 30);
    expect(r).toEqual([0, 5, 10, 40]);
    r = insertRange(r, 3, 50);
    expect(r).toEqual([0, 50]);
  });

  it('takeRanges cuts a budget off the front, in whole blocks, at least one', () => {
    const r = [0, 3 * 4096, 5 * 4096, 6 * 4096];
    expect(takeRanges(r, 4096)).toEqual({ taken: [0, 4096], rest: [4096, 3 * 4096, 5 * 4096, 6 * 4096] });
    expect(takeRanges(r, 3 * 4096)).toEqual({ taken: [0, 3 * 4096], rest: [5 * 4096, 6 * 4096] });
    expect(takeRanges(r, 3 * 4096 + 1)).toEqual({ taken: [0, 3 * 4096, 5 * 4096, 6 * 4096], rest: [] });
    expect(takeRanges(r, 1)).toEqual({ taken: [0, 4096], rest: [4096, 3 * 4096, 5 * 4096, 6 * 4096] });
  });

  it('mergeExtents joins extents that continue each other on the volume', () => {
    expect(mergeExtents([{ volumeOffset: 0, length: 4 }, { volumeOffset: 4, length: 4 }, { volumeOffset: 100, length: 4 }, { volumeOffset: 0, length: 0 }])).toEqual([
      { volumeOffset: 0, length: 8 },
      { volumeOffset: 100, length: 4 },
    ]);
  });
});
