import { describe, expect, it } from 'vitest';
import { resolveVolume, traceVolume, blockDeviceOf, toDeviceNumber } from '../../../src/insight/extents/volume-map.js';
import { decodeDev, decodeKernelDev, formatDev } from '../../../src/insight/extents/host.js';
import { fakeHost, loopSpec, merge, nbdfuseSpec, MOUNTINFO_ROOT } from './fake-host.js';

describe('device numbers', () => {
  it('decodes glibc dev_t (what Node stat returns), small and large', () => {
    expect(decodeDev(0x700)).toEqual({ major: 7, minor: 0 });
    expect(decodeDev(0x10301)).toEqual({ major: 259, minor: 1 }); // nvme0n1p1-style major above 255
    // major 0x1234 minor 0x56789: glibc splits both across the 64 bits.
    const dev = (0x1000n << 32n) | (0x567n << 20n) | (0x234n << 8n) | 0x89n;
    expect(decodeDev(dev)).toEqual({ major: 0x1234, minor: 0x56789 });
    expect(decodeKernelDev(0x700)).toEqual({ major: 7, minor: 0 });
    expect(toDeviceNumber('8:17')).toEqual({ major: 8, minor: 17 });
    expect(toDeviceNumber('sda')).toBeNull();
    expect(formatDev({ major: 253, minor: 3 })).toBe('253:3');
  });
});

