import { existsSync, unlinkSync } from 'node:fs';
import net from 'node:net';

/**
 * A socket file left by a killed server makes listen() fail with EADDRINUSE; remove it, but never steal a path
 * that a live server still answers on.
 */
export async function removeStaleSocket(path: string): Promise<void> {
  if (!existsSync(path)) return;
  const live = await new Promise<boolean>((resolve) => {
    const probe = net.connect(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (live) throw new Error(`another server is already listening on ${path}`);
  unlinkSync(path);
}
