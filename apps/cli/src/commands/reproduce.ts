/**
 * `residual reproduce`: the paper's experiments at a chosen scale. `degradation` is Figure 6: plain
 * nets get worse with depth (plain-56 above plain-20) while residual nets get better (ResNet-56 below
 * ResNet-20), trained with the CIFAR recipe scaled to the run length.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Command } from 'commander';
import { z } from 'zod';
import { backendOption, nonNegativeInt, positiveInt, resolveOptions } from '../options.js';
import { emit, info } from '../output.js';
import { chartSpec, readCurves, renderSvg } from './plot.js';
import { runTrain, trainSchema, type TrainResult } from './train.js';

/** How big each scale is: steps per network, training images, and evaluation between epochs. */
export const SCALES = {
  /** Minutes on a laptop CPU: a first look at the effect, not the paper's numbers. */
  tiny: { iterations: 60, batchSize: 64, trainSubset: 1280 },
  /** About an hour on a CPU, minutes on a GPU. */
  small: { iterations: 2000, batchSize: 128, trainSubset: undefined },
  /** The paper's 64k iterations of batch 128 on the 45k/5k split. */
  paper: { iterations: 64000, batchSize: 128, trainSubset: undefined },
} as const;

const schema = z.strictObject({
  experiment: z.enum(['degradation']),
  scale: z.enum(['tiny', 'small', 'paper']).default('tiny'),
  data: z.string().min(1).default('builtin:shapes'),
  out: z.string().default('runs/degradation'),
  seed: nonNegativeInt().default(0),
  iterations: positiveInt().optional(),
  backend: backendOption(),
  json: z.boolean().default(false),
});

/** Registers `reproduce`. */
export const registerReproduce = (program: Command): void => {
  program
    .command('reproduce')
    .description("Re-run the paper's experiments at a chosen scale (degradation: Figure 6, plain vs residual 20/56)")
    .argument('<experiment>', 'degradation')
    .option('--scale <scale>', 'tiny (minutes) | small | paper', 'tiny')
    .option('--data <spec>', 'cifar10:DIR, or builtin:shapes', 'builtin:shapes')
    .option('--out <dir>', 'where the runs and the figure go', 'runs/degradation')
    .option('--seed <n>', 'seed of every run', '0')
    .option('--iterations <n>', "override the scale's steps per network")
    .option('--backend <name>', 'cpu | webgpu | auto')
    .option('--config <file>', 'JSON file with any of these options')
    .option('--json', 'print the result as JSON on stdout')
    .addHelpText('after', '\nExample:\n  residual reproduce degradation --scale tiny --data cifar10:~/cifar-10-batches-bin')
    .action(async (experiment: string, flags: Record<string, unknown>, cmd: Command) => {
      const o = resolveOptions(schema, { ...flags, experiment }, (k) => k === 'experiment' || cmd.getOptionValueSource(k) === 'cli', flags.config as string | undefined);
      const scale = SCALES[o.scale];
      const iterations = o.iterations ?? scale.iterations;
      await mkdir(o.out, { recursive: true });
      const runs: Record<string, TrainResult> = {};
      for (const model of ['plain20', 'plain56', 'resnet20', 'resnet56'] as const) {
        info(`\n== ${model} (${iterations} steps of ${scale.batchSize}) ==`);
        runs[model] = await runTrain(trainSchema.parse({
          model, data: o.data, iterations, batchSize: scale.batchSize, trainSubset: scale.trainSubset, seed: o.seed,
          out: join(o.out, model), recipe: 'paper-cifar', backend: o.backend, logEvery: 10,
          valSplit: o.scale === 'paper' && o.data.startsWith('cifar') ? 5000 : undefined,
        }));
      }
      const figures: string[] = [];
      for (const [name, pair] of [['plain', ['plain20', 'plain56']], ['residual', ['resnet20', 'resnet56']]] as const) {
        const points = (await Promise.all(pair.map((m) => readCurves(join(o.out, m), m)))).flat();
        const file = join(o.out, `degradation-${name}.svg`);
        await writeFile(file, await renderSvg(chartSpec(points, `${name} networks on ${o.data} (${o.scale})`)));
        figures.push(file);
      }
      const summary = Object.fromEntries(Object.entries(runs).map(([m, r]) => [m, { trainError: 1 - r.trainAccuracy, testError: r.valAccuracy === null ? null : 1 - r.valAccuracy }]));
      await writeFile(join(o.out, 'summary.json'), `${JSON.stringify({ scale: o.scale, data: o.data, iterations, summary }, null, 2)}\n`);
      emit(o.json, { out: o.out, figures, summary }, (r) =>
        [...Object.entries(r.summary).map(([m, e]) => `${m.padEnd(9)} train error ${(100 * e.trainError).toFixed(1)}%  test error ${e.testError === null ? '-' : `${(100 * e.testError).toFixed(1)}%`}`),
          `figures: ${r.figures.join(', ')}`].join('\n'));
    });
};
