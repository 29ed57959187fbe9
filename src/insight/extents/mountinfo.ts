/**
 * /proc/self/mountinfo: which file system is mounted where, from which source. Fields (proc(5)):
 *   36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 - ext3 /dev/root rw,errors=continue
 *   id parent major:minor root mountpoint options [optional…] - fstype source superoptions
 * Paths escape space, tab, newline and backslash as octal (\040 …).
 */
import path from 'node:path';
import { parseDev, sameDev, type DeviceNumber, type HostView } from './host.js';

export interface MountEntry {
  id: number;
  parentId: number;
  dev: DeviceNumber;
  /** The directory inside the file system that is mounted (btrfs subvolumes, bind mounts). */
  root: string;
  mountPoint: string;
  options: string[];
  fsType: string;
  source: string;
  superOptions: string[];
}

export function unescapeMountPath(text: string): string {
  return text.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

export function parseMountInfo(text: string): MountEntry[] {
  const entries: MountEntry[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    const fields = line.split(' ');
    const separator = fields.indexOf('-', 6);
    const dev = parseDev(fields[2] ?? '');
    if (separator < 0 || fields.length < separator + 3 || dev === null) continue;
    entries.push({
      id: Number(fields[0]),
      parentId: Number(fields[1]),
      dev,
      root: unescapeMountPath(fields[3]!),
      mountPoint: unescapeMountPath(fields[4]!),
      options: fields[5]!.split(','),
      fsType: fields[separator + 1]!,
      source: unescapeMountPath(fields[separator + 2]!),
      superOptions: (fields[separator + 3] ?? '').split(','),
    });
  }
  return entries;
}

export function readMountInfo(host: HostView): MountEntry[] {
  return parseMountInfo(host.readText('/proc/self/mountinfo') ?? '');
}

function isUnder(child: string, parent: string): boolean {
  if (parent === '/') return child.startsWith('/');
  return child === parent || child.startsWith(parent + '/');
}

/**
 * The mount a path lives on: the last-mounted entry whose mount point is the longest prefix of the (resolved) path.
 * When `dev` is given, only entries of that device count (a path can be shadowed by a later mount).
 */
export function mountOf(entries: readonly MountEntry[], resolvedPath: string, dev?: DeviceNumber): MountEntry | null {
  let best: MountEntry | null = null;
  for (const entry of entries) {
    if (dev !== undefined && !sameDev(entry.dev, dev)) continue;
    if (!isUnder(path.resolve(resolvedPath), entry.mountPoint)) continue;
    if (best === null || entry.mountPoint.length >= best.mountPoint.length) best = entry;
  }
  return best;
}

export function mountsOfDev(entries: readonly MountEntry[], dev: DeviceNumber): MountEntry[] {
  return entries.filter((entry) => sameDev(entry.dev, dev));
}

/**
 * FUSE mounts, which nbdfuse makes. Newer nbdfuse may name the type `fuse.nbdfuse`; 1.14 shows plain `fuse` with
 * source `/dev/fuse`, so the type alone cannot tell nbdfuse from other FUSE programs: nbdfuse.ts confirms by
 * finding the nbdfuse process that serves the mount.
 */
export function isFuseMount(entry: MountEntry): boolean {
  return entry.fsType === 'fuse' || entry.fsType.startsWith('fuse.');
}
