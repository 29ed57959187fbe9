import net from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { encodeFrame, FrameDecoder, HINT_FRAME_BYTES_MAX, HintClient, HintServer, type Hint, type HintSink } from '../../../src/hints/index.js';
import { FINGERPRINTS_PER_MESSAGE_MAX, parseSemanticMessage } from '../../../src/semantics/index.js';

class ListSink implements HintSink {
  readonly hints: Hint[] = [];
  accept(hint: Hint): boolean {
    this.hints.push(hint);
    return true;
  }
  onDrain(): void {}
}

const until = async (cond: () => boolean, ms = 3000) => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
};

describe('hint channel', () => {
  const cleanups: (() => unknown)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  async function start() {
    const dir = mkdtempSync(path.join(tmpdir(), 'sky-hints-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const socketPath = path.join(dir, 'hints.sock');
    const a = new ListSink();
    const b = new ListSink();
    const server = new HintServer(
      [
        { name: 'a', token: 'token-a', sink: a },
        { name: 'b', token: 'token-b', sink: b },
      ],
      pino({ level: 'silent' }),
    );
    await server.listen({ socketPath, tcp: { host: '127.0.0.1', port: 0 } });
    cleanups.push(() => server.close());
    const tcp = server.addresses.find((x) => x.startsWith('tcp:'))!.slice(4);
    return { socketPath, tcp, a, b };
  }

  it('delivers hints only to the volume the token names, over unix and TCP', async () => {
    const { socketPath, tcp, a, b } = await start();
    const viaUnix = new HintClient({ engine: `unix:${socketPath}`, volume: 'a', token: 'token-a' });
    const viaTcp = new HintClient({ engine: tcp, volume: 'b', token: 'token-b' });
    cleanups.push(() => viaUnix.close(), () => viaTcp.close());
    viaUnix.send({ type: 'FileClass', fileId: 'f1', size: 10, ioClass: 4 });
    viaTcp.send({ type: 'FileClass', fileId: 'f2', size: 20, ioClass: 4 });
    await until(() => a.hints.length === 1 && b.hints.length === 1);
    expect(a.hints[0]).toMatchObject({ fileId: 'f1' });
    expect(b.hints[0]).toMatchObject({ fileId: 'f2' });
  });

  it('closes a channel with a wrong token or another volume\'s token, and delivers nothing', async () => {
    const { tcp, a, b } = await start();
    for (const [volume, token] of [['a', 'wrong'], ['a', 'token-b'], ['nope', 'token-a']]) {
      const closed = await rawExchange(tcp, [encodeFrame({ type: 'hello', version: 1, volume, token }), encodeFrame({ type: 'FileClass', fileId: 'x' })]);
      expect(closed).toBe(true);
    }
    expect(a.hints).toHaveLength(0);
    expect(b.hints).toHaveLength(0);
  });

  it('closes only the channel that sent an oversized or malformed frame', async () => {
    const { tcp, a } = await start();
    const good = new HintClient({ engine: tcp, volume: 'a', token: 'token-a' });
    cleanups.push(() => good.close());
    const huge = Buffer.alloc(4);
    huge.writeUInt32BE(HINT_FRAME_BYTES_MAX + 1);
    const hello = encodeFrame({ type: 'hello', version: 1, volume: 'a', token: 'token-a' });
    expect(await rawExchange(tcp, [hello, huge])).toBe(true);
    const notJson = Buffer.concat([Buffer.from([0, 0, 0, 3]), Buffer.from('{{{')]);
    expect(await rawExchange(tcp, [hello, notJson])).toBe(true);
    good.send({ type: 'FileClass', fileId: 'still-works' });
    await until(() => a.hints.some((h) => h.fileId === 'still-works'));
  });

  it('fits the largest valid WriteFingerprints (longest names, every quick key) in one frame', () => {
    const largest = {
      type: 'WriteFingerprints', fileId: 'f'.repeat(4096), blockSize: 4096, ttlMs: 90_000, path: '/'.repeat(4096), size: 2 ** 52,
      pid: 4_194_304, process: 'p'.repeat(4096),
      fingerprints: Array.from({ length: FINGERPRINTS_PER_MESSAGE_MAX }, () => 'f'.repeat(32)),
      quickKeys: Array.from({ length: FINGERPRINTS_PER_MESSAGE_MAX }, () => 0xffffffff),
    };
    expect(parseSemanticMessage(largest).ok).toBe(true);
    expect(encodeFrame(largest).length).toBeLessThanOrEqual(HINT_FRAME_BYTES_MAX);
  });

  it('queues while the engine is away and reconnects', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'sky-hints-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const socketPath = path.join(dir, 'late.sock');
    const client = new HintClient({ engine: `unix:${socketPath}`, volume: 'a', token: 't' });
    cleanups.push(() => client.close());
    client.send({ type: 'FileClass', fileId: 'early' });
    await new Promise((r) => setTimeout(r, 300));
    const sink = new ListSink();
    const server = new HintServer([{ name: 'a', token: 't', sink }], pino({ level: 'silent' }));
    await server.listen({ socketPath });
    cleanups.push(() => server.close());
    await until(() => sink.hints.length === 1, 8000);
    expect(sink.hints[0]).toMatchObject({ fileId: 'early' });
  });

  it('decodes frames split at any byte', () => {
    const frames = Buffer.concat([encodeFrame({ type: 'x', n: 1 }), encodeFrame({ type: 'y', n: 2 })]);
    const decoder = new FrameDecoder();
    const got: string[] = [];
    for (let i = 0; i < frames.length; i++) for (const f of decoder.push(frames.subarray(i, i + 1))) got.push(JSON.parse(f.toString()).type);
    expect(got).toEqual(['x', 'y']);
  });
});

/** Sends raw frames; resolves true if the server closed the connection within a second. */
function rawExchange(tcp: string, frames: Buffer[]): Promise<boolean> {
  const at = tcp.lastIndexOf(':');
  return new Promise((resolve) => {
    const socket = net.connect(Number(tcp.slice(at + 1)), tcp.slice(0, at));
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(false);
    }, 1000);
    socket.on('connect', () => frames.forEach((f) => socket.write(f)));
    socket.resume();
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}
