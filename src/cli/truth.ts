/**
 * `sky truth MOUNT`: the ground truth of a mounted Sky volume — which bytes of the export are data of which file,
 * which are metadata, which are free — built from the file system itself (FIEMAP of every file, the space map), for
 * scoring tags with `sky report LOG --truth FILE`. See bench/accuracy/README.md for how it is built and its limits.
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { GroundTruth, mountOfPath, renderTruthSummary } from '../insight/extents/index.js';

interface TruthFlags {
  out?: string;
  remountRo?: boolean;
  volumeBytes?: string;
}

/** Unmounts and mounts the same device read-only at the same place: nothing in flight, delayed allocations placed. */
function remountReadOnly(mountPoint: string): void {
  const mount = mountOfPath(mountPoint);
  if (mount === null || mount.mountPoint !== mountPoint) throw new Error(`${mountPoint} is not a mount point`);
  execFileSync('umount', [mountPoint], { stdio: 'inherit' });
  execFileSync('mount', ['-t', mount.fsType, '-o', 'ro', mount.source, mountPoint], { stdio: 'inherit' });
  console.error(`remounted ${mount.source} read-only at ${mountPoint}`);
}

export function registerTruth(program: Command): void {
  program
    .command('truth')
    .description('ground truth of a mounted volume (data of which file / metadata / free, in export offsets) for `sky report --truth`')
    .argument('<mount>', 'mount point of a file system on a Sky volume (attached through nbdfuse + loop, or a partition of it)')
    .option('-o, --out <file>', 'write the truth as JSON here')
    .option('--remount-ro', 'first unmount and mount the same device read-only (recommended: nothing in flight)')
    .option('--volume-bytes <n>', 'the export size, when it cannot be read from the device chain')
    .action((mountArg: string, flags: TruthFlags) => {
      const mountPoint = path.resolve(mountArg);
      try {
        if (flags.remountRo) remountReadOnly(mountPoint);
        const volumeBytes = flags.volumeBytes === undefined ? undefined : Number(flags.volumeBytes);
        if (volumeBytes !== undefined && !(Number.isSafeInteger(volumeBytes) && volumeBytes > 0)) throw new Error(`--volume-bytes ${flags.volumeBytes} is not a size in bytes`);
        const truth = GroundTruth.fromMount(mountPoint, volumeBytes === undefined ? {} : { volumeBytes });
        console.log(renderTruthSummary(truth));
        if (flags.out !== undefined) {
          writeFileSync(flags.out, JSON.stringify(truth.toJSON()));
          console.log(`ground truth written to ${flags.out}`);
        }
      } catch (err) {
        console.error(`sky truth: ${(err as Error).message}`);
        process.exitCode = 1;
      }
    });
}
