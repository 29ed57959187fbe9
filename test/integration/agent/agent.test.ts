/**
 * `sky agent` end to end, all real: an Engine in this process (memory device, classify layer, hint token, hints on
 * a unix socket), its export attached with nbdfuse + losetup --direct-io=on + mkfs.ext4 + mount, and the built CLI
 * (dist/) tracing a workload on that file system with eBPF and sending hints over the channel. Checked through the
 * engine's SemanticIndex: the files' extents are those FIEMAP reports, reads of them are tagged data of the right
 * file, and the data blocks' writes were recognised by their fingerprints (nothing else registers any). A wrong
 * token and an unreachable engine are refused with their own exit status; --device routes a guest's disk.
 *
 * The workload sleeps 2 s between writing and `sync`: the hints reach the engine ~0.1–0.5 s after a write (eBPF
 * maps are collected every 25 ms for the agent, then the 10 ms readback debounce), and the file system's own write-back comes
 * 5–30 s later; an immediate `sync` would race the hints, which is not what the fingerprints are for.
 */
import { statSync } from 'node:fs';
import path from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine, parseConfig } from '../../../src/engine/index.js';
import { mergeExtents } from '../../../src/agent/index.js';
import { fileVolumeMap } from '../../../src/insight/extents/volume-map.js';
import { attachLoop, makeTempDir, run, runOk, useIntegrationCleanup, type LoopAttachment } from '../../helpers/index.js';

useIntegrationCleanup();

const SKY = path.resolve('dist/cli/main.js');
const TOKEN = 'agent-test-token-0123456789abcdef';
const MiB = 1024 * 1024;

