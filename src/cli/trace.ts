/**
 * `sky trace`: run a tracer backend on a workload, feed its events to the InsightEngine, and either stream the
 * insights (--json, one JSON object per line on stdout) or print a human summary at the end. The exit code is
 * the traced command's, so `sky trace -- make` can stand in for `make` in scripts.
 */
import { once } from 'node:events';
import { Command, InvalidArgumentError, Option } from 'commander';
import { InsightEngine, renderSummary, type Insight } from '../insight/index.js';
import { LINGER_DEFAULT_MS, NICE_MAX, TraceError, attachedPids, startTrace, type TraceSession } from '../trace/index.js';

type Backend = 'ebpf' | 'ptrace';
type Target =
  | { kind: 'command'; argv: string[] }
  | { kind: 'pid'; pid: number }
  | { kind: 'cgroup'; path: string }
  | { kind: 'replay'; file: string };

interface TraceOptions {
  backend?: Backend;
  record?: string;
  replay?: string;
  json?: boolean;
  pid?: number;
  cgroup?: string;
  fdEvents?: 'all' | 'storage';
  nice: number;
  /** --linger, in ms. */
  linger: number;
}

/** Exit codes of sky trace itself, when it cannot report the traced command's. */
const EXIT_USAGE = 2;
const EXIT_TRACER = 3;
const EXIT_INTERRUPTED = 130;

function parsePid(value: string): number {
  const pid = Number(value);
  if (!Number.isSafeInteger(pid) || pid <= 0) throw new InvalidArgumentError('a pid is a positive integer');
  return pid;
}

/**
 * How much sky trace lowers its CPU priority by default (see TraceOptions.nice): it reports at the end, so it can wait
 * for the CPU the workload leaves. (sky agent does not by default: its hints must beat the file system's writeback.)
 */
export const TRACER_NICE_DEFAULT = 10;

export function parseNice(value: string): number {
  const nice = Number(value);
  if (!Number.isSafeInteger(nice) || nice < 0 || nice > NICE_MAX) throw new InvalidArgumentError(`a nice increment is an integer from 0 to ${NICE_MAX}`);
  return nice;
}

/** --linger: seconds (fractions allowed), or "forever". */
export function parseLinger(value: string): number {
  if (value === 'forever') return Number.POSITIVE_INFINITY;
  const seconds = Number(value);
  if (value.trim() === '' || !Number.isFinite(seconds) || seconds < 0) throw new InvalidArgumentError('a linger is a number of seconds (0 or more) or "forever"');
  return seconds * 1000;
}

export const LINGER_OPTION_HELP =
  'a command target: keep tracing the processes it leaves running (a daemon, a background job) for this many seconds after it exits, or "forever" (until they exit, as strace -f does); 0 stops with the command';

function targetOf(command: string[], options: TraceOptions): Target | string {
  const chosen = [command.length > 0, options.pid !== undefined, options.cgroup !== undefined, options.replay !== undefined];
  if (chosen.filter(Boolean).length !== 1) return 'name exactly one target: -- CMD ARGS..., --pid PID, --cgroup PATH or --replay FILE';
  if (options.replay !== undefined && options.backend !== undefined) return '--replay reads a recorded log; it takes no --backend';
  if (options.replay !== undefined && options.record !== undefined) return '--replay and --record together would copy a log; use cp';
  if (options.fdEvents !== undefined && options.backend === 'ptrace') return '--fd-events tunes the ebpf backend; strace reports every fd call';
  if (options.replay !== undefined) return { kind: 'replay', file: options.replay };
  if (options.pid !== undefined) return { kind: 'pid', pid: options.pid };
  if (options.cgroup !== undefined) return { kind: 'cgroup', path: options.cgroup };
  return { kind: 'command', argv: command };
}

function warn(message: string): void {
  process.stderr.write(`sky trace: warning: ${message}\n`);
}

/** No --backend: eBPF first (cheapest), strace when eBPF is not available here. */
async function start(target: Target, options: TraceOptions): Promise<TraceSession> {
  const common = { target, record: options.record, onWarning: warn, nice: options.nice, lingerMs: options.linger, ...(options.fdEvents ? { ebpf: { fdEvents: options.fdEvents } } : {}) };
  if (target.kind === 'replay') return startTrace({ backend: 'replay', ...common });
  if (options.backend) return startTrace({ backend: options.backend, ...common });
  try {
    return await startTrace({ backend: 'ebpf', ...common });
  } catch (error) {
    if (!(error instanceof TraceError)) throw error;
    warn(`eBPF tracing unavailable (${error.message}); falling back to ptrace (strace)`);
    return startTrace({ backend: 'ptrace', ...common });
  }
}

/** Writes JSON lines with backpressure, so a slow reader slows the loop instead of growing memory. */
class JsonLines {
  private blocked = false;

  write(insight: Insight): void {
    if (!process.stdout.write(`${JSON.stringify(insight)}\n`)) this.blocked = true;
  }

  async drained(): Promise<void> {
    if (!this.blocked) return;
    this.blocked = false;
    await once(process.stdout, 'drain');
  }
}

