/**
 * The tracer side of Sky's semantics, wired: startTrace → InsightEngine (with data_written) → Informer → sink.
 *
 * startAgent runs it all on the calling thread. startAgentWorker runs the same in a worker thread and delivers
 * the messages to a sink on the calling thread: `sky run` needs that, because the informer reads files back and
 * maps their extents with synchronous I/O, and when the engine serving the very volume those files live on runs
 * on the same thread, a read that misses the page cache would wait for an NBD reply that thread can never send.
 */
import { Worker } from 'node:worker_threads';
import { InsightEngine, type InsightKind } from '../insight/index.js';
import { attachedPids, monotonicNowNs, startTrace, TraceError, type TraceOptions } from '../trace/index.js';
import type { SemanticMessage } from '../semantics/messages.js';
import { LocalFileSystem, type AgentFileSystem, type VolumeRoute } from './fs.js';
import { Informer, type InformerOptions, type InformerStats, type SemanticSink } from './informer.js';
import { LagHistogram, type LagSummary } from './lag.js';

export type InformerTuning = Omit<InformerOptions, 'sink' | 'fs' | 'log'>;

export interface AgentOptions {
  /** What to trace and how (startTrace's options; onWarning defaults to `log`). */
  trace: TraceOptions;
  sink: SemanticSink;
  /**
   * Backpressure from the sink's transport: a promise to await before taking the next event when the sink is
   * behind (the trace session buffers meanwhile), null when it is not. Without it, a fast workload outruns the engine.
   */
  pressure?: () => Promise<void> | null;
  route: VolumeRoute;
  log?: (line: string) => void;
  informer?: InformerTuning;
  /** The machine as the informer sees it (tests inject a fake). */
  fs?: AgentFileSystem;
}

export interface AgentStats {
  backend: string;
  events: number;
  /** Events the tracer reported lost (the picture has gaps). */
  lostEvents: number;
  insights: Partial<Record<InsightKind, number>>;
  informer: InformerStats;
  /** Wall time from the first event to the end of the flush. */
  elapsedMs: number;
  /** From each system call to the agent handling it. */
  lag: LagSummary;
}

export interface AgentSession {
  backendName: string;
  /** The traced command's exit status (see TraceSession.exited). */
  exited: Promise<number | null>;
  /** Resolves once the event stream ended and every pending readback and refresh went to the sink. */
  done: Promise<void>;
  /** Stops tracing, then flushes; resolves with `done`. */
  stop(): Promise<void>;
  stats(): AgentStats;
}

/** Longest stretch of event handling before the agent lets its other work run. */
const EVENT_SLICE_MS = 10;
/** How often the agent's eBPF tracer hands over events (sky trace: 100 ms). */
const AGENT_COLLECT_MS = 25;
/** Readbacks wait this long for more writes to the same file (the informer's default is 50 ms). */
const AGENT_DEBOUNCE_MS = 10;

