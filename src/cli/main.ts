#!/usr/bin/env node
import { Command, CommanderError } from 'commander';

/** What every sky command exits with when its arguments are wrong (commander's own default is 1). */
const EXIT_USAGE = 2;

const program = new Command();
program
  .name('sky')
  .description('Sky: a semantic-aware virtual-disk engine served over NBD')
  .version('0.1.0')
  .showHelpAfterError()
  // Throw instead of exiting, so a usage error exits with EXIT_USAGE; subcommands inherit both settings.
  .exitOverride();
const bench = new Command('bench').description('benchmarks that print ratios against an anchor measured in the same run').showHelpAfterError().exitOverride();

/**
 * Each command lives in its own module, loaded on start. A module that cannot load (say, a native library
 * missing for the tracer) must not take `sky serve` down with it: its command then explains what failed.
 */
async function register(parent: Command, name: string, load: () => Promise<(c: Command) => void>): Promise<void> {
  try {
    (await load())(parent);
  } catch (err) {
    parent
      .command(name)
      .description(`(unavailable: ${(err as Error).message.split('\n')[0]})`)
      .allowUnknownOption()
      .action(() => {
        console.error(`sky ${name}: this command failed to load: ${(err as Error).message}`);
        process.exit(1);
      });
  }
}

await register(program, 'serve', async () => (await import('./serve.js')).registerServe);
await register(program, 'trace', async () => (await import('./trace.js')).registerTrace);
await register(program, 'agent', async () => (await import('./agent.js')).registerAgent);
await register(program, 'run', async () => (await import('./run.js')).registerRun);
await register(program, 'report', async () => (await import('./report.js')).registerReport);
await register(program, 'truth', async () => (await import('./truth.js')).registerTruth);
await register(bench, 'nbd', async () => (await import('./bench-nbd.js')).registerBenchNbd);
await register(bench, 'overhead', async () => (await import('./bench-overhead.js')).registerBenchOverhead);
await register(bench, 'accuracy', async () => (await import('./bench-accuracy.js')).registerBenchAccuracy);
await register(bench, 'tagging', async () => (await import('./bench-tagging.js')).registerBenchTagging);
program.addCommand(bench);

try {
  await program.parseAsync(process.argv);
} catch (error) {
  if (!(error instanceof CommanderError)) throw error;
  // Help and --version end with 0; anything else commander refuses is a usage error (it has printed why).
  process.exitCode = error.exitCode === 0 ? 0 : EXIT_USAGE;
}
