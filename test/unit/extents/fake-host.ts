/** A HostView described as tables, for following volume chains without real devices. */
import type { DeviceNumber, HostStat, HostView } from '../../../src/insight/extents/host.js';

export interface FakeHostSpec {
  files?: Record<string, string>;
  realpaths?: Record<string, string>;
  readlinks?: Record<string, string>;
  stats?: Record<string, Partial<HostStat> & { dev: DeviceNumber }>;
  dirs?: Record<string, string[]>;
}

export function fakeHost(spec: FakeHostSpec): HostView {
  return {
    readText: (path) => spec.files?.[path] ?? null,
    readlink: (path) => spec.readlinks?.[path] ?? null,
    realpath: (path) => spec.realpaths?.[path] ?? null,
    stat: (path) => {
      const stat = spec.stats?.[path];
      if (stat === undefined) return null;
      return { rdev: { major: 0, minor: 0 }, ino: 1, kind: 'file', sizeBytes: 0, ...stat };
    },
    listDir: (path) => spec.dirs?.[path] ?? null,
  };
}

export const MOUNTINFO_ROOT = '27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n';

/** nbdfuse 1.14 on /tmp/t/fuse serving nbd+unix:///disk?socket=/tmp/t/sock, pid 500, started in /tmp/t. */
export function nbdfuseSpec(): FakeHostSpec {
  return {
    files: {
      '/proc/self/mountinfo': MOUNTINFO_ROOT + '600 27 0:39 / /tmp/t/fuse rw,nosuid,nodev,relatime - fuse /dev/fuse rw,user_id=0,group_id=0\n',
      '/proc/500/cmdline': ['nbdfuse', '-P', 'nbdfuse.pid', 'fuse/nbd', 'nbd+unix:///disk?socket=/tmp/t/sock', ''].join('\0'),
      '/proc/77/cmdline': ['bash', ''].join('\0'),
    },
    readlinks: { '/proc/500/cwd': '/tmp/t', '/proc/77/cwd': '/' },
    dirs: { '/proc': ['1', '77', '500', 'self', 'meminfo'] },
    stats: { '/tmp/t/fuse/nbd': { dev: { major: 0, minor: 39 }, kind: 'file' } },
  };
}

export function merge(...specs: FakeHostSpec[]): FakeHostSpec {
  const result: Required<FakeHostSpec> = { files: {}, realpaths: {}, readlinks: {}, stats: {}, dirs: {} };
  for (const spec of specs) {
    Object.assign(result.files, spec.files);
    Object.assign(result.realpaths, spec.realpaths);
    Object.assign(result.readlinks, spec.readlinks);
    Object.assign(result.stats, spec.stats);
    Object.assign(result.dirs, spec.dirs);
  }
  return result;
}

/** loopN (7:N) backed by `file` at `offset`. */
export function loopSpec(index: number, file: string, offset = 0): FakeHostSpec {
  const name = `loop${index}`;
  return {
    realpaths: { [`/sys/dev/block/7:${index}`]: `/sys/devices/virtual/block/${name}`, [`/sys/class/block/${name}`]: `/sys/devices/virtual/block/${name}` },
    files: {
      [`/sys/block/${name}/loop/backing_file`]: `${file}\n`,
      [`/sys/block/${name}/loop/offset`]: `${offset}\n`,
      [`/sys/block/${name}/loop/sizelimit`]: '0\n',
      [`/sys/class/block/${name}/size`]: '1048576\n',
    },
  };
}
