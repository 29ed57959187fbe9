/** The tracer's file table forgets closed files oldest first once past its limit, never an open or the newest one. */
import { describe, expect, it } from 'vitest';
import { FileTable } from '../../../src/insight/files.js';
import { trimTarget } from '../../../src/util/bounded.js';

const stat = (ino: number) => ({ dev: 1, ino, size: 10, kind: 'file' as const, nlink: 1 }) as never;

describe('FileTable bound', () => {
  it('forgets the oldest closed files down to an eighth below the limit, keeping open ones', () => {
    const table = new FileTable(16);
    const first = table.lookup('/f0', stat(100)).record;
    first.opens = 1; // still open: kept whatever its age
    for (let n = 1; n <= 16; n++) table.lookup(`/f${n}`, stat(100 + n));
    expect(table.size).toBe(trimTarget(16));
    expect(table.forgotten).toBe(17 - trimTarget(16));
    expect(table.atPath('/f0')).toBe(first);
    expect(table.atPath('/f1')).toBeUndefined();
    expect(table.withIdentity({ dev: 1, ino: 101 })).toBeUndefined();
    expect(table.atPath('/f16')).toBeDefined();
    const kept = [...table.all()].map((r) => r.path);
    expect(kept).toEqual(['/f0', ...Array.from({ length: trimTarget(16) - 1 }, (_, k) => `/f${17 - trimTarget(16) + 1 + k}`)]);
  });

  it('never forgets the file it is creating, even when every older one is open', () => {
    const table = new FileTable(4);
    for (let n = 0; n < 4; n++) table.lookup(`/o${n}`, stat(n)).record.opens = 1;
    const created = table.lookup('/new', stat(99));
    expect(created.created).toBe(true);
    expect(table.atPath('/new')).toBe(created.record);
    expect(table.size).toBe(5);
  });
});
