/**
 * What the informer needs from the machine, behind one small interface so unit tests can inject a fake:
 *  - locate(dev): is the file system with this st_dev on the target volume, and where does it start in the export?
 *    (asked once per device; the answer is cached by the informer);
 *  - open(path): a read-only handle on a file (a path, or /proc/PID/fd/N while the writer lives) with its identity,
 *    its size, reads, and its extents as export ranges.
 *
 * LocalFileSystem is the real one: src/insight/extents' FileSystemVolume for the chain (loop → nbdfuse → export, or a
 * guest's block device and its partitions), FIEMAP without FIEMAP_FLAG_SYNC (a sync would force write-back and change
 * the workload's I/O), O_NOATIME reads (reading a file back must not dirty its inode).
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileExtentReport } from '../insight/extents/fiemap.js';
import { decodeDev, localHost, type DeviceNumber } from '../insight/extents/host.js';
import { mountsOfDev, readMountInfo } from '../insight/extents/mountinfo.js';
import { FileSystemVolume, type VolumeLink } from '../insight/extents/volume-map.js';
import type { VolumeExtent } from '../semantics/messages.js';
import type { FingerprintBlockBytes } from '../semantics/fingerprint.js';

/** Which files belong to the volume. */
export type VolumeRoute =
  /** File systems reached through loop → nbdfuse → export `volume` (optionally of the server at `socket`). */
  | { kind: 'export'; volume: string; socket?: string }
  /** File systems on this block device or its partitions (a guest agent: `--device /dev/vdb`). */
  | { kind: 'device'; device: string };

/** Where one file system sits on the volume; opaque to the informer except for its label. */
export interface VolumePlacement {
  readonly label: string;
  /** Where the file system is mounted (extent read-ahead walks no higher); unknown for some placements. */
  readonly mountPoint?: string;
  /**
   * Present for file systems that keep file data apart from metadata by construction (btrfs data block groups):
   * those volume ranges, read now. Throws when they cannot be read.
   */
  dataRegions?(): VolumeExtent[];
  /**
   * The file system places a file's blocks at write() (ext2, ext3, ext4 with nodelalloc or data=journal): once the
   * writer closes it, its extents say where its data goes, without reading it back.
   */
  readonly allocatesAtWrite?: boolean;
  /**
   * The file system's block size where it is under 4 KiB (ext4 on volumes under 512 MiB: 1 KiB): a file's data then
   * lands at any multiple of it on the volume, so written data is fingerprinted in blocks of this size.
   */
  readonly fingerprintBlockBytes?: FingerprintBlockBytes;
}

export interface DirectoryEntry {
  name: string;
  /** From the directory entry's type (no stat); symlinks are 'other' and never followed. */
  kind: 'file' | 'directory' | 'other';
}

export interface OpenedFile {
  readonly dev: number;
  /** Another device number the file is known by (btrfs: the super block's, where st_dev is the subvolume's). */
  readonly aliasDev?: number;
  readonly ino: number;
  readonly size: number;
  /** Reads up to `length` bytes at `position` into `into` (from 0); returns the bytes read (0 at end of file). */
  read(into: Uint8Array, length: number, position: number): number;
  /** The file's placed extents as export ranges, sorted by file offset (delayed allocations have none yet). */
  extents(): VolumeExtent[];
  /**
   * After extents(): whether every byte had a place (nothing waiting for delayed allocation), so the file's
   * extents stay as they are until it is written again. Absent: unknown, treated as not settled.
   */
  settled?(): boolean;
  close(): void;
}

export interface AgentFileSystem {
  /**
   * null: the file system on `dev` is not on the volume (cached for good). Throws when it cannot tell now (say the
   * path vanished and no mount names the device): the informer asks again for the next file.
   */
  locate(dev: number, anyPath: string): VolumePlacement | null;
  /** Opens a regular file for reading; throws an errno error (ENOENT, ESRCH… are normal: the file or process went). */
  open(file: string, placement: VolumePlacement): OpenedFile;
  /** A directory's entries in the order the file system lists them (the order a program walking it sees). */
  list(dir: string): DirectoryEntry[];
  /** A directory's identity, without following a final symlink. */
  identify(dir: string): { dev: number; ino: number };
}

/** errno codes that mean "gone", which is the normal fate of short-lived files and processes. */
const GONE = new Set(['ENOENT', 'ESRCH', 'ENXIO', 'ESTALE', 'EBADF', 'ENOTDIR']);

