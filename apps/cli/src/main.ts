#!/usr/bin/env node
/** The `residual` command. */
import { Command, CommanderError } from 'commander';
import { UsageError } from './options.js';

const program = new Command('residual')
  .description('Deep residual networks, trained and run from TypeScript on WebGPU and the CPU')
  .version('0.1.0')
  .showHelpAfterError()
  .exitOverride();

// Each command's module is loaded only when it is the one asked for (all of them for help): they
// import the models, backends and sharp, and loading them all cost `residual data bench` half a second.
const commands: Record<string, () => Promise<(program: Command) => void>> = {
  train: async () => (await import('./commands/train.js')).registerTrain,
  eval: async () => (await import('./commands/eval.js')).registerEval,
  predict: async () => (await import('./commands/predict.js')).registerPredict,
  export: async () => (await import('./commands/export.js')).registerExport,
  bench: async () => (await import('./commands/bench.js')).registerBench,
  plot: async () => (await import('./commands/plot.js')).registerPlot,
  reproduce: async () => (await import('./commands/reproduce.js')).registerReproduce,
  analyze: async () => (await import('./commands/analyze.js')).registerAnalyze,
  weights: async () => (await import('./commands/weights.js')).registerWeights,
  devices: async () => (await import('./commands/devices.js')).registerDevices,
  data: async () => (await import('./commands/data.js')).registerData,
};
const asked = commands[process.argv[2]];
for (const load of asked ? [asked] : Object.values(commands)) (await load())(program);

try {
  await program.parseAsync(process.argv);
  // Dawn's and the decode workers' handles would keep the process alive; the work is done.
  process.exit(0);
} catch (e) {
  if (e instanceof CommanderError) process.exit(e.exitCode);
  const usage = e instanceof UsageError;
  const debug = process.env.RESIDUAL_DEBUG && !usage;
  process.stderr.write(`residual: ${debug ? ((e as Error).stack ?? String(e)) : ((e as Error).message ?? String(e))}\n`);
  process.exit(usage ? 2 : 1);
}