describe('traceVolume', () => {
  it('loop over an nbdfuse file → the export URI, socket and name', () => {
    const host = fakeHost(merge(nbdfuseSpec(), loopSpec(0, '/tmp/t/fuse/nbd')));
    const resolution = resolveVolume('7:0', host)!;
    expect(resolution).toMatchObject({
      blockDevice: '/dev/loop0',
      offsetInExport: 0,
      exportUri: 'nbd+unix:///disk?socket=/tmp/t/sock',
      socket: '/tmp/t/sock',
      exportName: 'disk',
    });
    expect(resolution.chain).toEqual([
      { kind: 'loop', device: '/dev/loop0', backingFile: '/tmp/t/fuse/nbd', offsetBytes: 0, sizeLimitBytes: 0 },
      { kind: 'nbdfuse', file: '/tmp/t/fuse/nbd', mountPoint: '/tmp/t/fuse', pid: 500, server: expect.objectContaining({ exportName: 'disk' }) },
    ]);
  });

  it('partition of a loop with an offset: both offsets add up', () => {
    const host = fakeHost(
      merge(nbdfuseSpec(), loopSpec(2, '/tmp/t/fuse/nbd', 4096), {
        realpaths: {
          '/sys/dev/block/259:0': '/sys/devices/virtual/block/loop2/loop2p1',
          '/sys/class/block/loop2p1': '/sys/devices/virtual/block/loop2/loop2p1',
        },
        files: { '/sys/class/block/loop2p1/partition': '1\n', '/sys/class/block/loop2p1/start': '2048\n' },
      }),
    );
    const trace = traceVolume({ major: 259, minor: 0 }, host);
    expect(trace.problem).toBeUndefined();
    expect(trace.resolution).toMatchObject({ blockDevice: '/dev/loop2p1', offsetInExport: 2048 * 512 + 4096, exportName: 'disk' });
    expect(trace.chain.map((link) => link.kind)).toEqual(['partition', 'loop', 'nbdfuse']);
    expect(trace.chain[0]).toEqual({ kind: 'partition', device: '/dev/loop2p1', parent: '/dev/loop2', startBytes: 1048576 });
  });

  it('a guest disk partition: offset is the partition start, the export itself is unknown', () => {
    const host = fakeHost({
      realpaths: { '/sys/dev/block/254:1': '/sys/devices/pci0000:00/virtio1/block/vda/vda1', '/sys/class/block/vda1': '/sys/devices/pci0000:00/virtio1/block/vda/vda1' },
      files: { '/sys/class/block/vda1/partition': '1\n', '/sys/class/block/vda1/start': '4096\n' },
    });
    const resolution = resolveVolume('254:1', host)!;
    expect(resolution.offsetInExport).toBe(4096 * 512);
    expect(resolution.exportUri).toBeUndefined();
    expect(resolution.chain.map((link) => link.kind)).toEqual(['partition', 'disk']);
  });

  it('btrfs: an anonymous st_dev resolves through the mount whose mount point has it', () => {
    const host = fakeHost(
      merge(nbdfuseSpec(), loopSpec(0, '/tmp/t/fuse/nbd'), {
        files: { '/proc/self/mountinfo': MOUNTINFO_ROOT + '48 27 0:42 / /mnt/b rw - btrfs /dev/loop0 rw,subvolid=5,subvol=/\n' },
        stats: {
          '/dev/loop0': { dev: { major: 0, minor: 5 }, rdev: { major: 7, minor: 0 }, kind: 'block' },
          // stat of the mount point shows the subvolume's device, not mountinfo's.
          '/mnt/b': { dev: { major: 0, minor: 43 }, kind: 'directory' },
          '/dev/vda': { dev: { major: 0, minor: 5 }, rdev: { major: 254, minor: 0 }, kind: 'block' },
          '/': { dev: { major: 254, minor: 0 }, kind: 'directory' },
        },
      }),
    );
    expect(blockDeviceOf({ major: 0, minor: 42 }, host)).toEqual({ name: 'loop0', number: { major: 7, minor: 0 } });
    expect(blockDeviceOf({ major: 0, minor: 43 }, host)).toEqual({ name: 'loop0', number: { major: 7, minor: 0 } });
    expect(blockDeviceOf({ major: 0, minor: 99 }, host)).toBeNull();
  });

  it('a loop over a plain file: offset known, no export', () => {
    const host = fakeHost(
      merge(loopSpec(1, '/srv/disk.img', 65536), {
        files: { '/proc/self/mountinfo': MOUNTINFO_ROOT },
        stats: { '/srv/disk.img': { dev: { major: 254, minor: 0 }, kind: 'file' } },
      }),
    );
    const resolution = resolveVolume('7:1', host)!;
    expect(resolution.offsetInExport).toBe(65536);
    expect(resolution.exportUri).toBeUndefined();
    expect(resolution.chain[1]).toMatchObject({ kind: 'file', path: '/srv/disk.img' });
  });

  it('a FUSE mount that no nbdfuse serves: the chain ends at the file', () => {
    const spec = merge(nbdfuseSpec(), loopSpec(0, '/tmp/t/fuse/nbd'));
    spec.files!['/proc/500/cmdline'] = ['sshfs', 'host:', '/tmp/t/fuse', ''].join('\0');
    const resolution = resolveVolume('7:0', fakeHost(spec))!;
    expect(resolution.exportUri).toBeUndefined();
    expect(resolution.chain[1]).toMatchObject({ kind: 'file', note: expect.stringContaining('no nbdfuse process') });
  });

  it('an nbdfuse started elsewhere for another mount point does not match', () => {
    const spec = merge(nbdfuseSpec(), loopSpec(0, '/tmp/t/fuse/nbd'));
    spec.readlinks!['/proc/500/cwd'] = '/elsewhere';
    expect(resolveVolume('7:0', fakeHost(spec))!.exportUri).toBeUndefined();
  });

  it('device-mapper and unknown devices resolve to null, with the reason', () => {
    const host = fakeHost({
      realpaths: { '/sys/dev/block/253:0': '/sys/devices/virtual/block/dm-0', '/sys/class/block/dm-0': '/sys/devices/virtual/block/dm-0' },
      files: { '/sys/class/block/dm-0/dm/name': 'vg-root\n', '/proc/self/mountinfo': MOUNTINFO_ROOT },
    });
    expect(resolveVolume('253:0', host)).toBeNull();
    expect(traceVolume('253:0', host).problem).toMatch(/device-mapper/);
    expect(traceVolume('0:77', host).problem).toMatch(/not a block device/);
  });
});
