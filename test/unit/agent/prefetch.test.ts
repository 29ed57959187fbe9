/**
 * Extent read-ahead on an in-memory tree (the real walk over ext4 through nbdfuse is in
 * test/integration/agent/agent.test.ts): the order of the walk (the opened file's directory depth first in listing
 * order, then upwards into what the workload listed, to the mount point and no further), files already described
 * skipped and not sent twice by the informer, other file systems left alone, the token bucket, and no second walk of
 * a directory walked lately.
 */
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Informer, type AgentFileSystem, type DirectoryEntry, type OpenedFile, type VolumePlacement } from '../../../src/agent/index.js';
import type { Insight } from '../../../src/insight/index.js';
import type { SemanticMessage } from '../../../src/semantics/index.js';

const DEV = 7;
const OTHER_DEV = 8;

type Node = { kind: 'dir'; dev: number; ino: number; children: string[] } | { kind: 'file'; dev: number; ino: number; extents: { volumeOffset: number; length: number }[]; size: number };

/** A tree of directories and files; children are listed in insertion order (as a file system lists them). */
class TreeFs implements AgentFileSystem {
  readonly nodes = new Map<string, Node>();
  readonly listed: string[] = [];
  private nextIno = 100;
  readonly placement: VolumePlacement = { label: 'tree', mountPoint: '/mnt' };

  constructor() {
    this.nodes.set('/', { kind: 'dir', dev: 1, ino: 2, children: ['mnt'] });
    this.nodes.set('/mnt', { kind: 'dir', dev: DEV, ino: this.nextIno++, children: [] });
  }

  dir(p: string, dev = DEV): this {
    this.attach(p, { kind: 'dir', dev, ino: this.nextIno++, children: [] });
    return this;
  }

  file(p: string, blocks = 1, dev = DEV): this {
    const ino = this.nextIno++;
    const extents = blocks === 0 ? [] : [{ volumeOffset: ino * 1 << 20, length: blocks * 4096 }];
    this.attach(p, { kind: 'file', dev, ino, extents, size: blocks * 4096 });
    return this;
  }

  ino(p: string): number {
    return this.nodes.get(p)!.ino;
  }

  private attach(p: string, node: Node): void {
    const parent = this.nodes.get(path.dirname(p));
    if (parent?.kind !== 'dir') throw new Error(`no directory ${path.dirname(p)}`);
    parent.children.push(path.basename(p));
    this.nodes.set(p, node);
  }

  locate(dev: number): VolumePlacement | null {
    return dev === DEV ? this.placement : null;
  }

  open(p: string): OpenedFile {
    const node = this.nodes.get(p);
    if (!node) throw Object.assign(new Error(`ENOENT ${p}`), { code: 'ENOENT' });
    if (node.kind !== 'file') throw Object.assign(new Error(`${p} is not a regular file`), { code: 'ENOTREG' });
    return { dev: node.dev, ino: node.ino, size: node.size, read: () => 0, extents: () => node.extents.map((e) => ({ ...e })), close: () => undefined };
  }

  list(dir: string): DirectoryEntry[] {
    const node = this.nodes.get(dir);
    if (node?.kind !== 'dir') throw Object.assign(new Error(`ENOENT ${dir}`), { code: 'ENOENT' });
    this.listed.push(dir);
    return node.children.map((name) => ({ name, kind: this.nodes.get(path.join(dir, name))!.kind === 'dir' ? 'directory' : 'file' }));
  }

  identify(dir: string): { dev: number; ino: number } {
    const node = this.nodes.get(dir);
    if (node?.kind !== 'dir') throw Object.assign(new Error(`ENOENT ${dir}`), { code: 'ENOENT' });
    return { dev: node.dev, ino: node.ino };
  }
}

function listedDir(p: string, fs: TreeFs): Insight {
  return { kind: 'file_opened', ts: 1, pid: 100, path: p, dev: DEV, ino: fs.nodes.get(p)!.ino, fd: 9, flags: 0o200000, size: 4096, ioClass: 5, metadata: true, exe: '/usr/bin/cp', discovered: false };
}

function openedForRead(p: string, ino: number, fd = 3, flags = 0): Insight {
  return { kind: 'file_opened', ts: 1, pid: 100, path: p, dev: DEV, ino, fd, flags, size: 4096, ioClass: 4, metadata: false, exe: '/usr/bin/cp', discovered: false };
}

