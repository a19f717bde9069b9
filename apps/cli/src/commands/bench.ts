/** `residual bench`: images per second of a model's training step or inference on random data. */
import type { Command } from 'commander';
import { z } from 'zod';
import { getBackend, manualSeed, noGrad, randn, tidy } from '@residual/core';
import { createModel, isCifarModel, MODELS, paperCifar, Trainer, type ModelName } from '@residual/resnet';
import { selectBackend } from '../backend.js';
import { backendOption, nonNegativeInt, positiveInt, resolveOptions } from '../options.js';
import { emit, info } from '../output.js';

const schema = z.strictObject({
  model: z.enum(Object.keys(MODELS) as [ModelName, ...ModelName[]]).default('resnet20'),
  mode: z.enum(['train', 'infer']).default('train'),
  batchSize: positiveInt().default(128),
  imageSize: positiveInt().optional(),
  iterations: positiveInt().default(5),
  // Three: the first call builds kernels (and folds batch-norm at inference), the second packs the weights that come again.
  warmup: nonNegativeInt().default(3),
  backend: backendOption(),
  json: z.boolean().default(false),
});

/** Registers `bench`. */
export const registerBench = (program: Command): void => {
  program
    .command('bench')
    .description('Measure training or inference throughput (images/s) on random data')
    .option('--model <name>', 'network', 'resnet20')
    .option('--mode <mode>', 'train | infer', 'train')
    .option('--batch-size <n>', 'images per step', '128')
    .option('--image-size <px>', 'input height and width (default 32 for CIFAR models, 224 otherwise)')
    .option('--iterations <n>', 'timed steps', '5')
    .option('--warmup <n>', 'untimed steps first', '3')
    .option('--backend <name>', 'cpu | webgpu | auto')
    .option('--config <file>', 'JSON file with any of these options')
    .option('--json', 'print the result as JSON on stdout')
    .addHelpText('after', '\nExample:\n  residual bench --model resnet50 --mode infer --batch-size 1 --backend cpu --json')
    .action(async (flags: Record<string, unknown>, cmd: Command) => {
      const o = resolveOptions(schema, flags, (k) => cmd.getOptionValueSource(k) === 'cli', flags.config as string | undefined);
      const backend = await selectBackend(o.backend);
      manualSeed(0);
      const size = o.imageSize ?? (isCifarModel(o.model) ? 32 : 224);
      const classes = isCifarModel(o.model) ? 10 : 1000;
      const model = createModel(o.model, { numClasses: classes });
      const x = randn([o.batchSize, 3, size, size]);
      const images = await x.data();
      const labels = Int32Array.from({ length: o.batchSize }, (_, i) => i % classes);
      const batch = { images: images as Float32Array, labels, shape: [o.batchSize, 3, size, size] };
      const trainer = new Trainer({ model, recipe: { ...paperCifar, lr: 0.01 }, itersPerEpoch: 1, totalIterations: 1e9 });
      const step = async () => {
        if (o.mode === 'train') await trainer.trainStep(batch);
        else {
          model.eval();
          const y = noGrad(() => tidy(() => model.forward(x)));
          await y.data();
          y.dispose();
        }
      };
      info(`bench ${o.model} ${o.mode} batch ${o.batchSize} at ${size}x${size} on ${backend.name} (${backend.device})`);
      for (let i = 0; i < o.warmup; i++) await step();
      await getBackend().sync();
      const t0 = performance.now();
      for (let i = 0; i < o.iterations; i++) await step();
      await getBackend().sync();
      const seconds = (performance.now() - t0) / 1000;
      const result = {
        model: o.model, mode: o.mode, batchSize: o.batchSize, imageSize: size, backend: backend.name, device: backend.device,
        iterations: o.iterations, msPerStep: (seconds / o.iterations) * 1000, imagesPerSecond: (o.iterations * o.batchSize) / seconds,
      };
      emit(o.json, result, (r) => `${r.imagesPerSecond.toFixed(1)} images/s (${r.msPerStep.toFixed(1)} ms per step)`);
    });
};
