import { describe, expect, it } from 'vitest';
import {
  HINT_MAGIC,
  InsightEngine,
  PAPER_IOCLASS_TABLE,
  classifyFile,
  encryptionEvidence,
  entropyBitsPerByte,
  renderSummary,
  validateIoClassTable,
} from '../../../src/insight/index.js';
import type { SyscallEvent } from '../../../src/trace/events.js';
import { AT_EMPTY_PATH, O_TMPFILE } from '../../../src/trace/linux.js';
import { CREATE, Clock, FakeSystem, MS, O_APPEND, O_CREAT, O_EXCL, O_RDONLY, O_RDWR, O_WRONLY, Task, ofKind, pseudoRandom, run } from './helpers.js';

const MiB = 1024 * 1024;

describe('ioclass table', () => {
  it('is the paper table: metadata 5, <1 MiB 4, <2 MiB 3, <5 MiB 2, <10 MiB 1, else 0', () => {
    validateIoClassTable(PAPER_IOCLASS_TABLE);
    const cases: Array<[number, number]> = [
      [0, 4],
      [MiB - 1, 4],
      [MiB, 3],
      [2 * MiB - 1, 3],
      [2 * MiB, 2],
      [5 * MiB - 1, 2],
      [5 * MiB, 1],
      [10 * MiB - 1, 1],
      [10 * MiB, 0],
      [2 ** 40, 0],
    ];
    for (const [size, ioClass] of cases) expect([size, classifyFile({ metadata: false, size })]).toEqual([size, ioClass]);
    expect(classifyFile({ metadata: true, size: 50 * MiB })).toBe(5);
  });

  it('rejects a table without a catch-all rule', () => {
    expect(() => validateIoClassTable({ ...PAPER_IOCLASS_TABLE, bySize: [{ name: 'x', ioClass: 1, belowBytes: 10 }] })).toThrow();
  });
});

/** A system where pid 50 (exe given) copies or encrypts; files live in memory. */
function systemWith(exe: string, files: Record<string, Buffer>): FakeSystem {
  const system = new FakeSystem();
  for (const [path, data] of Object.entries(files)) system.addFile(path, data);
  system.addProc(50, exe, '/w');
  return system;
}

/** A mail directory for pid 50: /w/a a mail, /w/d a copy of it, every other name an unrelated 20 kB mail. */
function mailDirectory(others: string[]): FakeSystem {
  const mail = pseudoRandom(20_000, 'mail');
  const files: Record<string, Buffer> = { '/w/a': mail, '/w/d': Buffer.from(mail) };
  for (const name of others) files[name] = pseudoRandom(20_000, name);
  return systemWith('/usr/bin/mailer', files);
}

/** Events of a mail server (pid 50) in `system`: reading a mail, creating one (with the ebpf backend's facts or not). */
function mailer(system: FakeSystem, engine: InsightEngine, options: { writeHead: boolean }) {
  const p = new Task(new Clock(), 50);
  /** A whole read after a read-only open reported as the ebpf backend does: with the inode's size and mtime. */
  const read = (path: string, fd: number, mtimeUs = 0) => {
    const file = system.files.get(path)!;
    const { ino, dev, data } = file;
    return [
      p.ev('open', { dirfd: -100, path, flags: O_RDONLY, mode: 0, ret: fd, ino, dev, size: data.length, fileType: 'regular', nlink: 1, mtimeUs }),
      p.summary(fd, { readCalls: 1, readBytes: 20_000, position: 20_000 }),
      p.close(fd),
    ];
  };
  const create = (path: string, fd: number) => {
    const head = options.writeHead ? { writeHead: system.files.get(path)!.data.readUInt32LE(0) } : {};
    return [p.open(path, CREATE, fd), p.summary(fd, { writeCalls: 1, writeBytes: 20_000, writeStart: 0, writeEnd: 20_000, position: 20_000, ...head }), p.close(fd)];
  };
  const copies = (events: SyscallEvent[]) => ofKind(run(engine, events), 'copy_detected').map((c) => `${c.srcPath}->${c.dstPath}`);
  return { p, read, create, copies };
}

