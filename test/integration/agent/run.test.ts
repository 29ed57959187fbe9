/**
 * `sky run` end to end: the built CLI starts an engine (memory volume; the quick options add the classify layer),
 * traces a script that attaches the export itself (nbdfuse on $SKY_NBD_URI + loop + mkfs.ext4 + mount), writes a
 * file, syncs, and tears everything down; the hints go into the volume's index in-process. What it prints when the
 * script exits is checked: the messages sent, the bytes fingerprinted, and the index's count of write blocks it
 * recognised as file data (the file's 2048 blocks, and nothing else registers fingerprints).
 *
 * The script records what it set up, so a failure midway is still torn down here (umount, losetup -d, fusermount3).
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { makeTempDir, mountsUnder, run, useIntegrationCleanup } from '../../helpers/index.js';

useIntegrationCleanup();

const SKY = path.resolve('dist/cli/main.js');

const SCRIPT = `set -e
D=$1
mkdir -p $D/fuse $D/mnt
nbdfuse -P $D/nbdfuse.pid $D/fuse/nbd "$SKY_NBD_URI" &
for i in $(seq 100); do [ -s $D/nbdfuse.pid ] && [ -e $D/fuse/nbd ] && break; sleep 0.1; done
dev=$(losetup --direct-io=on -f --show $D/fuse/nbd)
echo $dev > $D/loopdev
mkfs.ext4 -q -F -b 4096 $dev
mount $dev $D/mnt
dd if=/dev/urandom of=$D/mnt/a bs=1M count=8 status=none
sleep 2
sync
umount $D/mnt
losetup -d $dev
fusermount3 -u $D/fuse
wait
`;

describe('sky run', () => {
  let dir = '';

  afterAll(async () => {
    if (!dir) return;
    if (mountsUnder(path.join(dir, 'mnt')).length > 0) await run('umount', ['-l', path.join(dir, 'mnt')]);
    if (existsSync(path.join(dir, 'loopdev'))) await run('losetup', ['-d', readFileSync(path.join(dir, 'loopdev'), 'utf8').trim()]);
    if (mountsUnder(path.join(dir, 'fuse')).length > 0) await run('fusermount3', ['-u', '-z', path.join(dir, 'fuse')]);
    if (existsSync(path.join(dir, 'nbdfuse.pid'))) {
      const pid = Number(readFileSync(path.join(dir, 'nbdfuse.pid'), 'utf8'));
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  });

  it('serves, traces a workload that attaches the volume, feeds the index in-process and prints what it learned', async () => {
    await run('sh', ['-c', 'mount | grep -q tracefs || mount -t tracefs nodev /sys/kernel/tracing']);
    dir = makeTempDir('sky-it-run-');
    writeFileSync(path.join(dir, 'work.sh'), SCRIPT);
    const result = await run(
      process.execPath,
      [SKY, 'run', '--memory', '--size', '1G', '--socket', path.join(dir, 'sky.sock'), '--export', 'r', '--backend', 'ebpf', '--', 'sh', path.join(dir, 'work.sh'), dir],
      { timeout_ms: 150_000 },
    );
    expect(result.stderr).toContain('traced with ebpf');
    expect(result.code).toBe(0);
    expect(result.stderr).toContain(`on the volume: ${path.join(dir, 'mnt')} (ext4 on `);
    expect(result.stderr).toMatch(/fingerprinted: 8\.0 MiB in 2048 blocks/);
    // The 8 MiB are read back in one or a few pieces (the 10 ms debounce can fall between dd's writes), never twice.
    expect(result.stderr).toMatch(/messages sent: \d+ \(FileExtents \d+, WriteFingerprints \d+/);
    // Large writes are matched on 16 samples each (the default sampleBlocks): 8 MiB in requests of at most
    // 1.25 MiB (the loop device's largest) is at least 7 requests, so at least 112 samples matched.
    const matched = Number(/4 KiB blocks matched (\d+),/.exec(result.stderr)?.[1]);
    expect(matched).toBeGreaterThanOrEqual(112);
    expect(result.stderr).toMatch(/volume r: 1 files known/);
    expect(result.stderr).toContain('rejected 0');
    // Everything the script set up is gone again, and the engine stopped (the process exited).
    expect(mountsUnder(dir)).toEqual([]);
  }, 180_000);
});
