import { existsSync } from 'node:fs';
import path from 'node:path';
import { Command, Option } from 'commander';
import { ConfigError, Engine, createLogger, defaultDataDir, loadConfigFile, parseConfig, type Config } from '../engine/index.js';

export interface ServeFlags {
  config?: string;
  file?: string;
  memory?: boolean;
  size?: string;
  socket?: string;
  listen?: string;
  export: string;
  readOnly?: boolean;
  metrics?: string;
  dataDir?: string;
  logFormat?: 'pretty' | 'json';
  logLevel?: string;
  timing?: 'hdd' | 'ssd';
  timingMode?: 'off' | 'account' | 'emulate';
  /** `sky serve --trace -- CMD` is `sky run -- CMD`. */
  trace?: boolean;
}

export const DEFAULT_SIZE = '4G';

/** The options that describe what to serve and where (`sky serve` and `sky run` take the same ones; see buildConfig). */
export function addServeOptions(command: Command, configHelp: string): Command {
  return command
    .option('-c, --config <file>', configHelp)
    .option('-f, --file <path>', 'serve this sparse file (created if missing; an existing file keeps its data)')
    .option('--memory', 'serve a memory-backed volume (contents vanish on exit)')
    .option('-s, --size <size>', `volume size, e.g. 512M, 4G (default: the file's size, or ${DEFAULT_SIZE} for a new one)`)
    .option('-e, --export <name>', 'export name', 'sky')
    .option('--socket <path>', 'listen on this unix socket (default: <data-dir>/sky.sock)')
    .option('--listen <host:port>', 'listen on TCP too (NBD default port is 10809)')
    .option('--metrics <host:port>', 'serve Prometheus /metrics and JSON /stats over HTTP')
    .option('--data-dir <dir>', `where default volumes and sockets live (default: ${defaultDataDir()})`)
    .addOption(new Option('--log-format <format>', 'log format').choices(['pretty', 'json']));
}

export function registerServe(program: Command): void {
  addServeOptions(
    program.command('serve').description('serve volumes over NBD (from a YAML config, or one export from flags)'),
    'YAML config (see docs/config.md); flags below override its listen/log/metrics',
  )
    .option('--read-only', 'serve the export read-only')
    .addOption(new Option('--log-level <level>', 'log level').choices(['trace', 'debug', 'info', 'warn', 'error', 'silent']))
    .addOption(new Option('--timing <model>', 'put a timing model over the device').choices(['hdd', 'ssd']))
    .addOption(new Option('--timing-mode <mode>', 'timing model mode').choices(['off', 'account', 'emulate']).default('emulate'))
    .option('--trace', 'trace the command after -- and learn from it, then stop (same as sky run)')
    .argument('[command...]', 'with --trace: the command to run and trace, after --')
    .addHelpText(
      'after',
      `
Examples:
  sky serve                                   # default volume in the data dir, socket <data-dir>/sky.sock
  sky serve --file disk.img --size 8G --socket /run/sky.sock --export disk
  sky serve --config /etc/sky/sky.yaml
Attach:  qemu-system-x86_64 -drive file=nbd+unix:///disk?socket=/run/sky.sock,format=raw
         nbdinfo 'nbd+unix:///disk?socket=/run/sky.sock'`,
    )
    .action(async (command: string[], flags: ServeFlags) => {
      if (flags.trace || command.length > 0) {
        if (!flags.trace) {
          console.error(`sky serve: unexpected arguments ${command.join(' ')} (a command is taken only with --trace)`);
          process.exit(2);
        }
        process.exitCode = await (await import('./run.js')).run(command, flags);
        return;
      }
      await serve(flags);
    });
}

async function serve(flags: ServeFlags): Promise<void> {
  let config: Config;
  try {
    config = buildConfig(flags);
  } catch (err) {
    if (err instanceof ConfigError || err instanceof RangeError) {
      console.error(`sky serve: ${err.message}`);
      process.exit(2);
    }
    throw err;
  }
  const log = createLogger(config.log.format, config.log.level);
  const engine = new Engine(config, log);
  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    if (++signals > 1) {
      log.warn({ signal }, 'second signal: exiting without draining');
      process.exit(1);
    }
    log.info({ signal }, 'shutting down: draining connections');
    engine.stop().then(
      () => process.exit(0),
      (err) => {
        log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    await engine.start();
  } catch (err) {
    log.debug({ err }, 'start failed');
    console.error(`sky serve: cannot start: ${(err as Error).message}`);
    process.exit(err instanceof ConfigError ? 2 : 1);
  }
  log.info({ listen: engine.addresses, metrics: engine.metricsAddress, exports: engine.volumes.map((v) => v.name) }, 'sky is serving');
}

/**
 * Flags either amend a config file (listen/log/metrics) or describe the whole thing (one export). `quick` amends
 * the one export the flags describe (sky run adds its classify layer there).
 */
export function buildConfig(flags: ServeFlags, quick: { layers?: Array<{ type: string }> } = {}): Config {
  if (flags.config) {
    if (flags.file || flags.memory) throw new ConfigError('--config cannot be combined with --file or --memory; put the export in the config');
    const config = loadConfigFile(flags.config, flags.dataDir ? { dataDir: flags.dataDir } : {});
    return applyOverrides(config, flags);
  }
  if (flags.file && flags.memory) throw new ConfigError('choose one of --file and --memory');
  const dataDir = path.resolve(flags.dataDir ?? defaultDataDir());
  const file = flags.file ? path.resolve(flags.file) : path.join(dataDir, `${flags.export}.img`);
  const size = flags.size ?? (flags.memory || !existsSync(file) ? DEFAULT_SIZE : undefined);
  const device = flags.memory ? { type: 'memory', size } : { type: 'file', path: file, ...(size ? { size } : {}) };
  const raw = {
    dataDir,
    listen: { socket: flags.socket ? path.resolve(flags.socket) : path.join(dataDir, 'sky.sock'), tcp: flags.listen },
    log: { format: flags.logFormat ?? 'pretty', level: flags.logLevel ?? 'info' },
    metrics: flags.metrics ? { listen: flags.metrics } : undefined,
    exports: [
      {
        name: flags.export,
        readOnly: flags.readOnly ?? false,
        device,
        timing: flags.timing ? { model: flags.timing, mode: flags.timingMode } : undefined,
        ...(quick.layers ? { layers: quick.layers } : {}),
      },
    ],
  };
  return parseConfig(raw, 'command-line flags');
}

function applyOverrides(config: Config, flags: ServeFlags): Config {
  const listen = { ...config.listen };
  if (flags.socket) listen.socket = path.resolve(flags.socket);
  if (flags.listen) listen.tcp = flags.listen;
  return {
    ...config,
    listen,
    log: { format: flags.logFormat ?? config.log.format, level: (flags.logLevel as Config['log']['level']) ?? config.log.level },
    metrics: flags.metrics ? { listen: flags.metrics } : config.metrics,
  };
}