describe('copy detection', () => {
  it('reports copy_file_range copies once, at the destination close, with the total bytes', () => {
    const engine = new InsightEngine({ inspector: 'none' });
    const cp = new Task(new Clock(), 50);
    const insights = run(engine, [
      cp.exec('/usr/bin/cp'),
      cp.open('/w/a', O_RDONLY, 3),
      cp.open('/w/b', CREATE, 4),
      cp.copy('copy_file_range', 3, 4, 65536),
      cp.copy('copy_file_range', 3, 4, 34464),
      cp.copy('copy_file_range', 3, 4, 0),
      cp.close(4),
      cp.close(3),
    ]);
    expect(ofKind(insights, 'copy_detected')).toEqual([
      expect.objectContaining({ srcPath: '/w/a', dstPath: '/w/b', bytes: 100000, method: 'copy_file_range', exe: '/usr/bin/cp', verified: true }),
    ]);
    expect(engine.inspectFile('/w/b')?.size).toBe(100000);
  });

  it('treats a successful FICLONE (ret 0) as a whole-file copy', () => {
    const system = systemWith('/usr/bin/cp', { '/w/a': pseudoRandom(8192, 'a'), '/w/b': Buffer.alloc(0) });
    system.procs.get(50)?.fds.set(3, '/w/a');
    const engine = new InsightEngine({ inspector: system });
    const cp = new Task(new Clock(), 50);
    const insights = run(engine, [cp.open('/w/a', O_RDONLY, 3), cp.open('/w/b', CREATE, 4), cp.copy('FICLONE', 3, 4, 0, 0), cp.exit()]);
    expect(ofKind(insights, 'copy_detected')).toMatchObject([{ srcPath: '/w/a', dstPath: '/w/b', bytes: 8192, method: 'FICLONE' }]);
  });

  it('follows a splice through a pipe from one file into another', () => {
    const engine = new InsightEngine({ inspector: 'none' });
    const p = new Task(new Clock(), 50);
    const insights = run(engine, [
      p.open('/w/a', O_RDONLY, 3),
      p.open('/w/b', CREATE, 4),
      p.copy('splice', 3, 6, 4096), // fd 6 is a pipe the stream never named
      p.copy('splice', 5, 4, 4096), // fd 5 is its read end... a different description
      p.copy('splice', 6, 4, 4096),
      p.close(4),
    ]);
    expect(ofKind(insights, 'copy_detected')).toMatchObject([{ srcPath: '/w/a', dstPath: '/w/b', bytes: 4096, method: 'splice' }]);
  });

  it('confirms a read/write copy by fingerprints read back, and reports the bytes that match', () => {
    const data = pseudoRandom(300_000, 'copy');
    const system = systemWith('/usr/bin/dd', { '/w/a': data, '/w/b': Buffer.from(data) });
    const engine = new InsightEngine({ inspector: system });
    const dd = new Task(new Clock(), 50);
    const insights = run(engine, [
      dd.open('/w/a', O_RDONLY, 0),
      dd.open('/w/b', CREATE, 1),
      dd.summary(0, { readCalls: 6, readBytes: 300_000, position: 300_000 }),
      dd.close(0),
      dd.summary(1, { writeCalls: 5, writeBytes: 300_000, writeStart: 0, writeEnd: 300_000, position: 300_000 }),
      dd.close(1),
    ]);
    expect(ofKind(insights, 'copy_detected')).toEqual([
      expect.objectContaining({ srcPath: '/w/a', dstPath: '/w/b', bytes: 300_000, method: 'read-write', verified: true }),
    ]);
  });

  it('does not call an in-place edit a copy of the file onto itself (looked at after the new content took the name)', () => {
    // ptrace looks late: by then sed's temporary has been renamed over the file it read, so the source's name and
    // the target both lead to the new content — identical to itself.
    const system = systemWith('/usr/bin/sed', { '/w/s': pseudoRandom(20_000, 'edited') });
    const engine = new InsightEngine({ inspector: system });
    const sed = new Task(new Clock(), 50);
    const insights = run(engine, [
      sed.open('/w/s', O_RDONLY, 3),
      sed.open('/w/sedAB12', CREATE, 4),
      sed.summary(3, { readCalls: 5, readBytes: 20_000, position: 20_000 }),
      sed.summary(4, { writeCalls: 5, writeBytes: 20_000, writeStart: 0, writeEnd: 20_000, position: 20_000 }),
      sed.close(3),
      sed.rename('/w/sedAB12', '/w/s'),
      sed.close(4),
    ]);
    expect(ofKind(insights, 'file_renamed')).toMatchObject([{ from: '/w/sedAB12', path: '/w/s' }]);
    expect(ofKind(insights, 'copy_detected')).toEqual([]);
  });

  it('does not call a sub-block file with repeated content a copy (gpg writes its lock file with the pid it read)', () => {
    const line = Buffer.from('31111\nvm\n');
    const system = systemWith('/usr/bin/gpg', { '/w/pubring.kbx.lock': line, '/w/.#lk0x1.vm.31111': Buffer.from(line) });
    const engine = new InsightEngine({ inspector: system });
    const gpg = new Task(new Clock(), 60);
    const insights = run(engine, [
      gpg.open('/w/pubring.kbx.lock', O_RDONLY, 0),
      gpg.open('/w/.#lk0x1.vm.31111', CREATE, 1),
      gpg.summary(0, { readCalls: 1, readBytes: line.length, position: line.length }),
      gpg.close(0),
      gpg.summary(1, { writeCalls: 1, writeBytes: line.length, writeStart: 0, writeEnd: line.length, position: line.length }),
      gpg.close(1),
    ]);
    expect(ofKind(insights, 'copy_detected')).toEqual([]);
  });

  it('does not call a transformation a copy (gzip reads a, writes different bytes)', () => {
    const system = systemWith('/usr/bin/gzip', { '/w/a': pseudoRandom(300_000, 'x'), '/w/a.gz': pseudoRandom(300_100, 'y') });
    const engine = new InsightEngine({ inspector: system });
    const gz = new Task(new Clock(), 50);
    const insights = run(engine, [
      gz.open('/w/a', O_RDONLY, 3),
      gz.open('/w/a.gz', CREATE, 4),
      gz.summary(3, { readCalls: 5, readBytes: 300_000 }),
      gz.summary(4, { writeCalls: 5, writeBytes: 300_100, writeStart: 0, writeEnd: 300_100 }),
      gz.exit(),
    ]);
    expect(ofKind(insights, 'copy_detected')).toEqual([]);
    expect(ofKind(insights, 'encryption_detected')).toEqual([]);
  });

  it("does not take a pipe's cargo from a stale entry: another pipe at the same fd number carries nothing known", () => {
    // The ebpf backend does not report pipe closes by default; the copy events name the pipes' inodes instead.
    const engine = new InsightEngine({ inspector: 'none' });
    const p = new Task(new Clock(), 50);
    const splice = (fdIn: number, fdOut: number, inodes: { inIno?: number; outIno?: number }) =>
      p.ev('copy', { call: 'splice', fdIn, fdOut, offsetIn: null, offsetOut: null, length: 4096, ret: 4096, ...inodes });
    const insights = run(engine, [
      p.open('/w/a', O_RDONLY, 3),
      p.open('/w/b', CREATE, 4),
      p.open('/w/c', CREATE, 7),
      splice(3, 6, { outIno: 900 }), // /w/a into pipe 900 at fd 6
      splice(6, 4, { inIno: 900 }), // ... and out of it into /w/b: a copy
      splice(6, 7, { inIno: 901 }), // fd 6 is now another pipe, fed by something untraced
      p.close(4),
      p.close(7),
    ]);
    expect(ofKind(insights, 'copy_detected')).toMatchObject([{ srcPath: '/w/a', dstPath: '/w/b', bytes: 4096, method: 'splice' }]);
  });

  it("finds a copy whose reader and writer are two processes (rsync's sender and receiver), by content only", () => {
    const data = pseudoRandom(40_000, 'rsync');
    const system = systemWith('/usr/bin/rsync', { '/src/f': data, '/w/.f.tmp': Buffer.from(data), '/src/g': pseudoRandom(40_000, 'g'), '/w/.g.tmp': pseudoRandom(40_000, 'other') });
    system.addProc(51, '/usr/bin/rsync', '/w');
    const engine = new InsightEngine({ inspector: system });
    const sender = new Task(new Clock(), 50);
    const receiver = new Task(sender.clock, 51);
    // The sender reads a file whole, then the receiver writes one of the same size.
    const transfer = (source: string, target: string) => [
      sender.open(source, O_RDONLY, 3),
      sender.summary(3, { readCalls: 1, readBytes: 40_000, position: 40_000 }),
      sender.close(3),
      receiver.open(target, CREATE, 4),
      receiver.summary(4, { writeCalls: 1, writeBytes: 40_000, writeStart: 0, writeEnd: 40_000, position: 40_000 }),
      receiver.close(4),
    ];
    const insights = run(engine, [...transfer('/src/f', '/w/.f.tmp'), ...transfer('/src/g', '/w/.g.tmp')]);
    expect(ofKind(insights, 'copy_detected').map((c) => [c.srcPath, c.dstPath, c.pid, c.bytes, c.method])).toEqual([
      ['/src/f', '/w/.f.tmp', 51, 40_000, 'read-write'],
    ]);
  });

  it('does not compare appends with what was read: the detector matches files from their start', () => {
    // A mail server reads one mail and appends the same buffer to another: the appended bytes may equal the
    // read ones, but a copy the detector could confirm starts at offset 0 of both files.
    const data = pseudoRandom(20_000, 'mail');
    const inspected: string[] = [];
    const system = systemWith('/usr/bin/mailer', { '/w/a': data, '/w/b': Buffer.concat([data, data]) });
    const [statPath, statFd] = [system.statPath.bind(system), system.statFd.bind(system)];
    system.statPath = (path: string) => {
      inspected.push(path);
      return statPath(path);
    };
    system.statFd = (pid: number, fd: number) => {
      inspected.push(`${pid}/${fd}`);
      return statFd(pid, fd);
    };
    const engine = new InsightEngine({ inspector: system });
    const p = new Task(new Clock(), 50);
    const insights = run(engine, [
      p.open('/w/a', O_RDONLY, 3),
      p.open('/w/b', O_RDWR, 4),
      p.summary(3, { readCalls: 1, readBytes: 20_000, position: 20_000 }),
      p.summary(4, { writeCalls: 1, writeBytes: 20_000, writeStart: 20_000, writeEnd: 40_000, position: 40_000 }),
    ]);
    inspected.length = 0;
    insights.push(...run(engine, [p.close(4), p.close(3)]));
    expect(ofKind(insights, 'copy_detected')).toEqual([]);
    expect(inspected).toEqual([]);
  });

  it('rules candidates out from a first block cached since an unchanged look, and verifies every match by reading', () => {
    // A mail server reads mails again and again and writes new ones: each new file is compared with the mails read
    // last. A source seen unchanged since its print was cached (the kernel's view at each read-only open, no
    // traced write since) needs no stat; one written since, or seen changed, is looked at again.
    const system = mailDirectory(['/w/b', '/w/c', '/w/e', '/w/f', '/w/g']);
    const a = system.files.get('/w/a')!;
    const looked: string[] = [];
    const statPath = system.statPath.bind(system);
    system.statPath = (path: string) => {
      looked.push(path);
      return statPath(path);
    };
    const engine = new InsightEngine({ inspector: system });
    const { p, read, create, copies } = mailer(system, engine, { writeHead: false });
    const readA = (fd: number, mtimeUs: number) => read('/w/a', fd, mtimeUs);
    expect(copies([...readA(3, 0), ...create('/w/b', 4)])).toEqual([]);
    expect(looked).toContain('/w/a'); // first comparison: stat and read the source
    looked.length = 0;
    expect(copies(create('/w/c', 4))).toEqual([]);
    expect(looked).not.toContain('/w/a'); // unchanged since: ruled out by the cached print
    expect(copies(create('/w/d', 4))).toEqual(['/w/a->/w/d']); // the print matches: confirmed by reading both
    expect(looked).toContain('/w/a');
    // Changed by someone we do not trace: the next read-only open shows a new mtime, so the print is not trusted.
    a.data = Buffer.from(system.files.get('/w/e')!.data);
    a.mtimeNs = 7_000_000;
    looked.length = 0;
    expect(copies([...readA(3, 7_000), ...create('/w/e', 4)])).toEqual(['/w/a->/w/e']);
    expect(looked).toContain('/w/a');
    // Appended to by a traced process: the first block is untouched, still trusted.
    run(engine, [p.open('/w/a', O_RDWR, 5), p.summary(5, { writeCalls: 1, writeBytes: 10, writeStart: 20_000, writeEnd: 20_010 }), p.close(5)]);
    looked.length = 0;
    expect(copies(create('/w/g', 4))).toEqual([]);
    expect(looked).not.toContain('/w/a');
    // Written at its start by a traced process: not trusted until looked at again.
    run(engine, [p.open('/w/a', O_RDWR, 5), p.summary(5, { writeCalls: 1, writeBytes: 10, writeStart: 0, writeEnd: 10 }), p.close(5)]);
    looked.length = 0;
    expect(copies(create('/w/f', 4))).toEqual([]);
    expect(looked).toContain('/w/a');
    expect(system.opened).toBe(0); // every look closed what it opened
  });

  it("rules candidates out by the head the tracer saw written at offset 0, without opening either file", () => {
    const system = mailDirectory(['/w/b', '/w/c', '/w/e']);
    let opens = 0;
    const openPath = system.openPath.bind(system);
    system.openPath = (path: string) => {
      opens++;
      return openPath(path);
    };
    const engine = new InsightEngine({ inspector: system });
    const { p, read, create, copies } = mailer(system, engine, { writeHead: true });
    run(engine, read('/w/a', 3));
    expect(copies(create('/w/b', 4))).toEqual([]); // a's first block is not known yet: both are read
    expect(opens).toBe(2);
    expect(copies(create('/w/c', 4))).toEqual([]); // now it is, and c starts otherwise: nothing opened
    expect(opens).toBe(2);
    expect(copies(create('/w/d', 4))).toEqual(['/w/a->/w/d']); // same head: verified by reading both
    expect(opens).toBe(4);
    // c was written by the process (its head is known) and is read now: a candidate that needs no look either.
    run(engine, [p.open('/w/c', O_RDONLY, 6), p.summary(6, { readCalls: 1, readBytes: 20_000, position: 20_000 }), p.close(6)]);
    expect(copies(create('/w/e', 4))).toEqual([]);
    expect(opens).toBe(4);
    expect(system.opened).toBe(0);
  });

  it('waits for the source summary when the destination closes first', () => {
    const data = pseudoRandom(50_000, 'late');
    const system = systemWith('/usr/bin/copier', { '/w/a': data, '/w/b': Buffer.from(data) });
    const engine = new InsightEngine({ inspector: system });
    const p = new Task(new Clock(), 50);
    const insights = run(engine, [
      p.open('/w/a', O_RDONLY, 3),
      p.open('/w/b', CREATE, 4),
      p.summary(4, { writeCalls: 1, writeBytes: 50_000, writeStart: 0, writeEnd: 50_000 }),
      p.close(4),
      p.summary(3, { readCalls: 1, readBytes: 50_000 }),
      p.exit(),
    ]);
    expect(ofKind(insights, 'copy_detected')).toMatchObject([{ srcPath: '/w/a', dstPath: '/w/b', bytes: 50_000 }]);
  });
});

