/**
 * From a file system's device to the NBD export it lives in, one explicit link at a time:
 *
 *   st_dev ──/sys/dev/block/M:m──► block device
 *     partition (sdX1) ──/sys/class/block/sdX1/start × 512──► parent disk        offset += start
 *     loop (loopN) ──/sys/block/loopN/loop/{backing_file,offset}──► backing file  offset += loop offset
 *     backing file ──/proc/self/mountinfo──► FUSE mount ──/proc/PID/cmdline──► nbdfuse ──URI──► socket + export
 *     plain disk (vda, sda): the disk is the export (a guest's view), export identity unknown
 *
 * `offsetInExport` is where byte 0 of the file system's device sits in the export. A chain that ends without an
 * export (a loop over a plain file, a guest disk) still has a meaningful offset; a chain through something we cannot
 * map (device-mapper, md, a loop over a file inside another file system) has none and resolves to null.
 *
 * btrfs reports an anonymous st_dev (0:N); its block device is the mount's source.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { localHost, decodeDev, formatDev, parseDev, sameDev, type DeviceNumber, type HostView } from './host.js';
import { isFuseMount, mountOf, mountsOfDev, readMountInfo, type MountEntry } from './mountinfo.js';
import { nbdfuseServing, type NbdServerAddress } from './nbdfuse.js';
import { fileExtentReport, type ExtentLocation, type FileExtent, type FileExtentOptions } from './fiemap.js';
import { BlockGroupType, chunkDevids, logicalToDevice, parseDumpTreeChunks, readChunksByIoctl, type BtrfsChunk, type DeviceRange } from './btrfs.js';

const SECTOR_BYTES = 512;
/** Bound on links in one chain (partition → loop → file → loop … cannot be longer in practice). */
const CHAIN_LINKS_MAX = 16;

export type VolumeLink =
  | { kind: 'partition'; device: string; parent: string; startBytes: number }
  | { kind: 'loop'; device: string; backingFile: string; offsetBytes: number; sizeLimitBytes: number }
  | { kind: 'nbdfuse'; file: string; mountPoint: string; pid: number; server: NbdServerAddress }
  | { kind: 'file'; path: string; note: string }
  | { kind: 'disk'; device: string; note: string }
  | { kind: 'nbd'; device: string; pid: number | null };

export interface VolumeResolution {
  /** The device the file system is on, e.g. /dev/loop0 or /dev/sda1. */
  blockDevice: string;
  blockDeviceNumber: DeviceNumber;
  /** Byte offset of the block device's first byte within the export. */
  offsetInExport: number;
  exportUri?: string;
  socket?: string;
  exportName?: string;
  /** Every link from the block device outwards, in order. */
  chain: VolumeLink[];
}

export interface VolumeTrace {
  resolution: VolumeResolution | null;
  chain: VolumeLink[];
  /** Why the chain could not be followed to an offset, when it could not. */
  problem?: string;
}

/** What a device argument may be: a dev_t from stat, "M:m", or major/minor. */
export type DeviceLike = number | bigint | string | DeviceNumber;

export function toDeviceNumber(dev: DeviceLike): DeviceNumber | null {
  if (typeof dev === 'string') return parseDev(dev);
  if (typeof dev === 'number' || typeof dev === 'bigint') return decodeDev(dev);
  return dev;
}

/** The export and offset of a file system device; null when the chain cannot be followed (see traceVolume). */
export function resolveVolume(dev: DeviceLike, host: HostView = localHost): VolumeResolution | null {
  return traceVolume(dev, host).resolution;
}

export function traceVolume(dev: DeviceLike, host: HostView = localHost): VolumeTrace {
  const number = toDeviceNumber(dev);
  if (number === null) return { resolution: null, chain: [], problem: `not a device number: ${String(dev)}` };
  const device = blockDeviceOf(number, host);
  if (device === null) return { resolution: null, chain: [], problem: `${formatDev(number)} is not a block device and no mount names one` };
  const chain: VolumeLink[] = [];
  let offset = 0;
  let current: string | null = device.name;
  let server: NbdServerAddress | undefined;
  for (let step = 0; current !== null; step++) {
    if (step >= CHAIN_LINKS_MAX) return { resolution: null, chain, problem: 'volume chain too long' };
    const link = nextLink(current, host);
    if ('problem' in link) return { resolution: null, chain, problem: link.problem };
    chain.push(...link.links);
    offset += link.offsetBytes;
    if (link.server) server = link.server;
    current = link.next;
  }
  const resolution: VolumeResolution = { blockDevice: `/dev/${device.name}`, blockDeviceNumber: device.number, offsetInExport: offset, chain };
  if (server) Object.assign(resolution, { exportUri: server.uri, socket: server.socket, exportName: server.exportName });
  return { resolution, chain };
}

