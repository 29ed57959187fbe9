import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

/** A server process started for one test, on a unix socket in its own temp dir. */
export interface CaptiveServer {
  socket: string;
  child: ChildProcess;
  stop(): Promise<void>;
}

/** `args` gets the unix socket path to listen on; with `tcpPort`, readiness is checked on 127.0.0.1:tcpPort. */
export async function startServer(command: string, args: (socket: string) => string[], tcpPort?: number): Promise<CaptiveServer> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sky-nbd-'));
  const socket = path.join(dir, 'nbd.sock');
  const child = spawn(command, args(socket), { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  // nbdkit waits on SIGTERM for clients still connected; a test that left one must not hang its cleanup.
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    const killer = setTimeout(() => child.kill('SIGKILL'), 2000);
    await exited;
    clearTimeout(killer);
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitForListener(tcpPort === undefined ? { path: socket } : { host: '127.0.0.1', port: tcpPort }, child, () => stderr);
  } catch (error) {
    await stop();
    throw error;
  }
  return { socket, child, stop };
}

type Address = { path: string } | { host: string; port: number };

async function waitForListener(address: Address, child: ChildProcess, stderr: () => string): Promise<void> {
  for (let attempt = 0; attempt < 200; attempt++) {
    if (child.exitCode !== null) throw new Error(`server exited early: ${stderr()}`);
    if (await canConnect(address)) return;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error(`server did not listen on ${JSON.stringify(address)}: ${stderr()}`);
}

/** The probe connection is dropped at once; nbdkit logs nothing for a client that leaves before the handshake. */
function canConnect(address: Address): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = net.createConnection(address);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
}

export function nbdkit(...args: string[]): Promise<CaptiveServer> {
  return startServer('nbdkit', (socket) => ['-f', '--exit-with-parent', '-U', socket, ...args]);
}

/** nbdkit on TCP, 127.0.0.1 only, on a port picked from the pid so parallel runs rarely collide. */
export function nbdkitTcp(...args: string[]): Promise<CaptiveServer & { port: number }> {
  const port = 20000 + (process.pid % 20000);
  return startServer('nbdkit', () => ['-f', '--exit-with-parent', '-i', '127.0.0.1', '-p', String(port), ...args], port)
    .then((server) => ({ ...server, port }));
}

export function pattern(length: number, seed: number): Buffer {
  const buffer = Buffer.alloc(length);
  for (let i = 0; i < length; i++) buffer[i] = (i * 37 + seed * 11) & 0xff;
  return buffer;
}