describe('encryption detection', () => {
  it('gathers evidence from the exe name, openssl subcommands and the destination extension', () => {
    expect(encryptionEvidence({ exe: '/usr/bin/gpg', argv: ['gpg'], comm: 'gpg' }, '/w/x.gpg')).toEqual(['exe:gpg', 'extension:.gpg']);
    expect(encryptionEvidence({ exe: '/usr/bin/openssl', argv: ['openssl', 'enc', '-aes-256-cbc'], comm: null }, '/w/x')).toEqual(['exe:openssl enc']);
    expect(encryptionEvidence({ exe: '/usr/bin/openssl', argv: ['openssl', 'dgst'], comm: null }, '/w/x')).toEqual([]);
    expect(encryptionEvidence({ exe: '/usr/bin/gzip', argv: ['gzip'], comm: 'gzip' }, '/w/x.gz')).toEqual([]);
  });

  it('entropy separates ciphertext from text and from short samples', () => {
    expect(entropyBitsPerByte(pseudoRandom(4096, 'e'))).toBeGreaterThan(7.9);
    expect(entropyBitsPerByte(Buffer.from('the quick brown fox jumps over the lazy dog '.repeat(100)))).toBeLessThan(5);
    expect(entropyBitsPerByte(Buffer.alloc(0))).toBe(0);
  });

  function encrypt(exe: string, path: string, content: Buffer): ReturnType<typeof run> {
    const system = systemWith(exe, { '/w/plain': Buffer.from('secret '.repeat(1000)), [path]: content });
    const engine = new InsightEngine({ inspector: system });
    const p = new Task(new Clock(), 50);
    return run(engine, [
      p.open('/w/plain', O_RDONLY, 3),
      p.open(path, CREATE, 4),
      p.summary(3, { readCalls: 1, readBytes: 7000 }),
      p.summary(4, { writeCalls: 1, writeBytes: content.length, writeStart: 0, writeEnd: content.length }),
      p.close(4),
    ]);
  }

  it('confirms gpg output by its entropy', () => {
    const found = ofKind(encrypt('/usr/bin/gpg', '/w/plain.gpg', pseudoRandom(20_000, 'c')), 'encryption_detected');
    expect(found).toHaveLength(1);
    expect(found[0]).toMatchObject({ path: '/w/plain.gpg', exe: '/usr/bin/gpg' });
    expect(found[0].evidence.slice(0, 2)).toEqual(['exe:gpg', 'extension:.gpg']);
    expect(found[0].entropy).toBeGreaterThan(7.9);
  });

  it('decodes ASCII armour before measuring', () => {
    const body = pseudoRandom(12_000, 'armor').toString('base64').replace(/.{64}/g, '$&\n');
    const armored = Buffer.from(`-----BEGIN PGP MESSAGE-----\n\n${body}\n=abcd\n-----END PGP MESSAGE-----\n`);
    expect(ofKind(encrypt('/usr/bin/gpg', '/w/plain.asc', armored), 'encryption_detected')).toHaveLength(1);
  });

  it('decodes bare base64 lines too (openssl enc -a), but not text that only looks like it', () => {
    const lines = (data: Buffer) => Buffer.from(data.toString('base64').replace(/.{64}/g, '$&\n') + '\n');
    expect(ofKind(encrypt('/usr/bin/ccrypt', '/w/plain.b64', lines(pseudoRandom(12_000, 'openssl -a'))), 'encryption_detected')).toHaveLength(1);
    expect(ofKind(encrypt('/usr/bin/ccrypt', '/w/plain.b64', lines(Buffer.from('plain text '.repeat(1200)))), 'encryption_detected')).toEqual([]);
  });

  it('does not call low-entropy output of gpg (a trust database) or high-entropy gzip output encryption', () => {
    expect(ofKind(encrypt('/usr/bin/gpg', '/w/trustdb.gpg', Buffer.alloc(20_000, 1)), 'encryption_detected')).toEqual([]);
    expect(ofKind(encrypt('/usr/bin/gzip', '/w/plain.gz', pseudoRandom(20_000, 'z')), 'encryption_detected')).toEqual([]);
  });

  it('does not judge a sample too small to measure (gpg random_seed, 600 bytes)', () => {
    expect(ofKind(encrypt('/usr/bin/gpg', '/w/random_seed', pseudoRandom(600, 's')), 'encryption_detected')).toEqual([]);
  });
});

