import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine, parseConfig } from '../../../src/engine/index.js';
import { HintClient } from '../../../src/hints/index.js';

const TOKEN_A = 'token-for-volume-a-0123456789';
const TOKEN_B = 'token-for-volume-b-0123456789';

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('engine: hints reach only the volume their token names', () => {
  let dir: string;
  let engine: Engine;

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'sky-engine-hints-'));
    const config = parseConfig(
      {
        dataDir: dir,
        listen: { socket: 'nbd.sock' },
        hints: { socket: 'hints.sock', tcp: '127.0.0.1:0' },
        log: { level: 'silent' },
        exports: [
          { name: 'a', device: { type: 'memory', size: '64M' }, layers: [{ type: 'classify' }], hintToken: TOKEN_A },
          { name: 'b', device: { type: 'memory', size: '64M' }, layers: [{ type: 'classify' }], hintToken: TOKEN_B },
        ],
      },
      'test',
    );
    engine = new Engine(config, pino({ level: 'silent' }));
    await engine.start();
  });

  afterAll(async () => {
    await engine?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const extents = (fileId: string) => ({ type: 'FileExtents', fileId, path: `/${fileId}`, size: 8192, extents: [{ volumeOffset: 1 << 20, length: 8192 }] });

  it('applies a hint sent with the volume\'s own token', async () => {
    const client = new HintClient({ engine: `unix:${path.join(dir, 'hints.sock')}`, volume: 'a', token: TOKEN_A });
    try {
      client.send(extents('f1'));
      await until(() => engine.semantics.get('a')!.stats().messages.FileExtents === 1);
      expect(engine.semantics.get('a')!.file('f1')).toMatchObject({ size: 8192 });
      expect(engine.semantics.get('b')!.stats().messages.FileExtents).toBe(0);
    } finally {
      client.close();
    }
  });

  it('refuses another volume\'s token and a wrong one, over TCP as a guest agent would connect', async () => {
    const warnings: string[] = [];
    const tcp = engine.hintAddresses.find((a) => a.startsWith('tcp:'))!.slice(4);
    const impostors = [
      new HintClient({ engine: tcp, volume: 'a', token: TOKEN_B, onWarning: (w) => warnings.push(w) }),
      new HintClient({ engine: tcp, volume: 'b', token: 'not-the-token-at-all-xxxx', onWarning: (w) => warnings.push(w) }),
    ];
    try {
      impostors.forEach((c, i) => c.send(extents(`evil${i}`)));
      await new Promise((r) => setTimeout(r, 500));
      expect(impostors.map((c) => c.connected)).toEqual([false, false]);
      expect(engine.semantics.get('a')!.file('evil0')).toBeUndefined();
      expect(engine.semantics.get('b')!.file('evil1')).toBeUndefined();
    } finally {
      impostors.forEach((c) => c.close());
    }
  });
});
