/**
 * nbdinfo (libnbd) against Sky: capability flags and block sizes (--json), the allocation map after writes,
 * trims and write-zeroes (--map), and a config-defined server with two exports, one read-only (--list), whose
 * writes must fail with EPERM from the server (libnbd's client-side checks switched off).
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  haveLibnbdPython,
  libnbdPython,
  makeTempDir,
  nbdinfoJson,
  nbdinfoMap,
  qemuIo,
  startFileServer,
  startServer,
  useIntegrationCleanup,
  type MapEntry,
  type NbdServer,
} from '../../helpers/index.js';

useIntegrationCleanup();

const MiB = 1024 * 1024;
const EXTENT_HOLE = 1;
const EXTENT_ZERO = 2;

function isPowerOfTwo(value: number): boolean {
  return Number.isInteger(value) && value > 0 && (value & (value - 1)) === 0;
}

async function qemuOk(uri: string, commands: string[]): Promise<void> {
  const result = await qemuIo(uri, commands);
  expect(result.code, result.stdout + result.stderr).toBe(0);
  expect(result.stdout).not.toContain('failed');
}

function overlapping(map: MapEntry[], start: number, end: number): MapEntry[] {
  return map.filter((entry) => entry.offset < end && entry.offset + entry.length > start);
}

describe('nbdinfo on one read-write file export', () => {
  let server: NbdServer;

  beforeAll(async () => {
    server = await startFileServer({ name: 'disk', size: '64M' });
  });

  afterAll(async () => {
    await server?.stop();
  });

  it('reports the capability flags and block sizes (--json)', async () => {
    const info = await nbdinfoJson(server.uri());
    expect(info.protocol).toBe('newstyle-fixed');
    expect(info.TLS).toBe(false);
    expect(info.structured).toBe(true);
    expect(info.exports).toHaveLength(1);
    const only = info.exports[0]!;
    expect(only['export-name']).toBe('disk');
    expect(only['export-size']).toBe(64 * MiB);
    expect(only.contexts).toContain('base:allocation');
    expect({
      is_read_only: only.is_read_only,
      is_rotational: only.is_rotational,
      can_flush: only.can_flush,
      can_fua: only.can_fua,
      can_trim: only.can_trim,
      can_zero: only.can_zero,
      can_multi_conn: only.can_multi_conn,
    }).toEqual({
      is_read_only: false,
      is_rotational: false,
      can_flush: true,
      can_fua: true,
      can_trim: true,
      can_zero: true,
      can_multi_conn: true,
    });
    // Optional features: reported as booleans either way (values are in the test log for the record).
    expect(typeof only.can_fast_zero).toBe('boolean');
    expect(typeof only.can_cache).toBe('boolean');
    expect(typeof only.can_df).toBe('boolean');
    console.log(`optional features: can_fast_zero=${only.can_fast_zero} can_cache=${only.can_cache} can_df=${only.can_df}`);

    const minimum = only.block_size_minimum;
    const preferred = only.block_size_preferred;
    const maximum = only.block_size_maximum;
    expect(minimum, 'server must advertise NBD_INFO_BLOCK_SIZE').toBeTypeOf('number');
    expect(isPowerOfTwo(minimum!)).toBe(true);
    expect(minimum!).toBeLessThanOrEqual(64 * 1024);
    expect(isPowerOfTwo(preferred!)).toBe(true);
    expect(preferred!).toBeGreaterThanOrEqual(Math.max(minimum!, 512));
    expect(maximum!).toBeGreaterThanOrEqual(Math.max(preferred!, MiB));
    expect(maximum === 0xffffffff || maximum! % minimum! === 0).toBe(true);
  });

  it('maps written data as data and trimmed / zeroed / untouched ranges as zero (--map)', async () => {
    const uri = server.uri();
    const fresh = await nbdinfoMap(uri);
    expect(fresh.reduce((sum, entry) => sum + entry.length, 0)).toBe(64 * MiB);
    expect(fresh.every((entry) => entry.type & EXTENT_ZERO), JSON.stringify(fresh)).toBe(true);

    const data = [
      { start: 0, end: MiB, pattern: '0xa1' },
      { start: 8 * MiB, end: 10 * MiB, pattern: '0xa2' },
      { start: 40 * MiB, end: 40 * MiB + 4096, pattern: '0xa3' },
    ];
    const trimmed = { start: 16 * MiB, end: 17 * MiB };
    const zeroed = { start: 20 * MiB, end: 21 * MiB };
    const zeroedMayUnmap = { start: 24 * MiB, end: 25 * MiB };
    await qemuOk(uri, [
      ...data.map((range) => `write -P ${range.pattern} ${range.start} ${range.end - range.start}`),
      `write -P 0xb1 ${trimmed.start} ${MiB}`,
      `write -P 0xb2 ${zeroed.start} ${MiB}`,
      `write -P 0xb3 ${zeroedMayUnmap.start} ${MiB}`,
    ]);
    await qemuOk(uri, [`discard ${trimmed.start} ${MiB}`, `write -z ${zeroed.start} ${MiB}`, `write -z -u ${zeroedMayUnmap.start} ${MiB}`, 'flush']);

    const map = await nbdinfoMap(uri);
    // Contiguous cover of the whole export.
    let next = 0;
    for (const entry of map) {
      expect(entry.offset).toBe(next);
      expect(entry.length).toBeGreaterThan(0);
      next += entry.length;
    }
    expect(next).toBe(64 * MiB);

    for (const range of data) {
      for (const entry of overlapping(map, range.start, range.end)) {
        expect(entry.type & (EXTENT_ZERO | EXTENT_HOLE), `written ${range.pattern} at ${range.start}: ${JSON.stringify(entry)}`).toBe(0);
      }
    }
    for (const range of [trimmed, zeroed, zeroedMayUnmap, { start: MiB, end: 8 * MiB }, { start: 48 * MiB, end: 64 * MiB }]) {
      for (const entry of overlapping(map, range.start, range.end)) {
        expect(entry.type & EXTENT_ZERO, `expected zero at ${range.start}..${range.end}: ${JSON.stringify(entry)}`).toBe(EXTENT_ZERO);
      }
    }
    // Whatever is reported as zero really reads as zero, and the data is still there.
    const zeroReads = map.filter((entry) => entry.type & EXTENT_ZERO).map((entry) => `read -P 0 ${entry.offset} ${entry.length}`);
    await qemuOk(uri, [...zeroReads, ...data.map((range) => `read -P ${range.pattern} ${range.start} ${range.end - range.start}`)]);
  });
});

describe('nbdinfo on a config with two exports, one read-only', () => {
  let server: NbdServer;

  beforeAll(async () => {
    const dir = makeTempDir('sky-it-');
    server = await startServer({
      dir,
      useConfig: true,
      exports: [
        { name: 'a', device: { type: 'file', path: join(dir, 'a.img'), size: '64M' } },
        { name: 'b', readOnly: true, device: { type: 'memory', size: '16M' } },
      ],
    });
  });

  afterAll(async () => {
    await server?.stop();
  });

  it('lists every export with its own size and read-only flag (--list)', async () => {
    const info = await nbdinfoJson(server.uri('a'), ['--list']);
    const byName = new Map(info.exports.map((entry) => [entry['export-name'], entry]));
    expect([...byName.keys()].sort()).toEqual(['a', 'b']);
    expect(byName.get('a')!['export-size']).toBe(64 * MiB);
    expect(byName.get('a')!.is_read_only).toBe(false);
    expect(byName.get('b')!['export-size']).toBe(16 * MiB);
    expect(byName.get('b')!.is_read_only).toBe(true);
    expect(byName.get('b')!.can_trim).toBe(false);
    expect(byName.get('b')!.can_zero).toBe(false);
  });

  it('reports read-only on the read-only export (--json)', async () => {
    const info = await nbdinfoJson(server.uri('b'));
    expect(info.exports[0]!['export-name']).toBe('b');
    expect(info.exports[0]!.is_read_only).toBe(true);
  });

  it('refuses writes, trims and write-zeroes to the read-only export with EPERM', async () => {
    expect(await haveLibnbdPython(), 'python3-libnbd (nbdsh) is needed').toBe(true);
    const script = `
import json
h = nbd.NBD()
h.set_strict_mode(0)  # no client-side checks: the server must refuse
h.connect_uri(sys.argv[1])
out = {'read_only': h.is_read_only()}
for name, call in [('write', lambda: h.pwrite(b'x' * 4096, 0)),
                   ('trim', lambda: h.trim(4096, 0)),
                   ('zero', lambda: h.zero(4096, 0))]:
    try:
        call()
        out[name] = 0
    except nbd.Error as e:
        out[name] = e.errnum
out['read_zero'] = h.pread(4096, 0) == bytes(4096)
h.shutdown()
print(json.dumps(out))
`;
    const result = await libnbdPython(script, [server.uri('b')]);
    expect(result.code, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual({ read_only: true, write: 1, trim: 1, zero: 1, read_zero: true });
  });

  it('serves the read-write export next to it', async () => {
    await qemuOk(server.uri('a'), ['write -P 0x5c 1M 64k', 'read -P 0x5c 1M 64k']);
    const readOnly = await qemuIo(server.uri('b'), ['read -P 0 0 64k'], { readOnly: true });
    expect(readOnly.code, readOnly.stdout + readOnly.stderr).toBe(0);
    // qemu refuses to open a read-only export for writing.
    const readWrite = await qemuIo(server.uri('b'), ['write -P 1 0 4k']);
    expect(readWrite.code).not.toBe(0);
  });
});