describe('lifetimes', () => {
  it('unlink ends the life of the bytes written, timed from creation', () => {
    const engine = new InsightEngine({ inspector: 'none' });
    const clock = new Clock();
    const p = new Task(clock, 1);
    const created = run(engine, [p.open('/t/f', CREATE, 3)]);
    const bornAt = created[0].ts;
    run(engine, [p.write(3, 5000), p.close(3)]);
    clock.tick(250);
    const [ended] = ofKind(run(engine, [p.unlink('/t/f')]), 'lifetime_ended');
    expect(ended).toMatchObject({ path: '/t/f', bytes: 5000, cause: 'unlink', bornFrom: 'created' });
    expect(ended.livedMs).toBe((ended.ts - bornAt) / MS);
    expect(engine.inspectFile('/t/f')).toBeNull();
  });

  it('an unlinked file still open dies at its last close', () => {
    const engine = new InsightEngine({ inspector: 'none' });
    const p = new Task(new Clock(), 1);
    const early = run(engine, [p.open('/t/tmp', CREATE, 3), p.write(3, 100), p.unlink('/t/tmp'), p.write(3, 20)]);
    expect(ofKind(early, 'lifetime_ended')).toEqual([]);
    expect(ofKind(run(engine, [p.close(3)]), 'lifetime_ended')).toMatchObject([{ path: '/t/tmp', bytes: 120, cause: 'unlink' }]);
  });

  it('rename over an existing file ends the replaced file; the renamed one keeps living under its new name', () => {
    const engine = new InsightEngine({ inspector: 'none' });
    const p = new Task(new Clock(), 1);
    run(engine, [p.open('/t/cfg', CREATE, 3), p.write(3, 77), p.close(3), p.open('/t/cfg.new', CREATE, 3), p.write(3, 80), p.close(3)]);
    const insights = run(engine, [p.rename('/t/cfg.new', '/t/cfg')]);
    expect(ofKind(insights, 'lifetime_ended')).toMatchObject([{ path: '/t/cfg', bytes: 77, cause: 'rename-over' }]);
    expect(ofKind(insights, 'file_renamed')).toMatchObject([{ path: '/t/cfg', from: '/t/cfg.new', metadata: false, pid: 1 }]);
    expect(engine.inspectFile('/t/cfg')?.size).toBe(80);
    expect(engine.inspectFile('/t/cfg.new')).toBeNull();
  });

  it('a rename is reported with both names (an exchange as two); a name never seen is not', () => {
    const engine = new InsightEngine({ inspector: 'none' });
    const p = new Task(new Clock(), 1);
    run(engine, [p.open('/t/a', CREATE, 3), p.close(3), p.open('/t/b', CREATE, 3), p.close(3)]);
    const exchanged = ofKind(run(engine, [p.rename('/t/a', '/t/b', 2 /* RENAME_EXCHANGE */)]), 'file_renamed');
    expect(exchanged.map((r) => [r.from, r.path])).toEqual([['/t/a', '/t/b'], ['/t/b', '/t/a']]);
    expect(ofKind(run(engine, [p.rename('/t/unknown', '/t/c')]), 'file_renamed')).toEqual([]);
  });

  describe('a look by path made after the fd is closed (ptrace) that finds another file at the name', () => {
    it('patch: the original opened after its temporary was renamed over it keeps its record and its lifetime', () => {
      const system = new FakeSystem();
      const original = system.addFile('/t/g', 'hello\nworld\n');
      system.addProc(1, '/usr/bin/patch');
      const fds = system.procs.get(1)!.fds;
      const engine = new InsightEngine({ inspector: system });
      const p = new Task(new Clock(), 1);
      fds.set(3, '/t/g');
      run(engine, [p.open('/t/g', CREATE, 3), p.write(3, 12), p.close(3)]);
      // The temporary is looked at in time; everything after it only once the rename is done.
      const temporary = system.addFile('/t/g.tmp', 'hello\nthere\n');
      fds.set(0, '/t/g.tmp');
      run(engine, [p.open('/t/g.tmp', O_WRONLY | O_CREAT | O_EXCL, 0)]);
      system.files.set('/t/g', temporary);
      system.files.delete('/t/g.tmp');
      fds.clear();
      const rest = run(engine, [p.open('/t/g', O_RDONLY, 4), p.close(4), p.write(0, 12), p.close(0), p.rename('/t/g.tmp', '/t/g')]);
      expect(ofKind(rest, 'file_opened')).toMatchObject([{ path: '/t/g', ino: original.ino, size: 12 }]);
      expect(ofKind(rest, 'lifetime_ended')).toMatchObject([{ path: '/t/g', ino: original.ino, bytes: 12, cause: 'rename-over' }]);
      expect(ofKind(rest, 'file_renamed')).toMatchObject([{ path: '/t/g', from: '/t/g.tmp', ino: temporary.ino }]);
      expect(engine.inspectFile('/t/g')?.size).toBe(12);
    });

    it('renameat2(RENAME_EXCHANGE): no file is truncated, both are renamed, each keeps its size', () => {
      const system = new FakeSystem();
      const a = system.addFile('/t/a', 'a'.repeat(3000));
      system.addProc(1, '/usr/bin/python3');
      const engine = new InsightEngine({ inspector: system });
      const p = new Task(new Clock(), 1);
      system.procs.get(1)!.fds.set(3, '/t/a');
      run(engine, [p.open('/t/a', CREATE, 3), p.write(3, 3000), p.close(3)]);
      // Looked at after the exchange: /t/b is a's inode, /t/a b's.
      system.procs.get(1)!.fds.clear();
      const b = system.addFile('/t/a', 'b'.repeat(9000) + 'c'.repeat(100));
      system.files.set('/t/b', a);
      const rest = run(engine, [p.open('/t/b', CREATE, 3), p.write(3, 9000), p.close(3), p.rename('/t/a', '/t/b', 2 /* RENAME_EXCHANGE */), p.open('/t/a', O_WRONLY | O_APPEND, 3), p.write(3, 100), p.close(3)]);
      expect(ofKind(rest, 'lifetime_ended')).toEqual([]);
      expect(ofKind(rest, 'file_renamed').map((r) => [r.from, r.path])).toEqual([['/t/a', '/t/b'], ['/t/b', '/t/a']]);
      expect(engine.inspectFile('/t/a')).toMatchObject({ size: 9100, ino: b.ino });
      expect(engine.inspectFile('/t/b')).toMatchObject({ size: 3000, ino: a.ino });
    });
  });

  it('a directory renamed reports each file below it by its new name; a hard-link name below moves quietly', () => {
    const engine = new InsightEngine({ inspector: 'none' });
    const p = new Task(new Clock(), 1);
    run(engine, [p.open('/t/stage/a', CREATE, 3), p.write(3, 10), p.close(3), p.open('/t/stage/sub/b', CREATE, 3), p.close(3), p.open('/t/other', CREATE, 3), p.close(3)]);
    run(engine, [p.link('/t/other', '/t/stage/other-link')]);
    const insights = run(engine, [p.rename('/t/stage', '/t/final')]);
    expect(ofKind(insights, 'file_renamed').map((r) => [r.from, r.path]).sort()).toEqual([['/t/stage/a', '/t/final/a'], ['/t/stage/sub/b', '/t/final/sub/b']]);
    expect(engine.inspectFile('/t/final/sub/b')).not.toBeNull();
    expect(engine.inspectFile('/t/stage/a')).toBeNull();
    // The link's file is still reported by its first name; its second name followed the directory.
    expect(engine.inspectFile('/t/other')).not.toBeNull();
    run(engine, [p.unlink('/t/final/other-link')]);
    expect(ofKind(run(engine, [p.unlink('/t/other')]), 'lifetime_ended')).toMatchObject([{ path: '/t/other', cause: 'unlink' }]);
    // A sibling whose name merely starts with the directory's is not below it.
    run(engine, [p.open('/t/final2/c', CREATE, 3), p.close(3)]);
    expect(ofKind(run(engine, [p.rename('/t/final', '/t/done')]), 'file_renamed')).toHaveLength(2);
    expect(engine.inspectFile('/t/final2/c')).not.toBeNull();
    // A directory whose names lie only in a subdirectory; once they are gone, renaming it moves nothing.
    run(engine, [p.open('/u/d/x/y', CREATE, 3), p.close(3)]);
    expect(ofKind(run(engine, [p.rename('/u/d', '/u/e')]), 'file_renamed').map((r) => r.path)).toEqual(['/u/e/x/y']);
    run(engine, [p.unlink('/u/e/x/y'), p.open('/u/f', CREATE, 3), p.close(3)]);
    expect(ofKind(run(engine, [p.rename('/u/e', '/u/g')]), 'file_renamed')).toEqual([]);
    expect(engine.inspectFile('/u/f')).not.toBeNull();
  });

  it('truncation ends the life of the bytes cut off; O_TRUNC of a known file too', () => {
    const engine = new InsightEngine({ inspector: 'none' });
    const p = new Task(new Clock(), 1);
    run(engine, [p.open('/t/f', CREATE, 3), p.write(3, 9000)]);
    const cut = ofKind(run(engine, [p.ev('ftruncate', { fd: 3, length: 1000, ret: 0 }), p.close(3)]), 'lifetime_ended');
    expect(cut).toMatchObject([{ bytes: 8000, cause: 'truncate' }]);
    const reopened = ofKind(run(engine, [p.open('/t/f', CREATE, 3)]), 'lifetime_ended');
    expect(reopened).toMatchObject([{ bytes: 1000, cause: 'truncate' }]);
  });

  it('a punched hole and a collapsed range end the life of what they held inside the file; zeroing and allocating do not', () => {
    const engine = new InsightEngine({ inspector: 'none' });
    const p = new Task(new Clock(), 1);
    run(engine, [p.open('/t/f', CREATE, 3), p.write(3, 100_000)]);
    const fallocate = (mode: number, offset: number, length: number) =>
      ofKind(run(engine, [p.ev('fallocate', { fd: 3, mode, offset, length, ret: 0 })]), 'lifetime_ended');
    const PUNCH = 0x02 | 0x01; // FALLOC_FL_PUNCH_HOLE must come with KEEP_SIZE
    expect(fallocate(PUNCH, 90_000, 50_000)).toMatchObject([{ path: '/t/f', bytes: 10_000, cause: 'hole' }]); // clipped at the end
    expect(fallocate(PUNCH, 200_000, 4096)).toEqual([]); // beyond the end: nothing held
    expect(fallocate(0x08, 4096, 8192)).toMatchObject([{ bytes: 8192, cause: 'hole' }]); // FALLOC_FL_COLLAPSE_RANGE
    expect(engine.inspectFile('/t/f')?.size).toBe(100_000 - 8192);
    expect(fallocate(0x10, 0, 4096)).toEqual([]); // FALLOC_FL_ZERO_RANGE: the same bytes, now zeros
    expect(fallocate(0, 0, 200_000)).toEqual([]);
  });

  it('a size made by ftruncate alone is a hole: punching, truncating or removing it ends the life of written bytes only', () => {
    const engine = new InsightEngine({ inspector: 'none' });
    const p = new Task(new Clock(), 1);
    const ended = (events: SyscallEvent[]) => ofKind(run(engine, events), 'lifetime_ended');
    // cp --sparse=always of a sparse file: ftruncate to the size, then punch it all.
    run(engine, [p.open('/t/sparse', CREATE, 3), p.ev('ftruncate', { fd: 3, length: 10 * 1024 * 1024, ret: 0 })]);
    expect(ended([p.ev('fallocate', { fd: 3, mode: 0x03, offset: 0, length: 10 * 1024 * 1024, ret: 0 })])).toEqual([]);
    run(engine, [p.write(3, 4096, 8192)]);
    expect(ended([p.ev('ftruncate', { fd: 3, length: 0, ret: 0 })])).toMatchObject([{ bytes: 12_288, cause: 'truncate' }]);
    run(engine, [p.ev('ftruncate', { fd: 3, length: 1 << 20, ret: 0 }), p.write(3, 100, 0), p.close(3)]);
    expect(ended([p.unlink('/t/sparse')])).toMatchObject([{ bytes: 100, cause: 'unlink' }]);
  });

  it('bytes cut from a file that may have holes (a write past its data, a summary with gaps) are flagged: fewer may have held data', () => {
    const engine = new InsightEngine({ inspector: 'none' });
    const p = new Task(new Clock(), 1);
    const ended = (events: SyscallEvent[]) => ofKind(run(engine, events), 'lifetime_ended');
    const MiB = 1 << 20;
    run(engine, [p.open('/t/dense', CREATE, 3), p.write(3, MiB, 0), p.write(3, MiB, MiB)]);
    expect(ended([p.ev('ftruncate', { fd: 3, length: MiB, ret: 0 })])).toEqual([
      expect.not.objectContaining({ uncertain: expect.anything() }),
    ]);
    run(engine, [p.open('/t/gap', CREATE, 4), p.write(4, MiB, 0), p.write(4, 65_536, 4 * MiB)]);
    expect(ended([p.ev('ftruncate', { fd: 4, length: 2 * MiB, ret: 0 })])).toMatchObject([
      { bytes: 2 * MiB + 65_536, uncertain: expect.stringContaining('holes') },
    ]);
    // One summary for both calls (the eBPF backend's aggregate): 1 MiB + 64 KiB written over a 4 MiB + 64 KiB span.
    run(engine, [p.open('/t/summed', CREATE, 5), p.summary(5, { writeCalls: 2, writeBytes: MiB + 65_536, writeStart: 0, writeEnd: 4 * MiB + 65_536 })]);
    expect(ended([p.unlink('/t/summed')])).toEqual([]); // still open: its blocks die at the close
    expect(ended([p.close(5)])).toMatchObject([{ cause: 'unlink', uncertain: expect.stringContaining('holes') }]);
    // Emptied, the file starts again without holes.
    expect(ended([p.ev('ftruncate', { fd: 4, length: 0, ret: 0 }), p.write(4, 4096, 0), p.ev('ftruncate', { fd: 4, length: 0, ret: 0 })])).toEqual([
      expect.objectContaining({ uncertain: expect.stringContaining('holes') }),
      expect.not.objectContaining({ uncertain: expect.anything() }),
    ]);
  });

  it('a file opened through a symbolic link is reported by the name the link leads to; removing the link ends nothing', () => {
    const system = new FakeSystem();
    system.addFile('/t/a', 'abc');
    system.addSymlink('/t/l', '/t/a');
    system.addProc(1, '/bin/sh');
    system.procs.get(1)?.fds.set(3, '/t/a');
    const engine = new InsightEngine({ inspector: system });
    const p = new Task(new Clock(), 1);
    const opened = run(engine, [p.open('/t/l', O_RDONLY, 3), p.close(3)]);
    expect(ofKind(opened, 'file_opened')).toMatchObject([{ path: '/t/a', size: 3 }]);
    expect(ofKind(run(engine, [p.unlink('/t/l')]), 'lifetime_ended')).toEqual([]);
    expect(ofKind(run(engine, [p.unlink('/t/a')]), 'lifetime_ended')).toMatchObject([{ path: '/t/a', bytes: 3, cause: 'unlink' }]);
  });

  it('a file written through a link to its directory is known by the real directory, and renamed or removed by either name', () => {
    const system = new FakeSystem();
    system.addSymlink('/t/lnk', '/t/real');
    system.addFile('/t/real/g', 'x'.repeat(9000));
    system.addProc(1, '/bin/sh');
    const engine = new InsightEngine({ inspector: system });
    const p = new Task(new Clock(), 1);
    expect(ofKind(run(engine, [p.open('/t/lnk/g', CREATE, 3), p.write(3, 9000), p.close(3)]), 'file_opened')).toMatchObject([{ path: '/t/real/g' }]);
    expect(ofKind(run(engine, [p.rename('/t/lnk/g', '/t/lnk/g2')]), 'file_renamed')).toMatchObject([{ path: '/t/real/g2', from: '/t/real/g' }]);
    expect(ofKind(run(engine, [p.unlink('/t/real/g2')]), 'lifetime_ended')).toMatchObject([{ path: '/t/real/g2', bytes: 9000, cause: 'unlink' }]);
  });

  it('a file known by its name and opened through a link gone by the time the open is handled keeps that name (ebpf)', () => {
    const system = new FakeSystem();
    const file = system.addFile('/t/a', 'abc');
    system.addProc(1, '/bin/sh');
    const engine = new InsightEngine({ inspector: system });
    const p = new Task(new Clock(), 1);
    // The ebpf backend's open: the kernel's view of the inode at the call (the fd is closed before we look).
    const open = (path: string) => ({ ...p.open(path, O_RDONLY, 3), ino: file.ino, dev: file.dev, size: 3, fileType: 'regular', nlink: 1, mtimeUs: 0 }) as SyscallEvent;
    run(engine, [open('/t/a'), p.close(3)]);
    expect(ofKind(run(engine, [open('/t/l'), p.close(3)]), 'file_opened')).toMatchObject([{ path: '/t/a' }]);
    expect(ofKind(run(engine, [p.unlink('/t/l')]), 'lifetime_ended')).toEqual([]);
    // A file renamed behind our back (its old name leads nowhere) is reported by the name it was opened by.
    system.files.set('/t/b', file);
    system.files.delete('/t/a');
    expect(ofKind(run(engine, [open('/t/b'), p.close(3)]), 'file_opened')).toMatchObject([{ path: '/t/b' }]);
  });

  it('an O_TMPFILE open whose late look finds a file already known (a reused fd) is a file of its own', () => {
    const system = new FakeSystem();
    system.addFile('/t/#100', '').nlink = 0;
    system.addProc(1, '/bin/app');
    system.procs.get(1)?.fds.set(3, '/t/#100'); // what fd 3 is when we look: the second temporary file
    const engine = new InsightEngine({ inspector: system });
    const p = new Task(new Clock(), 1);
    const tmpfile = () => p.open('/t', O_TMPFILE | O_RDWR, 3);
    const linkEmpty = { ...p.link('', '/t/named'), olddirfd: 3, flags: AT_EMPTY_PATH } as SyscallEvent;
    const first = run(engine, [tmpfile(), p.write(3, 10), linkEmpty, p.close(3)]);
    expect(ofKind(first, 'file_renamed').map((r) => r.path)).toEqual(['/t/named']);
    const second = run(engine, [tmpfile(), p.write(3, 5), p.close(3)]);
    expect(ofKind(second, 'lifetime_ended')).toMatchObject([{ bytes: 5, cause: 'tmpfile' }]);
    expect(ofKind(run(engine, [p.unlink('/t/named')]), 'lifetime_ended')).toMatchObject([{ path: '/t/named', bytes: 10, cause: 'unlink' }]);
  });

  it('unlinking one of two hard links ends nothing', () => {
    const system = new FakeSystem();
    system.addFile('/t/a', 'abc').nlink = 2;
    system.addProc(1, '/bin/rm');
    system.procs.get(1)?.fds.set(3, '/t/a');
    const engine = new InsightEngine({ inspector: system });
    const p = new Task(new Clock(), 1);
    expect(ofKind(run(engine, [p.open('/t/a', O_RDONLY, 3), p.close(3), p.unlink('/t/a')]), 'lifetime_ended')).toEqual([]);
  });

  it('a hard link a traced process made keeps the blocks alive until its last name goes (git links, then unlinks)', () => {
    const system = new FakeSystem();
    system.addFile('/g/tmp_obj', 'x'.repeat(5000));
    system.addProc(1, '/usr/bin/git');
    const engine = new InsightEngine({ inspector: system });
    const p = new Task(new Clock(), 1);
    const ended = (events: SyscallEvent[]) => ofKind(run(engine, events), 'lifetime_ended').map((e) => [e.path, e.cause]);
    run(engine, [p.open('/g/tmp_obj', O_RDONLY, 3), p.close(3), p.link('/g/tmp_obj', '/g/ab/cdef')]);
    const unlinked = run(engine, [p.unlink('/g/tmp_obj')]);
    expect(ofKind(unlinked, 'lifetime_ended')).toEqual([]);
    // The file is reported by the name it still has, and says so; renaming that name and removing it ends its life.
    expect(ofKind(unlinked, 'file_renamed').map((r) => [r.from, r.path])).toEqual([['/g/tmp_obj', '/g/ab/cdef']]);
    expect(ended([p.rename('/g/ab/cdef', '/g/ab/final'), p.unlink('/g/ab/final')])).toEqual([['/g/ab/final', 'unlink']]);
  });

  it('an unlink whose path the tracer cut short ends nothing', () => {
    const engine = new InsightEngine({ inspector: 'none' });
    const p = new Task(new Clock(), 1);
    run(engine, [p.open('/t/x', CREATE, 3), p.close(3)]);
    const cut = { ...p.unlink('/t/x'), truncated: true };
    expect(ofKind(run(engine, [cut]), 'lifetime_ended')).toEqual([]);
    expect(engine.summary().counters.unknownNames).toBe(1);
  });

  it('an unlink of a name never seen is counted, not guessed', () => {
    const engine = new InsightEngine({ inspector: 'none' });
    expect(run(engine, [new Task(new Clock(), 1).unlink('/unknown')])).toEqual([]);
    expect(engine.summary().counters.unknownNames).toBe(1);
  });
});

