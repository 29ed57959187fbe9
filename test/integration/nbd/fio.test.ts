/**
 * fio with its nbd ioengine (libnbd): random writes with crc32c verification, a separate read-only verify pass
 * (new process, new connections), two concurrent jobs on two connections, and a negative control showing that
 * the verification catches a corrupted block.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fioNbd, qemuIo, startFileServer, useIntegrationCleanup, type FioResult, type NbdServer } from '../../helpers/index.js';

useIntegrationCleanup();

const MiB = 1024 * 1024;
let server: NbdServer;

beforeAll(async () => {
  server = await startFileServer({ size: '128M' });
});

afterAll(async () => {
  await server?.stop();
});

function expectClean(run: FioResult, jobs: number): void {
  const context = `fio exit ${run.result.code}\n${run.result.stderr}\n${run.result.stdout.slice(0, 2000)}`;
  expect(run.result.code, context).toBe(0);
  expect(run.jobs, context).toHaveLength(jobs);
  for (const job of run.jobs) expect(job.error, context).toBe(0);
}

const RANDOM_WRITE = ['--rw=randwrite', '--bs=4k', '--iodepth=16', '--verify=crc32c', '--verify_fatal=1', '--randseed=1234'];

describe('fio nbd engine', () => {
  it('random writes verify with crc32c', async () => {
    const run = await fioNbd(server.uri(), ['--name=randwrite', ...RANDOM_WRITE, '--size=64M']);
    expectClean(run, 1);
    expect(run.jobs[0]!.write.io_bytes).toBe(64 * MiB);
    expect(run.jobs[0]!.read.io_bytes).toBe(64 * MiB); // the verify phase read everything back
  });

  it('a separate read pass verifies what the first run wrote', async () => {
    const run = await fioNbd(server.uri(), ['--name=randwrite', ...RANDOM_WRITE, '--size=64M', '--verify_only=1']);
    expectClean(run, 1);
    expect(run.jobs[0]!.read.io_bytes).toBe(64 * MiB);
  });

  it('two concurrent jobs (two connections) with mixed block sizes verify', async () => {
    const run = await fioNbd(server.uri(), [
      '--name=pair',
      '--numjobs=2',
      '--offset=64M',
      '--offset_increment=32M',
      '--size=32M',
      '--rw=randwrite',
      '--bssplit=4k/50:64k/30:256k/20',
      '--iodepth=8',
      '--verify=crc32c',
      '--verify_fatal=1',
      '--randseed=99',
    ]);
    expectClean(run, 2);
    for (const job of run.jobs) expect(job.write.io_bytes).toBe(32 * MiB);
  });

  it('verification catches a corrupted block (negative control)', async () => {
    const corrupt = await qemuIo(server.uri(), ['write -P 0x11 8M 4k']);
    expect(corrupt.code, corrupt.stderr).toBe(0);
    const run = await fioNbd(server.uri(), ['--name=randwrite', ...RANDOM_WRITE, '--size=64M', '--verify_only=1']);
    expect(run.result.code).not.toBe(0);
    expect(run.result.stderr + run.result.stdout).toMatch(/verify: bad magic header|crc32c: verify failed/);
  });
});
