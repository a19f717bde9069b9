/**
 * `residual reproduce`: the paper's experiments at a chosen scale. `degradation` is Figure 6: plain
 * nets get worse with depth (plain-56 above plain-20) while residual nets get better (ResNet-56 below
 * ResNet-20), trained with the CIFAR recipe scaled to the run length. `cifar` is Table 6: the CIFAR
 * ResNets' test errors beside the paper's.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Command } from 'commander';
import { z } from 'zod';
import { createLoader } from '@residual/data';
import { evaluate, type ModelName } from '@residual/resnet';
import { evalTransform, openData } from '../data.js';
import { backendOption, nonNegativeInt, positiveInt, resolveOptions, UsageError } from '../options.js';
import { loadModel } from '../weights.js';
import { emit, info } from '../output.js';
import type { TopLevelSpec } from 'vega-lite';
import { chartSpec, readCurves, renderSvg, type CurvePoint } from './plot.js';
import { runTrain, trainSchema, type TrainResult } from './train.js';

/**
 * How big each scale is: steps per network, images per step, training images (a subset, or all), and
 * the training images held out for the per-epoch test error (CIFAR data; other data sets use their own
 * validation split). Every network starts with the same linear warm-up over the first `warmup` of the
 * run: at the full rate from the first step, the 56-layer networks can blow up (the paper warmed its
 * ResNet-110 at 0.01; that rule's jump to 0.1, taken where our short runs reach 80% training error,
 * sent a ResNet-56 to chance and kept it there), and a short run should compare how the networks
 * train, not whether their first steps survived.
 */
export const SCALES = {
  /** About 10 minutes on 2 CPU cores: 400 steps of 128 on 5,000 images, 1,000 held out. */
  tiny: { iterations: 400, batchSize: 128, trainSubset: 5000, valSplit: 1000, warmup: 0.2 },
  /** Under 3 hours on 2 CPU cores: 6,000 steps of 128 on the paper's 45k/5k split. */
  small: { iterations: 6000, batchSize: 128, trainSubset: undefined, valSplit: 5000, warmup: 0.05 },
  /** The paper's 64k iterations of batch 128 on the 45k/5k split. */
  paper: { iterations: 64000, batchSize: 128, trainSubset: undefined, valSplit: 5000, warmup: 0 },
} as const;

/** The networks of Figure 6. */
const NETWORKS = ['plain20', 'plain56', 'resnet20', 'resnet56'] as const;

/** Figure 6: one panel of the plain networks, one of the residual ones, thin = train, bold = test error. */
const figure6 = (panels: [string, CurvePoint[]][]): TopLevelSpec => ({
  $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
  background: 'white',
  hconcat: panels.map(([title, points]) => {
    const { $schema: _, background: __, ...panel } = chartSpec(points, title) as unknown as Record<string, unknown>;
    return { ...panel, width: 380, height: 280 };
  }),
  resolve: { scale: { color: 'independent', y: 'shared' } },
}) as TopLevelSpec;

/** Table 6's test errors (%) of the CIFAR-10 ResNets, 64k iterations (ResNet-110: the best of 5 runs). */
export const PAPER_TABLE6: Readonly<Record<string, number>> = { resnet20: 8.75, resnet32: 7.51, resnet44: 7.17, resnet56: 6.97, resnet110: 6.43 };

const schema = z.strictObject({
  experiment: z.enum(['degradation', 'cifar']),
  scale: z.enum(['tiny', 'small', 'paper']).default('tiny'),
  data: z.string().min(1).default('builtin:shapes'),
  models: z
    .union([z.string().transform((x) => x.split(',').map((m) => m.trim()).filter(Boolean)), z.array(z.string())])
    .pipe(z.array(z.enum(Object.keys(PAPER_TABLE6) as [string, ...string[]])).min(1))
    .default(Object.keys(PAPER_TABLE6)),
  out: z.string().optional(),
  seed: nonNegativeInt().default(0),
  iterations: positiveInt().optional(),
  backend: backendOption(),
  json: z.boolean().default(false),
});
type Options = z.infer<typeof schema>;