interface Step {
  links: VolumeLink[];
  offsetBytes: number;
  /** The next block device to follow, or null when the chain ends. */
  next: string | null;
  server?: NbdServerAddress;
}

/**
 * The block device for a dev number: itself, or for anonymous devices (btrfs) the source of the mount whose
 * mountinfo entry or whose mount point (btrfs subvolumes: stat shows the subvolume's own anonymous device, mountinfo
 * the file system's) has that number. Only mounts whose source is a block device are stat'ed, so a hung network or
 * FUSE mount cannot block us.
 */
export function blockDeviceOf(dev: DeviceNumber, host: HostView = localHost): { name: string; number: DeviceNumber } | null {
  const own = host.realpath(`/sys/dev/block/${formatDev(dev)}`);
  if (own !== null) return { name: path.basename(own), number: dev };
  const mounts = readMountInfo(host);
  const candidates = [...mountsOfDev(mounts, dev), ...mounts.filter((mount) => !sameDev(mount.dev, dev))];
  for (const mount of candidates) {
    if (!mount.source.startsWith('/')) continue;
    const source = host.stat(mount.source);
    if (source?.kind !== 'block') continue;
    if (!sameDev(mount.dev, dev) && !sameDev(host.stat(mount.mountPoint)?.dev ?? { major: -1, minor: -1 }, dev)) continue;
    const resolved = host.realpath(`/sys/dev/block/${formatDev(source.rdev)}`);
    if (resolved !== null) return { name: path.basename(resolved), number: source.rdev };
  }
  return null;
}

function nextLink(name: string, host: HostView): Step | { problem: string } {
  const sys = `/sys/class/block/${name}`;
  const partition = host.readText(`${sys}/partition`);
  if (partition !== null) return partitionStep(name, host);
  if (/^loop\d+$/.test(name)) return loopStep(name, host);
  if (/^nbd\d+$/.test(name)) {
    const pid = Number((host.readText(`${sys}/pid`) ?? '').trim()) || null;
    return { links: [{ kind: 'nbd', device: `/dev/${name}`, pid }], offsetBytes: 0, next: null };
  }
  if (/^(dm|md)-?\d+$/.test(name) || host.readText(`${sys}/dm/name`) !== null) {
    return { problem: `/dev/${name} is a device-mapper or md device; its mapping is not followed` };
  }
  return { links: [{ kind: 'disk', device: `/dev/${name}`, note: 'a whole disk: taken to be the export itself' }], offsetBytes: 0, next: null };
}

function partitionStep(name: string, host: HostView): Step | { problem: string } {
  const resolved = host.realpath(`/sys/class/block/${name}`);
  const start = Number((host.readText(`/sys/class/block/${name}/start`) ?? '').trim());
  if (resolved === null || !Number.isSafeInteger(start)) return { problem: `cannot read the start of partition ${name}` };
  const parent = path.basename(path.dirname(resolved));
  const startBytes = start * SECTOR_BYTES;
  return { links: [{ kind: 'partition', device: `/dev/${name}`, parent: `/dev/${parent}`, startBytes }], offsetBytes: startBytes, next: parent };
}

function loopStep(name: string, host: HostView): Step | { problem: string } {
  const base = `/sys/block/${name}/loop`;
  const backing = host.readText(`${base}/backing_file`);
  if (backing === null) return { problem: `/dev/${name} has no backing file (not set up)` };
  const backingFile = backing.replace(/\n$/, '').replace(/ \(deleted\)$/, '');
  const offsetBytes = Number((host.readText(`${base}/offset`) ?? '0').trim());
  const sizeLimitBytes = Number((host.readText(`${base}/sizelimit`) ?? '0').trim());
  const loop: VolumeLink = { kind: 'loop', device: `/dev/${name}`, backingFile, offsetBytes, sizeLimitBytes };
  const file = backingFileLink(backingFile, host);
  if ('problem' in file) return file;
  return { links: [loop, file.link], offsetBytes, next: null, server: file.server };
}

