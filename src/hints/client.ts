import net from 'node:net';
import { encodeFrame, FrameDecoder, HINT_PROTOCOL_VERSION, type Hint } from './channel.js';

export interface HintClientOptions {
  /** `unix:/path` or `HOST:PORT`. */
  engine: string;
  volume: string;
  token: string;
  /** Hints queued while disconnected or while the engine pushes back; beyond this the oldest are dropped. */
  queuedMax?: number;
  onWarning?: (message: string) => void;
}

/**
 * The sending end (tracer, `sky agent` in a guest). Reconnects with capped exponential backoff; while it cannot
 * send it queues a bounded number of hints and counts what it had to drop, so the engine can be told its picture
 * is incomplete (a `lost` hint goes out first after a gap).
 */
export class HintClient {
  private readonly options: Required<Omit<HintClientOptions, 'onWarning'>> & Pick<HintClientOptions, 'onWarning'>;
  private socket: net.Socket | null = null;
  private ready = false;
  private closed = false;
  private readonly queue: Hint[] = [];
  private dropped = 0;
  private backoffMs = 100;
  private timer: NodeJS.Timeout | null = null;

  constructor(options: HintClientOptions) {
    this.options = { queuedMax: 10_000, ...options };
    this.connect();
  }

  get droppedCount(): number {
    return this.dropped;
  }

  get connected(): boolean {
    return this.ready;
  }

  send(hint: Hint): void {
    if (this.ready && this.queue.length === 0 && this.socket!.write(encodeFrame(hint))) return;
    if (this.queue.length >= this.options.queuedMax) {
      this.queue.shift();
      this.dropped++;
    }
    this.queue.push(hint);
  }

  /** Resolves once everything queued has been handed to the socket (or the client was closed). */
  async flush(timeoutMs = 5000): Promise<boolean> {
    const until = Date.now() + timeoutMs;
    while (this.queue.length > 0 && Date.now() < until && !this.closed) await new Promise((r) => setTimeout(r, 10));
    return this.queue.length === 0;
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.socket?.end();
  }

  private connect(): void {
    const target = this.options.engine;
    const socket = target.startsWith('unix:')
      ? net.connect(target.slice(5))
      : net.connect(Number(target.slice(target.lastIndexOf(':') + 1)), target.slice(0, target.lastIndexOf(':')).replace(/^\[|\]$/g, ''));
    this.socket = socket;
    const decoder = new FrameDecoder();
    socket.on('connect', () => {
      socket.write(encodeFrame({ type: 'hello', version: HINT_PROTOCOL_VERSION, volume: this.options.volume, token: this.options.token }));
    });
    socket.on('data', (chunk: Buffer) => {
      try {
        for (const frame of decoder.push(chunk)) {
          if (JSON.parse(frame.toString('utf8')).type === 'welcome') this.onWelcome();
        }
      } catch {
        socket.destroy();
      }
    });
    socket.on('drain', () => this.drainQueue());
    socket.on('error', (err) => this.options.onWarning?.(`hint channel to ${target}: ${err.message}`));
    socket.on('close', () => this.onClose());
  }

  private onWelcome(): void {
    this.ready = true;
    this.backoffMs = 100;
    if (this.dropped > 0) this.socket!.write(encodeFrame({ type: 'lost', count: this.dropped }));
    this.dropped = 0;
    this.drainQueue();
  }

  private drainQueue(): void {
    while (this.ready && this.queue.length > 0) {
      if (!this.socket!.write(encodeFrame(this.queue.shift()!))) return;
    }
  }

  private onClose(): void {
    const wasReady = this.ready;
    this.ready = false;
    this.socket = null;
    if (this.closed) return;
    if (wasReady) this.options.onWarning?.(`hint channel to ${this.options.engine} closed; reconnecting`);
    this.timer = setTimeout(() => this.connect(), this.backoffMs);
    this.backoffMs = Math.min(this.backoffMs * 2, 5000);
  }
}
