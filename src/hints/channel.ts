import assert from 'node:assert/strict';
import { timingSafeEqual } from 'node:crypto';
import net from 'node:net';
import type { Logger } from 'pino';
import { removeStaleSocket } from '../util/unix-socket.js';

/**
 * The hint channel: tracer or guest agent → engine. Frames are a u32 big-endian length and that many bytes of
 * UTF-8 JSON. The first frame is a hello naming the protocol version, the volume and that volume's token; every
 * later frame is a hint for that volume only. A malformed, oversized or unauthenticated frame closes that channel
 * and nothing else.
 */
export const HINT_PROTOCOL_VERSION = 1;
/** Largest frame we accept; a fingerprint batch of 8k blocks with quick keys is ≤ 390 KB of JSON (tested). */
export const HINT_FRAME_BYTES_MAX = 1024 * 1024;

export interface Hello {
  type: 'hello';
  version: number;
  volume: string;
  token: string;
}

export interface Hint {
  type: string;
  [key: string]: unknown;
}

/** Where hints for one volume go. Returns false to ask the sender to slow down (the channel pauses reading). */
export interface HintSink {
  accept(hint: Hint): boolean;
  /** Called when the sink can take more after returning false. */
  onDrain(listener: () => void): void;
}

export interface HintVolume {
  name: string;
  token: string;
  sink: HintSink;
}

export class FrameDecoder {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private need = -1;

  /** Feeds bytes; returns complete frames. Throws on an oversized frame (the caller closes the channel). */
  push(chunk: Buffer): Buffer[] {
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    const frames: Buffer[] = [];
    for (;;) {
      if (this.need < 0) {
        if (this.pendingBytes < 4) break;
        this.need = this.read(4).readUInt32BE(0);
        if (this.need > HINT_FRAME_BYTES_MAX) throw new Error(`frame of ${this.need} bytes exceeds ${HINT_FRAME_BYTES_MAX}`);
      }
      if (this.pendingBytes < this.need) break;
      frames.push(this.read(this.need));
      this.need = -1;
    }
    return frames;
  }

  private read(n: number): Buffer {
    // Frames are small and bounded; one concat per frame keeps this simple.
    const all = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending, this.pendingBytes);
    const out = all.subarray(0, n);
    const rest = all.subarray(n);
    this.pending = rest.length > 0 ? [rest] : [];
    this.pendingBytes = rest.length;
    return out;
  }
}

export function encodeFrame(message: object): Buffer {
  const body = Buffer.from(JSON.stringify(message), 'utf8');
  assert.ok(body.length <= HINT_FRAME_BYTES_MAX, `hint frame of ${body.length} bytes is too large`);
  const frame = Buffer.allocUnsafe(4 + body.length);
  frame.writeUInt32BE(body.length, 0);
  body.copy(frame, 4);
  return frame;
}

function tokensEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** Accepts hint channels on a unix socket and/or TCP and routes each to its volume's sink. */
export class HintServer {
  private readonly volumes: Map<string, HintVolume>;
  private readonly log: Logger;
  private readonly servers: net.Server[] = [];
  private readonly sockets = new Set<net.Socket>();
  readonly addresses: string[] = [];

  constructor(volumes: HintVolume[], logger: Logger) {
    this.volumes = new Map(volumes.map((v) => [v.name, v]));
    this.log = logger;
  }

  async listen(at: { socketPath?: string; tcp?: { host: string; port: number } }): Promise<void> {
    if (at.socketPath) await removeStaleSocket(at.socketPath);
    if (at.socketPath) await this.listenOn((s, cb) => s.listen(at.socketPath, cb), `unix:${at.socketPath}`);
    if (at.tcp) await this.listenOn((s, cb) => s.listen(at.tcp!.port, at.tcp!.host, cb), 'tcp');
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await Promise.all(this.servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }

  private async listenOn(start: (s: net.Server, cb: () => void) => void, label: string): Promise<void> {
    const server = net.createServer((socket) => this.accept(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      start(server, () => resolve());
    });
    const address = server.address();
    this.addresses.push(typeof address === 'string' ? `unix:${address}` : `tcp:${address!.address}:${address!.port}`);
    this.servers.push(server);
    this.log.info({ address: this.addresses.at(-1), label }, 'hint channel listening');
  }

  private accept(socket: net.Socket): void {
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => undefined);
    const decoder = new FrameDecoder();
    let volume: HintVolume | null = null;
    const refuse = (why: string) => {
      this.log.warn({ why, volume: volume?.name }, 'closing hint channel');
      socket.destroy();
    };
    const helloTimer = setTimeout(() => refuse('no hello within 10 s'), 10_000).unref();
    socket.on('data', (chunk: Buffer) => {
      let frames: Buffer[];
      try {
        frames = decoder.push(chunk);
      } catch (err) {
        return refuse((err as Error).message);
      }
      for (const frame of frames) {
        let message: Hint;
        try {
          message = JSON.parse(frame.toString('utf8'));
        } catch {
          return refuse('frame is not JSON');
        }
        if (typeof message !== 'object' || message === null || typeof message.type !== 'string') return refuse('frame is not a typed message');
        if (volume === null) {
          volume = this.authenticate(message);
          if (volume === null) return refuse('bad hello (version, volume or token)');
          clearTimeout(helloTimer);
          const sink = volume.sink;
          sink.onDrain(() => socket.resume());
          socket.write(encodeFrame({ type: 'welcome', version: HINT_PROTOCOL_VERSION, volume: volume.name }));
          continue;
        }
        if (!volume.sink.accept(message)) socket.pause();
      }
    });
  }

  private authenticate(message: Hint): HintVolume | null {
    const hello = message as unknown as Hello;
    if (hello.type !== 'hello' || hello.version !== HINT_PROTOCOL_VERSION) return null;
    if (typeof hello.volume !== 'string' || typeof hello.token !== 'string') return null;
    const volume = this.volumes.get(hello.volume);
    if (!volume || !tokensEqual(volume.token, hello.token)) return null;
    return volume;
  }
}