describe('application hints', () => {
  it('reports syscall-argument hints with their class and range; a foreign magic is ignored', () => {
    const engine = new InsightEngine({ inspector: 'none' });
    const p = new Task(new Clock(), 1);
    const insights = run(engine, [
      p.open('/db/index', CREATE, 3),
      p.write(3, 4096, null, { magic: HINT_MAGIC, ioClass: 2 }),
      p.write(3, 4096, 65536, { magic: HINT_MAGIC, ioClass: 5 }),
      p.write(3, 10, null, { magic: 0x1234, ioClass: 1 }),
    ]);
    expect(ofKind(insights, 'app_hint').map((h) => [h.path, h.fd, h.ioClass, h.source, h.range])).toEqual([
      ['/db/index', 3, 2, 'syscall-args', { offset: 0, length: 4096 }],
      ['/db/index', 3, 5, 'syscall-args', { offset: 65536, length: 4096 }],
    ]);
    expect(engine.summary().counters.foreignHints).toBe(1);
  });

  it('maps fadvise, F_SET_RW_HINT and ioprio_set onto classes', () => {
    const engine = new InsightEngine({ inspector: 'none' });
    const p = new Task(new Clock(), 1);
    const insights = run(engine, [
      p.open('/f', O_RDWR, 3),
      p.ev('fadvise', { fd: 3, offset: 0, length: 0, advice: 2, ret: 0 }),
      p.ev('fadvise', { fd: 3, offset: 0, length: 0, advice: 0, ret: 0 }),
      p.ev('fcntl', { fd: 3, cmd: 1036, arg: 2, ret: 0 }),
      p.ev('ioprio', { which: 1, who: 0, ioprio: (3 << 13) | 0, ret: 0 }),
    ]);
    expect(ofKind(insights, 'app_hint').map((h) => [h.source, h.ioClass, h.raw, h.path])).toEqual([
      ['fadvise', 0, 2, '/f'],
      ['rw_hint', 4, 2, '/f'],
      ['ioprio', 0, 3 << 13, null],
    ]);
  });
});