const settle = async (informer: Informer, sent: SemanticMessage[]) => {
  // The walk runs in setImmediate slices; wait until no message arrives for a few turns.
  for (let quiet = 0, seen = -1; quiet < 5; ) {
    await new Promise((r) => setImmediate(r));
    if (sent.length === seen) quiet++;
    else {
      quiet = 0;
      seen = sent.length;
    }
  }
  return informer;
};

const pathsOf = (sent: SemanticMessage[]) => sent.map((m) => (m.type === 'FileExtents' ? m.path : m.type));

function tree(): TreeFs {
  return new TreeFs()
    .dir('/mnt/src')
    .file('/mnt/src/README')
    .dir('/mnt/src/lib')
    .file('/mnt/src/lib/a.c')
    .dir('/mnt/src/lib/deep')
    .file('/mnt/src/lib/deep/z.c', 2)
    .file('/mnt/src/lib/b.c')
    .file('/mnt/src/lib/empty.c', 0)
    .dir('/mnt/src/doc')
    .file('/mnt/src/doc/x.txt')
    .file('/mnt/top')
    .dir('/mnt/other', OTHER_DEV)
    .file('/mnt/other/foreign', 1, OTHER_DEV);
}

describe('extent read-ahead (Informer + ExtentPrefetcher)', () => {
  it('walks from the opened file\'s directory depth first in listing order, then upwards to the mount point', async () => {
    const fs = tree();
    const sent: SemanticMessage[] = [];
    const informer = new Informer({ sink: (m) => sent.push(m), fs });
    informer.handle(listedDir('/mnt', fs)); // the workload lists the mount point: the walk may climb to it
    informer.handle(openedForRead('/mnt/src/lib/a.c', fs.ino('/mnt/src/lib/a.c')));
    await settle(informer, sent);
    expect(pathsOf(sent)).toEqual([
      '/mnt/src/lib/a.c', // the opened file itself, by the informer, at once
      '/mnt/src/lib/deep/z.c', // its directory, in listing order, depth first
      '/mnt/src/lib/b.c', // (empty.c has no extents: nothing to send)
      '/mnt/src/README', // then the parent (lib already walked)
      '/mnt/src/doc/x.txt',
      '/mnt/top', // then the mount point; /mnt/other is another file system
    ]);
    expect(fs.listed).toEqual(['/mnt/src/lib', '/mnt/src/lib/deep', '/mnt/src', '/mnt/src/doc', '/mnt']);
    const z = sent[1]!;
    expect(z).toEqual({ type: 'FileExtents', fileId: `${DEV}:${fs.ino('/mnt/src/lib/deep/z.c')}`, path: '/mnt/src/lib/deep/z.c', size: 8192, extents: [{ volumeOffset: fs.ino('/mnt/src/lib/deep/z.c') * 1 << 20, length: 8192 }] });
    expect(informer.stats().prefetch).toEqual({ walks: 1, directories: 5, files: 6, messages: 5, throttled: 0 });

    // The workload now opens the files the walk mapped: the informer has nothing new to say about them.
    sent.length = 0;
    informer.handle(openedForRead('/mnt/src/lib/b.c', fs.ino('/mnt/src/lib/b.c'), 4));
    informer.handle(openedForRead('/mnt/top', fs.ino('/mnt/top'), 5));
    await settle(informer, sent);
    expect(sent).toEqual([]);
    expect(fs.listed).toHaveLength(5); // no directory walked twice
  });

  it('climbs only into directories the workload listed', async () => {
    for (const [listed, expected] of [
      [null, ['/mnt/src/lib/a.c', '/mnt/src/lib/deep/z.c', '/mnt/src/lib/b.c']], // a file opened by name: its directory
      ['/mnt/src', ['/mnt/src/lib/a.c', '/mnt/src/lib/deep/z.c', '/mnt/src/lib/b.c', '/mnt/src/README', '/mnt/src/doc/x.txt']],
    ] as const) {
      const fs = tree();
      const sent: SemanticMessage[] = [];
      const informer = new Informer({ sink: (m) => sent.push(m), fs });
      if (listed) informer.handle(listedDir(listed, fs));
      informer.handle(openedForRead('/mnt/src/lib/a.c', fs.ino('/mnt/src/lib/a.c')));
      await settle(informer, sent);
      expect(pathsOf(sent)).toEqual(expected);
    }
  });

  it('is started only by opens for reading, and never with prefetch: false', async () => {
    for (const [flags, prefetch, walks] of [[0o1 | 0o100, undefined, 0], [0o1, undefined, 0], [0o2, undefined, 1], [0, false, 0]] as const) {
      const fs = tree();
      const sent: SemanticMessage[] = [];
      const informer = new Informer({ sink: (m) => sent.push(m), fs, ...(prefetch === false ? { prefetch } : {}) });
      informer.handle(listedDir('/mnt', fs));
      informer.handle(openedForRead('/mnt/src/README', fs.ino('/mnt/src/README'), 3, flags));
      await settle(informer, sent);
      expect(informer.stats().prefetch?.walks ?? 0).toBe(walks);
      expect(sent.length).toBe(walks === 0 ? 1 : 6);
    }
  });

  it('skips files the informer already described, and pays entries from the token bucket', async () => {
    const fs = tree();
    const sent: SemanticMessage[] = [];
    const informer = new Informer({ sink: (m) => sent.push(m), fs, prefetch: { entriesPerSecond: 50, entriesBurst: 4 } });
    informer.handle(listedDir('/mnt', fs));
    informer.handle(openedForRead('/mnt/src/doc/x.txt', fs.ino('/mnt/src/doc/x.txt')));
    informer.handle(openedForRead('/mnt/src/README', fs.ino('/mnt/src/README'), 4));
    const started = performance.now();
    for (let i = 0; i < 200 && (informer.stats().prefetch!.directories < 5 || sent.length < 6); i++) await new Promise((r) => setTimeout(r, 10));
    // 5 directories and 11 entries at 50 per second after a burst of 4: about a quarter of a second, in steps.
    expect(performance.now() - started).toBeGreaterThan(150);
    const stats = informer.stats().prefetch!;
    expect(stats.throttled).toBeGreaterThan(0);
    // x.txt and README came from the informer; the walk sent the other four files once each.
    expect(pathsOf(sent).sort()).toEqual(['/mnt/src/README', '/mnt/src/doc/x.txt', '/mnt/src/lib/a.c', '/mnt/src/lib/b.c', '/mnt/src/lib/deep/z.c', '/mnt/top']);
    // The second open's directory (/mnt/src) was queued before the first walk climbed into it: walked once.
    expect(fs.listed.filter((d) => d === '/mnt/src')).toHaveLength(1);
  });

  it('stops at flush: a walk in progress is dropped', async () => {
    const fs = tree();
    const sent: SemanticMessage[] = [];
    const informer = new Informer({ sink: (m) => sent.push(m), fs, prefetch: { entriesPerSecond: 1, entriesBurst: 2 } });
    informer.handle(openedForRead('/mnt/src/lib/a.c', fs.ino('/mnt/src/lib/a.c')));
    await informer.flush();
    const before = fs.listed.length;
    await new Promise((r) => setTimeout(r, 1100));
    expect(fs.listed.length).toBe(before);
  });

  it('a newer open goes first: the walk in progress is set aside and resumes after, skipping what the newer mapped', async () => {
    const fs = new TreeFs().dir('/mnt/big').dir('/mnt/next').file('/mnt/next/n1').file('/mnt/next/n2');
    for (let k = 0; k < 400; k++) fs.file(`/mnt/big/f${k}`);
    const sent: SemanticMessage[] = [];
    // 50 entries at once, then 1000 a second: the big directory takes a while.
    const informer = new Informer({ sink: (m) => sent.push(m), fs, prefetch: { entriesPerSecond: 1000, entriesBurst: 50 } });
    informer.handle(listedDir('/mnt', fs));
    informer.handle(openedForRead('/mnt/big/f0', fs.ino('/mnt/big/f0')));
    while (sent.length < 20) await new Promise((r) => setTimeout(r, 5));
    // The workload moved on to another directory while the walk was in the middle of big/.
    informer.handle(openedForRead('/mnt/next/n1', fs.ino('/mnt/next/n1')));
    await new Promise((r) => setTimeout(r, 20));
    const paths = pathsOf(sent);
    const n2 = paths.indexOf('/mnt/next/n2');
    expect(n2).toBeGreaterThan(0);
    expect(paths.slice(n2).filter((p) => p.startsWith('/mnt/big/')).length).toBeLessThan(40);
    for (let i = 0; i < 300 && !paths.includes('/mnt/big/f399'); i++) {
      await new Promise((r) => setTimeout(r, 10));
      paths.splice(0, paths.length, ...pathsOf(sent));
    }
    // The set-aside walk finished big/ and did not send next/ again.
    expect(paths.filter((p) => p.startsWith('/mnt/big/'))).toHaveLength(400); // f0 from the informer, the rest from the walk
    expect(paths.filter((p) => p === '/mnt/next/n2')).toHaveLength(1);
    expect(fs.listed.filter((d) => d === '/mnt/next')).toHaveLength(1);
  });
});