/** Registers `reproduce`. */
export const registerReproduce = (program: Command): void => {
  program
    .command('reproduce')
    .description("Re-run the paper's experiments at a chosen scale (degradation: Figure 6, plain vs residual 20/56; cifar: Table 6)")
    .argument('<experiment>', 'degradation | cifar')
    .option('--scale <scale>', 'tiny (about 10 CPU minutes) | small (under 3 CPU hours) | paper (64k steps, for a GPU)', 'tiny')
    .option('--data <spec>', 'cifar10:DIR, or builtin:shapes', 'builtin:shapes')
    .option('--models <list>', `cifar: the networks, comma-separated (default ${Object.keys(PAPER_TABLE6).join(',')})`)
    .option('--out <dir>', 'where the runs, the figure and the summary go (default runs/degradation or runs/cifar)')
    .option('--seed <n>', 'seed of every run', '0')
    .option('--iterations <n>', "override the scale's steps per network")
    .option('--backend <name>', 'cpu | webgpu | auto')
    .option('--config <file>', 'JSON file with any of these options')
    .option('--json', 'print the result as JSON on stdout')
    .addHelpText('after', '\nExamples:\n  residual reproduce degradation --scale tiny --data cifar10:~/cifar-10-batches-bin\n  residual reproduce cifar --models resnet20,resnet32 --scale small --data cifar10:~/cifar-10-batches-bin')
    .action(async (experiment: string, flags: Record<string, unknown>, cmd: Command) => {
      const o = resolveOptions(schema, { ...flags, experiment }, (k) => k === 'experiment' || cmd.getOptionValueSource(k) === 'cli', flags.config as string | undefined);
      await (o.experiment === 'degradation' ? degradation(o) : cifarTable(o));
    });
};

/** Figure 6: plain-20/56 and ResNet-20/56 under one recipe, the figure, and the gaps between them. */
const degradation = async (o: Options): Promise<void> => {
  const out = o.out ?? 'runs/degradation';
  const scale = SCALES[o.scale];
  const iterations = o.iterations ?? scale.iterations;
  await mkdir(out, { recursive: true });
  const runs: Record<string, TrainResult> = {};
  const cifar = o.data.startsWith('cifar');
  for (const model of NETWORKS) {
    info(`\n== ${model} (${iterations} steps of ${scale.batchSize}) ==`);
    runs[model] = await runTrain(trainSchema.parse({
      model, data: o.data, iterations, batchSize: scale.batchSize, trainSubset: scale.trainSubset, seed: o.seed,
      out: join(out, model), recipe: 'paper-cifar', warmupSteps: Math.round(scale.warmup * iterations), backend: o.backend, logEvery: 10,
      valSplit: cifar ? scale.valSplit : undefined,
    }));
  }
  const panels: [string, CurvePoint[]][] = [];
  for (const [name, pair] of [['plain', ['plain20', 'plain56']], ['residual', ['resnet20', 'resnet56']]] as const)
    panels.push([`${name} networks`, (await Promise.all(pair.map((m) => readCurves(join(out, m), m)))).flat()]);
  const figure = join(out, 'figure6.svg');
  await writeFile(figure, await renderSvg(figure6(panels)));
  const summary = Object.fromEntries(Object.entries(runs).map(([m, r]) => [m, { trainError: 1 - r.trainAccuracy, testError: r.valAccuracy === null ? null : 1 - r.valAccuracy, seconds: r.elapsedSeconds }]));
  const err = (m: string) => summary[m].trainError;
  // The two halves of Figure 6, as differences of final training error.
  const gaps = { plain56MinusPlain20: err('plain56') - err('plain20'), plain56MinusResnet56: err('plain56') - err('resnet56'), resnet20MinusResnet56: err('resnet20') - err('resnet56') };
  const result = { scale: o.scale, data: o.data, iterations, batchSize: scale.batchSize, trainSubset: scale.trainSubset ?? null, out, figure, summary, gaps };
  await writeFile(join(out, 'summary.json'), `${JSON.stringify(result, null, 2)}\n`);
  emit(o.json, result, (r) =>
    [...Object.entries(r.summary).map(([m, e]) => `${m.padEnd(9)} train error ${(100 * e.trainError).toFixed(1)}%  test error ${e.testError === null ? '-' : `${(100 * e.testError).toFixed(1)}%`}  (${e.seconds.toFixed(0)} s)`),
      `plain-56 minus plain-20: ${(100 * r.gaps.plain56MinusPlain20).toFixed(1)} points of training error (degradation); plain-56 minus ResNet-56: ${(100 * r.gaps.plain56MinusResnet56).toFixed(1)} points`,
      `figure: ${r.figure}`].join('\n'));
};

