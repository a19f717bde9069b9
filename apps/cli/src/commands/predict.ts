/** `residual predict`: top-k classes of images, or raw logits of an input tensor. */
import type { Command } from 'commander';
import { z } from 'zod';
import { noGrad, softmax, tensor, tidy, topk } from '@residual/core';
import { loadTensors, saveTensors } from '@residual/core/node';
import { loadImage } from '@residual/data';
import { IMAGENET_LABELS, IMAGENET_WNIDS, isCifarModel, MODELS, type ModelName } from '@residual/resnet';
import { selectBackend } from '../backend.js';
import { evalTransform } from '../data.js';
import { backendOption, positiveInt, resolveOptions, UsageError } from '../options.js';
import { emit, info } from '../output.js';
import { loadModel } from '../weights.js';

const schema = z.strictObject({
  model: z.enum(Object.keys(MODELS) as [ModelName, ...ModelName[]]),
  weights: z.string().min(1),
  top: positiveInt().default(5),
  tensor: z.string().optional(),
  output: z.string().optional(),
  backend: backendOption(),
  json: z.boolean().default(false),
});

/**
 * A class's wnid and readable label: from the names the weights record (a wnid name is shown by its
 * ImageNet label), else ImageNet-1k's for 1000-class models, else the index itself.
 */
const classInfo = (index: number, classes: readonly string[] | null, numClasses: number) => {
  const name = classes?.[index] ?? (numClasses === 1000 ? IMAGENET_WNIDS[index] : String(index));
  const wnid = /^n\d{8}$/.test(name) ? name : null;
  const known = wnid ? IMAGENET_WNIDS.indexOf(wnid) : -1;
  return { wnid, label: known >= 0 ? IMAGENET_LABELS[known] : name };
};

/** One image's prediction. */
export interface Prediction {
  file: string;
  top: { index: number; wnid: string | null; label: string; probability: number }[];
}

/** Registers `predict`. */
export const registerPredict = (program: Command): void => {
  program
    .command('predict')
    .description('Classify images (top-k with labels; ImageNet-1k names for 1000-class weights that record none), or map an input tensor to logits')
    .argument('[images...]', 'image files')
    .requiredOption('--model <name>', 'network the weights belong to')
    .requiredOption('--weights <file>', 'torchvision-named state dict: safetensors, or a PyTorch checkpoint (.pth)')
    .option('--top <k>', 'how many classes to show', '5')
    .option('--tensor <file>', "safetensors file with an NCHW f32 tensor 'input'")
    .option('--output <file>', "where to write 'logits' (with --tensor)")
    .option('--backend <name>', 'cpu | webgpu | auto')
    .option('--config <file>', 'JSON file with any of these options')
    .option('--json', 'print the result as JSON on stdout')
    .addHelpText('after', `
Examples:
  residual predict --model resnet20 --weights runs/r20/model.safetensors cat.png dog.jpg
  residual predict --model resnet18 --weights resnet18.safetensors --tensor in.safetensors --output out.safetensors`)
    .action(async (images: string[], flags: Record<string, unknown>, cmd: Command) => {
      const o = resolveOptions(schema, flags, (k) => cmd.getOptionValueSource(k) === 'cli', flags.config as string | undefined);
      if (!o.tensor && images.length === 0) throw new UsageError('predict: give image files, or --tensor with --output');
      if (o.tensor && !o.output) throw new UsageError('--tensor needs --output <file> for the logits');
      await selectBackend(o.backend);
      const { model, classes } = await loadModel(o.model, o.weights);
      if (o.tensor) {
        const inputs = await loadTensors(o.tensor);
        const x = inputs.get('input');
        if (!x) throw new UsageError(`--tensor ${o.tensor}: no tensor named "input" (has: ${[...inputs.keys()].join(', ')})`);
        if (x.rank !== 4 || x.dtype !== 'f32') throw new UsageError(`--tensor ${o.tensor}: "input" must be f32 [N, 3, H, W], got ${x.dtype}[${x.shape.join(', ')}]`);
        const logits = noGrad(() => model.forward(x));
        await saveTensors(o.output!, { logits });
        info(`wrote logits ${logits.shape.join('x')} to ${o.output}`);
        emit(o.json, { output: o.output, shape: logits.shape }, (r) => `logits [${r.shape.join(', ')}] -> ${r.output}`);
        return;
      }
      const transform = evalTransform(isCifarModel(o.model) ? 'builtin:shapes' : 'imagenet:.');
      const results: Prediction[] = [];
      for (const file of images) {
        const d = await loadImage(file, transform).catch((e: Error) => {
          throw new UsageError(`${file}: cannot decode (${e.message})`);
        });
        const [values, indices] = tidy(() => {
          const logits = noGrad(() => model.forward(tensor(d.data, [1, 3, d.height, d.width])));
          const k = Math.min(o.top, logits.shape[1]);
          const t = topk(softmax(logits, 1), k);
          return [t.values, t.indices];
        });
        const [p, idx] = await Promise.all([values.data(), indices.data()]);
        values.dispose();
        indices.dispose();
        results.push({
          file,
          top: Array.from(idx, (index, i) => ({ index, ...classInfo(index, classes, model.numClasses), probability: p[i] })),
        });
      }
      emit(o.json, results, (rs) =>
        rs.map((r) => `${r.file}\n${r.top.map((t) => `  ${(t.probability * 100).toFixed(1).padStart(5)}%  ${t.label}${t.wnid && t.wnid !== t.label ? ` (${t.wnid})` : ''}`).join('\n')}`).join('\n'));
    });
};
