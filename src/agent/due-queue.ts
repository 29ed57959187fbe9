/**
 * A queue of keys in the order they were last scheduled, each with a due time: re-scheduling a key moves it to the
 * back. What a Map in insertion order does, without its cost here: a Map popped from the front and re-inserted at the
 * back walks, on every look at its front, each hole its deletions left (see util/bounded.ts) — and a `cp -r` keeps
 * the refresh queue full for a minute, dropping its oldest entry on each of ~80,000 closes.
 *
 * Entries live in an array read from `head`; a key's live entry is the one whose sequence number the index holds, so
 * a re-scheduled or deleted key leaves a stale entry that the front skips once. The array is compacted when more than
 * half of it is behind the head or stale, so every entry is skipped or moved a bounded number of times.
 */
export class DueQueue<K> {
  private entries: { key: K; due: number; seq: number }[] = [];
  private head = 0;
  private readonly live = new Map<K, number>();
  private nextSeq = 0;

  get size(): number {
    return this.live.size;
  }

  has(key: K): boolean {
    return this.live.has(key);
  }

  /** Schedules `key` at `due`, at the back (moving it there if it was queued). */
  set(key: K, due: number): void {
    const seq = this.nextSeq++;
    this.live.set(key, seq);
    this.entries.push({ key, due, seq });
    this.compactIfSparse();
  }

  delete(key: K): boolean {
    const had = this.live.delete(key);
    if (had) this.compactIfSparse();
    return had;
  }

  /** The front entry (the longest-scheduled key), or undefined when empty. */
  first(): { key: K; due: number } | undefined {
    this.skipStale();
    return this.entries[this.head];
  }

  /** Removes and returns the front entry. */
  shift(): { key: K; due: number } | undefined {
    const entry = this.first();
    if (entry === undefined) return undefined;
    this.live.delete(entry.key);
    this.head++;
    return entry;
  }

  keys(): IterableIterator<K> {
    return this.live.keys();
  }

  clear(): void {
    this.entries = [];
    this.head = 0;
    this.live.clear();
  }

  private skipStale(): void {
    while (this.head < this.entries.length) {
      const entry = this.entries[this.head]!;
      if (this.live.get(entry.key) === entry.seq) return;
      this.head++;
    }
  }

  private compactIfSparse(): void {
    if (this.entries.length < 64 || this.entries.length <= 2 * this.live.size) return;
    this.entries = this.entries.slice(this.head).filter((entry) => this.live.get(entry.key) === entry.seq);
    this.head = 0;
  }
}