describe('mmap write-back', () => {
  it('surfaces shared writable mappings at msync, munmap (partial) and fsync, not private ones', () => {
    const engine = new InsightEngine({ inspector: 'none' });
    const p = new Task(new Clock(), 1);
    const base = 0x7f0000000000;
    run(engine, [
      p.open('/m', O_RDWR, 3),
      p.ev('mmap', { addr: 0, length: 8 * 4096, prot: 3, flags: 1, fd: 3, offset: 4096, ret: base }),
      p.ev('mmap', { addr: 0, length: 4096, prot: 3, flags: 2, fd: 3, offset: 0, ret: base + 0x100000 }),
    ]);
    const synced = ofKind(run(engine, [p.ev('msync', { addr: base + 4096, length: 4096, flags: 4, ret: 0 })]), 'mmap_writeback');
    expect(synced.map((w) => [w.path, w.range, w.trigger])).toEqual([['/m', { offset: 8192, length: 4096 }, 'msync']]);
    const unmapped = ofKind(run(engine, [p.ev('munmap', { addr: base, length: 2 * 4096, ret: 0 })]), 'mmap_writeback');
    expect(unmapped.map((w) => w.range)).toEqual([{ offset: 4096, length: 8192 }]);
    const fsynced = ofKind(run(engine, [p.ev('fsync', { fd: 3, dataOnly: false, ret: 0 })]), 'mmap_writeback');
    expect(fsynced.map((w) => [w.range, w.trigger])).toEqual([[{ offset: 3 * 4096, length: 6 * 4096 }, 'fsync']]);
    const atExit = ofKind(run(engine, [p.exit()]), 'mmap_writeback');
    expect(atExit.map((w) => w.trigger)).toEqual(['exit']);
  });
});

