/**
 * What volume-map.ts reads from the host (/sys, /proc, stat), behind one small interface so unit tests can describe
 * a whole chain (partition → loop → nbdfuse process) as a table instead of building real devices. Every method
 * returns null for "not there": a vanished process or device is the normal case, not an error.
 */
import fs from 'node:fs';

export interface DeviceNumber {
  major: number;
  minor: number;
}

export type FileKind = 'block' | 'file' | 'directory' | 'other';

export interface HostStat {
  dev: DeviceNumber;
  /** For block and character devices: the device they are. */
  rdev: DeviceNumber;
  ino: number;
  kind: FileKind;
  sizeBytes: number;
}

export interface HostView {
  readText(path: string): string | null;
  readlink(path: string): string | null;
  realpath(path: string): string | null;
  stat(path: string): HostStat | null;
  listDir(path: string): string[] | null;
}

/** Decodes a glibc dev_t (what Node's stat returns) into major and minor. */
export function decodeDev(dev: number | bigint): DeviceNumber {
  const value = BigInt(dev);
  const major = ((value >> 8n) & 0xfffn) | ((value >> 32n) & 0xfffff000n);
  const minor = (value & 0xffn) | ((value >> 12n) & 0xffffff00n);
  return { major: Number(major), minor: Number(minor) };
}

/** The kernel's "new" dev_t encoding (used by GETFSMAP's fmr_device with FMH_OF_DEV_T). */
export function decodeKernelDev(dev: number): DeviceNumber {
  return { major: (dev & 0xfff00) >>> 8, minor: (dev & 0xff) | ((dev >>> 12) & 0xfff00) };
}

export function formatDev(dev: DeviceNumber): string {
  return `${dev.major}:${dev.minor}`;
}

export function parseDev(text: string): DeviceNumber | null {
  const match = /^(\d+):(\d+)$/.exec(text.trim());
  return match ? { major: Number(match[1]), minor: Number(match[2]) } : null;
}

export function sameDev(a: DeviceNumber, b: DeviceNumber): boolean {
  return a.major === b.major && a.minor === b.minor;
}

function attempt<T>(fn: () => T): T | null {
  try {
    return fn();
  } catch {
    return null;
  }
}

function kindOf(stats: fs.BigIntStats): FileKind {
  if (stats.isBlockDevice()) return 'block';
  if (stats.isFile()) return 'file';
  if (stats.isDirectory()) return 'directory';
  return 'other';
}

/** The real host. */
export const localHost: HostView = {
  readText: (path) => attempt(() => fs.readFileSync(path, 'utf8')),
  readlink: (path) => attempt(() => fs.readlinkSync(path)),
  realpath: (path) => attempt(() => fs.realpathSync(path)),
  stat: (path) =>
    attempt(() => {
      const stats = fs.statSync(path, { bigint: true });
      return { dev: decodeDev(stats.dev), rdev: decodeDev(stats.rdev), ino: Number(stats.ino), kind: kindOf(stats), sizeBytes: Number(stats.size) };
    }),
  listDir: (path) => attempt(() => fs.readdirSync(path)),
};
