/**
 * A sorted, non-overlapping map from byte ranges to labels, built once from layered (possibly overlapping)
 * intervals: where layers overlap the higher layer wins; where intervals of the same layer overlap their labels are
 * merged by the caller's function (two files sharing an extent). Lookups are binary searches.
 */
import assert from 'node:assert/strict';

export interface LayeredInterval<T> {
  start: number;
  end: number;
  /** Higher wins. */
  layer: number;
  label: T;
}

export interface Segment<T> {
  start: number;
  end: number;
  label: T;
}

export class IntervalMap<T> {
  private constructor(private readonly segments: readonly Segment<T>[]) {}

  /**
   * Sweeps the intervals' boundaries. `merge` combines labels of the same layer covering the same bytes; `same`
   * says when adjacent segments may be joined (default: the same label object).
   */
  static build<T>(
    intervals: readonly LayeredInterval<T>[],
    merge: (a: T, b: T) => T,
    same: (a: T, b: T) => boolean = (a, b) => a === b,
  ): IntervalMap<T> {
    const events: Array<{ at: number; open: boolean; index: number }> = [];
    intervals.forEach((interval, index) => {
      assert.ok(Number.isSafeInteger(interval.start) && Number.isSafeInteger(interval.end), 'interval bounds are integers');
      if (interval.end <= interval.start) return;
      events.push({ at: interval.start, open: true, index }, { at: interval.end, open: false, index });
    });
    events.sort((a, b) => a.at - b.at);
    const active = new Set<number>();
    const segments: Segment<T>[] = [];
    for (let at = 0; at < events.length; ) {
      const position = events[at]!.at;
      for (; at < events.length && events[at]!.at === position; at++) {
        const event = events[at]!;
        if (event.open) active.add(event.index);
        else active.delete(event.index);
      }
      const next = events[at]?.at;
      if (next === undefined || active.size === 0) continue;
      const label = winner(intervals, active, merge);
      const previous = segments[segments.length - 1];
      if (previous !== undefined && previous.end === position && same(previous.label, label)) previous.end = next;
      else segments.push({ start: position, end: next, label });
    }
    return new IntervalMap(segments);
  }

  static fromSegments<T>(segments: readonly Segment<T>[]): IntervalMap<T> {
    for (let index = 1; index < segments.length; index++) {
      assert.ok(segments[index - 1]!.end <= segments[index]!.start, 'segments are sorted and disjoint');
    }
    return new IntervalMap(segments.map((segment) => ({ ...segment })));
  }

  get size(): number {
    return this.segments.length;
  }

  all(): readonly Segment<T>[] {
    return this.segments;
  }

  /** The parts of [offset, offset+length) that have labels, clipped to the range, in order. Gaps are left out. */
  query(offset: number, length: number): Segment<T>[] {
    const end = offset + length;
    const found: Segment<T>[] = [];
    for (let index = this.firstEndingAfter(offset); index < this.segments.length; index++) {
      const segment = this.segments[index]!;
      if (segment.start >= end) break;
      found.push({ start: Math.max(segment.start, offset), end: Math.min(segment.end, end), label: segment.label });
    }
    return found;
  }

  /** Index of the first segment whose end is past `offset`. */
  private firstEndingAfter(offset: number): number {
    let low = 0;
    let high = this.segments.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (this.segments[middle]!.end <= offset) low = middle + 1;
      else high = middle;
    }
    return low;
  }
}

function winner<T>(intervals: readonly LayeredInterval<T>[], active: ReadonlySet<number>, merge: (a: T, b: T) => T): T {
  let top = -Infinity;
  let label: T | undefined;
  // Indices in ascending order, so a merge sees labels in the order they were given.
  for (const index of [...active].sort((a, b) => a - b)) {
    const interval = intervals[index]!;
    if (interval.layer > top) {
      top = interval.layer;
      label = interval.label;
    } else if (interval.layer === top) {
      label = merge(label as T, interval.label);
    }
  }
  return label as T;
}
