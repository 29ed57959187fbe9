/**
 * `sky agent`: trace a workload (a command, a pid or a cgroup), turn what it does to the files on volume NAME into
 * SemanticMessages, and send them to the engine over the hint channel (unix socket, or TCP from a guest VM). When
 * the target ends it flushes what is pending, waits until the engine has everything, prints a summary to stderr
 * and exits with the command's exit status.
 */
import net from 'node:net';
import { Command, InvalidArgumentError, Option } from 'commander';
import { renderAgentSummary, startAgent, type AgentSession, type VolumeRoute } from '../agent/index.js';
import { encodeFrame, FrameDecoder, HINT_PROTOCOL_VERSION, HintClient } from '../hints/index.js';
import { LINGER_DEFAULT_MS, NICE_MAX, TraceError, type TraceOptions, type TraceTarget } from '../trace/index.js';
import { LINGER_OPTION_HELP, parseLinger, parseNice } from './trace.js';

/** The agent keeps its priority by default (see --nice); sky trace lowers its own (TRACER_NICE_DEFAULT). */
const AGENT_NICE_DEFAULT = 0;

/** Exit codes of sky agent itself, when it cannot report the traced command's. */
export const AGENT_EXIT = { usage: 2, tracer: 3, unreachable: 4, refused: 5, interrupted: 130 } as const;

interface AgentFlags {
  engine?: string;
  volume?: string;
  token?: string;
  backend?: 'ebpf' | 'ptrace';
  device?: string;
  pid?: number;
  cgroup?: string;
  /** false: no extent read-ahead (--no-read-ahead). */
  readAhead?: boolean;
  nice: number;
  /** --linger, in ms. */
  linger: number;
}

function parsePid(value: string): number {
  const pid = Number(value);
  if (!Number.isSafeInteger(pid) || pid <= 0) throw new InvalidArgumentError('a pid is a positive integer');
  return pid;
}

function say(message: string): void {
  process.stderr.write(`sky agent: ${message}\n`);
}

function targetOf(command: string[], flags: AgentFlags): TraceTarget | string {
  const chosen = [command.length > 0, flags.pid !== undefined, flags.cgroup !== undefined];
  if (chosen.filter(Boolean).length !== 1) return 'name exactly one target: -- CMD ARGS..., --pid PID or --cgroup PATH';
  if (flags.pid !== undefined) return { kind: 'pid', pid: flags.pid };
  if (flags.cgroup !== undefined) return { kind: 'cgroup', path: flags.cgroup };
  return { kind: 'command', argv: command };
}

export type ChannelProbe = { ok: true } | { ok: false; refused: boolean; message: string };

/**
 * One hello before tracing starts, so a wrong address or token is a clear error now rather than a silent reconnect
 * loop later: the engine answers a good hello with `welcome` and closes the channel on a bad one.
 */
export function probeHintChannel(engine: string, volume: string, token: string, timeoutMs = 10_000): Promise<ChannelProbe> {
  return new Promise((resolve) => {
    let settled = false;
    let connected = false;
    const socket = engine.startsWith('unix:')
      ? net.connect(engine.slice(5))
      : net.connect(Number(engine.slice(engine.lastIndexOf(':') + 1)), engine.slice(0, engine.lastIndexOf(':')).replace(/^\[|\]$/g, ''));
    const finish = (result: ChannelProbe) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(result);
    };
    const timer = setTimeout(
      () => finish({ ok: false, refused: false, message: `the engine at ${engine} did not answer within ${timeoutMs / 1000} s` }),
      timeoutMs,
    );
    const decoder = new FrameDecoder();
    socket.on('connect', () => {
      connected = true;
      socket.write(encodeFrame({ type: 'hello', version: HINT_PROTOCOL_VERSION, volume, token }));
    });
    socket.on('data', (chunk: Buffer) => {
      try {
        for (const frame of decoder.push(chunk)) {
          const reply = JSON.parse(frame.toString('utf8')) as { type?: string };
          if (reply.type === 'welcome') finish({ ok: true });
        }
      } catch (error) {
        finish({ ok: false, refused: true, message: `the engine at ${engine} answered something unreadable: ${(error as Error).message}` });
      }
    });
    socket.on('error', (error) => {
      if (!connected) finish({ ok: false, refused: false, message: `cannot reach the engine's hint channel at ${engine}: ${error.message}` });
    });
    socket.on('close', () =>
      finish({
        ok: false,
        refused: connected,
        message: connected
          ? `the engine at ${engine} refused the hint channel for volume "${volume}": wrong token, unknown volume, or a volume without hints`
          : `cannot reach the engine's hint channel at ${engine}`,
      }),
    );
  });
}

