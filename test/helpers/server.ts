/**
 * A captive NBD server for integration tests: Sky (`node bin/sky serve`) or, to validate the tests themselves,
 * nbdkit. SKY_TEST_SERVER=nbdkit|sky picks one (default sky).
 *
 * A server is described by its exports (name, device, read-only). Sky gets them as command-line flags (one export)
 * or as a YAML config (several, or when asked). nbdkit gets the file or memory plugin behind the exportname and
 * blocksize-policy filters (one export), or a generated sh plugin that routes by export name (several exports,
 * since nbdkit has no per-export read-only switch otherwise).
 *
 * Readiness is polled: the unix socket accepts and `nbdinfo` succeeds on the first export. Stop is by pid:
 * SIGTERM, then SIGKILL after a grace period.
 */
import { closeSync, existsSync, openSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync, chmodSync } from 'node:fs';
import { connect } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify as yamlStringify } from 'yaml';
import { isRunning, memoryOf, run, startTracked, stopTracked, waitUntil, type Tracked } from './proc.js';
import { makeTempDir } from './tmp.js';

export type ServerKind = 'sky' | 'nbdkit';

export type DeviceSpec = { type: 'file'; path: string; size: string } | { type: 'memory'; size: string };

export interface ExportSpec {
  name: string;
  device: DeviceSpec;
  readOnly?: boolean;
}

export interface ServerSpec {
  exports: ExportSpec[];
  /** Sky only: pass the exports through `--config FILE` even when there is one. */
  useConfig?: boolean;
  /** Directory for the socket, config and log (a fresh temp dir when omitted). */
  dir?: string;
}

export interface StopResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** SIGKILL was needed after the grace period. */
  forced: boolean;
}

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

export function serverKind(): ServerKind {
  const value = process.env.SKY_TEST_SERVER ?? 'sky';
  if (value !== 'sky' && value !== 'nbdkit') throw new Error(`SKY_TEST_SERVER must be sky or nbdkit, not ${value}`);
  return value;
}

/** Parses 64M / 2G / 4096 / 512K into bytes. */
export function parseSize(size: string): number {
  const match = /^(\d+)([KMGT]?)i?B?$/i.exec(size.trim());
  if (!match) throw new Error(`bad size ${size}`);
  const unit = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 }[match[2]!.toUpperCase() as '' | 'K' | 'M' | 'G' | 'T'];
  return Number(match[1]) * unit;
}

export function nbdUri(socket: string, name: string): string {
  return `nbd+unix:///${encodeURIComponent(name)}?socket=${socket}`;
}

export class NbdServer {
  private constructor(
    readonly kind: ServerKind,
    readonly spec: ServerSpec,
    readonly dir: string,
    readonly socket: string,
    readonly logPath: string,
    private readonly process_: Tracked,
  ) {}

  get pid(): number {
    return this.process_.pid;
  }