describe('summary', () => {
  it('names files with sizes and classes, copies, hints and lifetimes', () => {
    const engine = new InsightEngine({ inspector: 'none' });
    const p = new Task(new Clock(), 50);
    run(engine, [
      p.exec('/usr/bin/cp'),
      p.open('/w/a', O_RDONLY, 3),
      p.open('/w/b', CREATE, 4),
      p.copy('copy_file_range', 3, 4, 3 * MiB),
      p.ev('fadvise', { fd: 3, offset: 0, length: 0, advice: 2, ret: 0 }),
      p.close(4),
      p.close(3),
      p.unlink('/w/b'),
      p.ev('lost', { count: 3 }),
    ]);
    const summary = engine.summary();
    // Sorted by bytes moved (3 MiB each way here), then by path.
    expect(summary.files.list.map((f) => [f.path, f.size, f.ioClass])).toEqual([
      ['/w/a', null, 4],
      ['/w/b', 3 * MiB, 2],
    ]);
    const text = renderSummary(summary);
    expect(text).toContain('copy        /w/a -> /w/b  3.0 MiB by copy_file_range (/usr/bin/cp)');
    expect(text).toContain('fadvise');
    expect(text).toContain('unlink');
    expect(text).toContain('3 LOST');
  });
});

describe('unused flags', () => {
  it('O_WRONLY without O_TRUNC keeps the size', () => {
    const engine = new InsightEngine({ inspector: 'none' });
    const p = new Task(new Clock(), 1);
    run(engine, [p.open('/k', CREATE, 3), p.write(3, 10), p.close(3), p.open('/k', O_WRONLY, 3)]);
    expect(engine.inspectFile('/k')?.size).toBe(10);
  });
});
