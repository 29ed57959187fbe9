/**
 * Multi-conn semantics (NBD_FLAG_CAN_MULTI_CONN): a FLUSH on one connection covers writes that other connections
 * had completed, and makes them visible to every connection; a FUA write is visible to other connections when it
 * is acknowledged. Checked with libnbd's Python binding (what nbdsh runs), and across a SIGKILL of the server.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  haveLibnbdPython,
  libnbdPython,
  makeTempDir,
  startFileServer,
  startLibnbdPython,
  useIntegrationCleanup,
  type LiveScript,
  type NbdServer,
} from '../../helpers/index.js';

useIntegrationCleanup();

let server: NbdServer;
const live: LiveScript[] = [];

beforeAll(async () => {
  expect(await haveLibnbdPython(), 'python3-libnbd (nbdsh) is needed').toBe(true);
  server = await startFileServer({ dir: makeTempDir('sky-it-multiconn-'), size: '64M' });
});

beforeEach(async () => {
  if (server && !server.alive()) server = await server.restart();
});

afterAll(async () => {
  for (const script of live) await script.stop();
  await server?.stop();
});

const CONNECT = `
import json, hashlib
def connect():
    h = nbd.NBD()
    h.connect_uri(sys.argv[1])
    return h
`;

describe('multi-conn', () => {
  it('write on A, FLUSH on B, read on a third connection C', async () => {
    const script = `${CONNECT}
a, b = connect(), connect()
out = {'multi_conn': [a.can_multi_conn(), b.can_multi_conn()]}
data = os.urandom(1 << 20)
a.pwrite(data, 3 << 20)
a.pwrite(data[:777], 5 << 20 | 123)
b.flush()
c = connect()
out['c_sees_a'] = c.pread(1 << 20, 3 << 20) == data
out['c_sees_unaligned'] = c.pread(777, 5 << 20 | 123) == data[:777]
out['b_sees_a'] = b.pread(1 << 20, 3 << 20) == data
for h in (a, b, c):
    h.shutdown()
print(json.dumps(out))
`;
    const result = await libnbdPython(script, [server.uri()]);
    expect(result.code, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual({ multi_conn: [true, true], c_sees_a: true, c_sees_unaligned: true, b_sees_a: true });
  });

  it('a FUA write on A is visible to B when acknowledged', async () => {
    const script = `${CONNECT}
a, b = connect(), connect()
data = os.urandom(256 << 10)
a.pwrite(data, 9 << 20, nbd.CMD_FLAG_FUA)
print(json.dumps({'b_sees_a': b.pread(len(data), 9 << 20) == data}))
`;
    const result = await libnbdPython(script, [server.uri()]);
    expect(result.code, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual({ b_sees_a: true });
  });

  it('four connections write disjoint regions concurrently; one FLUSH; a new connection reads them all', async () => {
    const script = `${CONNECT}
hs = [connect() for _ in range(4)]
datas = [os.urandom(2 << 20) for _ in hs]
cookies = []
for i, (h, d) in enumerate(zip(hs, datas)):
    for part in range(8):
        chunk = d[part << 18:(part + 1) << 18]
        cookies.append((h, h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(chunk)), (16 << 20) + (i << 21) + (part << 18))))
for h, cookie in cookies:
    while not h.aio_command_completed(cookie):
        h.poll(-1)
hs[2].flush()
r = connect()
ok = [r.pread(2 << 20, (16 << 20) + (i << 21)) == d for i, d in enumerate(datas)]
print(json.dumps({'ok': ok}))
`;
    const result = await libnbdPython(script, [server.uri()]);
    expect(result.code, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual({ ok: [true, true, true, true] });
  });

  it("FLUSH on B makes A's writes durable: they survive a SIGKILL of the server", async () => {
    const script = `${CONNECT}
a, b = connect(), connect()
data = os.urandom(3 << 20)
a.pwrite(data, 30 << 20)
b.flush()
print('flushed', hashlib.sha256(data).hexdigest())
sys.stdin.readline()
`;
    const writer = startLibnbdPython(script, [server.uri()]);
    live.push(writer);
    const line = await writer.waitForLine(/^flushed [0-9a-f]{64}$/);
    const killed = await server.kill();
    expect(killed.signal).toBe('SIGKILL');
    await writer.stop();
    server = await server.restart();
    const reader = `${CONNECT}
print(hashlib.sha256(connect().pread(3 << 20, 30 << 20)).hexdigest())
`;
    const result = await libnbdPython(reader, [server.uri()]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout.trim()).toBe(line.split(' ')[1]);
  });
});