/**
 * SIGINT/SIGTERM stop the session cleanly once; a second signal gives up on waiting. Installed before the tracer
 * starts (bpftrace takes seconds to attach), so an early Ctrl-C stops the session as soon as it exists instead of
 * killing sky and orphaning the tracer and the command.
 */
class StopOnSignals {
  private count = 0;
  private session: TraceSession | null = null;
  private readonly onSignal = (): void => {
    this.count++;
    if (this.count > 1) process.exit(EXIT_INTERRUPTED);
    process.stderr.write('sky trace: stopping (Ctrl-C again to quit at once)\n');
    this.stopSession();
  };

  constructor() {
    process.on('SIGINT', this.onSignal);
    process.on('SIGTERM', this.onSignal);
  }

  get interrupted(): boolean {
    return this.count > 0;
  }

  attach(session: TraceSession): void {
    this.session = session;
    if (this.interrupted) this.stopSession();
  }

  private stopSession(): void {
    this.session?.stop().catch((error: unknown) => warn(`stopping the tracer failed: ${String(error)}`));
  }

  dispose(): void {
    process.off('SIGINT', this.onSignal);
    process.off('SIGTERM', this.onSignal);
  }
}

async function consume(session: TraceSession, engine: InsightEngine, json: JsonLines | null): Promise<void> {
  for await (const event of session.events) {
    engine.handle(event);
    if (json) await json.drained();
  }
  engine.finish();
}

function printSummary(engine: InsightEngine, session: TraceSession): void {
  const summary = engine.summary();
  const lost = session.lost();
  if (lost > summary.counters.lostEvents) summary.counters.lostEvents = lost;
  process.stdout.write(`${renderSummary(summary)}\n(traced with ${session.backendName})\n`);
}

export async function runTrace(command: string[], options: TraceOptions): Promise<number> {
  const target = targetOf(command, options);
  if (typeof target === 'string') {
    process.stderr.write(`sky trace: ${target}\n`);
    return EXIT_USAGE;
  }
  // A replayed log's pids and files are not this machine's now: no insight calls into /proc.
  const engine = new InsightEngine({
    inspector: target.kind === 'replay' ? 'none' : 'proc',
    ...(target.kind === 'command' ? { commandCwd: process.cwd() } : {}),
  });
  const json = options.json ? new JsonLines() : null;
  if (json) engine.onInsight((insight) => json.write(insight));
  const signals = new StopOnSignals();
  try {
    let session: TraceSession;
    try {
      session = await start(target, options);
    } catch (error) {
      return reportFailure(error);
    }
    signals.attach(session);
    engine.attached(attachedPids(target));
    try {
      await consume(session, engine, json);
    } catch (error) {
      await session.stop().catch(() => undefined);
      return reportFailure(error);
    }
    if (!json) printSummary(engine, session);
    const code = await session.exited;
    if (code !== null) return code;
    return signals.interrupted && target.kind === 'command' ? EXIT_INTERRUPTED : 0;
  } finally {
    signals.dispose();
  }
}

function reportFailure(error: unknown): number {
  if (!(error instanceof TraceError)) throw error;
  process.stderr.write(`sky trace: ${error.message}\n`);
  return EXIT_TRACER;
}

export function registerTrace(program: Command): void {
  program
    .command('trace')
    .description('trace a workload and report what Sky learns: files and their sizes/classes, copies, encryption, hints, lifetimes')
    .addOption(new Option('--backend <backend>', 'tracer: ebpf (bpftrace) or ptrace (strace); default ebpf, else ptrace').choices(['ebpf', 'ptrace']))
    .option('--record <file>', 'also record the raw syscall events (JSONL) for --replay')
    .option('--replay <file>', 'analyse a recorded event log instead of tracing')
    .option('--json', 'stream insights as JSON lines on stdout instead of printing a summary')
    .option('--pid <pid>', 'trace a running process and the children it starts from now on', parsePid)
    .option('--cgroup <path>', 'trace every process in a cgroup v2 directory and the cgroups below it (also ones created later)')
    .addOption(
      new Option(
        '--fd-events <which>',
        'ebpf: which closes, dups and fcntls to report; storage (default) only those of regular files and block devices, all also those of directories, pipes and sockets (costlier on metadata walks)',
      ).choices(['storage', 'all']),
    )
    .option('--nice <n>', `ebpf: lower the tracer's own CPU priority by N once it is attached (0-${NICE_MAX}; 0 leaves it): the traced command keeps its own, and the tracer catches up when the workload leaves CPU free`, parseNice, TRACER_NICE_DEFAULT)
    .addOption(new Option('--linger <seconds>', LINGER_OPTION_HELP).argParser(parseLinger).default(LINGER_DEFAULT_MS, String(LINGER_DEFAULT_MS / 1000)))
    .argument('[command...]', 'the command to run and trace, after --')
    .addHelpText('after', '\nExamples:\n  sky trace -- cp big.iso /mnt/copy.iso\n  sky trace --json --backend ptrace -- gpg --symmetric secret.txt\n  sky trace --pid 1234\n')
    .action(async (command: string[], options: TraceOptions) => {
      process.exitCode = await runTrace(command, options);
    });
}
