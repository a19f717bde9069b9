/**
 * `residual plot`: training and validation error curves of one or more runs on one chart, drawn like
 * the paper's Figures 4 and 6 (thin = training error, bold = test error), rendered by Vega-Lite.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { basename, extname, join, resolve } from 'node:path';
import type { Command } from 'commander';
import sharp from 'sharp';
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import { UsageError } from '../options.js';
import { emit } from '../output.js';

/** One point of a curve. */
export interface CurvePoint {
  run: string;
  split: 'train' | 'test';
  iteration: number;
  epoch: number;
  error: number;
}

/**
 * Reads a run folder's metrics as error points (error = 1 - accuracy, in percent): the training curve
 * from the per-step lines (a running mean over the last `window` of them, as batches are noisy), or from
 * the epoch lines when there are none; the test curve from the epoch lines' validation accuracy.
 */
export const readCurves = async (dir: string, name = basename(resolve(dir)), window = 5): Promise<CurvePoint[]> => {
  const path = join(dir, 'metrics.jsonl');
  const text = await readFile(path, 'utf8').catch(() => {
    throw new UsageError(`${path}: cannot read; is ${dir} a run folder of residual train?`);
  });
  const lines: Record<string, unknown>[] = [];
  text.split('\n').forEach((line, i) => {
    if (!line.trim()) return;
    try {
      lines.push(JSON.parse(line));
    } catch {
      throw new UsageError(`${path}:${i + 1}: not a JSON line`);
    }
  });
  const points: CurvePoint[] = [];
  const steps = lines.filter((m) => m.type === 'step' && typeof m.accuracy === 'number');
  steps.forEach((m, i) => {
    const recent = steps.slice(Math.max(0, i - window + 1), i + 1);
    const accuracy = recent.reduce((a, r) => a + (r.accuracy as number), 0) / recent.length;
    points.push({ run: name, split: 'train', iteration: Number(m.step), epoch: Number(m.epoch), error: 100 * (1 - accuracy) });
  });
  for (const m of lines.filter((l) => l.type === 'epoch')) {
    const base = { run: name, iteration: Number(m.step), epoch: Number(m.epoch) };
    if (!steps.length && typeof m.trainAccuracy === 'number') points.push({ ...base, split: 'train', error: 100 * (1 - m.trainAccuracy) });
    if (typeof m.valAccuracy === 'number') points.push({ ...base, split: 'test', error: 100 * (1 - m.valAccuracy) });
  }
  if (points.length === 0) throw new UsageError(`${path}: no metrics yet`);
  return points;
};

/** The Vega-Lite chart of the curves. */
export const chartSpec = (points: CurvePoint[], title?: string): TopLevelSpec => ({
  $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
  title: title ?? undefined,
  width: 520,
  height: 320,
  background: 'white',
  data: { values: points },
  mark: { type: 'line', point: false },
  encoding: {
    x: { field: 'iteration', type: 'quantitative', title: 'iteration' },
    y: { field: 'error', type: 'quantitative', title: 'error (%)' },
    color: { field: 'run', type: 'nominal', title: 'run' },
    strokeWidth: {
      field: 'split', type: 'ordinal', sort: ['train', 'test'], title: 'error',
      scale: { domain: ['train', 'test'], range: [1, 3] },
      legend: { labelExpr: "datum.label === 'test' ? 'test (bold)' : 'train (thin)'" },
    },
    detail: { field: 'split' },
  },
});

/** Renders a chart to SVG text. */
export const renderSvg = async (spec: TopLevelSpec): Promise<string> => {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  return view.toSVG();
};

/** Registers `plot`. */
export const registerPlot = (program: Command): void => {
  program
    .command('plot')
    .description('Plot training (thin) and test (bold) error curves of runs, like the paper\'s Figures 4 and 6')
    .argument('<runs...>', 'run folders written by residual train')
    .requiredOption('--out <file>', 'chart file: .svg or .png')
    .option('--title <text>', 'chart title')
    .option('--json', 'print the result as JSON on stdout')
    .addHelpText('after', '\nExample:\n  residual plot runs/plain20 runs/resnet20 --out degradation.svg')
    .action(async (runs: string[], flags: { out: string; title?: string; json?: boolean }) => {
      const ext = extname(flags.out).toLowerCase();
      if (ext !== '.svg' && ext !== '.png') throw new UsageError(`--out ${flags.out}: use a .svg or .png file name`);
      const points = (await Promise.all(runs.map((r) => readCurves(r)))).flat();
      const svg = await renderSvg(chartSpec(points, flags.title));
      if (ext === '.svg') await writeFile(flags.out, svg);
      else await sharp(Buffer.from(svg), { density: 144 }).png().toFile(flags.out);
      emit(!!flags.json, { out: flags.out, runs: runs.length, points: points.length }, (r) => `wrote ${r.out} (${r.runs} runs)`);
    });
};