describe('sky agent over the hint channel, on ext4 through nbdfuse + loop', () => {
  let dir: string;
  let engine: Engine;
  let attachment: LoopAttachment | null = null;
  let mnt: string;

  beforeAll(async () => {
    await run('sh', ['-c', 'mount | grep -q tracefs || mount -t tracefs nodev /sys/kernel/tracing']);
    dir = makeTempDir('sky-it-agent-');
    const config = parseConfig(
      {
        dataDir: dir,
        listen: { socket: 'nbd.sock' },
        hints: { socket: 'hints.sock' },
        log: { level: 'silent' },
        // Every block matched, not samples of large writes, so the counts below are exact.
        exports: [{ name: 'v', device: { type: 'memory', size: '1G' }, layers: [{ type: 'classify', sampleBlocks: 0 }], hintToken: TOKEN }],
      },
      'test',
    );
    engine = new Engine(config, pino({ level: 'silent' }));
    await engine.start();
    attachment = await attachLoop(`nbd+unix:///v?socket=${path.join(dir, 'nbd.sock')}`, dir);
    // 4 KiB blocks, as fingerprints are (mkfs picks 1 KiB blocks for small devices on its own).
    await runOk('mkfs.ext4', ['-q', '-F', '-b', '4096', attachment.device]);
    mnt = await attachment.mount();
  }, 120_000);

  afterAll(async () => {
    try {
      await attachment?.detach();
    } finally {
      await engine?.stop();
    }
  });

  const agent = (args: string[], command: string) =>
    run(process.execPath, [SKY, 'agent', '--engine', `unix:${path.join(dir, 'hints.sock')}`, '--volume', 'v', ...args, '--', 'sh', '-c', command], { timeout_ms: 120_000 });

  it('tells the engine where a written file and its copy live, and their writes are recognised as their data', async () => {
    const a = path.join(mnt, 'a');
    const b = path.join(mnt, 'b');
    const result = await agent(
      ['--token', TOKEN, '--backend', 'ebpf'],
      `dd if=/dev/urandom of=${a} bs=1M count=8 status=none && sleep 2 && sync && cp ${a} ${b} && sleep 2 && sync && exit 7`,
    );
    expect(result.stderr).toContain('traced with ebpf');
    expect(result.code).toBe(7); // the command's exit status
    const index = engine.semantics.get('v')!;
    const stats = index.stats();
    // Every data block of both files (2 × 2048) was written after its fingerprint arrived, and matched it.
    expect(stats.blocks.matched).toBe(2 * 2048);
    expect(stats.writes.data).toBeGreaterThan(0);
    expect(stats.rejected).toBe(0);
    for (const file of [a, b]) {
      const st = statSync(file);
      const fileId = `${st.dev}:${st.ino}`;
      const truth = mergeExtents(fileVolumeMap(file, { sync: false }).extents.map((e) => ({ volumeOffset: e.volumeOffset, length: e.length })));
      expect(truth.reduce((n, e) => n + e.length, 0)).toBe(8 * MiB);
      const known = index.file(fileId)!;
      expect(known).toMatchObject({ fileId, path: file, size: 8 * MiB, extents: truth });
      for (const extent of truth) {
        const tag = index.tagRead(extent.volumeOffset, extent.length);
        expect(tag).toMatchObject({ origin: 'data', fileId, fileSize: 8 * MiB });
      }
    }
    expect(index.file(`${statSync(b).dev}:${statSync(b).ino}`)).toMatchObject({ copy: true });
    // Outside the files: metadata (block 0 holds the superblock).
    expect(index.tagRead(0, 4096).origin).toBe('metadata');
    expect(result.stderr).toMatch(/fingerprinted: 16\.0 MiB/);
    expect(result.stderr).toContain('hint channel: delivered');
  }, 180_000);

  it('refuses a wrong token (exit 5) and says so; an unreachable engine is exit 4; the command never runs', async () => {
    const marker = path.join(dir, 'ran');
    const wrong = await agent(['--token', 'not-the-token-of-this-volume'], `touch ${marker}`);
    expect(wrong.code).toBe(5);
    expect(wrong.stderr).toContain('refused the hint channel for volume "v"');
    const otherVolume = await run(process.execPath, [SKY, 'agent', '--engine', `unix:${path.join(dir, 'hints.sock')}`, '--volume', 'nope', '--token', TOKEN, '--', 'touch', marker]);
    expect(otherVolume.code).toBe(5);
    const unreachable = await run(process.execPath, [SKY, 'agent', '--engine', `unix:${path.join(dir, 'no-such.sock')}`, '--volume', 'v', '--token', TOKEN, '--', 'touch', marker]);
    expect(unreachable.code).toBe(4);
    expect(unreachable.stderr).toContain("cannot reach the engine's hint channel");
    expect(() => statSync(marker)).toThrow();
  }, 60_000);

  it('the ptrace backend feeds the same messages: a written file is mapped and its blocks recognised', async () => {
    const d = path.join(mnt, 'd');
    const before = engine.semantics.get('v')!.stats().blocks.matched;
    const result = await agent(['--token', TOKEN, '--backend', 'ptrace'], `dd if=/dev/urandom of=${d} bs=64k count=16 status=none && sleep 2 && sync`);
    expect(result.stderr).toContain('traced with ptrace');
    expect(result.code).toBe(0);
    const index = engine.semantics.get('v')!;
    expect(index.stats().blocks.matched - before).toBe(256);
    const st = statSync(d);
    const truth = mergeExtents(fileVolumeMap(d, { sync: false }).extents.map((e) => ({ volumeOffset: e.volumeOffset, length: e.length })));
    expect(index.file(`${st.dev}:${st.ino}`)).toMatchObject({ path: d, size: 1 * MiB, extents: truth });
  }, 120_000);

  it('a file written under a temporary name and renamed at once (rsync, sed -i) is read back and mapped under its new name', async () => {
    const temporary = path.join(mnt, '.r.tmp');
    const final = path.join(mnt, 'r');
    const before = engine.semantics.get('v')!.stats().blocks.matched;
    // mv runs within milliseconds of dd's close, long before the agent gets to the close (tens of ms at least).
    const result = await agent(['--token', TOKEN, '--backend', 'ebpf'], `dd if=/dev/urandom of=${temporary} bs=64k count=16 status=none && mv ${temporary} ${final} && sleep 2 && sync`);
    expect(result.code).toBe(0);
    expect(result.stderr).toMatch(/\(1 found again renamed\)/);
    const index = engine.semantics.get('v')!;
    expect(index.stats().blocks.matched - before).toBe(256);
    const st = statSync(final);
    const truth = mergeExtents(fileVolumeMap(final, { sync: false }).extents.map((e) => ({ volumeOffset: e.volumeOffset, length: e.length })));
    expect(index.file(`${st.dev}:${st.ino}`)).toMatchObject({ path: final, size: 1 * MiB, extents: truth });
  }, 120_000);

  it('maps the files around a file the workload reads before it reads them (extent read-ahead); --no-read-ahead does not', async () => {
    // Trees written by an untraced process and on disk: the engine has heard nothing of them.
    const layout = ['a/f0', 'a/f1', 'a/sub/f2', 'b/f3', 'b/f4', 'top'];
    const make = async (root: string) => {
      const mkdirs = [...new Set(layout.map((f) => path.dirname(path.join(root, f))))].join(' ');
      const writes = layout.map((f) => `head -c 20000 /dev/urandom > ${path.join(root, f)}`).join(' && ');
      await runOk('sh', ['-c', `mkdir -p ${mkdirs} && ${writes} && sync && echo 3 > /proc/sys/vm/drop_caches`]);
    };
    const ahead = path.join(mnt, 'ahead');
    const plain = path.join(mnt, 'plain');
    await make(ahead);
    const index = engine.semantics.get('v')!;
    const known = (root: string) =>
      layout.filter((f) => {
        const file = path.join(root, f);
        const st = statSync(file);
        const truth = mergeExtents(fileVolumeMap(file, { sync: false }).extents.map((e) => ({ volumeOffset: e.volumeOffset, length: e.length })));
        const described = index.file(`${st.dev}:${st.ino}`);
        if (described === undefined) return false;
        expect(described).toMatchObject({ path: file, size: 20000, extents: truth });
        return true;
      });

    // The workload lists its tree (ls -R) and reads one file; the walk runs while the workload does (sleep 2).
    const withReadAhead = await agent(['--token', TOKEN, '--backend', 'ebpf'], `ls -R ${ahead} > /dev/null && cat ${path.join(ahead, 'a/f0')} > /dev/null && sleep 2`);
    expect(withReadAhead.code).toBe(0);
    // Only a/f0 was opened; the walk mapped its directory, the subdirectory, and upwards into what ls listed.
    expect(known(ahead)).toEqual(layout);
    expect(withReadAhead.stderr).toMatch(/extent read-ahead: 1 walks, \d+ directories.* \(in its own thread\)/);

    await make(plain); // now, so the walk above could not have seen it

    const without = await agent(['--token', TOKEN, '--backend', 'ebpf', '--no-read-ahead'], `ls -R ${plain} > /dev/null && cat ${path.join(plain, 'a/f0')} > /dev/null && sleep 2`);
    expect(without.code).toBe(0);
    expect(known(plain)).toEqual(['a/f0']);
    expect(without.stderr).not.toContain('extent read-ahead');

    // A file opened by name, nothing listed: only its own directory (and below) is walked.
    const byName = path.join(mnt, 'byname');
    await make(byName);
    const named = await agent(['--token', TOKEN, '--backend', 'ebpf'], `cat ${path.join(byName, 'a/f0')} > /dev/null && sleep 2`);
    expect(named.code).toBe(0);
    expect(known(byName)).toEqual(['a/f0', 'a/f1', 'a/sub/f2']);
  }, 180_000);

  it('--device routes the files of a block device (a guest agent names its disk)', async () => {
    const c = path.join(mnt, 'c');
    const result = await agent(
      ['--token', TOKEN, '--backend', 'ebpf', '--device', attachment!.device],
      `head -c 300000 /dev/urandom > ${c} && sync`,
    );
    expect(result.code).toBe(0);
    const st = statSync(c);
    const known = engine.semantics.get('v')!.file(`${st.dev}:${st.ino}`)!;
    const truth = mergeExtents(fileVolumeMap(c, { sync: false }).extents.map((e) => ({ volumeOffset: e.volumeOffset, length: e.length })));
    // At exit the agent maps the file once more, now that `sync` placed it.
    expect(known).toMatchObject({ path: c, size: 300000, extents: truth });
    expect(truth.reduce((n, e) => n + e.length, 0)).toBe(Math.ceil(300000 / 4096) * 4096);
  }, 120_000);
});
