/**
 * Bounding insertion-ordered Maps and Sets by dropping their oldest entries.
 *
 * Why not one at a time: V8 leaves a deleted entry as a hole in the table until the table is rehashed, and iteration
 * from the front walks over every hole. A collection kept at its bound by deleting `keys().next()` after each insert
 * therefore pays for all the holes before it each time — measured on Node 20: 30 µs per eviction at 65,536 entries,
 * 4.4 s for 200,000 evictions (a `cp -r` of a kernel tree evicts that many files from the agent's table). Dropping an
 * eighth of the bound at once pays for the holes once per 8,192 inserts: 95 ms for the same 200,000.
 */

/** How far below its bound a collection is trimmed: an eighth of the bound (at least one entry). */
export function trimTarget(max: number): number {
  return max - Math.max(1, max >> 3);
}

/**
 * Once `collection` holds more than `max` entries, deletes the oldest (first inserted) down to trimTarget(max).
 * `onDrop` sees each dropped key. Returns how many were dropped.
 */
export function trimOldest<K>(collection: Map<K, unknown> | Set<K>, max: number, onDrop?: (key: K) => void): number {
  if (collection.size <= max) return 0;
  let excess = collection.size - trimTarget(max);
  const dropped = excess;
  for (const key of collection.keys()) {
    collection.delete(key);
    onDrop?.(key);
    if (--excess === 0) break;
  }
  return dropped;
}
