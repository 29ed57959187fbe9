/**
 * nbdcopy: 256 MiB images of random data (with an all-zero stretch, so the copy also sends write-zeroes) copied
 * into an export and back out, sha256 compared; then the same with `--connections 4` (multi-conn), overwriting
 * the first image so stale data would show.
 */
import { randomFillSync } from 'node:crypto';
import { closeSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTempDir, nbdcopy, nbdinfoJson, sha256File, startFileServer, useIntegrationCleanup, type NbdServer } from '../../helpers/index.js';

useIntegrationCleanup();

const MiB = 1024 * 1024;
const IMAGE_MIB = 256;

/** Writes an image of random data with zeroes in [zero_start_mib, zero_end_mib). */
function writeImage(path: string, zero_start_mib: number, zero_end_mib: number): void {
  const fd = openSync(path, 'w');
  try {
    const chunk = Buffer.alloc(MiB);
    for (let mib = 0; mib < IMAGE_MIB; mib++) {
      if (mib >= zero_start_mib && mib < zero_end_mib) chunk.fill(0);
      else randomFillSync(chunk);
      writeSync(fd, chunk);
    }
  } finally {
    closeSync(fd);
  }
}

let server: NbdServer;
let dir: string;

beforeAll(async () => {
  dir = makeTempDir('sky-it-nbdcopy-');
  server = await startFileServer({ dir, size: `${IMAGE_MIB}M` });
});

afterAll(async () => {
  await server?.stop();
});

describe('nbdcopy', () => {
  it('copies 256 MiB of random data into the export and back out unchanged', async () => {
    const source = join(dir, 'source-1.img');
    const copy = join(dir, 'copy-1.img');
    writeImage(source, 100, 132);
    const into = await nbdcopy(source, server.uri());
    expect(into.code, into.stderr).toBe(0);
    const out = await nbdcopy(server.uri(), copy);
    expect(out.code, out.stderr).toBe(0);
    expect(await sha256File(copy)).toBe(await sha256File(source));
  });

  it('copies with --connections 4 (multi-conn), overwriting the previous image', async () => {
    const info = await nbdinfoJson(server.uri());
    expect(info.exports[0]!.can_multi_conn, 'without multi-conn nbdcopy silently uses one connection').toBe(true);
    const source = join(dir, 'source-2.img');
    const copy = join(dir, 'copy-2.img');
    writeImage(source, 10, 40); // zeroes where image 1 had random data
    const into = await nbdcopy(source, server.uri(), ['--connections', '4', '--requests', '16']);
    expect(into.code, into.stderr).toBe(0);
    const out = await nbdcopy(server.uri(), copy, ['--connections', '4']);
    expect(out.code, out.stderr).toBe(0);
    expect(await sha256File(copy)).toBe(await sha256File(source));
  });

  it('the export keeps the copied image across a graceful restart', async () => {
    const stopped = await server.stop();
    expect(stopped).toMatchObject({ code: 0, forced: false });
    server = await server.restart();
    const copy = join(dir, 'copy-3.img');
    const out = await nbdcopy(server.uri(), copy);
    expect(out.code, out.stderr).toBe(0);
    expect(await sha256File(copy)).toBe(await sha256File(join(dir, 'source-2.img')));
  });
});
