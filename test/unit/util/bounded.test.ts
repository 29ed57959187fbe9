import { describe, expect, it } from 'vitest';
import { trimOldest, trimTarget } from '../../../src/util/bounded.js';

describe('trimOldest', () => {
  it('leaves a collection within its bound alone', () => {
    const map = new Map([['a', 1], ['b', 2]]);
    expect(trimOldest(map, 2)).toBe(0);
    expect([...map.keys()]).toEqual(['a', 'b']);
  });

  it('drops the oldest entries down to an eighth below the bound, reporting each', () => {
    const map = new Map<number, number>();
    for (let k = 0; k < 65; k++) map.set(k, k);
    const dropped: number[] = [];
    expect(trimOldest(map, 64, (key) => dropped.push(key))).toBe(9);
    expect(map.size).toBe(trimTarget(64));
    expect(trimTarget(64)).toBe(56);
    expect(dropped).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8]);
    expect([...map.keys()][0]).toBe(9);
  });

  it('works on a Set and keeps at least the newest entry of a tiny bound', () => {
    const set = new Set(['x', 'y', 'z']);
    expect(trimTarget(1)).toBe(0);
    trimOldest(set, 2);
    expect([...set]).toEqual(['z']);
  });

});
