/**
 * The hint client under a slow engine: it asks its sender to wait (whenWritable) instead of dropping, keeps order,
 * and only when its byte bound is exceeded drops the oldest hints and tells the engine how many (`lost`).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { HintClient, HintServer, type Hint, type HintSink } from '../../../src/hints/index.js';

/** A sink that stops taking hints while `paused` (the channel then stops reading its socket). */
class SlowSink implements HintSink {
  readonly hints: Hint[] = [];
  paused = true;
  private resume: (() => void) | null = null;
  accept(hint: Hint): boolean {
    this.hints.push(hint);
    return !this.paused;
  }
  onDrain(listener: () => void): void {
    this.resume = listener;
  }
  release(): void {
    this.paused = false;
    this.resume?.();
  }
}

const until = async (cond: () => boolean, ms = 10_000) => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
};

/** ~1 KiB hints, numbered. */
const hint = (n: number): Hint => ({ type: 'FileClass', fileId: `f${n}`, size: n, ioClass: 4, pad: 'x'.repeat(1000) });

describe('hint client backpressure', () => {
  const cleanups: (() => unknown)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  async function start() {
    const dir = mkdtempSync(path.join(tmpdir(), 'sky-hints-bp-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const socketPath = path.join(dir, 'hints.sock');
    const sink = new SlowSink();
    const server = new HintServer([{ name: 'v', token: 'token-v', sink }], pino({ level: 'silent' }));
    await server.listen({ socketPath });
    cleanups.push(() => server.close());
    return { socketPath, sink };
  }

  it('asks the sender to wait while the engine is behind, loses nothing, and keeps the order', async () => {
    const { socketPath, sink } = await start();
    const client = new HintClient({ engine: `unix:${socketPath}`, volume: 'v', token: 'token-v', queuedBytesMax: 8 * 1024 * 1024 });
    cleanups.push(() => client.close());
    await until(() => client.connected);
    let sent = 0;
    let waited: Promise<void> | null = null;
    // 1 KiB hints until the client says "wait": at a quarter of its 8 MiB bound, once the engine stopped reading.
    while (sent < 20_000 && (waited = client.whenWritable()) === null) client.send(hint(sent++));
    expect(waited).not.toBeNull();
    expect(client.backlogBytes).toBeGreaterThanOrEqual(2 * 1024 * 1024);
    expect(sent).toBeLessThan(20_000);
    let settled = false;
    void waited!.then(() => (settled = true));
    await new Promise((r) => setTimeout(r, 200));
    expect(settled).toBe(false); // still behind: the sender keeps waiting
    sink.release();
    await until(() => settled);
    for (let i = 0; i < 100; i++) client.send(hint(sent++));
    await until(() => sink.hints.length === sent);
    expect(client.droppedCount).toBe(0);
    expect(sink.hints.map((h) => h.fileId)).toEqual(Array.from({ length: sent }, (_, n) => `f${n}`));
  }, 30_000);

  it('beyond its byte bound drops the oldest hints, counts them, and tells the engine', async () => {
    const { socketPath, sink } = await start();
    const client = new HintClient({ engine: `unix:${socketPath}`, volume: 'v', token: 'token-v', queuedBytesMax: 256 * 1024 });
    cleanups.push(() => client.close());
    await until(() => client.connected);
    // A sender that ignores whenWritable: the socket's buffers fill, then the client's 256 KiB, then it drops.
    for (let n = 0; n < 20_000; n++) client.send(hint(n));
    expect(client.droppedCount).toBeGreaterThan(0);
    const dropped = client.droppedCount;
    sink.release();
    await until(() => sink.hints.some((h) => h.type === 'lost') && sink.hints.some((h) => h.fileId === 'f19999'));
    const lost = sink.hints.find((h) => h.type === 'lost')!;
    expect(lost.count).toBe(dropped);
    const received = sink.hints.filter((h) => h.type === 'FileClass').length;
    expect(received + dropped).toBe(20_000);
  }, 30_000);
});