  get exited(): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    return this.process_.exited;
  }

  /** URI of an export (the first one when no name is given). */
  uri(name = this.spec.exports[0]!.name): string {
    return nbdUri(this.socket, name);
  }

  exportSpec(name: string): ExportSpec {
    const found = this.spec.exports.find((entry) => entry.name === name);
    if (!found) throw new Error(`no export ${name}`);
    return found;
  }

  alive(): boolean {
    return isRunning(this.process_);
  }

  memory(): { rss_bytes: number; rss_peak_bytes: number } | null {
    return memoryOf(this.pid);
  }

  logTail(bytes = 4000): string {
    if (!existsSync(this.logPath)) return '';
    const text = readFileSync(this.logPath, 'utf8');
    return text.slice(-bytes);
  }

  /** Graceful stop (SIGTERM by default), SIGKILL after grace_ms. Safe to call twice. */
  stop(options: { signal?: NodeJS.Signals; grace_ms?: number } = {}): Promise<StopResult> {
    return stopTracked(this.process_, options);
  }

  /** SIGKILL at once: a crash. */
  kill(): Promise<StopResult> {
    return stopTracked(this.process_, { signal: 'SIGKILL', grace_ms: 5_000 });
  }

  /** Starts the same server again (same exports, socket and backing files); this one must be stopped first. */
  async restart(): Promise<NbdServer> {
    if (this.alive()) throw new Error('restart: the server is still running');
    return NbdServer.start({ ...this.spec, dir: this.dir });
  }

  static async start(spec: ServerSpec, kind: ServerKind = serverKind()): Promise<NbdServer> {
    if (spec.exports.length === 0) throw new Error('a server needs at least one export');
    const dir = spec.dir ?? makeTempDir(`sky-${kind}-`);
    const socket = join(dir, 'nbd.sock');
    if (existsSync(socket)) rmSync(socket);
    const logPath = join(dir, `server-${Date.now()}.log`);
    const command = kind === 'sky' ? skyCommand(spec, dir, socket) : nbdkitCommand(spec, dir, socket);
    const log = openSync(logPath, 'a');
    let child: Tracked;
    try {
      // SKY_DATA_DIR keeps Sky's default data directory (for anything not given explicitly) inside the temp dir.
      const env = { ...process.env, SKY_DATA_DIR: dir };
      child = startTracked(command.command, command.args, { cwd: dir, env, stdio: ['ignore', log, log] }, `${kind} server`);
    } finally {
      closeSync(log);
    }
    const server = new NbdServer(kind, spec, dir, socket, logPath, child);
    try {
      await server.waitReady();
    } catch (error) {
      await server.stop({ grace_ms: 2_000 });
      throw new Error(`${(error as Error).message}\ncommand: ${command.command} ${command.args.join(' ')}\nlog:\n${server.logTail()}`);
    }
    return server;
  }

  private async waitReady(timeout_ms = 30_000): Promise<void> {
    const first = this.spec.exports[0]!.name;
    await waitUntil(
      `${this.kind} to serve ${this.uri(first)}`,
      async () => {
        if (!this.alive()) throw new Error(`${this.kind} server exited before it was ready: ${JSON.stringify(await this.exited)}`);
        if (!(await socketAccepts(this.socket))) return false;
        const info = await run('nbdinfo', ['--size', this.uri(first)], { timeout_ms: 10_000 });
        return info.code === 0;
      },
      timeout_ms,
      100,
    );
  }
}

export function startServer(spec: ServerSpec, kind?: ServerKind): Promise<NbdServer> {
  return NbdServer.start(spec, kind);
}

export function socketAccepts(path: string): Promise<boolean> {
  return new Promise((resolvePromise) => {
    if (!existsSync(path)) {
      resolvePromise(false);
      return;
    }
    const socket = connect(path);
    socket.once('connect', () => {
      socket.destroy();
      resolvePromise(true);
    });
    socket.once('error', () => resolvePromise(false));
  });
}

interface Command {
  command: string;
  args: string[];
}

function skyCommand(spec: ServerSpec, dir: string, socket: string): Command {
  const bin = process.env.SKY_BIN ?? join(REPO_ROOT, 'bin', 'sky');
  const common = ['--log-format', 'json'];
  if (spec.useConfig || spec.exports.length > 1) {
    const configPath = join(dir, 'sky.yaml');
    const config = {
      exports: spec.exports.map((entry) => ({
        name: entry.name,
        ...(entry.readOnly ? { readOnly: true } : {}),
        device: entry.device,
      })),
      listen: { socket },
    };
    writeFileSync(configPath, yamlStringify(config));
    return { command: process.execPath, args: [bin, 'serve', '--config', configPath, ...common] };
  }
  const only = spec.exports[0]!;
  const device = only.device.type === 'file' ? ['--file', only.device.path] : ['--memory'];
  return {
    command: process.execPath,
    args: [bin, 'serve', ...device, '--size', only.device.size, '--socket', socket, '--export', only.name, ...(only.readOnly ? ['--read-only'] : []), ...common],
  };
}

/** What nbdkit advertises so that its answers resemble what Sky is expected to give. */
export const NBDKIT_BLOCK_SIZE = { minimum: 1, preferred: 4096, maximum: 32 * 1024 * 1024 };