/** Waits until the engine has closed its side after our end: it has then read (and applied) every frame. */
async function closeDelivered(client: HintClient, timeoutMs: number): Promise<boolean> {
  const flushed = await client.flush(timeoutMs);
  client.close();
  const until = Date.now() + timeoutMs;
  while (client.connected && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
  return flushed && !client.connected;
}

async function startWithFallback(options: Omit<Parameters<typeof startAgent>[0], 'trace'> & { trace: Omit<TraceOptions, 'backend'> }, backend?: 'ebpf' | 'ptrace'): Promise<AgentSession> {
  if (backend) return startAgent({ ...options, trace: { ...options.trace, backend } });
  try {
    return await startAgent({ ...options, trace: { ...options.trace, backend: 'ebpf' } });
  } catch (error) {
    if (!(error instanceof TraceError)) throw error;
    say(`warning: eBPF tracing unavailable (${error.message}); falling back to ptrace (strace)`);
    return startAgent({ ...options, trace: { ...options.trace, backend: 'ptrace' } });
  }
}

export async function runAgent(command: string[], flags: AgentFlags): Promise<number> {
  if (!flags.engine || !flags.volume || !flags.token) {
    say('--engine, --volume and --token are required');
    return AGENT_EXIT.usage;
  }
  if (!flags.engine.startsWith('unix:') && !/^.+:\d+$/.test(flags.engine)) {
    say(`--engine is unix:/path/to/hints.sock or HOST:PORT, not "${flags.engine}"`);
    return AGENT_EXIT.usage;
  }
  const target = targetOf(command, flags);
  if (typeof target === 'string') {
    say(target);
    return AGENT_EXIT.usage;
  }
  const probe = await probeHintChannel(flags.engine, flags.volume, flags.token);
  if (!probe.ok) {
    say(probe.message);
    return probe.refused ? AGENT_EXIT.refused : AGENT_EXIT.unreachable;
  }
  const client = new HintClient({ engine: flags.engine, volume: flags.volume, token: flags.token, onWarning: (w) => say(`warning: ${w}`) });
  const route: VolumeRoute = flags.device ? { kind: 'device', device: flags.device } : { kind: 'export', volume: flags.volume };
  let interrupted = 0;
  let session: AgentSession | null = null;
  const onSignal = () => {
    if (++interrupted > 1) process.exit(AGENT_EXIT.interrupted);
    say('stopping: flushing what is pending (signal again to quit at once)');
    void session?.stop().catch(() => undefined);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    try {
      session = await startWithFallback(
        { route, sink: (message) => client.send(message as unknown as { type: string }), pressure: () => client.whenWritable(), log: (line) => say(line), trace: { target, nice: flags.nice, lingerMs: flags.linger }, ...(flags.readAhead === false ? { informer: { prefetch: false } } : {}) },
        flags.backend,
      );
    } catch (error) {
      client.close();
      if (!(error instanceof TraceError)) throw error;
      say(`cannot start the tracer: ${error.message}`);
      return AGENT_EXIT.tracer;
    }
    if (interrupted > 0) void session.stop().catch(() => undefined);
    let failure: Error | null = null;
    try {
      await session.done;
    } catch (error) {
      failure = error as Error;
    }
    const dropped = client.droppedCount;
    // The backlog is at most a few seconds of the engine's work (whenWritable keeps it there); a minute is slack.
    const delivered = await closeDelivered(client, 60_000);
    process.stderr.write(`${renderAgentSummary(session.stats(), { delivered, dropped })}\n`);
    if (failure) {
      say(`the tracer failed: ${failure.message}`);
      return AGENT_EXIT.tracer;
    }
    const code = await session.exited;
    if (code !== null) return code;
    return interrupted > 0 && target.kind === 'command' ? AGENT_EXIT.interrupted : 0;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

export function registerAgent(program: Command): void {
  program
    .command('agent')
    .description('trace a workload and send what it does to the files of a volume to the engine (hint channel)')
    .requiredOption('--engine <address>', "the engine's hint channel: unix:/path/to/hints.sock or HOST:PORT")
    .requiredOption('--volume <name>', 'the export whose files to describe (and whose token this is)')
    .requiredOption('--token <token>', "the volume's hint token (hintToken in the engine's config)")
    .addOption(new Option('--backend <backend>', 'tracer: ebpf (bpftrace) or ptrace (strace); default ebpf, else ptrace').choices(['ebpf', 'ptrace']))
    .option('--device <path>', 'files on this block device (or its partitions) are on the volume (a guest: the disk the export is attached as)')
    .option('--pid <pid>', 'trace a running process and the children it starts from now on', parsePid)
    .option('--cgroup <path>', 'trace every process in a cgroup v2 directory and the cgroups below it')
    .option('--no-read-ahead', 'do not map the files around a file the workload opens for reading before it reads them')
    .option('--nice <n>', `ebpf: lower the agent's own CPU priority by N once it is attached (0-${NICE_MAX}): the traced command keeps its own. The default, 0, leaves it: a hint is worth most before the file system writes the data back, and a lower priority made the agent lag seconds behind a kernel untar`, parseNice, AGENT_NICE_DEFAULT)
    .addOption(new Option('--linger <seconds>', LINGER_OPTION_HELP).argParser(parseLinger).default(LINGER_DEFAULT_MS, String(LINGER_DEFAULT_MS / 1000)))
    .argument('[command...]', 'the command to run and trace, after --')
    .addHelpText(
      'after',
      `
Without --device the volume's file systems are found through loop → nbdfuse → export NAME.
Exit status: the command's; 2 usage, 3 tracer failed, 4 engine unreachable, 5 engine refused the token.
Examples:
  sky agent --engine unix:/run/sky/hints.sock --volume disk --token "$TOKEN" -- make -j2
  sky agent --engine 10.0.2.2:10810 --volume vm1 --token "$TOKEN" --device /dev/vdb --cgroup /sys/fs/cgroup/db`,
    )
    .action(async (command: string[], flags: AgentFlags) => {
      process.exitCode = await runAgent(command, flags);
    });
}
