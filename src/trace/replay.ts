/** The replay backend: a recorded JSONL log of SyscallEvents, validated line by line, as a live trace would be. */
import { createReadStream, existsSync, statSync } from 'node:fs';
import { TraceError } from './errors.js';
import type { SyscallEvent } from './events.js';
import { LineSplitter } from './lines.js';
import type { EventSink, RunningBackend, TraceOptions } from './session.js';
import { syscallEventError } from './validate.js';

/** Reading pauses while this many events wait for the consumer: a log can be larger than memory. */
const BACKLOG_HIGH = 65_536;

/** One line of a recorded log as an event; a TraceError naming the file and line when it is not one. */
export function parseRecordedLine(text: string, file: string, lineNumber: number): SyscallEvent {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new TraceError(`${file}:${lineNumber}: not JSON (${(error as Error).message})`);
  }
  const problem = syscallEventError(value);
  if (problem) throw new TraceError(`${file}:${lineNumber}: ${problem}`);
  return value as SyscallEvent;
}

export async function startReplay(options: TraceOptions, sink: EventSink): Promise<RunningBackend> {
  const target = options.target;
  if (target.kind !== 'replay') throw new TraceError('the replay backend needs a replay target (a recorded file)');
  const file = target.file;
  if (!existsSync(file) || !statSync(file).isFile()) throw new TraceError(`recorded trace ${file} does not exist`);
  let lineNumber = 0;
  let failure: Error | null = null;
  let ended = false;
  const stream = createReadStream(file);
  const splitter = new LineSplitter((buffer, start, end) => {
    lineNumber++;
    if (failure || end === start) return;
    try {
      sink.event(parseRecordedLine(buffer.toString('utf8', start, end), file, lineNumber));
    } catch (error) {
      failure = error as Error;
      stream.destroy();
    }
  });
  let resolveExited: (value: null) => void = () => undefined;
  const exited = new Promise<number | null>((resolve) => (resolveExited = resolve));
  const done = new Promise<void>((resolve) => {
    const finish = (error?: Error) => {
      if (ended) return;
      ended = true;
      resolveExited(null);
      sink.end(error);
      resolve();
    };
    stream.on('data', (chunk) => {
      splitter.push(chunk as Buffer);
      if (sink.backlog() > BACKLOG_HIGH) throttle();
    });
    stream.on('end', () => {
      splitter.end();
      finish(failure ?? undefined);
    });
    stream.on('close', () => finish(failure ?? undefined));
    stream.on('error', (error) => finish(new TraceError(`cannot read ${file}: ${error.message}`)));
  });
  const throttle = () => {
    stream.pause();
    const wait = () => (sink.backlog() > BACKLOG_HIGH / 2 ? setTimeout(wait, 5) : stream.resume());
    setTimeout(wait, 5);
  };
  return {
    name: 'replay',
    exited,
    lost: () => 0,
    stop: async () => {
      stream.destroy();
      await done;
    },
  };
}
