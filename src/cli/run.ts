/**
 * `sky run [serve options] -- CMD`: start the engine (like `sky serve`, with a classify layer on the quick export),
 * trace CMD and feed what it does to the volume's files straight into the volume's semantic index (in-process: no
 * hint channel), and when CMD exits print what was learned and stop the engine. CMD is typically a script that
 * attaches the export (nbdfuse + loop + mount; SKY_NBD_URI names it) and runs a workload.
 *
 * The tracer and the informer run in a worker thread (startAgentWorker): they read files on the volume back with
 * synchronous I/O, which on this thread would wait for NBD replies that only this thread can send.
 */
import path from 'node:path';
import { Command, Option } from 'commander';
import { renderAgentSummary, startAgentWorker, type AgentSession } from '../agent/index.js';
import { ConfigError, Engine, createLogger, type Config } from '../engine/index.js';
import { formatBytes } from '../insight/summary.js';
import { SEMANTIC_MESSAGE_TYPES, type SemanticIndex, type SemanticIndexStats, type SemanticMessage } from '../semantics/index.js';
import { TraceError } from '../trace/index.js';
import { addServeOptions, buildConfig, type ServeFlags } from './serve.js';

export const RUN_EXIT = { usage: 2, tracer: 3, engine: 4, interrupted: 130 } as const;

export interface RunFlags extends ServeFlags {
  volume?: string;
  backend?: 'ebpf' | 'ptrace';
  /** false: no extent read-ahead (--no-read-ahead). */
  readAhead?: boolean;
}

function say(message: string): void {
  process.stderr.write(`sky run: ${message}\n`);
}

/** What the index learned, one screen. */
export function renderIndexStats(volume: string, stats: SemanticIndexStats): string {
  const messages = SEMANTIC_MESSAGE_TYPES.filter((t) => stats.messages[t] > 0).map((t) => `${t} ${stats.messages[t]}`).join(', ');
  const share = (part: { data: number; metadata: number; unknown: number }) => {
    const total = part.data + part.metadata + part.unknown;
    return total === 0 ? 'none' : `${total} (data ${part.data}, metadata ${part.metadata}, unknown ${part.unknown})`;
  };
  return [
    `volume ${volume}: ${stats.files} files known, ${stats.lba.entries} LBA map entries, ${stats.fingerprints.entries} live fingerprints (${stats.fingerprints.inserted} registered, ${stats.fingerprints.expired} expired)`,
    `  messages applied: ${messages || 'none'}; rejected ${stats.rejected}`,
    `  reads tagged:  ${share(stats.reads)}`,
    `  writes tagged: ${share(stats.writes)}; 4 KiB blocks matched ${stats.blocks.matched}, unmatched ${stats.blocks.unmatched} (large writes are matched on samples)`,
    `  re-tagged ranges: ${stats.retagRanges}`,
  ].join('\n');
}