function nbdkitCommand(spec: ServerSpec, dir: string, socket: string): Command {
  const base = ['--exit-with-parent', '-f', '-U', socket];
  const policy = [
    `blocksize-minimum=${NBDKIT_BLOCK_SIZE.minimum}`,
    `blocksize-preferred=${NBDKIT_BLOCK_SIZE.preferred}`,
    `blocksize-maximum=${NBDKIT_BLOCK_SIZE.maximum}`,
    'blocksize-error-policy=error',
  ];
  if (spec.exports.length > 1) {
    const script = writeRoutingScript(spec, dir);
    return { command: 'nbdkit', args: [...base, '--filter=blocksize-policy', 'sh', script, ...policy] };
  }
  const only = spec.exports[0]!;
  const plugin = only.device.type === 'file' ? ['file', ensureFile(only.device.path, only.device.size)] : ['memory', only.device.size];
  const names = [`exportname=${only.name}`, 'exportname-strict=true', 'exportname-list=explicit', `default-export=${only.name}`];
  return {
    command: 'nbdkit',
    args: [...base, ...(only.readOnly ? ['-r'] : []), '--filter=exportname', '--filter=blocksize-policy', ...plugin, ...names, ...policy],
  };
}

/** Creates a sparse file of `size` if it does not exist (an existing file keeps its data and size). */
function ensureFile(path: string, size: string): string {
  if (!existsSync(path)) {
    closeSync(openSync(path, 'w'));
    truncateSync(path, parseSize(size));
  } else if (statSync(path).size < parseSize(size)) {
    truncateSync(path, parseSize(size));
  }
  return path;
}

/**
 * An nbdkit sh plugin serving several named exports, each backed by a file (a memory device by a sparse temp file),
 * with per-export read-only. Slow (a fork per request) but only used for small I/O when validating the tests.
 */
function writeRoutingScript(spec: ServerSpec, dir: string): string {
  const cases = spec.exports.map((entry) => {
    if (!/^[A-Za-z0-9._-]+$/.test(entry.name)) throw new Error(`nbdkit routing script: unsupported export name ${entry.name}`);
    const path = entry.device.type === 'file' ? entry.device.path : join(dir, `memory-${entry.name}.img`);
    if (entry.device.type === 'memory' && existsSync(path)) rmSync(path);
    ensureFile(path, entry.device.size);
    return `    ${entry.name}) path='${path}'; size=${parseSize(entry.device.size)}; ro=${entry.readOnly ? 1 : 0} ;;`;
  });
  const script = `#!/bin/bash
# Generated by test/helpers/server.ts: routes NBD exports to files for nbdkit's sh plugin.
lookup() {
  case "$1" in
${cases.join('\n')}
    *) return 1 ;;
  esac
}
case "$1" in
  thread_model) echo parallel ;;
  list_exports) echo NAMES; ${spec.exports.map((entry) => `echo ${entry.name}`).join('; ')} ;;
  default_export) echo ${spec.exports[0]!.name} ;;
  open) lookup "$3" || { echo "export '$3' not found" >&2; exit 1; }; echo "$3" ;;
  get_size) lookup "$2"; echo "$size" ;;
  can_write) lookup "$2"; [ "$ro" = 0 ] || exit 3 ;;
  can_flush|can_trim|can_zero|can_multi_conn) exit 0 ;;
  can_fua) echo emulate ;;
  can_extents|can_fast_zero|is_rotational) exit 3 ;;
  pread) lookup "$2"; exec dd if="$path" skip="$4" count="$3" iflag=skip_bytes,count_bytes bs=64K status=none ;;
  pwrite) lookup "$2"; exec dd of="$path" seek="$4" count="$3" oflag=seek_bytes iflag=count_bytes,fullblock conv=notrunc bs=64K status=none ;;
  flush) lookup "$2"; exec sync "$path" ;;
  trim|zero) lookup "$2"; exec fallocate --punch-hole --offset "$4" --length "$3" "$path" ;;
  *) exit 2 ;;
esac
`;
  const path = join(dir, 'route-exports.sh');
  writeFileSync(path, script);
  chmodSync(path, 0o755);
  return path;
}

/** The common case: one read-write export backed by a (new, sparse) file in a fresh temp dir. */
export async function startFileServer(options: { name?: string; size?: string; dir?: string } = {}): Promise<NbdServer> {
  const dir = options.dir ?? makeTempDir('sky-it-');
  const name = options.name ?? 'disk';
  return startServer({ exports: [{ name, device: { type: 'file', path: join(dir, `${name}.img`), size: options.size ?? '64M' } }], dir });
}
