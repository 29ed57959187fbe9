/**
 * A real file system on the export: nbdfuse exposes it as a file, `losetup --direct-io=on` makes a block device of
 * that, mkfs.ext4, mount, write a few tens of MB (several large files and a directory tree of small ones), sync,
 * umount, `e2fsck -fn` must be clean, remount and every checksum must match. Then the whole stack is torn down,
 * the server restarted, and the files checked once more.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { attachLoop, makeTempDir, mountsUnder, run, runOk, sha256, startFileServer, useIntegrationCleanup, type LoopAttachment, type NbdServer } from '../../helpers/index.js';

useIntegrationCleanup();

const KiB = 1024;
const MiB = 1024 * KiB;

let server: NbdServer;
let dir: string;
let attachment: LoopAttachment | null = null;
/** Relative path → sha256 of what was written. */
const expected = new Map<string, string>();

beforeAll(async () => {
  dir = makeTempDir('sky-it-fs-');
  server = await startFileServer({ dir, size: '256M' });
});

afterAll(async () => {
  try {
    await attachment?.detach();
  } finally {
    await server?.stop();
  }
});

function writeTree(root: string): void {
  const large = [
    { path: 'big/random-20M.bin', size: 20 * MiB },
    { path: 'big/random-5M.bin', size: 5 * MiB + 123 },
    { path: 'big/random-1M.bin', size: MiB },
    { path: 'big/odd-size.bin', size: 777_777 },
  ];
  for (const file of large) putFile(root, file.path, randomBytes(file.size));
  for (let a = 0; a < 4; a++) {
    for (let b = 0; b < 5; b++) {
      for (let c = 0; c < 10; c++) {
        const size = ((a * 50 + b * 10 + c) * 1531) % (96 * KiB);
        putFile(root, `tree/d${a}/e${b}/f${c}.dat`, randomBytes(size));
      }
    }
  }
  putFile(root, 'tree/empty', Buffer.alloc(0));
  mkdirSync(join(root, 'tree/empty-dir/nested'), { recursive: true });
}

function putFile(root: string, path: string, content: Buffer): void {
  const full = join(root, path);
  mkdirSync(join(full, '..'), { recursive: true });
  writeFileSync(full, content);
  expected.set(path, sha256(content));
}

function listFiles(root: string): string[] {
  const out: string[] = [];
  const walk = (at: string) => {
    for (const entry of readdirSync(at, { withFileTypes: true })) {
      const full = join(at, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.isFile()) out.push(relative(root, full));
    }
  };
  walk(root);
  return out.filter((path) => !path.startsWith('lost+found')).sort();
}

function verifyTree(root: string): void {
  expect(listFiles(root)).toEqual([...expected.keys()].sort());
  for (const [path, hash] of expected) expect(sha256(readFileSync(join(root, path))), path).toBe(hash);
  expect(statSync(join(root, 'tree/empty-dir/nested')).isDirectory()).toBe(true);
}

describe('ext4 on nbdfuse + loop', () => {
  it('attaches the export as a direct-I/O loop device', async () => {
    attachment = await attachLoop(server.uri(), dir);
    expect(attachment.device).toMatch(/^\/dev\/loop\d+$/);
    expect(await attachment.directIo()).toBe(true);
    const size = await runOk('blockdev', ['--getsize64', attachment.device]);
    expect(Number(size.stdout.trim())).toBe(256 * MiB);
  });

  it('makes, fills, checks and re-reads an ext4 file system', async () => {
    expect(attachment, 'attach step failed').not.toBeNull();
    await attachment!.mkfs('ext4');
    const root = await attachment!.mount();
    writeTree(root);
    await runOk('sync', ['-f', root]);
    await attachment!.unmount();

    const fsck = await run('e2fsck', ['-fn', attachment!.device]);
    expect(fsck.code, fsck.stdout + fsck.stderr).toBe(0);

    const again = await attachment!.mount();
    verifyTree(again);
    await attachment!.unmount();
  });

  it('keeps the file system across detach, server restart and re-attach', async () => {
    expect(expected.size, 'previous step failed').toBeGreaterThan(0);
    await attachment!.detach();
    attachment = null;
    const stopped = await server.stop();
    expect(stopped).toMatchObject({ code: 0, forced: false });
    server = await server.restart();

    attachment = await attachLoop(server.uri(), dir);
    const fsck = await run('e2fsck', ['-fn', attachment.device]);
    expect(fsck.code, fsck.stdout + fsck.stderr).toBe(0);
    const root = await attachment.mount();
    verifyTree(root);
    await attachment.unmount();
    await attachment.detach();
    attachment = null;
  });

  it('a failed attach (unknown export) leaves no mount, loop device or nbdfuse behind', async () => {
    const failedDir = join(dir, 'failed-attach');
    mkdirSync(failedDir);
    await expect(attachLoop(server.uri('no-such-export'), failedDir)).rejects.toThrow();
    expect(mountsUnder(failedDir)).toEqual([]);
    const loops = await runOk('losetup', ['--associated', join(failedDir, 'fuse', 'nbd')]);
    expect(loops.stdout.trim()).toBe('');
  });
});
