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

/** Reads a run folder's epoch lines as error points (error = 1 - accuracy, in percent). */
export const readCurves = async (dir: string, name = basename(resolve(dir))): Promise<CurvePoint[]> => {
  const path = join(dir, 'metrics.jsonl');
  const text = await readFile(path, 'utf8').catch(() => {
    throw new UsageError(`${path}: cannot read; is ${dir} a run folder of residual train?`);
  });
  const points: CurvePoint[] = [];
  text.split('\n').forEach((line, i) => {
    if (!line.trim()) return;
    let m: Record<string, unknown>;
    try {
      m = JSON.parse(line);
    } catch {
      throw new UsageError(`${path}:${i + 1}: not a JSON line`);
    }
    if (m.type !== 'epoch') return;
    const base = { run: name, iteration: Number(m.step), epoch: Number(m.epoch) };
    if (typeof m.trainAccuracy === 'number') points.push({ ...base, split: 'train', error: 100 * (1 - m.trainAccuracy) });
    if (typeof m.valAccuracy === 'number') points.push({ ...base, split: 'test', error: 100 * (1 - m.valAccuracy) });
  });
  if (points.length === 0) throw new UsageError(`${path}: no epoch lines yet`);
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
