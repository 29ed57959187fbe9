/**
 * Persistence of a file export across server restarts:
 *  - data written with qemu-io survives SIGTERM (graceful: exit 0 without needing SIGKILL) and a restart;
 *  - SIGTERM while a client is still connected with unflushed writes: the server drains, flushes and exits 0;
 *  - SIGKILL (a crash) right after an acknowledged FLUSH, or after a FUA write: that data is there after restart.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  haveLibnbdPython,
  libnbdPython,
  makeTempDir,
  qemuIo,
  serverKind,
  startFileServer,
  startLibnbdPython,
  useIntegrationCleanup,
  type LiveScript,
  type NbdServer,
} from '../../helpers/index.js';

useIntegrationCleanup();

const MiB = 1024 * 1024;

/** Writes argv[4] random bytes at argv[3] (mode argv[2]: plain | flush | fua), prints their sha256, then waits. */
const WRITER = `
import hashlib
h = nbd.NBD()
h.connect_uri(sys.argv[1])
mode, offset, length = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
data = os.urandom(length)
h.pwrite(data, offset, nbd.CMD_FLAG_FUA if mode == 'fua' else 0)
if mode == 'flush':
    h.flush()
print('written', hashlib.sha256(data).hexdigest())
sys.stdin.readline()
`;

/** Prints the sha256 of argv[3] bytes read at argv[2]. */
const READER = `
import hashlib
h = nbd.NBD()
h.connect_uri(sys.argv[1])
print(hashlib.sha256(h.pread(int(sys.argv[3]), int(sys.argv[2]))).hexdigest())
h.shutdown()
`;

let server: NbdServer;
const live: LiveScript[] = [];

beforeAll(async () => {
  expect(await haveLibnbdPython(), 'python3-libnbd (nbdsh) is needed').toBe(true);
  server = await startFileServer({ dir: makeTempDir('sky-it-persist-'), size: '64M' });
});

// A test that failed half-way may leave the server stopped: the next one starts it again.
beforeEach(async () => {
  if (server && !server.alive()) server = await server.restart();
});

afterAll(async () => {
  for (const script of live) await script.stop();
  await server?.stop();
});

async function qemuOk(commands: string[]): Promise<void> {
  const result = await qemuIo(server.uri(), commands);
  expect(result.code, result.stdout + result.stderr).toBe(0);
  expect(result.stdout).not.toContain('failed');
}

async function writeAndHold(mode: 'plain' | 'flush' | 'fua', offset: number, length: number): Promise<{ script: LiveScript; hash: string }> {
  const script = startLibnbdPython(WRITER, [server.uri(), mode, String(offset), String(length)]);
  live.push(script);
  const line = await script.waitForLine(/^written [0-9a-f]{64}$/);
  return { script, hash: line.split(' ')[1]! };
}

async function readHash(offset: number, length: number): Promise<string> {
  const result = await libnbdPython(READER, [server.uri(), String(offset), String(length)]);
  expect(result.code, result.stderr).toBe(0);
  return result.stdout.trim();
}

describe('persistence', () => {
  it('keeps qemu-io writes across SIGTERM and restart', async () => {
    await qemuOk(['write -P 0x5a 0 4M', 'write -P 0xa5 10M 1M', 'write -P 0x77 12345 6789']);
    const stopped = await server.stop({ signal: 'SIGTERM' });
    expect(stopped).toEqual({ code: 0, signal: null, forced: false });
    server = await server.restart();
    await qemuOk(['read -P 0x5a 0 12345', 'read -P 0x77 12345 6789', 'read -P 0x5a 19134 4175170', 'read -P 0xa5 10M 1M', 'read -P 0 4M 6M']);
  });

  it('SIGTERM with a client still connected and writes unflushed: drains, flushes, exits 0', async () => {
    const { script, hash } = await writeAndHold('plain', 20 * MiB, 3 * MiB + 512);
    const stopping = server.stop({ signal: 'SIGTERM', grace_ms: 20_000 });
    // nbdkit (validation runs only) waits for connected clients to leave; Sky's contract is to close them itself.
    if (serverKind() === 'nbdkit') setTimeout(() => script.send('bye'), 500);
    const stopped = await stopping;
    expect(stopped, server.logTail()).toEqual({ code: 0, signal: null, forced: false });
    await script.stop();
    server = await server.restart();
    expect(await readHash(20 * MiB, 3 * MiB + 512)).toBe(hash);
  });

  it('SIGKILL right after an acknowledged FLUSH keeps the flushed data', async () => {
    const { script, hash } = await writeAndHold('flush', 30 * MiB + 4096, 2 * MiB);
    const killed = await server.kill();
    expect(killed.signal).toBe('SIGKILL');
    await script.stop();
    server = await server.restart();
    expect(await readHash(30 * MiB + 4096, 2 * MiB)).toBe(hash);
  });

  it('SIGKILL right after an acknowledged FUA write keeps that write', async () => {
    const { script, hash } = await writeAndHold('fua', 40 * MiB + 1000, 1 * MiB);
    const killed = await server.kill();
    expect(killed.signal).toBe('SIGKILL');
    await script.stop();
    server = await server.restart();
    expect(await readHash(40 * MiB + 1000, 1 * MiB)).toBe(hash);
  });

  it('all earlier data is still intact after the crashes', async () => {
    await qemuOk(['read -P 0x5a 0 12345', 'read -P 0x77 12345 6789', 'read -P 0xa5 10M 1M']);
  });
});
