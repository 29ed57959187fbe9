/**
 * Temporary directories for integration tests. Each is recorded and removed by removeTempDirs() (afterAll); a
 * directory that still has something mounted under it is never removed recursively (that would delete through
 * the mount), it is reported instead.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const created = new Set<string>();

export function makeTempDir(prefix = 'sky-it-'): string {
  const path = mkdtempSync(join(process.env.SKY_TEST_TMPDIR ?? tmpdir(), prefix));
  created.add(path);
  return path;
}

/** Mount points at or under `path`, from /proc/self/mounts (octal escapes decoded). */
export function mountsUnder(path: string): string[] {
  const lines = readFileSync('/proc/self/mounts', 'utf8').split('\n');
  const points = lines
    .map((line) => line.split(' ')[1])
    .filter((point): point is string => point !== undefined)
    .map((point) => point.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8))));
  return points.filter((point) => point === path || point.startsWith(path + '/'));
}

export function removeTempDir(path: string): void {
  const mounted = mountsUnder(path);
  if (mounted.length > 0) throw new Error(`not removing ${path}: still mounted: ${mounted.join(', ')}`);
  rmSync(path, { recursive: true, force: true });
  created.delete(path);
}

/** Removes every temp dir made by this test file; collects errors and throws them together at the end. */
export function removeTempDirs(): void {
  const errors: string[] = [];
  for (const path of [...created]) {
    try {
      removeTempDir(path);
    } catch (error) {
      errors.push((error as Error).message);
    }
  }
  if (errors.length > 0) throw new Error(errors.join('\n'));
}
