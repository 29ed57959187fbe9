/**
 * Tag accuracy, measured against the file system's own account of the volume (see README.md).
 *
 *   truth MOUNT [--out truth.json] [--remount-ro] [--volume-bytes N]
 *       Walks the mounted file system, maps every regular file (FIEMAP) and the file system's space map (GETFSMAP
 *       for ext4/XFS, the chunk tree for btrfs) to export offsets, prints a summary and writes the ground truth.
 *       --remount-ro first unmounts MOUNT and mounts its device again read-only (and leaves it so), so nothing is
 *       in flight and no preallocation is left over; without it, remount yourself.
 *   score --truth truth.json --requests requests.jsonl [--json]
 *       Scores tagged block requests, one JSON object per line:
 *       {"offset":N,"length":N,"direction":"read"|"write","tag":{"origin":"metadata"|"data"|"unknown","ioClass":N,"fileSize":N}|null}
 *
 * Build and run:  npx tsc -p bench/accuracy && node bench/accuracy/.build/bench/accuracy/run.js truth /mnt/sky
 */
import { execFileSync } from 'node:child_process';
import { createReadStream, readFileSync, writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { GroundTruth, emptyReport, renderAccuracyReport, renderTruthSummary, scoreOne, type GroundTruthJson, type TaggedRequest } from '../../src/insight/extents/index.js';
import { mountOfPath } from '../../src/insight/extents/volume-map.js';

function option(name: string): string | undefined {
  const at = process.argv.indexOf(`--${name}`);
  return at > 0 ? process.argv[at + 1] : undefined;
}

function flag(name: string): boolean {
  return process.argv.includes(`--${name}`);
}

/** Unmounts and mounts the same device read-only at the same place. */
function remountReadOnly(mountPoint: string): void {
  const mount = mountOfPath(mountPoint);
  if (mount === null || mount.mountPoint !== mountPoint) throw new Error(`${mountPoint} is not a mount point`);
  execFileSync('umount', [mountPoint], { stdio: 'inherit' });
  execFileSync('mount', ['-t', mount.fsType, '-o', 'ro', mount.source, mountPoint], { stdio: 'inherit' });
  console.error(`remounted ${mount.source} read-only at ${mountPoint}`);
}

function truth(mountPoint: string): void {
  if (flag('remount-ro')) remountReadOnly(mountPoint);
  const volumeBytes = option('volume-bytes');
  const built = GroundTruth.fromMount(mountPoint, volumeBytes === undefined ? {} : { volumeBytes: Number(volumeBytes) });
  console.log(renderTruthSummary(built));
  const out = option('out');
  if (out !== undefined) {
    writeFileSync(out, JSON.stringify(built.toJSON()));
    console.log(`ground truth written to ${out}`);
  }
}

async function score(): Promise<void> {
  const truthPath = option('truth');
  const requestsPath = option('requests');
  if (truthPath === undefined || requestsPath === undefined) throw new Error('score needs --truth FILE and --requests FILE');
  const loaded = GroundTruth.fromJSON(JSON.parse(readFileSync(truthPath, 'utf8')) as GroundTruthJson);
  const report = emptyReport();
  const lines = createInterface({ input: createReadStream(requestsPath), crlfDelay: Infinity });
  for await (const line of lines) {
    if (line.trim() === '') continue;
    scoreOne(report, JSON.parse(line) as TaggedRequest, loaded);
  }
  console.log(flag('json') ? JSON.stringify(report, null, 2) : renderAccuracyReport(report));
}

async function main(): Promise<void> {
  const [command, argument] = process.argv.slice(2);
  if (command === 'truth' && argument !== undefined) truth(argument);
  else if (command === 'score') await score();
  else {
    console.error('usage: run.js truth MOUNT [--out FILE] [--remount-ro] [--volume-bytes N] | run.js score --truth FILE --requests FILE [--json]');
    process.exitCode = 2;
  }
}

await main();
