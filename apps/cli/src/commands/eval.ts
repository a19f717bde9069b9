/** `residual eval`: loss and top-1/top-5 accuracy of weights on a data split. */
import type { Command } from 'commander';
import { z } from 'zod';
import { createLoader } from '@residual/data';
import { evaluate, MODELS, type ModelName } from '@residual/resnet';
import { selectBackend } from '../backend.js';
import { evalTransform, openData } from '../data.js';
import { backendOption, nonNegativeInt, positiveInt, resolveOptions } from '../options.js';
import { emit, info } from '../output.js';
import { loadModel } from '../weights.js';

const schema = z.strictObject({
  model: z.enum(Object.keys(MODELS) as [ModelName, ...ModelName[]]),
  weights: z.string().min(1),
  data: z.string().min(1),
  split: z.enum(['train', 'val', 'test']).default('test'),
  batchSize: positiveInt().default(100),
  valSplit: nonNegativeInt().optional(),
  crops: z.enum(['1']).default('1'),
  workers: nonNegativeInt().optional(),
  backend: backendOption(),
  json: z.boolean().default(false),
});

/** Registers `eval`. */
export const registerEval = (program: Command): void => {
  program
    .command('eval')
    .description('Evaluate weights on a data split: loss, top-1 and top-5 accuracy')
    .requiredOption('--model <name>', 'network the weights belong to')
    .requiredOption('--weights <file>', 'torchvision-named safetensors state dict')
    .requiredOption('--data <spec>', 'cifar10:DIR | cifar100:DIR | imagenet:DIR | builtin:shapes')
    .option('--split <name>', 'train | val | test', 'test')
    .option('--batch-size <n>', 'images per batch', '100')
    .option('--val-split <n>', 'CIFAR: the last n training images form the val split')
    .option('--crops <n>', 'single center crop (1)', '1')
    .option('--workers <n>', 'decoding threads')
    .option('--backend <name>', 'cpu | webgpu | auto')
    .option('--config <file>', 'JSON file with any of these options')
    .option('--json', 'print the result as JSON on stdout')
    .addHelpText('after', '\nExample:\n  residual eval --model resnet20 --weights runs/r20/model.safetensors --data cifar10:DIR --split test --json')
    .action(async (flags: Record<string, unknown>, cmd: Command) => {
      const o = resolveOptions(schema, flags, (k) => cmd.getOptionValueSource(k) === 'cli', flags.config as string | undefined);
      const backend = await selectBackend(o.backend);
      const { model } = await loadModel(o.model, o.weights);
      const source = await openData(o.data, o.valSplit ? { valSplit: o.valSplit } : {});
      const loader = await createLoader({ source, split: o.split, batchSize: o.batchSize, transform: evalTransform(o.data), workers: o.workers });
      info(`evaluating ${o.model} on ${o.data} ${o.split} (${loader.samples} images) with ${backend.name}`);
      const r = await evaluate(model, loader);
      const report = loader.report();
      await loader.close();
      if (report.skipped) info(`skipped ${report.skipped} unreadable images`);
      emit(o.json, { top1: r.top1, top5: r.top5, loss: r.loss, images: r.images, skipped: report.skipped }, (x) =>
        `top-1 ${(x.top1 * 100).toFixed(2)}%  top-5 ${(x.top5 * 100).toFixed(2)}%  loss ${x.loss.toFixed(4)}  (${x.images} images)`);
    });
};
