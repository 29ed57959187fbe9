/**
 * End-to-end helpers: run a real program under a real tracer backend, feed the InsightEngine, collect insights.
 * Every test gets its own directory; every process a test starts is killed by pid in its cleanup.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { InsightEngine, type Insight, type InsightKind } from '../../../src/insight/index.js';
import { startTrace } from '../../../src/trace/index.js';

export type Backend = 'ebpf' | 'ptrace';
export const BACKENDS: Backend[] = ['ebpf', 'ptrace'];

export const FIXTURES = path.resolve('test/fixtures/insight');
export const SDK_HEADER_DIR = path.resolve('src/hints/sdk');

export interface TraceResult {
  insights: Insight[];
  exit: number | null;
  lost: number;
  engine: InsightEngine;
}

export async function traceCommand(backend: Backend, argv: string[], cwd: string, env?: Record<string, string>): Promise<TraceResult> {
  const warnings: string[] = [];
  const session = await startTrace({
    backend,
    target: { kind: 'command', argv, cwd, stdio: 'ignore', ...(env ? { env: { ...process.env, ...env } } : {}) },
    onWarning: (message) => warnings.push(message),
  });
  const engine = new InsightEngine({ commandCwd: cwd });
  const insights: Insight[] = [];
  engine.onInsight((insight) => insights.push(insight));
  try {
    for await (const event of session.events) engine.handle(event);
  } finally {
    await session.stop();
  }
  engine.finish();
  return { insights, exit: await session.exited, lost: session.lost(), engine };
}

export function ofKind<K extends InsightKind>(insights: Insight[], kind: K): Array<Extract<Insight, { kind: K }>> {
  return insights.filter((i): i is Extract<Insight, { kind: K }> => i.kind === kind);
}

/** The last file_closed of a path: its final size and class as the engine saw them. */
export function lastClosed(insights: Insight[], filePath: string): Extract<Insight, { kind: 'file_closed' }> | undefined {
  return ofKind(insights, 'file_closed')
    .filter((c) => c.path === filePath)
    .at(-1);
}

export function tempDir(prefix: string): string {
  // realpath: /tmp may be a symlink, and the kernel reports resolved paths.
  return fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), `sky-insight-${prefix}-`)));
}

export function compile(source: string, output: string, extra: string[] = []): string {
  execFileSync('gcc', ['-O2', '-Wall', '-Werror', '-o', output, path.join(FIXTURES, source), ...extra]);
  return output;
}

export function randomFile(file: string, bytes: number): void {
  fs.writeFileSync(file, execFileSync('head', ['-c', String(bytes), '/dev/urandom']));
}

/** Starts a process outside any trace; the caller must kill it (by pid) in cleanup. */
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