/** What a loop device's backing file is: an nbdfuse file (→ export), or a plain file. */
function backingFileLink(file: string, host: HostView): { link: VolumeLink; server?: NbdServerAddress } | { problem: string } {
  const stat = host.stat(file);
  if (stat === null) return { link: { kind: 'file', path: file, note: 'backing file no longer reachable by path' } };
  if (stat.kind === 'block') return { problem: `loop over block device ${file} is not followed` };
  const mounts = readMountInfo(host);
  const mount = mountOf(mounts, file, stat.dev) ?? mountOf(mounts, file);
  if (mount !== null && isFuseMount(mount)) {
    const served = nbdfuseServing(host, mount, file);
    if (served !== null) {
      return { link: { kind: 'nbdfuse', file, mountPoint: mount.mountPoint, pid: served.pid, server: served.server }, server: served.server };
    }
    return { link: { kind: 'file', path: file, note: `on FUSE mount ${mount.mountPoint}, but no nbdfuse process serves it` } };
  }
  return { link: { kind: 'file', path: file, note: `a plain file on ${mount?.fsType ?? 'an unknown file system'}; offsets are file offsets` } };
}

/** Size of a block device in bytes, from /sys/class/block/NAME/size (512-byte sectors). */
export function blockDeviceBytes(name: string, host: HostView = localHost): number | null {
  const sectors = Number((host.readText(`/sys/class/block/${path.basename(name)}/size`) ?? '').trim());
  return Number.isSafeInteger(sectors) && sectors > 0 ? sectors * SECTOR_BYTES : null;
}

/** The mount a path lives on (by its device, then by prefix: btrfs subvolumes have their own anonymous devices). */
export function mountOfPath(file: string, host: HostView = localHost): MountEntry | null {
  const resolved = host.realpath(file);
  const stat = host.stat(file);
  if (resolved === null || stat === null) return null;
  const mounts = readMountInfo(host);
  return mountOf(mounts, resolved, stat.dev) ?? mountOf(mounts, resolved);
}

export interface VolumePiece {
  volumeOffset: number;
  length: number;
  /** Offset on the file system's block device. */
  deviceOffset: number;
  /** The FIEMAP (for btrfs: logical) address the piece starts at. */
  physical: number;
}

/** A byte range of a file on the volume (export offsets). */
export interface VolumeExtent {
  volumeOffset: number;
  length: number;
  fileOffset: number;
  /** FIEMAP_EXTENT_* bits of the extent this range came from. */
  flags: number;
  /** `encoded` ranges hold the file's bytes in another form (compressed); their true on-disk length may differ. */
  location: Extract<ExtentLocation, 'mapped' | 'encoded'>;
}

export interface FileVolumeMap {
  path: string;
  sizeBytes: number;
  /** Sorted by fileOffset; a btrfs DUP/RAID1 extent appears once per copy. */
  extents: VolumeExtent[];
  /** Extents with no place on the volume of their own: inline (inside metadata), delalloc, unknown. */
  unplaced: FileExtent[];
  source: 'fiemap' | 'filefrag';
}

/**
 * One mounted file system and where it sits in its export. Open once, map many files (the ground truth walks a
 * whole tree); for btrfs the chunk tree is read once and re-read when an address falls outside every known chunk.
 */
export class FileSystemVolume {
  private chunks: BtrfsChunk[] | null = null;

  private constructor(
    readonly mount: MountEntry,
    readonly volume: VolumeResolution,
    /** Size of the file system's block device in bytes. */
    readonly deviceBytes: number,
  ) {}

  get fsType(): string {
    return this.mount.fsType;
  }

  /** The file system that `anyPath` (the mount point or any file on it) belongs to. */
  static open(anyPath: string, host: HostView = localHost): FileSystemVolume {
    const mount = mountOfPath(anyPath, host);
    if (mount === null) throw new Error(`${anyPath}: no mount found in /proc/self/mountinfo`);
    const trace = traceVolume(mount.dev, host);
    if (trace.resolution === null) throw new Error(`${mount.mountPoint} (${mount.source}): ${trace.problem}`);
    const deviceBytes = blockDeviceBytes(trace.resolution.blockDevice, host);
    if (deviceBytes === null) throw new Error(`cannot read the size of ${trace.resolution.blockDevice}`);
    return new FileSystemVolume(mount, trace.resolution, deviceBytes);
  }

