/**
 * Helpers for the tracer tests: compile the C fixtures, run a command under a backend and keep every event, and
 * small queries over an event log. Every process a test starts outside a trace is killed by pid in cleanup.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { SyscallEvent } from '../../../src/trace/events.js';
import { startTrace, type TraceOptions } from '../../../src/trace/index.js';

export type Backend = 'ebpf' | 'ptrace';
export type Ev<K extends SyscallEvent['kind']> = Extract<SyscallEvent, { kind: K }>;

export const FIXTURES = path.resolve('test/fixtures/trace');

export function tempDir(prefix: string): string {
  // realpath: the kernel reports resolved paths.
  return fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), `sky-trace-${prefix}-`)));
}

export function compileFixtures(into: string): Record<'hint' | 'thread' | 'misc' | 'fdops', string> {
  const out = {} as Record<'hint' | 'thread' | 'misc' | 'fdops', string>;
  for (const name of ['hint', 'thread', 'misc', 'fdops'] as const) {
    out[name] = path.join(into, name);
    execFileSync('gcc', ['-O1', '-Wall', '-Werror', '-o', out[name], path.join(FIXTURES, `${name}.c`), '-lpthread']);
  }
  return out;
}

export interface Run {
  events: SyscallEvent[];
  exit: number | null;
  lost: number;
  warnings: string[];
  /** Pid of the traced command (the first exec's process). */
  root: number;
}

export async function traceCommand(backend: Backend, argv: string[], cwd: string, extra: Partial<TraceOptions> = {}): Promise<Run> {
  const warnings: string[] = [];
  const session = await startTrace({
    backend,
    target: { kind: 'command', argv, cwd, stdio: 'ignore' },
    onWarning: (message) => warnings.push(message),
    ...extra,
  });
  const events: SyscallEvent[] = [];
  try {
    for await (const event of session.events) events.push(event);
  } finally {
    await session.stop();
  }
  const firstExec = events.find((event) => event.kind === 'exec');
  return { events, exit: await session.exited, lost: session.lost(), warnings, root: firstExec?.pid ?? -1 };
}

export function ofKind<K extends SyscallEvent['kind']>(events: SyscallEvent[], kind: K): Ev<K>[] {
  return events.filter((event): event is Ev<K> => event.kind === kind);
}

/** The successful open of `file` (a path as the process passed it); exactly one is expected. */
export function openOf(events: SyscallEvent[], file: string, extra: (event: Ev<'open'>) => boolean = () => true): Ev<'open'> {
  const opens = ofKind(events, 'open').filter((event) => event.path === file && event.ret >= 0 && extra(event));
  if (opens.length !== 1) throw new Error(`expected one open of ${file}, got ${opens.length}`);
  return opens[0];
}

/** Summaries of one fd of one process after `from` (the open that made it), before that fd is closed. */
export function summariesOf(events: SyscallEvent[], pid: number, fd: number, from = 0): Ev<'rw_summary'>[] {
  const closed = events.find((event) => event.ts > from && event.pid === pid && event.kind === 'close' && event.fd === fd);
  return ofKind(events, 'rw_summary').filter(
    (event) => event.pid === pid && event.fd === fd && event.ts >= from && (!closed || event.ts <= closed.ts),
  );
}

/** Adds up summaries (the ebpf backend may cut one fd's calls into several, one per collection). */
export function total(summaries: Ev<'rw_summary'>[]): Omit<Ev<'rw_summary'>, 'ts' | 'tid' | 'kind' | 'pid' | 'fd' | 'ino' | 'dev'> {
  const sum = { readCalls: 0, readBytes: 0, writeCalls: 0, writeBytes: 0, writeStart: -1, writeEnd: -1, position: -1 };
  for (const s of summaries) {
    sum.readCalls += s.readCalls;
    sum.readBytes += s.readBytes;
    sum.writeCalls += s.writeCalls;
    sum.writeBytes += s.writeBytes;
    if (s.writeStart >= 0) sum.writeStart = sum.writeStart < 0 ? s.writeStart : Math.min(sum.writeStart, s.writeStart);
    sum.writeEnd = Math.max(sum.writeEnd, s.writeEnd);
    sum.position = s.position;
  }
  return sum;
}

/** Parent pid of each process, from fork events (threads excluded). */
export function parents(events: SyscallEvent[]): Map<number, number> {
  const map = new Map<number, number>();
  for (const fork of ofKind(events, 'fork')) if (!fork.thread) map.set(fork.child, fork.pid);
  return map;
}

export function isDescendant(events: SyscallEvent[], pid: number, ancestor: number): boolean {
  const up = parents(events);
  for (let current: number | undefined = pid; current !== undefined; current = up.get(current)) {
    if (current === ancestor) return true;
  }
  return false;
}

/** Starts a process outside any trace, in its own process group; kill it with killGroup. */
export function startOutsider(script: string, cwd: string): ChildProcess {
  return spawn('sh', ['-c', script], { cwd, stdio: 'ignore', detached: true });
}

export function killGroup(child: ChildProcess | null): void {
  if (!child?.pid) return;
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {
    // already gone
  }
}
