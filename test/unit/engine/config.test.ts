import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { ConfigError, loadConfigFile, parseConfig } from '../../../src/engine/config.js';

describe('config', () => {
  it('fills defaults and resolves relative paths against the data dir', () => {
    const config = parseConfig({ dataDir: '/srv/sky', exports: [{ name: 'a', device: { type: 'file', path: 'a.img', size: '1G' } }] }, 't');
    expect(config.listen.socket).toBe('/srv/sky/sky.sock');
    expect(config.exports[0]!.device).toMatchObject({ type: 'file', path: '/srv/sky/a.img' });
    expect(config.log).toEqual({ format: 'pretty', level: 'info' });
    expect(config.exports[0]!.readOnly).toBe(false);
  });

  it('names the bad key and says why', () => {
    const bad = () => parseConfig({ exports: [{ name: 'a', device: { type: 'memory', size: '12Q' } }], listen: { tcp: 'nohost' } }, 'f.yaml');
    expect(bad).toThrow(ConfigError);
    expect(bad).toThrow(/exports\.0\.device\.size/);
    expect(bad).toThrow(/listen\.tcp: expected HOST:PORT/);
  });

  it('rejects unknown keys and duplicate export names', () => {
    expect(() => parseConfig({ exports: [{ name: 'a', device: { type: 'memory', size: 1024 } }], colour: 'blue' }, 't')).toThrow(/colour|Unrecognized/);
    const dup = { exports: [1, 2].map(() => ({ name: 'a', device: { type: 'memory', size: 1024 } })) };
    expect(() => parseConfig(dup, 't')).toThrow(/exports\.1\.name: duplicate export name "a"/);
  });

  it('reports unreadable and non-YAML files clearly', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'sky-config-'));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    expect(() => loadConfigFile(path.join(dir, 'missing.yaml'))).toThrow(/cannot read config file/);
    writeFileSync(path.join(dir, 'bad.yaml'), 'exports: [\n');
    expect(() => loadConfigFile(path.join(dir, 'bad.yaml'))).toThrow(/not valid YAML/);
  });
});