export function isGone(error: unknown): boolean {
  return GONE.has((error as NodeJS.ErrnoException | null)?.code ?? '');
}

class LocalPlacement implements VolumePlacement {
  readonly mountPoint: string;
  readonly dataRegions?: () => VolumeExtent[];
  readonly allocatesAtWrite: boolean;
  readonly fingerprintBlockBytes?: FingerprintBlockBytes;

  constructor(readonly volume: FileSystemVolume, readonly label: string) {
    this.mountPoint = volume.mount.mountPoint;
    if (volume.fsType === 'btrfs') this.dataRegions = () => volume.btrfsDataRegions();
    // The ext4 driver mounts ext2 and ext3 without delayed allocation; ext4 says so in its options when told to.
    const options = volume.mount.superOptions;
    this.allocatesAtWrite =
      volume.fsType === 'ext2' || volume.fsType === 'ext3' || (volume.fsType === 'ext4' && (options.includes('nodelalloc') || options.includes('data=journal')));
    const blockBytes = statfsBlockBytes(this.mountPoint);
    if (blockBytes === 1024 || blockBytes === 2048) this.fingerprintBlockBytes = blockBytes;
  }
}

function statfsBlockBytes(mountPoint: string): number | null {
  try {
    return fs.statfsSync(mountPoint).bsize;
  } catch {
    return null;
  }
}

/** Entries read from one directory at most (a walk of a directory with millions of files stops there). */
const DIRECTORY_ENTRIES_MAX = 1 << 20;

const O_NOATIME = fs.constants.O_NOATIME ?? 0;

export class LocalFileSystem implements AgentFileSystem {
  private readonly device: string | null;

  constructor(readonly route: VolumeRoute) {
    this.device = route.kind === 'device' ? path.basename(realpathOr(route.device)) : null;
  }

  locate(dev: number, anyPath: string): VolumePlacement | null {
    const mounts = mountsOfDev(readMountInfo(localHost), decodeDev(dev));
    // A mount point is stable; the file that brought us here may be gone already.
    const probe = mounts.find((mount) => fs.existsSync(mount.mountPoint))?.mountPoint ?? anyPath;
    let volume: FileSystemVolume;
    try {
      volume = FileSystemVolume.open(probe);
    } catch (error) {
      if (mounts.length === 0 && isGone(error)) throw error;
      return null; // tmpfs, overlay, device-mapper…: not a chain we map, so not on the volume
    }
    if (!this.matches(volume.volume.chain, volume.volume.blockDevice, volume.volume.exportName, volume.volume.socket)) return null;
    return new LocalPlacement(volume, `${volume.mount.mountPoint} (${volume.fsType} on ${volume.volume.blockDevice}, +${volume.volume.offsetInExport})`);
  }

  private matches(chain: VolumeLink[], blockDevice: string, exportName: string | undefined, socket: string | undefined): boolean {
    const route = this.route;
    if (route.kind === 'export') {
      if (exportName !== route.volume) return false;
      return route.socket === undefined || socket === undefined || realpathOr(route.socket) === realpathOr(socket);
    }
    const wanted = `/dev/${this.device}`;
    if (blockDevice === wanted) return true;
    return chain.some((link) => (link.kind === 'partition' && link.parent === wanted) || ('device' in link && link.device === wanted));
  }

