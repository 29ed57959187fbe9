/**
 * qemu-io (QEMU's block layer as the NBD client) against one 64 MiB file export: pattern write/read/verify,
 * unaligned I/O, FUA, write-zeroes (with and without may-unmap), discard, flush, and out-of-range requests.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { qemuIo, startFileServer, useIntegrationCleanup, type NbdServer } from '../../helpers/index.js';

useIntegrationCleanup();

const MiB = 1024 * 1024;
let server: NbdServer;

beforeAll(async () => {
  server = await startFileServer({ size: '64M' });
});

afterAll(async () => {
  await server?.stop();
});

async function qemuOk(commands: string[]): Promise<string> {
  const result = await qemuIo(server.uri(), commands);
  expect(result.stderr, result.stdout).toBe('');
  expect(result.code, result.stdout + result.stderr).toBe(0);
  expect(result.stdout).not.toContain('failed');
  return result.stdout;
}

describe('qemu-io', () => {
  it('writes a pattern and reads it back verified', async () => {
    const out = await qemuOk(['write -P 0xab 0 1M', 'read -P 0xab 0 1M']);
    expect(out).toContain(`wrote ${MiB}/${MiB} bytes at offset 0`);
    expect(out).toContain(`read ${MiB}/${MiB} bytes at offset 0`);
    // Verified again by a separate process (a new NBD connection).
    expect(await qemuOk(['read -P 0xab 0 1M'])).toContain(`read ${MiB}/${MiB} bytes at offset 0`);
  });

  it('detects a wrong pattern (the verification itself works)', async () => {
    const result = await qemuIo(server.uri(), ['read -P 0xac 0 4k']);
    expect(result.stdout).toContain('Pattern verification failed at offset 0');
    expect(result.code).not.toBe(0);
  });

  it('handles unaligned writes without disturbing neighbours', async () => {
    await qemuOk(['write -P 0x11 2M 64k']);
    const out = await qemuOk(['write -P 0xcd 2101249 8191', 'read -P 0xcd 2101249 8191']);
    expect(out).toContain('wrote 8191/8191 bytes at offset 2101249');
    await qemuOk(['read -P 0x11 2M 4097', 'read -P 0x11 2109440 53248']);
  });

  it('writes with FUA', async () => {
    const out = await qemuOk(['write -f -P 0x33 5M 64k', 'read -P 0x33 5M 64k']);
    expect(out).toContain('wrote 65536/65536 bytes at offset 5242880');
  });

  it('write-zeroes zeroes data (write -z)', async () => {
    await qemuOk(['write -P 0x44 8M 1M']);
    const out = await qemuOk(['write -z 8M 1M', 'read -P 0 8M 1M']);
    expect(out).toContain(`wrote ${MiB}/${MiB} bytes at offset ${8 * MiB}`);
    await qemuOk(['read -P 0 8M 1M']);
  });

  it('write-zeroes with may-unmap zeroes data (write -z -u)', async () => {
    await qemuOk(['write -P 0x55 10M 1M']);
    const out = await qemuOk(['write -z -u 10M 1M', 'read -P 0 10M 1M']);
    expect(out).toContain(`wrote ${MiB}/${MiB} bytes at offset ${10 * MiB}`);
  });

  it('write-zeroes on an unaligned range keeps the neighbours', async () => {
    await qemuOk(['write -P 0x66 12M 64k']);
    await qemuOk(['write -z 12587009 1000', 'read -P 0 12587009 1000', 'read -P 0x66 12M 4097', 'read -P 0x66 12588009 60439']);
  });

  it('discards', async () => {
    await qemuOk(['write -P 0x77 16M 1M']);
    const out = await qemuOk(['discard 16M 1M']);
    expect(out).toContain(`discard ${MiB}/${MiB} bytes at offset ${16 * MiB}`);
    // After a trim the contents are unspecified, but the export must keep working around it.
    await qemuOk(['write -P 0x78 16M 4k', 'read -P 0x78 16M 4k']);
  });

  it('flushes', async () => {
    const out = await qemuOk(['write -P 0x88 20M 256k', 'flush', 'read -P 0x88 20M 256k']);
    expect(out).toContain('wrote 262144/262144 bytes at offset 20971520');
  });

  it('fails reads and writes beyond the end of the export', async () => {
    const readAtEnd = await qemuIo(server.uri(), ['read 64M 4k']);
    expect(readAtEnd.code).not.toBe(0);
    expect(readAtEnd.stdout + readAtEnd.stderr).toMatch(/read failed: (Input\/output error|Invalid argument)/);

    const writeAcrossEnd = await qemuIo(server.uri(), ['write -P 0x99 63M 2M']);
    expect(writeAcrossEnd.code).not.toBe(0);
    expect(writeAcrossEnd.stdout + writeAcrossEnd.stderr).toMatch(/write failed: (Input\/output error|Invalid argument|No space left on device)/);

    const zeroAcrossEnd = await qemuIo(server.uri(), ['write -z 63M 2M']);
    expect(zeroAcrossEnd.code).not.toBe(0);

    // The last bytes of the export are reachable, and the failed requests changed nothing.
    await qemuOk(['write -P 0x9a 67104768 4096', 'read -P 0x9a 67104768 4096']);
    expect(server.alive()).toBe(true);
  });
});
