#!/usr/bin/env node
/** The `residual` command. */
import { Command, CommanderError } from 'commander';
import { registerTrain } from './commands/train.js';
import { registerEval } from './commands/eval.js';
import { registerPredict } from './commands/predict.js';
import { registerExport } from './commands/export.js';
import { registerBench } from './commands/bench.js';
import { registerDevices } from './commands/devices.js';
import { registerWeights } from './commands/weights.js';
import { registerData } from './commands/data.js';
import { registerPlot } from './commands/plot.js';
import { registerReproduce } from './commands/reproduce.js';
import { registerAnalyze } from './commands/analyze.js';
import { UsageError } from './options.js';

const program = new Command('residual')
  .description('Deep residual networks, trained and run from TypeScript on WebGPU and the CPU')
  .version('0.1.0')
  .showHelpAfterError()
  .exitOverride();

for (const register of [registerTrain, registerEval, registerPredict, registerExport, registerBench, registerPlot, registerReproduce, registerAnalyze, registerWeights, registerDevices, registerData]) register(program);

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