/** Runs CMD traced against `engine`'s volume; the engine is the caller's to stop. Returns CMD's exit status. */
export async function runTraced(
  engine: Engine,
  volume: string,
  command: string[],
  options: { backend?: 'ebpf' | 'ptrace'; socket?: string; readAhead?: boolean },
): Promise<{ code: number; index: SemanticIndex }> {
  const index = engine.semantics.get(volume);
  if (!index) throw new ConfigError(`export "${volume}" has no classify layer: add layers: [{type: classify}] to it to learn from tracing`);
  const socket = options.socket ?? engine.config.listen.socket;
  const env = {
    ...process.env,
    SKY_EXPORT: volume,
    ...(socket ? { SKY_SOCKET: socket, SKY_NBD_URI: `nbd+unix:///${encodeURIComponent(volume)}?socket=${socket}` } : {}),
  };
  let rejected = 0;
  let lastRejection = '';
  const sink = (message: SemanticMessage) => {
    const result = index.accept(message);
    if (!result.ok) {
      rejected++;
      lastRejection = result.error;
    }
  };
  const start = (backend: 'ebpf' | 'ptrace') =>
    startAgentWorker({
      trace: { backend, target: { kind: 'command', argv: command, env, cwd: process.cwd() } },
      route: { kind: 'export', volume, ...(socket ? { socket } : {}) },
      sink,
      log: (line) => say(line),
      ...(options.readAhead === false ? { informer: { prefetch: false } } : {}),
    });
  let session: AgentSession;
  if (options.backend) session = await start(options.backend);
  else {
    try {
      session = await start('ebpf');
    } catch (error) {
      if (!(error instanceof TraceError)) throw error;
      say(`warning: eBPF tracing unavailable (${error.message}); falling back to ptrace (strace)`);
      session = await start('ptrace');
    }
  }
  let interrupted = 0;
  const onSignal = () => {
    if (++interrupted > 1) process.exit(RUN_EXIT.interrupted);
    say('stopping: flushing what is pending (signal again to quit at once)');
    void session.stop().catch(() => undefined);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    let failure: Error | null = null;
    try {
      await session.done;
    } catch (error) {
      failure = error as Error;
    }
    process.stderr.write(`${renderAgentSummary(session.stats())}\n`);
    if (rejected > 0) say(`${rejected} messages rejected by the index (last: ${lastRejection})`);
    process.stderr.write(`${renderIndexStats(volume, index.stats())}\n`);
    if (failure) {
      say(`the tracer failed: ${failure.message}`);
      return { code: RUN_EXIT.tracer, index };
    }
    const code = await session.exited;
    return { code: code ?? (interrupted > 0 ? RUN_EXIT.interrupted : 0), index };
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

export async function run(command: string[], flags: RunFlags): Promise<number> {
  if (command.length === 0) {
    say('name the command to trace after --');
    return RUN_EXIT.usage;
  }
  let config: Config;
  try {
    // The quick export gets a classify layer: that is where the index the hints feed lives.
    config = buildConfig({ ...flags, logLevel: flags.logLevel ?? 'warn' }, { layers: [{ type: 'classify' }] });
  } catch (error) {
    if (error instanceof ConfigError || error instanceof RangeError) {
      say(error.message);
      return RUN_EXIT.usage;
    }
    throw error;
  }
  const names = config.exports.map((e) => e.name);
  const volume = flags.volume ?? (names.length === 1 ? names[0]! : undefined);
  if (volume === undefined || !names.includes(volume)) {
    say(volume === undefined ? `the config has ${names.length} exports (${names.join(', ')}): name one with --volume` : `no export named "${volume}" (exports: ${names.join(', ')})`);
    return RUN_EXIT.usage;
  }
  const engine = new Engine(config, createLogger(config.log.format, config.log.level));
  try {
    await engine.start();
  } catch (error) {
    say(`cannot start the engine: ${(error as Error).message}`);
    return error instanceof ConfigError ? RUN_EXIT.usage : RUN_EXIT.engine;
  }
  try {
    const { code } = await runTraced(engine, volume, command, { backend: flags.backend, readAhead: flags.readAhead });
    return code;
  } catch (error) {
    if (error instanceof ConfigError) {
      say(error.message);
      return RUN_EXIT.usage;
    }
    if (error instanceof TraceError) {
      say(`cannot start the tracer: ${error.message}`);
      return RUN_EXIT.tracer;
    }
    throw error;
  } finally {
    await engine.stop();
  }
}

export function registerRun(program: Command): void {
  addServeOptions(
    program.command('run').description('serve a volume, trace a workload on it, feed what it does to the volume in-process, and print what Sky learned'),
    'YAML config; the traced export needs a classify layer',
  )
    .option('--volume <name>', 'the export to trace for (default: the only export)')
    .addOption(new Option('--backend <backend>', 'tracer: ebpf (bpftrace) or ptrace (strace); default ebpf, else ptrace').choices(['ebpf', 'ptrace']))
    .option('--no-read-ahead', 'do not map the files around a file the workload opens for reading before it reads them')
    .addOption(new Option('--log-level <level>', 'engine log level (default warn)').choices(['trace', 'debug', 'info', 'warn', 'error', 'silent']))
    .argument('<command...>', 'the command to run and trace, after --')
    .addHelpText(
      'after',
      `
CMD sees SKY_NBD_URI, SKY_SOCKET and SKY_EXPORT. Exit status: CMD's; 2 usage, 3 tracer failed, 4 engine failed.
Example:
  sky run --memory --size 1G --socket /tmp/sky.sock -- sh -c '
    nbdfuse /tmp/fuse/nbd "$SKY_NBD_URI" & sleep 1; dev=$(losetup --direct-io=on -f --show /tmp/fuse/nbd)
    mkfs.ext4 -q $dev && mount $dev /mnt && cp -r /usr/share/doc /mnt && umount /mnt
    losetup -d $dev; fusermount3 -u /tmp/fuse'`,
    )
    .action(async (command: string[], flags: RunFlags) => {
      if (flags.socket) flags.socket = path.resolve(flags.socket);
      process.exitCode = await run(command, flags);
    });
}
