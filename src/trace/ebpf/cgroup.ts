/**
 * A cgroup target means the cgroup and every cgroup below it (a container's processes often live in sub-cgroups:
 * systemd inside the container, docker exec, slices). The BPF program filters on a set of cgroup v2 ids (@cg);
 * this seeds it with the tree as it is at start and keeps adding cgroups created later. A cgroup v2 id is the
 * inode number of its directory.
 */
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { openMapNamed, type BpfMap } from './bpf.js';

/** Bound on the cgroups followed under one target (a tree this big is not a container). */
export const CGROUPS_MAX = 4096;
/** bpftrace names map @cg "AT_cg". */
const MAP_NAME = 'AT_cg';

/** Ids of `root` and every cgroup below it, root first; stops at `limit` (the caller warns). */
export function cgroupTreeIds(root: string, limit = CGROUPS_MAX): { ids: number[]; truncated: boolean } {
  const ids: number[] = [];
  const pending = [root];
  while (pending.length > 0) {
    const dir = pending.shift()!;
    let entries;
    try {
      ids.push(statSync(dir).ino);
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      continue; // removed while we walked: nothing of it left to trace
    }
    if (ids.length >= limit) return { ids, truncated: true };
    for (const entry of entries) if (entry.isDirectory()) pending.push(join(dir, entry.name));
  }
  return { ids, truncated: false };
}

/** Adds cgroups created under the target after tracing began to the program's set. */
export class CgroupFollower {
  private readonly known: Set<number>;
  private readonly map: BpfMap;
  private readonly key = Buffer.alloc(8);
  private readonly one = Buffer.alloc(8);
  private warned = false;

  constructor(
    bpftracePid: number,
    private readonly root: string,
    seeded: readonly number[],
    private readonly warn: (message: string) => void,
  ) {
    this.known = new Set(seeded);
    this.one.writeBigInt64LE(1n);
    this.map = openMapNamed(bpftracePid, MAP_NAME);
  }

  /** One scan of the tree; returns how many cgroups were added. */
  refresh(): number {
    const { ids, truncated } = cgroupTreeIds(this.root, CGROUPS_MAX + 1);
    let added = 0;
    for (const id of ids) {
      if (this.known.has(id)) continue;
      if (this.known.size >= CGROUPS_MAX) {
        this.tooMany();
        break;
      }
      this.key.writeBigUInt64LE(BigInt(id));
      this.map.update(this.key, this.one);
      this.known.add(id);
      added++;
    }
    if (truncated) this.tooMany();
    return added;
  }

  close(): void {
    this.map.close();
  }

  private tooMany(): void {
    if (this.warned) return;
    this.warned = true;
    this.warn(`ebpf: more than ${CGROUPS_MAX} cgroups under ${this.root}; processes in the others are not traced`);
  }
}
