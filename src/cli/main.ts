#!/usr/bin/env node
import { Command } from 'commander';
import { registerServe } from './serve.js';
import { registerTrace } from './trace.js';
import { registerBenchNbd } from './bench-nbd.js';
import { registerBenchOverhead } from './bench-overhead.js';

const program = new Command();
program
  .name('sky')
  .description('Sky: a semantic-aware virtual-disk engine served over NBD')
  .version('0.1.0')
  .showHelpAfterError();

registerServe(program);
registerTrace(program);
const bench = program.command('bench').description('benchmarks that print ratios against an anchor measured in the same run');
registerBenchNbd(bench);
registerBenchOverhead(bench);

await program.parseAsync(process.argv);
