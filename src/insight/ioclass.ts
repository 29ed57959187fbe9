/**
 * I/O classes as data. The default table is the paper's (metadata 5; files < 1 MB 4; < 2 MB 3; < 5 MB 2;
 * < 10 MB 1; larger 0); a deployment may pass another table. "MB" is read as MiB, like Open CAS ioclass files.
 *
 * The hint tables translate hints applications already give (fadvise, write-life hints, ioprio) into the same
 * class scale so the engine needs one notion of priority. They are defaults, not truths: a higher class means
 * "worth keeping on the fast device".
 */
import assert from 'node:assert/strict';
import type { IoClass } from '../volume/types.js';

export type { IoClass };

const MiB = 1024 * 1024;

export interface SizeClassRule {
  name: string;
  ioClass: IoClass;
  /** The rule applies to files smaller than this many bytes; null means any size (must be last). */
  belowBytes: number | null;
}

export interface IoClassTable {
  metadata: { name: string; ioClass: IoClass };
  /** Ordered by belowBytes ascending; the first rule that fits wins. */
  bySize: readonly SizeClassRule[];
}

export const PAPER_IOCLASS_TABLE: IoClassTable = {
  metadata: { name: 'metadata', ioClass: 5 },
  bySize: [
    { name: 'file < 1 MiB', ioClass: 4, belowBytes: 1 * MiB },
    { name: 'file < 2 MiB', ioClass: 3, belowBytes: 2 * MiB },
    { name: 'file < 5 MiB', ioClass: 2, belowBytes: 5 * MiB },
    { name: 'file < 10 MiB', ioClass: 1, belowBytes: 10 * MiB },
    { name: 'file >= 10 MiB', ioClass: 0, belowBytes: null },
  ],
};

export function validateIoClassTable(table: IoClassTable): void {
  assert.ok(table.bySize.length > 0, 'an ioclass table needs at least one size rule');
  const last = table.bySize[table.bySize.length - 1];
  assert.equal(last.belowBytes, null, 'the last size rule must cover every size');
  for (let i = 1; i < table.bySize.length - 1; i++) {
    const previous = table.bySize[i - 1].belowBytes;
    const current = table.bySize[i].belowBytes;
    assert.ok(previous !== null && current !== null && previous < current, 'size rules must be ascending');
  }
}

export function sizeRule(sizeBytes: number, table: IoClassTable = PAPER_IOCLASS_TABLE): SizeClassRule {
  assert.ok(sizeBytes >= 0, 'file sizes are never negative');
  const rule = table.bySize.find((r) => r.belowBytes === null || sizeBytes < r.belowBytes);
  assert.ok(rule, 'a validated table always has a catch-all rule');
  return rule;
}

/** Unknown sizes classify as empty files: the insight that carries the class also carries the uncertainty. */
export function classifyFile(
  file: { metadata: boolean; size: number | null },
  table: IoClassTable = PAPER_IOCLASS_TABLE,
): IoClass {
  if (file.metadata) return table.metadata.ioClass;
  return sizeRule(file.size ?? 0, table).ioClass;
}

/** posix_fadvise advice → class. NORMAL says nothing, so it is no hint. */
export const FADVISE_CLASS: Readonly<Record<number, IoClass | null>> = {
  0: null, // NORMAL
  1: 4, // RANDOM: small random reads profit most from a cache
  2: 0, // SEQUENTIAL: a stream; caching it evicts better data
  3: 4, // WILLNEED
  4: 0, // DONTNEED
  5: 0, // NOREUSE
};

/** F_SET_RW_HINT write-life hints (RWH_WRITE_LIFE_*) → class: short-lived data is rewritten or read soon. */
export const RW_HINT_CLASS: Readonly<Record<number, IoClass | null>> = {
  0: null, // NOT_SET
  1: null, // NONE
  2: 4, // SHORT
  3: 3, // MEDIUM
  4: 1, // LONG
  5: 0, // EXTREME
};

/** ioprio class (value >> 13) → class; best-effort levels 0..7 spread over classes 3..1. */
export function ioprioClass(ioprio: number): IoClass | null {
  const priorityClass = ioprio >> 13;
  const level = ioprio & 0x1fff;
  if (priorityClass === 1) return 4; // RT
  if (priorityClass === 3) return 0; // IDLE
  if (priorityClass !== 2) return null; // NONE: the process follows its CPU nice value
  if (level <= 2) return 3;
  if (level <= 5) return 2;
  return 1;
}
