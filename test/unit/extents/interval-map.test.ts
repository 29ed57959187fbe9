import { describe, expect, it } from 'vitest';
import { IntervalMap } from '../../../src/insight/extents/interval-map.js';

const union = (a: string, b: string) => [...new Set([...a.split('+'), ...b.split('+')])].sort().join('+');

describe('IntervalMap', () => {
  it('lets higher layers win and joins equal neighbours', () => {
    const map = IntervalMap.build(
      [
        { start: 0, end: 100, layer: 0, label: 'base' },
        { start: 10, end: 20, layer: 1, label: 'top' },
        { start: 20, end: 30, layer: 1, label: 'top' },
        { start: 50, end: 200, layer: 1, label: 'tail' },
      ],
      union,
    );
    expect(map.all()).toEqual([
      { start: 0, end: 10, label: 'base' },
      { start: 10, end: 30, label: 'top' },
      { start: 30, end: 50, label: 'base' },
      { start: 50, end: 200, label: 'tail' },
    ]);
  });

  it('merges labels of one layer where they overlap', () => {
    const map = IntervalMap.build(
      [
        { start: 0, end: 10, layer: 2, label: 'a' },
        { start: 5, end: 15, layer: 2, label: 'b' },
      ],
      union,
      (x, y) => x === y,
    );
    expect(map.all()).toEqual([
      { start: 0, end: 5, label: 'a' },
      { start: 5, end: 10, label: 'a+b' },
      { start: 10, end: 15, label: 'b' },
    ]);
  });

  it('answers range queries clipped to the range, leaving gaps out', () => {
    const map = IntervalMap.build(
      [
        { start: 0, end: 10, layer: 0, label: 'x' },
        { start: 20, end: 30, layer: 0, label: 'y' },
      ],
      union,
    );
    expect(map.query(5, 20)).toEqual([
      { start: 5, end: 10, label: 'x' },
      { start: 20, end: 25, label: 'y' },
    ]);
    expect(map.query(10, 10)).toEqual([]);
    expect(map.query(29, 100)).toEqual([{ start: 29, end: 30, label: 'y' }]);
    expect(map.query(0, 1)).toEqual([{ start: 0, end: 1, label: 'x' }]);
  });

  it('ignores empty intervals and rebuilds from segments', () => {
    const map = IntervalMap.build([{ start: 5, end: 5, layer: 0, label: 'nothing' }], union);
    expect(map.size).toBe(0);
    const again = IntervalMap.fromSegments([
      { start: 0, end: 4, label: 'p' },
      { start: 4, end: 8, label: 'q' },
    ]);
    expect(again.query(3, 2).map((segment) => segment.label)).toEqual(['p', 'q']);
    expect(() => IntervalMap.fromSegments([{ start: 0, end: 5, label: 'p' }, { start: 4, end: 8, label: 'q' }])).toThrow();
  });
});
