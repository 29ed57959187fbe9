/**
 * `sky report LOG [--truth truth.json] [--out DIR] [--json]`: turns a tag log (the `tag-log` layer's JSONL) into
 * DIR/report.md, DIR/report.json and DIR/*.svg, and prints the markdown (or, with --json, the JSON) on stdout.
 * DIR defaults to LOG's name without its extension plus "-report", next to the log. With --truth (a ground truth
 * from GroundTruth.toJSON, e.g. written by `sky bench accuracy`), the report scores the tags.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { buildReport, renderBrief, renderMarkdown, TagLogError, writeReport } from '../report/index.js';

interface ReportCliOptions {
  truth?: string;
  out?: string;
  json?: boolean;
  brief?: boolean;
}

const EXIT_FAILED = 1;

export function defaultReportDir(logPath: string): string {
  const parsed = path.parse(path.resolve(logPath));
  return path.join(parsed.dir, `${parsed.name}-report`);
}

function fail(message: string): never {
  process.stderr.write(`sky report: ${message}\n`);
  process.exit(EXIT_FAILED);
}

async function runReport(log: string, options: ReportCliOptions): Promise<void> {
  if (!fs.existsSync(log)) fail(`no such file: ${log}`);
  if (fs.statSync(log).isDirectory()) fail(`${log} is a directory, not a tag log`);
  if (options.truth !== undefined && !fs.existsSync(options.truth)) fail(`no such truth file: ${options.truth}`);
  let report;
  try {
    report = await buildReport(log, { truth: options.truth });
  } catch (err) {
    if (err instanceof TagLogError) fail(err.message);
    if (err instanceof SyntaxError) fail(`${options.truth} is not JSON: ${err.message}`);
    fail((err as Error).message);
  }
  if (report.log.truncated) process.stderr.write(`sky report: warning: the last line of ${log} is cut short (the engine stopped before flushing it); it was skipped\n`);
  if (report.log.malformed > 0) process.stderr.write(`sky report: warning: ${report.log.malformed} malformed lines skipped (first at line ${report.log.firstMalformedLine})\n`);
  const outDir = options.out ?? defaultReportDir(log);
  const markdown = renderMarkdown(report);
  const written = writeReport(report, outDir, markdown);
  process.stdout.write(options.json ? `${JSON.stringify(report, null, 2)}\n` : options.brief ? renderBrief(report) : markdown);
  process.stderr.write(`sky report: wrote ${written.length} files to ${outDir}\n`);
}

export function registerReport(program: Command): void {
  program
    .command('report')
    .description('summarise a tag log (layer tag-log): bytes by origin, class, file size and process, block lifetimes, tag accuracy')
    .argument('<log>', 'the tag log (JSONL written by a {type: tag-log} layer)')
    .option('--truth <file>', 'ground truth JSON (GroundTruth.toJSON): adds the accuracy section')
    .option('--out <dir>', 'where report.md, report.json and the SVG plots go (default: LOG-report next to the log)')
    .option('--json', 'print the report as JSON instead of markdown')
    .option('--brief', 'print only origin, class, patterns and the accuracy headline (the files are complete)')
    .action(async (log: string, options: ReportCliOptions) => runReport(log, options));
}
