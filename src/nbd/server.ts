import { existsSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import type { Logger } from 'pino';
import { removeStaleSocket } from '../util/unix-socket.js';
import { BufferPool } from './buffer-pool.js';
import { NbdConnection } from './connection.js';
import type { ExportRegistry } from './target.js';

export interface NbdServerOptions {
  registry: ExportRegistry;
  logger: Logger;
  /** Unix socket path to listen on (replaced if a stale socket file is there). */
  socketPath?: string;
  /** TCP listener. */
  tcp?: { host: string; port: number };
  /** Connections beyond this are refused at accept. */
  connectionsMax?: number;
  handshakeTimeoutMs?: number;
  /** How long shutdown waits for connections to drain before hanging up on them. */
  drainTimeoutMs?: number;
}

/** NBD listeners (unix and TCP) and the set of live connections; owns graceful shutdown. */
export class NbdServer {
  private readonly options: NbdServerOptions;
  private readonly log: Logger;
  private readonly servers: net.Server[] = [];
  private readonly connections = new Set<NbdConnection>();
  private readonly pool = new BufferPool();
  private shuttingDown = false;

  constructor(options: NbdServerOptions) {
    if (!options.socketPath && !options.tcp) throw new Error('an NBD server needs a unix socket or a TCP address to listen on');
    this.options = options;
    this.log = options.logger;
  }

  /** Addresses actually bound (TCP port 0 resolves to a real port). */
  readonly addresses: string[] = [];

  async listen(): Promise<void> {
    if (this.options.socketPath) await this.listenUnix(this.options.socketPath);
    if (this.options.tcp) await this.listenTcp(this.options.tcp.host, this.options.tcp.port);
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  /** Stop accepting, let transmissions drain (new requests get ESHUTDOWN), flush, close. */
  async shutdown(): Promise<void> {
    if (this.shuttingDown) return;
    this.shuttingDown = true;
    // close() stops accepting at once, but its callback waits for every connection to end: don't wait for it here.
    const listenersClosed = Promise.all(this.servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
    for (const c of this.connections) c.shutdown();
    const drained = Promise.all([...this.connections].map((c) => c.closed));
    const timeoutMs = this.options.drainTimeoutMs ?? 10_000;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs)));
    if ((await Promise.race([drained, timedOut])) === 'timeout') {
      this.log.warn({ connections: this.connections.size }, 'connections did not drain in time; closing them');
      for (const c of this.connections) c.abort('shutdown drain timeout');
      await drained;
    }
    clearTimeout(timer);
    await listenersClosed;
    if (this.options.socketPath && existsSync(this.options.socketPath)) unlinkSync(this.options.socketPath);
  }

  private async listenUnix(path: string): Promise<void> {
    await removeStaleSocket(path);
    const server = this.createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.addresses.push(`unix:${path}`);
    this.log.info({ socket: path }, 'listening on unix socket');
  }

  private async listenTcp(host: string, port: number): Promise<void> {
    const server = this.createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const address = server.address() as net.AddressInfo;
    this.addresses.push(`tcp:${address.address}:${address.port}`);
    this.log.info({ host: address.address, port: address.port }, 'listening on TCP');
  }

  private createServer(): net.Server {
    const server = net.createServer({ noDelay: true }, (socket) => this.accept(socket));
    server.on('error', (err) => this.log.error({ err }, 'listener error'));
    this.servers.push(server);
    return server;
  }

  private accept(accepted: net.Socket): void {
    const max = this.options.connectionsMax ?? 1024;
    if (this.shuttingDown || this.connections.size >= max) {
      this.log.warn({ connections: this.connections.size }, 'refusing connection');
      accepted.destroy();
      return;
    }
    const socket = withReusedReadBuffer(accepted);
    const connection: NbdConnection = new NbdConnection({
      socket,
      registry: this.options.registry,
      logger: this.log.child({ conn: connectionId++ }),
      pool: this.pool,
      isShuttingDown: () => this.shuttingDown,
      handshakeTimeoutMs: this.options.handshakeTimeoutMs ?? 30_000,
      reusedReadBuffer: socket !== accepted,
    });
    if (socket !== accepted) readers.set(socket, connection);
    this.connections.add(connection);
    connection.closed.then(() => this.connections.delete(connection));
  }
}

let connectionId = 1;

/**
 * One read buffer for every connection: libuv fills it and calls back synchronously, and the connection copies
 * out whatever it does not consume before returning, so no two reads can meet in it. Large enough that one
 * read() takes everything a client's 1 MiB write left in the socket.
 */
const READ_BUFFER_BYTES = 1024 * 1024;
let sharedReadBuffer: Buffer | null = null;
const readers = new WeakMap<net.Socket, NbdConnection>();

/**
 * Node reads sockets in fresh 64 KiB buffers, one event each; a 1 MiB write then costs 16 wake-ups and 16
 * allocations, and lost 3× to nbdkit, which reads straight into its buffer. net.Socket can instead read into one
 * buffer we own (`onread`), but only a socket it creates: so the accepted handle is moved into such a socket.
 * Falls back to the accepted socket if Node's internals are not as expected.
 */
function withReusedReadBuffer(accepted: net.Socket): net.Socket {
  const internals = accepted as unknown as { _handle: unknown; server: { _connections: number } | null };
  const handle = internals._handle;
  if (handle === null || typeof handle !== 'object' || internals.server === null) return accepted;
  sharedReadBuffer ??= Buffer.allocUnsafeSlow(READ_BUFFER_BYTES);
  const buffer = sharedReadBuffer;
  internals._handle = null;
  // The accepted socket will never close now: give its place in the server's count back, so close() completes.
  internals.server._connections--;
  const socket: net.Socket = new net.Socket({
    handle,
    readable: true,
    writable: true,
    onread: {
      buffer,
      callback: (bytes: number, into: Uint8Array) => {
        readers.get(socket)?.onData(Buffer.from(into.buffer, into.byteOffset, bytes));
        return true;
      },
    },
  } as net.SocketConstructorOpts);
  // Data bypasses the stream, but the end of it does not: a stream that never flows never sees 'end', and a
  // socket whose peer hung up would then never close.
  socket.resume();
  return socket;
}