  /**
   * A physical range as FIEMAP reports it → export ranges. `physical` in each piece is the FIEMAP address where the
   * piece starts (pieces split where btrfs chunks end; a btrfs DUP/RAID1 range comes back once per copy).
   */
  toVolume(physical: number, length: number): VolumePiece[] {
    const pieces = this.fsType === 'btrfs' ? this.btrfsPieces(physical, length) : [{ deviceOffset: physical, length, logical: physical }];
    return pieces.map((piece) => {
      if (piece.deviceOffset < 0 || piece.deviceOffset + piece.length > this.deviceBytes) {
        throw new Error(`range ${piece.deviceOffset}+${piece.length} is outside ${this.volume.blockDevice} (${this.deviceBytes} bytes)`);
      }
      return { volumeOffset: this.volume.offsetInExport + piece.deviceOffset, length: piece.length, deviceOffset: piece.deviceOffset, physical: piece.logical };
    });
  }

  /**
   * btrfs only: the volume ranges of block groups that hold nothing but file data (not mixed with metadata), from
   * the chunk tree read now (block groups come and go as the file system fills and empties).
   */
  btrfsDataRegions(): Array<{ volumeOffset: number; length: number }> {
    assert.equal(this.fsType, 'btrfs', 'data regions are a btrfs notion');
    this.chunks = this.readChunks();
    const regions: Array<{ volumeOffset: number; length: number }> = [];
    for (const chunk of this.chunks) {
      if ((chunk.type & BlockGroupType.DATA) === 0 || (chunk.type & (BlockGroupType.METADATA | BlockGroupType.SYSTEM)) !== 0) continue;
      for (const stripe of chunk.stripes) regions.push({ volumeOffset: this.volume.offsetInExport + stripe.offset, length: chunk.length });
    }
    return regions.sort((a, b) => a.volumeOffset - b.volumeOffset);
  }

  /** btrfs only: the chunk map (read on first use). */
  btrfsChunks(): BtrfsChunk[] {
    if (this.chunks === null) this.chunks = this.readChunks();
    return this.chunks;
  }

  fileMap(file: string, options: FileExtentOptions = {}): FileVolumeMap {
    const report = fileExtentReport(file, options);
    const sizeBytes = fs.statSync(file).size;
    const extents: VolumeExtent[] = [];
    const unplaced: FileExtent[] = [];
    for (const extent of report.extents) {
      if ((extent.location !== 'mapped' && extent.location !== 'encoded') || extent.physical === null) {
        unplaced.push(extent);
        continue;
      }
      for (const piece of this.toVolume(extent.physical, extent.length)) {
        const fileOffset = extent.logical + (piece.physical - extent.physical);
        extents.push({ volumeOffset: piece.volumeOffset, length: piece.length, fileOffset, flags: extent.flags, location: extent.location });
      }
    }
    extents.sort((a, b) => a.fileOffset - b.fileOffset || a.volumeOffset - b.volumeOffset);
    return { path: file, sizeBytes, extents, unplaced, source: report.source };
  }

  private btrfsPieces(logical: number, length: number): DeviceRange[] {
    try {
      return logicalToDevice(this.btrfsChunks(), logical, length);
    } catch {
      // A chunk allocated since we read the tree: read it once more.
      this.chunks = this.readChunks();
      return logicalToDevice(this.chunks, logical, length);
    }
  }

  private readChunks(): BtrfsChunk[] {
    let chunks: BtrfsChunk[];
    const fd = fs.openSync(this.mount.mountPoint, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
    try {
      chunks = readChunksByIoctl(fd);
    } catch {
      const text = execFileSync('btrfs', ['inspect-internal', 'dump-tree', '-t', 'chunk', this.volume.blockDevice], { encoding: 'utf8', maxBuffer: 256 << 20 });
      chunks = parseDumpTreeChunks(text);
    } finally {
      fs.closeSync(fd);
    }
    const devids = chunkDevids(chunks);
    if (devids.length > 1) throw new Error(`btrfs on ${this.volume.blockDevice} spans devices ${devids.join(', ')}; only single-device file systems are mapped`);
    return chunks.sort((a, b) => a.logical - b.logical);
  }
}

/** Where a file's bytes are in its export: physical offsets + the offset of the file system's device in the export. */
export function fileVolumeExtents(file: string, options: FileExtentOptions = {}): VolumeExtent[] {
  return fileVolumeMap(file, options).extents;
}

export function fileVolumeMap(file: string, options: FileExtentOptions = {}, host: HostView = localHost): FileVolumeMap {
  return FileSystemVolume.open(file, host).fileMap(file, options);
}
