/**
 * `residual eval`: loss and top-1/top-5 accuracy of weights on a data split, with the paper's test
 * protocols (section 3.4): a single center crop, 10 crops, or the fully-convolutional multi-scale test.
 */
import type { Command } from 'commander';
import { z } from 'zod';
import { createLoader, IMAGENET_NORM, loadImage, type Decoded, type Source, type SplitName, type Transform } from '@residual/data';
import {
  CifarResNet, evaluate, evaluateScores, MODELS, MULTI_SCALE_SIZES, multiScaleScores, ResNet, tenCropScores, type ImageClassifier, type ModelName,
  type ScoredBatch,
} from '@residual/resnet';
import { selectBackend } from '../backend.js';
import { evalTransform, isSmallImageData, openData } from '../data.js';
import { backendOption, nonNegativeInt, positiveInt, resolveOptions, UsageError } from '../options.js';
import { emit, info } from '../output.js';
import { loadModel } from '../weights.js';

const schema = z.strictObject({
  model: z.enum(Object.keys(MODELS) as [ModelName, ...ModelName[]]),
  weights: z.string().min(1),
  data: z.string().min(1),
  split: z.enum(['train', 'val', 'test']).default('test'),
  batchSize: positiveInt().default(100),
  valSplit: nonNegativeInt().optional(),
  // A config file may say 10 as a number.
  crops: z.coerce.string().pipe(z.enum(['1', '10', 'multiscale'])).default('1'),
  scales: z
    .union([z.string().transform((s) => s.split(',').map(Number)), z.array(z.number())])
    .pipe(z.array(z.number().int('must be whole numbers').positive('must be > 0')).min(1))
    .optional(),
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
    .requiredOption('--weights <file>', 'torchvision-named state dict: safetensors, or a PyTorch checkpoint (.pth)')
    .requiredOption('--data <spec>', 'cifar10:DIR | cifar100:DIR | imagenet:DIR | builtin:shapes')
    .option('--split <name>', 'train | val | test', 'test')
    .option('--batch-size <n>', 'images per batch', '100')
    .option('--val-split <n>', 'CIFAR: the last n training images form the val split')
    .option(
      '--crops <n>',
      '1: center 224 crop of the image resized to 256; 10: its four corners, centre and their mirrors; multiscale: the ' +
        'whole image, fully-convolutional, at each of --scales and mirrored. 10 and multiscale need imagenet: data, run one ' +
        'image at a time, average the softmax scores of the views and report as loss the cross-entropy of the averaged probabilities',
      '1',
    )
    .option('--scales <list>', `--crops multiscale: the shorter sides, comma-separated (default: ${MULTI_SCALE_SIZES.join(',')})`)
    .option('--workers <n>', 'decoding threads')
    .option('--backend <name>', 'cpu | webgpu | auto')
    .option('--config <file>', 'JSON file with any of these options')
    .option('--json', 'print the result as JSON on stdout')
    .addHelpText('after', '\nExample:\n  residual eval --model resnet20 --weights runs/r20/model.safetensors --data cifar10:DIR --split test --json')
    .action(async (flags: Record<string, unknown>, cmd: Command) => {
      const o = resolveOptions(schema, flags, (k) => cmd.getOptionValueSource(k) === 'cli', flags.config as string | undefined);
      const backend = await selectBackend(o.backend);
      if (o.scales && o.crops !== 'multiscale') throw new UsageError(`--scales applies to --crops multiscale only (got --crops ${o.crops})`);
      if (o.crops !== '1' && isSmallImageData(o.data)) throw new UsageError(`--crops ${o.crops} needs imagenet: data (ImageNet-sized images), got ${o.data}`);
      const { model } = await loadModel(o.model, o.weights);
      const source = await openData(o.data, o.valSplit ? { valSplit: o.valSplit } : {});
      if (o.crops !== '1') {
        info(`evaluating ${o.model} on ${o.data} ${o.split} with --crops ${o.crops} and ${backend.name}`);
        const { result, skipped } = await evaluateViews(model, source, o.split, o.crops, o.scales ?? MULTI_SCALE_SIZES);
        emit(o.json, { top1: result.top1, top5: result.top5, loss: result.loss, images: result.images, skipped }, describeResult);
        return;
      }
      const loader = await createLoader({ source, split: o.split, batchSize: o.batchSize, transform: evalTransform(o.data), workers: o.workers });
      info(`evaluating ${o.model} on ${o.data} ${o.split} (${loader.samples} images) with ${backend.name}`);
      const r = await evaluate(model, loader);
      const report = loader.report();
      await loader.close();
      if (report.skipped) info(`skipped ${report.skipped} unreadable images`);
      emit(o.json, { top1: r.top1, top5: r.top5, loss: r.loss, images: r.images, skipped: report.skipped }, describeResult);
    });
};

const describeResult = (x: { top1: number; top5: number; loss: number; images: number }) =>
  `top-1 ${(x.top1 * 100).toFixed(2)}%  top-5 ${(x.top5 * 100).toFixed(2)}%  loss ${x.loss.toFixed(4)}  (${x.images} images)`;

/** The 10-crop or multi-scale test, one image at a time; unreadable images are skipped and counted. */
const evaluateViews = async (model: ImageClassifier, source: Source, split: SplitName, crops: '10' | 'multiscale', scales: readonly number[]) => {
  if (model instanceof CifarResNet) throw new UsageError(`--crops ${crops} needs an ImageNet model (resnet18 ... resnet152, plain18 ... plain152, alexnet, vgg16 ...)`);
  // The multi-scale test runs the network fully convolutionally, which only the ResNets' global pool and fc allow here.
  if (crops === 'multiscale' && !(model instanceof ResNet)) throw new UsageError('--crops multiscale needs a ResNet (resnet18 ... resnet152, plain18 ... plain152)');
  const samples = await source.split(split);
  if (samples.kind !== 'files') throw new UsageError(`--crops ${crops} needs image files; ${source.spec} ${split} holds raw pixels`);
  const { files, labels } = samples;
  const resized = (size: number): Transform => ({ steps: [{ op: 'resize', size }], ...IMAGENET_NORM });
  const sizes = crops === '10' ? [256] : scales;
  const score = (images: Decoded[]) => (model instanceof ResNet && crops === 'multiscale' ? multiScaleScores(model, images) : tenCropScores(model, images[0]));
  let skipped = 0;
  const started = Date.now();
  async function* scored(): AsyncGenerator<ScoredBatch> {
    for (const [i, file] of files.entries()) {
      const images = await Promise.all(sizes.map((s) => loadImage(file, resized(s)))).catch((e: Error) => {
        skipped++;
        info(`skipped ${file}: ${e.message}`);
        return null;
      });
      if (!images) continue;
      yield { probabilities: score(images), labels: Int32Array.of(labels[i]) };
      if ((i + 1) % 100 === 0) info(`${i + 1}/${files.length} images, ${((i + 1) / ((Date.now() - started) / 1000)).toFixed(1)} img/s`);
    }
  }
  return { result: await evaluateScores(scored()), skipped };
};
