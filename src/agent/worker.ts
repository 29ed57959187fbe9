/**
 * Worker-thread entry of startAgentWorker: runs startAgent here and posts its messages (batched per event-loop turn)
 * and reports to the parent. See agent.ts for why `sky run` keeps this work off the engine's thread.
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { SemanticMessage } from '../semantics/messages.js';
import { TraceError } from '../trace/index.js';
import { startAgent, type AgentSession, type AgentWorkerData, type AgentWorkerReport } from './agent.js';

const port = parentPort!;
const data = workerData as AgentWorkerData;
const post = (report: AgentWorkerReport) => port.postMessage(report);

let outbox: SemanticMessage[] = [];
let scheduled = false;
const BATCH_MAX = 256;

function flushOutbox(): void {
  scheduled = false;
  if (outbox.length === 0) return;
  const messages = outbox;
  outbox = [];
  post({ type: 'messages', messages });
}

function sink(message: SemanticMessage): void {
  outbox.push(message);
  if (outbox.length >= BATCH_MAX) flushOutbox();
  else if (!scheduled) {
    scheduled = true;
    setImmediate(flushOutbox);
  }
}

let session: AgentSession | null = null;
let stopRequested = false;
port.on('message', (message: { type: string }) => {
  if (message.type !== 'stop') return;
  stopRequested = true;
  void session?.stop().catch(() => undefined);
});

try {
  session = await startAgent({ trace: data.trace, route: data.route, informer: data.informer, sink, log: (line) => post({ type: 'log', line }) });
  post({ type: 'started', backend: session.backendName });
  if (stopRequested) void session.stop().catch(() => undefined);
  void session.exited.then((code) => post({ type: 'exited', code }));
  try {
    await session.done;
    flushOutbox();
    post({ type: 'done', stats: session.stats() });
  } catch (error) {
    flushOutbox();
    post({ type: 'failed', message: (error as Error).message, traceError: error instanceof TraceError, stats: session.stats() });
  }
} catch (error) {
  post({ type: 'failed', message: (error as Error).message, traceError: error instanceof TraceError, stats: null });
}
