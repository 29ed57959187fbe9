import net from 'node:net';
import { encodeFrame, FrameDecoder, HINT_PROTOCOL_VERSION, type Hint } from './channel.js';

export interface HintClientOptions {
  /** `unix:/path` or `HOST:PORT`. */
  engine: string;
  volume: string;
  token: string;
  /**
   * Bytes of encoded hints queued while disconnected or while the engine pushes back; beyond this the oldest are
   * dropped (and counted, and the engine told). A sender that can wait uses `whenWritable` to stay well below it.
   * Default 256 MiB.
   */
  queuedBytesMax?: number;
  onWarning?: (message: string) => void;
}

/**
 * The sending end (tracer, `sky agent` in a guest). Reconnects with capped exponential backoff; while it cannot
 * send it queues a bounded number of bytes of hints and counts what it had to drop, so the engine can be told its
 * picture is incomplete (a `lost` hint goes out first after a gap). Hints are encoded once, when sent.
 *
 * Backpressure: a workload can describe its files faster than the engine applies the descriptions (an untar makes
 * hundreds of thousands of hints). `whenWritable()` returns null while the backlog is small, else a promise that
 * settles once the socket drained below half the high-water mark: a sender awaits it instead of losing hints.
 */
const QUEUED_BYTES_MAX_DEFAULT = 256 * 1024 * 1024;
/** A sender is asked to wait beyond this backlog (a few seconds of what an engine applies). */
const BACKPRESSURE_BYTES = 16 * 1024 * 1024;
/** Frames go straight to the socket while its own buffer holds less than this. */
const SOCKET_BUFFER_BYTES = 1024 * 1024;
const EMPTY = Buffer.alloc(0);

export class HintClient {
  private readonly options: Required<Omit<HintClientOptions, 'onWarning'>> & Pick<HintClientOptions, 'onWarning'>;
  private socket: net.Socket | null = null;
  private ready = false;
  private closed = false;
  private readonly queue: Buffer[] = [];
  private queueHead = 0;
  private queuedBytes = 0;
  private corked: net.Socket | null = null;
  /** Dropped since the engine was last told (a `lost` hint). */
  private dropped = 0;
  private droppedTotal = 0;
  private waiters: (() => void)[] = [];
  private backoffMs = 100;
  private timer: NodeJS.Timeout | null = null;

  constructor(options: HintClientOptions) {
    this.options = { queuedBytesMax: QUEUED_BYTES_MAX_DEFAULT, ...options };
    this.connect();
  }

  /** Hints dropped because the queue was full, over the client's life. */
  get droppedCount(): number {
    return this.droppedTotal;
  }

  get connected(): boolean {
    return this.ready;
  }

  /** Bytes waiting to be handed to the socket (ours and the socket's own buffer). */
  get backlogBytes(): number {
    return this.queuedBytes + (this.socket?.writableLength ?? 0);
  }

  send(hint: Hint): void {
    const frame = encodeFrame(hint);
    if (this.ready && this.queuedBytes === 0 && this.socket!.writableLength < SOCKET_BUFFER_BYTES) {
      this.corkUntilNextTick(this.socket!);
      this.socket!.write(frame);
      return;
    }
    while (this.queuedBytes + frame.length > this.options.queuedBytesMax && this.queueHead < this.queue.length) {
      this.queuedBytes -= this.queue[this.queueHead]!.length;
      this.queue[this.queueHead++] = EMPTY;
      this.dropped++;
      this.droppedTotal++;
    }
    this.queue.push(frame);
    this.queuedBytes += frame.length;
  }

  /** null while the backlog is under the high-water mark; else settles when it drained to half of it (or on close). */
  whenWritable(): Promise<void> | null {
    if (this.closed || this.backlogBytes < this.highWater()) return null;
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Resolves once everything queued has been handed to the socket (or the client was closed). */
  async flush(timeoutMs = 5000): Promise<boolean> {
    const until = Date.now() + timeoutMs;
    while (this.queuedBytes > 0 && Date.now() < until && !this.closed) await new Promise((r) => setTimeout(r, 10));
    return this.queuedBytes === 0;
  }

  close(): void {
    this.closed = true;
    this.wakeWaiters();
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
    this.drainQueue();
  }

  /**
   * Hands queued frames to the socket until SOCKET_BUFFER_BYTES are in its buffer ('drain' says when it emptied),
   * corked so that they leave in one writev. The kernel takes what its socket buffer holds each turn of the event
   * loop: a sender must let the loop turn often (the agent yields every 10 ms of event handling).
   */
  private drainQueue(): void {
    if (!this.ready) return;
    const socket = this.socket!;
    this.corkUntilNextTick(socket);
    if (this.dropped > 0) {
      socket.write(encodeFrame({ type: 'lost', count: this.dropped }));
      this.dropped = 0;
    }
    while (this.queueHead < this.queue.length && socket.writableLength < SOCKET_BUFFER_BYTES) {
      const frame = this.queue[this.queueHead]!;
      this.queue[this.queueHead++] = EMPTY;
      this.queuedBytes -= frame.length;
      socket.write(frame);
    }
    if (this.queueHead === this.queue.length || this.queueHead > 4096) {
      this.queue.splice(0, this.queueHead);
      this.queueHead = 0;
    }
    if (this.backlogBytes <= this.highWater() / 2) this.wakeWaiters();
  }

  /** Frames written in one tick leave in one writev, not one system call each (a frame is often ~200 bytes). */
  private corkUntilNextTick(socket: net.Socket): void {
    if (this.corked === socket) return;
    this.corked = socket;
    socket.cork();
    process.nextTick(() => {
      this.corked = null;
      socket.uncork();
    });
  }

  private highWater(): number {
    return Math.min(this.options.queuedBytesMax / 4, BACKPRESSURE_BYTES);
  }

  private wakeWaiters(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
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
