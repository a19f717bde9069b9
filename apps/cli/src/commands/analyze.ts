/**
 * `residual analyze responses`: the paper's Figure 7 for trained networks — the standard deviation of
 * every 3x3 layer's response (after batch-norm, before the ReLU and the addition) over a data split,
 * by layer index and sorted, several runs on one chart.
 */
import { writeFile } from 'node:fs/promises';
import { basename, dirname, extname, resolve } from 'node:path';
import type { Command } from 'commander';
import sharp from 'sharp';
import type { TopLevelSpec } from 'vega-lite';
import { z } from 'zod';
import { createLoader } from '@residual/data';
import { layerResponses, MODELS, type LayerResponse, type ModelName } from '@residual/resnet';
import { selectBackend } from '../backend.js';
import { evalTransform, openData } from '../data.js';
import { backendOption, nonNegativeInt, positiveInt, resolveOptions, UsageError } from '../options.js';
import { emit, info } from '../output.js';
import { loadModel } from '../weights.js';
import { renderSvg } from './plot.js';

const list = z.union([z.string().transform((s) => s.split(',').map((x) => x.trim()).filter(Boolean)), z.array(z.string())]);

const schema = z.strictObject({
  model: list.pipe(z.array(z.enum(Object.keys(MODELS) as [ModelName, ...ModelName[]])).min(1)),
  weights: list.pipe(z.array(z.string().min(1)).min(1)),
  label: list.optional(),
  data: z.string().min(1),
  split: z.enum(['train', 'val', 'test']).default('test'),
  valSplit: nonNegativeInt().optional(),
  batchSize: positiveInt().default(100),
  workers: nonNegativeInt().optional(),
  out: z.string().optional(),
  backend: backendOption(),
  json: z.boolean().default(false),
});

/** One network's responses, as printed and plotted. */
export interface ResponseRun {
  readonly label: string;
  readonly model: string;
  readonly weights: string;
  readonly layers: LayerResponse[];
  /** The same standard deviations, largest first (the figure's lower panel). */
  readonly sorted: number[];
}

/** Figure 7's two panels: std by layer index (top) and sorted in descending order (bottom). */
export const responsesChart = (runs: ResponseRun[], title?: string): TopLevelSpec => {
  const values = runs.flatMap((r) => [
    ...r.layers.map((l) => ({ run: r.label, panel: 'original', x: l.index, std: l.std })),
    ...r.sorted.map((std, i) => ({ run: r.label, panel: 'sorted', x: i + 1, std })),
  ]);
  const panel = (name: string, x: string) => ({
    width: 520,
    height: 200,
    transform: [{ filter: `datum.panel === '${name}'` }],
    mark: { type: 'line' as const, point: true },
    encoding: {
      x: { field: 'x', type: 'quantitative' as const, title: x },
      y: { field: 'std', type: 'quantitative' as const, title: 'std' },
      color: { field: 'run', type: 'nominal' as const, title: 'run', legend: { labelLimit: 400 } },
    },
  });
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: title ?? 'standard deviation of each 3x3 layer\'s response (after BN, before ReLU and addition)',
    background: 'white',
    data: { values },
    vconcat: [panel('original', 'layer index (original order)'), panel('sorted', 'layer index (sorted by magnitude)')],
  };
};

/** The label of a run: the model's name, or the folder of its weights where two runs share a model. */
const labels = (models: string[], weights: string[]) =>
  models.map((m, i) => (models.filter((x) => x === m).length > 1 ? `${m} (${basename(dirname(resolve(weights[i])))})` : m));

/** Registers `analyze`. */
export const registerAnalyze = (program: Command): void => {
  const analyze = program.command('analyze').description('Analyses of trained networks (responses: the paper\'s Figure 7)');
  analyze
    .command('responses')
    .description("Standard deviation of every 3x3 layer's response (after batch-norm, before ReLU and addition) over a data split, like the paper's Figure 7")
    .requiredOption('--model <names>', 'network of each weights file, comma-separated (plain20,plain56,resnet20,resnet56)')
    .requiredOption('--weights <files>', 'weights files, comma-separated, one per --model')
    .requiredOption('--data <spec>', 'cifar10:DIR | cifar100:DIR | imagenet:DIR | builtin:shapes')
    .option('--label <names>', 'the runs\' names on the chart, comma-separated (default: the model names)')
    .option('--split <name>', 'train | val | test', 'test')
    .option('--val-split <n>', 'CIFAR: the last n training images form the val split')
    .option('--batch-size <n>', 'images per batch', '100')
    .option('--workers <n>', 'decoding threads')
    .option('--out <file>', 'chart file: .svg or .png')
    .option('--backend <name>', 'cpu | webgpu | auto')
    .option('--config <file>', 'JSON file with any of these options')
    .option('--json', 'print the result as JSON on stdout')
    .addHelpText('after', '\nExample:\n  residual analyze responses --model plain56,resnet56 --weights runs/fig6/plain56/model.safetensors,runs/fig6/resnet56/model.safetensors --data cifar10:DIR --out fig7.svg')
    .action(async (flags: Record<string, unknown>, cmd: Command) => {
      const o = resolveOptions(schema, flags, (k) => cmd.getOptionValueSource(k) === 'cli', flags.config as string | undefined);
      if (o.weights.length !== o.model.length) throw new UsageError(`--weights names ${o.weights.length} files for ${o.model.length} --model names; give one per model`);
      if (o.label && o.label.length !== o.model.length) throw new UsageError(`--label names ${o.label.length} runs for ${o.model.length} --model names`);
      const ext = o.out ? extname(o.out).toLowerCase() : '';
      if (o.out && ext !== '.svg' && ext !== '.png') throw new UsageError(`--out ${o.out}: use a .svg or .png file name`);
      const backend = await selectBackend(o.backend);
      const source = await openData(o.data, o.valSplit ? { valSplit: o.valSplit } : {});
      const names = o.label ?? labels(o.model, o.weights);
      const runs: ResponseRun[] = [];
      for (const [i, name] of o.model.entries()) {
        const { model } = await loadModel(name, o.weights[i]);
        const loader = await createLoader({ source, split: o.split, batchSize: o.batchSize, transform: evalTransform(o.data), workers: o.workers });
        info(`${names[i]}: responses of ${name} over ${o.data} ${o.split} (${loader.samples} images) with ${backend.name}`);
        const layers = await layerResponses(model, loader);
        await loader.close();
        runs.push({ label: names[i], model: name, weights: o.weights[i], layers, sorted: layers.map((l) => l.std).sort((a, b) => b - a) });
      }
      if (o.out) {
        const svg = await renderSvg(responsesChart(runs));
        if (ext === '.svg') await writeFile(o.out, svg);
        else await sharp(Buffer.from(svg), { density: 144 }).png().toFile(o.out);
      }
      emit(o.json, { data: o.data, split: o.split, out: o.out ?? null, runs }, (r) =>
        [
          ...r.runs.map((run) => {
            const stds = run.layers.map((l) => l.std);
            const mean = stds.reduce((a, b) => a + b, 0) / stds.length;
            return `${run.label.padEnd(10)} ${stds.length} layers, std mean ${mean.toFixed(3)}, max ${run.sorted[0].toFixed(3)}, min ${run.sorted.at(-1)!.toFixed(3)}\n  ${stds.map((s) => s.toFixed(3)).join(' ')}`;
          }),
          ...(r.out ? [`chart: ${r.out}`] : []),
        ].join('\n'));
    });
};