/**
 * Table 6: each CIFAR ResNet under the paper's recipe (ResNet-110 with its warm-up), then its error on
 * the test split beside the paper's.
 */
const cifarTable = async (o: Options): Promise<void> => {
  const out = o.out ?? 'runs/cifar';
  if (!o.data.startsWith('cifar10:')) throw new UsageError(`--data ${o.data}: reproduce cifar needs CIFAR-10 files (cifar10:DIR)`);
  const scale = SCALES[o.scale];
  const iterations = o.iterations ?? scale.iterations;
  await mkdir(out, { recursive: true });
  const rows: { model: string; trainError: number; valError: number | null; testError: number | null; paperTestError: number; seconds: number }[] = [];
  for (const model of o.models) {
    info(`\n== ${model} (${iterations} steps of ${scale.batchSize}) ==`);
    const r = await runTrain(trainSchema.parse({
      model, data: o.data, iterations, batchSize: scale.batchSize, trainSubset: scale.trainSubset, seed: o.seed,
      out: join(out, model), recipe: model === 'resnet110' ? 'paper-cifar-110' : 'paper-cifar', backend: o.backend, logEvery: 50,
      valSplit: scale.valSplit,
    }));
    const testError = await splitError(model, join(out, model, 'model.safetensors'), o.data);
    rows.push({ model, trainError: 1 - r.trainAccuracy, valError: r.valAccuracy === null ? null : 1 - r.valAccuracy, testError, paperTestError: PAPER_TABLE6[model], seconds: r.elapsedSeconds });
  }
  const pct = (x: number | null) => (x === null ? '-' : `${(100 * x).toFixed(2)}`);
  const table = ['| model | test error (%) | paper (Table 6) | held-out error (%) | training error (%) |', '| --- | --- | --- | --- | --- |',
    ...rows.map((r) => `| ${r.model} | ${pct(r.testError)} | ${r.paperTestError.toFixed(2)} | ${pct(r.valError)} | ${pct(r.trainError)} |`)].join('\n');
  const result = { scale: o.scale, data: o.data, iterations, batchSize: scale.batchSize, out, rows, table };
  await writeFile(join(out, 'summary.json'), `${JSON.stringify(result, null, 2)}\n`);
  await writeFile(join(out, 'table6.md'), `${table}\n`);
  emit(o.json, result, (x) => `${x.table}\n(${x.iterations} steps of ${x.batchSize}, scale ${x.scale}; the paper: 64k steps)`);
};

/** Top-1 error of saved weights on the data's test split; null when it has none. */
const splitError = async (model: string, weights: string, data: string): Promise<number | null> => {
  const source = await openData(data);
  if (!source.splits.includes('test')) {
    info(`${data} has no test split: no test error for ${model}`);
    return null;
  }
  // `model` passed the schema as one of Table 6's CIFAR ResNets.
  const { model: net } = await loadModel(model as ModelName, weights);
  const loader = await createLoader({ source, split: 'test', batchSize: 200, transform: evalTransform(data) });
  try {
    return 1 - (await evaluate(net, loader)).top1;
  } finally {
    await loader.close();
  }
};
