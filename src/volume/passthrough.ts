import assert from 'node:assert/strict';
import type { BlockLayer, Capabilities, Extent, IoRequest } from './types.js';

/**
 * Base for layers: every operation passes through to `next` untouched (an nbdkit filter that defines nothing).
 * A concrete layer overrides only the operations it cares about.
 */
export class PassthroughLayer implements BlockLayer {
  readonly name: string;
  readonly next: BlockLayer;

  constructor(next: BlockLayer, name = 'passthrough') {
    assert.ok(next, 'a layer needs a next layer');
    this.next = next;
    this.name = name;
  }

  open(): Promise<void> {
    return this.next.open();
  }
  size(): number {
    return this.next.size();
  }
  capabilities(): Capabilities {
    return this.next.capabilities();
  }
  read(req: IoRequest, into: Buffer): Promise<void> {
    return this.next.read(req, into);
  }
  write(req: IoRequest, data: Buffer): Promise<void> {
    return this.next.write(req, data);
  }
  flush(): Promise<void> {
    return this.next.flush();
  }
  trim(req: IoRequest): Promise<void> {
    return this.next.trim(req);
  }
  zero(req: IoRequest): Promise<void> {
    return this.next.zero(req);
  }
  cache(req: IoRequest): Promise<void> {
    return this.next.cache(req);
  }
  blockStatus(offset: number, length: number): Promise<Extent[]> {
    return this.next.blockStatus(offset, length);
  }
  close(): Promise<void> {
    return this.next.close();
  }
}