  open(file: string, placement: VolumePlacement): OpenedFile {
    const volume = (placement as LocalPlacement).volume;
    let fd: number;
    try {
      fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK | O_NOATIME);
    } catch (error) {
      // O_NOATIME needs ownership or CAP_FOWNER; without it, read with atime updates rather than not at all.
      if ((error as NodeJS.ErrnoException).code !== 'EPERM' || O_NOATIME === 0) throw error;
      fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
    }
    try {
      const stat = fs.fstatSync(fd);
      if (!stat.isFile()) throw Object.assign(new Error(`${file} is not a regular file`), { code: 'ENOTREG' });
      // btrfs gives each subvolume an anonymous st_dev of its own, while the eBPF tracer names files by the super
      // block's device (the one /proc/self/mountinfo lists): the file answers to both.
      const superDev = volume.fsType === 'btrfs' ? encodeDev(volume.mount.dev) : undefined;
      return new LocalFile(fd, stat, superDev, volume);
    } catch (error) {
      fs.closeSync(fd);
      throw error;
    }
  }

  list(dir: string): DirectoryEntry[] {
    // opendir/readdir, not readdirSync: libuv's scandir sorts by name, readdir keeps the file system's order.
    const handle = fs.opendirSync(dir, { bufferSize: 128 });
    const entries: DirectoryEntry[] = [];
    try {
      for (let entry = handle.readSync(); entry !== null && entries.length < DIRECTORY_ENTRIES_MAX; entry = handle.readSync()) {
        entries.push({ name: entry.name, kind: entry.isFile() ? 'file' : entry.isDirectory() ? 'directory' : 'other' });
      }
    } finally {
      handle.closeSync();
    }
    return entries;
  }

  identify(dir: string): { dev: number; ino: number } {
    const stat = fs.lstatSync(dir);
    if (!stat.isDirectory()) throw Object.assign(new Error(`${dir} is not a directory`), { code: 'ENOTDIR' });
    return { dev: stat.dev, ino: stat.ino };
  }
}

class LocalFile implements OpenedFile {
  readonly dev: number;
  readonly ino: number;
  readonly size: number;

  readonly aliasDev: number | undefined;

  private wasSettled = false;

  constructor(private readonly fd: number, stat: fs.Stats, superDev: number | undefined, private readonly volume: FileSystemVolume) {
    this.dev = stat.dev;
    this.aliasDev = superDev;
    this.ino = stat.ino;
    this.size = stat.size;
  }

  read(into: Uint8Array, length: number, position: number): number {
    return fs.readSync(this.fd, into, 0, length, position);
  }

  extents(): VolumeExtent[] {
    const report = fileExtentReport(this.fd, { sync: false });
    const out: VolumeExtent[] = [];
    let waiting = false;
    let placedBytes = 0;
    for (const extent of report.extents) {
      if (extent.location === 'delalloc' || extent.location === 'unknown') waiting = true;
      if (extent.location === 'inline') placedBytes += extent.length;
      if ((extent.location !== 'mapped' && extent.location !== 'encoded') || extent.physical === null) continue;
      placedBytes += extent.length;
      for (const piece of this.volume.toVolume(extent.physical, extent.length)) out.push({ volumeOffset: piece.volumeOffset, length: piece.length });
    }
    this.wasSettled = !waiting && (this.size === 0 || placedBytes > 0);
    return out;
  }

  settled(): boolean {
    return this.wasSettled;
  }

  close(): void {
    fs.closeSync(this.fd);
  }
}

/** A device number as stat's st_dev spells it (glibc's makedev). */
export function encodeDev(dev: DeviceNumber): number {
  return Number((BigInt(dev.minor) & 0xffn) | ((BigInt(dev.major) & 0xfffn) << 8n) | ((BigInt(dev.minor) & ~0xffn) << 12n) | ((BigInt(dev.major) & ~0xfffn) << 32n));
}

function realpathOr(file: string): string {
  try {
    return fs.realpathSync(file);
  } catch {
    return path.resolve(file);
  }
}

/** Joins extents that continue each other on the volume (FIEMAP splits at 128 MiB and at flag changes). */
export function mergeExtents(extents: VolumeExtent[]): VolumeExtent[] {
  const out: VolumeExtent[] = [];
  for (const extent of extents) {
    if (extent.length <= 0) continue;
    const last = out[out.length - 1];
    if (last && last.volumeOffset + last.length === extent.volumeOffset) last.length += extent.length;
    else out.push({ volumeOffset: extent.volumeOffset, length: extent.length });
  }
  return out;
}

/** An open file's size and merged extents, at most `extentsMax` of them (`cut` says some were left out). */
export function placedExtents(opened: OpenedFile, extentsMax: number): { size: number; extents: VolumeExtent[]; cut: boolean; settled: boolean } {
  const extents = mergeExtents(opened.extents());
  const cut = extents.length > extentsMax;
  return { size: opened.size, extents: cut ? extents.slice(0, extentsMax) : extents, cut, settled: opened.settled?.() ?? false };
}

/** What identifies a FileExtents message's content: the informer and the read-ahead compare these. */
export function extentSignature(size: number, file: string, extents: readonly VolumeExtent[]): string {
  return `${size}|${file}|${extents.map((e) => `${e.volumeOffset}+${e.length}`).join(',')}`;
}
