/**
 * Integration-test helpers: captive NBD servers (Sky or nbdkit), real clients, an nbdfuse + loop attachment, and a
 * raw NBD client for malformed-input tests. A test file calls useIntegrationCleanup() once; whatever a failing
 * test left behind (mounts, loop devices, nbdfuse, servers, temp dirs) is then torn down in afterAll, in that order.
 */
import { afterAll } from 'vitest';
import { detachAll } from './attach.js';
import { stopAllTracked } from './proc.js';
import { removeTempDirs } from './tmp.js';

export * from './attach.js';
export * from './clients.js';
export * from './nbd-raw.js';
export * from './proc.js';
export * from './server.js';
export * from './tmp.js';

export function useIntegrationCleanup(): void {
  afterAll(async () => {
    const errors: string[] = [];
    for (const step of [detachAll, () => stopAllTracked(), async () => removeTempDirs()]) {
      try {
        await step();
      } catch (error) {
        errors.push((error as Error).message);
      }
    }
    if (errors.length > 0) throw new Error(`integration cleanup:\n${errors.join('\n')}`);
  });
}
