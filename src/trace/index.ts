/**
 * Sky's syscall interception: start a tracer backend on a target and read its SyscallEvents.
 *
 *   const session = await startTrace({ backend: 'ebpf', target: { kind: 'command', argv: ['cp', 'a', 'b'] } });
 *   for await (const event of session.events) handle(event);
 *   const status = await session.exited;
 *
 * Backends: `ebpf` (bpftrace, in-kernel filtering and aggregation; the default), `ptrace` (strace; every call
 * stops the process, for machines without eBPF), `replay` (a log written with `record`).
 */
import { openSync } from 'node:fs';
import { startEbpf } from './ebpf/backend.js';
import { TraceError } from './errors.js';
import type { SyscallEvent } from './events.js';
import { startPtrace } from './ptrace/backend.js';
import { EventQueue } from './queue.js';
import { Recorder } from './record.js';
import { startReplay } from './replay.js';
import type { EventSink, RunningBackend, TraceOptions, TraceSession } from './session.js';

export { TraceError } from './errors.js';
export type { EbpfTuning, PtraceTuning, TraceOptions, TraceSession, TraceTarget } from './session.js';
export { attachedPids } from './session.js';
export { NICE_MAX } from './system.js';
export { LINGER_DEFAULT_MS } from './session.js';
export type { SyscallEvent, SyscallEventKind } from './events.js';
export { AT_FDCWD, SYSCALL_EVENT_VERSION, monotonicNowNs } from './events.js';
export { SKY_HINT_MAGIC, SKY_HINT_SYSCALLS } from './hint-abi.js';
export { syscallEventError, isSyscallEvent } from './validate.js';

function openRecorder(path: string): Recorder {
  try {
    return new Recorder(openSync(path, 'w'));
  } catch (error) {
    throw new TraceError(`cannot write the record file ${path}: ${(error as Error).message}`);
  }
}

interface Plumbing {
  sink: EventSink;
  queue: EventQueue;
  ended: Promise<void>;
}

/** The sink records each event before queueing it, and closes the record file before the stream ends. */
function plumbing(options: TraceOptions): Plumbing {
  const queue = new EventQueue();
  const recorder = options.record ? openRecorder(options.record) : null;
  let markEnded: () => void = () => undefined;
  const ended = new Promise<void>((resolve) => (markEnded = resolve));
  let closing = false;
  const sink: EventSink = {
    event(event: SyscallEvent) {
      recorder?.write(event);
      queue.push(event);
    },
    warning(message: string) {
      options.onWarning?.(message);
    },
    end(error?: Error) {
      if (closing) return;
      closing = true;
      const closed = recorder ? recorder.close() : Promise.resolve();
      closed.then(
        () => queue.end(error),
        (recordError: Error) => queue.end(error ?? new TraceError(`writing ${options.record} failed: ${recordError.message}`)),
      ).finally(markEnded);
    },
    backlog: () => queue.backlog,
  };
  return { sink, queue, ended };
}

function checkTarget(options: TraceOptions): void {
  const replaying = options.target.kind === 'replay';
  if (replaying !== (options.backend === 'replay')) {
    throw new TraceError(replaying ? `a recorded log is read by the replay backend, not ${options.backend}` : 'the replay backend reads a replay target (a recorded file)');
  }
}

export async function startTrace(options: TraceOptions): Promise<TraceSession> {
  checkTarget(options);
  const { sink, queue, ended } = plumbing(options);
  let backend: RunningBackend;
  try {
    if (options.backend === 'ebpf') backend = await startEbpf(options, sink);
    else if (options.backend === 'ptrace') backend = await startPtrace(options, sink);
    else backend = await startReplay(options, sink);
  } catch (error) {
    sink.end(error as Error);
    await ended;
    throw error;
  }
  return {
    events: queue,
    lost: () => backend.lost() + queue.dropped,
    stop: async () => {
      await backend.stop();
      await ended;
    },
    exited: backend.exited,
    backendName: backend.name,
  };
}