export async function startAgent(options: AgentOptions): Promise<AgentSession> {
  const log = options.log ?? (() => undefined);
  const informer = new Informer({ debounceMs: AGENT_DEBOUNCE_MS, ...options.informer, sink: options.sink, fs: options.fs ?? new LocalFileSystem(options.route), log });
  const target = options.trace.target;
  const engine = new InsightEngine({
    reportWrites: true,
    ...(target.kind === 'command' ? { commandCwd: target.cwd ?? process.cwd() } : {}),
  });
  const insights: Partial<Record<InsightKind, number>> = {};
  engine.onInsight((insight) => {
    insights[insight.kind] = (insights[insight.kind] ?? 0) + 1;
    informer.handle(insight);
  });
  // A hint is worth most before the block write it describes: collect the BPF maps 4× as often as `sky trace` does.
  const trace = { ...options.trace, ebpf: { collectMs: AGENT_COLLECT_MS, ...options.trace.ebpf } };
  const session = await startTrace({ onWarning: (message) => log(`tracer: ${message}`), ...trace });
  engine.attached(attachedPids(target));
  // First word to the engine: a tracer describes this volume now, so blocks outside known files are metadata.
  options.sink({ type: 'Tracing', tracer: session.backendName });
  let events = 0;
  const lag = new LagHistogram();
  // performance.now() reads the events' clock too (libuv's CLOCK_MONOTONIC) without a BigInt per event; its zero is
  // placed once (tens of µs off, which the power-of-two histogram does not see).
  const clockOffsetNs = monotonicNowNs() - performance.now() * 1e6;
  let firstEventAt = 0;
  let endedAt = 0;
  const done = (async () => {
    try {
      let sliceStarted = performance.now();
      for await (const event of session.events) {
        if (events++ === 0) firstEventAt = performance.now();
        lag.add(event.ts, performance.now() * 1e6 + clockOffsetNs);
        engine.handle(event);
        const behind = options.pressure?.();
        if (behind) await behind;
        // A collection of events is handed over at once and handled in microtasks; without a turn of the event loop
        // now and then, nothing else runs meanwhile: the hint socket is not written, the tracer's maps are not
        // collected, the extent read-ahead waits.
        if ((events & 63) === 0 && performance.now() - sliceStarted >= EVENT_SLICE_MS) {
          await new Promise<void>((resolve) => setImmediate(resolve));
          sliceStarted = performance.now();
        }
      }
    } finally {
      engine.finish();
      await informer.flush();
      endedAt = performance.now();
    }
  })();
  done.catch(() => undefined);
  return {
    backendName: session.backendName,
    exited: session.exited,
    done,
    async stop() {
      await session.stop();
      await done;
    },
    stats() {
      const summary = engine.summary();
      return {
        backend: session.backendName,
        events,
        lostEvents: Math.max(session.lost(), summary.counters.lostEvents),
        insights: { ...insights },
        informer: informer.stats(),
        elapsedMs: firstEventAt === 0 ? 0 : (endedAt || performance.now()) - firstEventAt,
        lag: lag.summary(),
      };
    },
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Worker thread

/** What crosses into the worker (structured-clonable: no functions). */
export interface AgentWorkerData {
  trace: Omit<TraceOptions, 'onWarning'>;
  route: VolumeRoute;
  informer?: InformerTuning;
}

export type AgentWorkerReport =
  | { type: 'started'; backend: string }
  | { type: 'messages'; messages: SemanticMessage[] }
  | { type: 'log'; line: string }
  | { type: 'exited'; code: number | null }
  | { type: 'done'; stats: AgentStats }
  | { type: 'failed'; message: string; traceError: boolean; stats: AgentStats | null };

/** startAgent in a worker thread; `sink` and `log` run on this thread. */
export function startAgentWorker(options: Omit<AgentOptions, 'fs' | 'trace'> & { trace: Omit<TraceOptions, 'onWarning'> }): Promise<AgentSession> {
  const data: AgentWorkerData = { trace: options.trace, route: options.route, informer: options.informer };
  const worker = new Worker(new URL('./worker.js', import.meta.url), { workerData: data });
  const log = options.log ?? (() => undefined);
  let lastStats: AgentStats | null = null;
  let resolveExited: (code: number | null) => void = () => undefined;
  const exited = new Promise<number | null>((resolve) => (resolveExited = resolve));
  let settleDone: { resolve: () => void; reject: (error: Error) => void } = { resolve: () => undefined, reject: () => undefined };
  const done = new Promise<void>((resolve, reject) => (settleDone = { resolve, reject }));
  done.catch(() => undefined);
  return new Promise<AgentSession>((resolveStart, rejectStart) => {
    let started = false;
    const fail = (error: Error) => {
      resolveExited(null);
      if (!started) rejectStart(error);
      settleDone.reject(error);
    };
    worker.on('error', (error) => fail(error));
    worker.on('exit', () => {
      resolveExited(null);
      fail(new Error('the agent worker ended without finishing'));
    });
    worker.on('message', (report: AgentWorkerReport) => {
      switch (report.type) {
        case 'started':
          started = true;
          resolveStart({
            backendName: report.backend,
            exited,
            done,
            async stop() {
              worker.postMessage({ type: 'stop' });
              await done;
            },
            stats: () => lastStats ?? emptyStats(report.backend),
          });
          return;
        case 'messages':
          for (const message of report.messages) options.sink(message);
          return;
        case 'log':
          log(report.line);
          return;
        case 'exited':
          resolveExited(report.code);
          return;
        case 'done':
          lastStats = report.stats;
          settleDone.resolve();
          void worker.terminate();
          return;
        case 'failed': {
          lastStats = report.stats;
          const error = report.traceError ? new TraceError(report.message) : new Error(report.message);
          fail(error);
          void worker.terminate();
          return;
        }
      }
    });
  });
}

function unused(): never {
  throw new Error('unused');
}

function emptyStats(backend: string): AgentStats {
  return { backend, events: 0, lostEvents: 0, insights: {}, informer: new Informer({ sink: () => undefined, prefetch: false, fs: { locate: () => null, open: unused, list: unused, identify: unused } }).stats(), elapsedMs: 0, lag: new LagHistogram().summary() };
}
