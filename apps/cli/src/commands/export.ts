/** `residual export`: weights as an ONNX model, for onnxruntime and the other ONNX runtimes. */
import { writeFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { z } from 'zod';
import { BASELINES, CifarResNet, exportOnnx, isCifarModel, MODELS, ONNX_OPSETS, ResNet, type ModelName } from '@residual/resnet';
import { selectBackend } from '../backend.js';
import { positiveInt, resolveOptions, UsageError } from '../options.js';
import { emit, info } from '../output.js';
import { loadModel } from '../weights.js';

const schema = z.strictObject({
  model: z.enum(Object.keys(MODELS) as [ModelName, ...ModelName[]]),
  weights: z.string().min(1),
  out: z.string().min(1),
  opset: z.coerce.number().refine((v) => ONNX_OPSETS.includes(v), `must be one of ${ONNX_OPSETS.join(', ')}`).default(17),
  batchSize: positiveInt().optional(),
  dynamicBatch: z.boolean().default(false),
  imageSize: positiveInt().optional(),
  foldBn: z.boolean().default(true),
  json: z.boolean().default(false),
});

/** Registers `export`. */
export const registerExport = (program: Command): void => {
  program
    .command('export')
    .description('Write weights as an ONNX model (input "input" [N, 3, H, W], output "logits"), batch-norm folded or kept')
    .requiredOption('--model <name>', 'network the weights belong to')
    .requiredOption('--weights <file>', 'torchvision-named safetensors state dict')
    .requiredOption('--out <file>', 'the .onnx file to write')
    .option('--opset <n>', `ONNX operator set: ${ONNX_OPSETS.join(', ')}`, '17')
    .option('--batch-size <n>', 'fixed batch size of the input (default 1)')
    .option('--dynamic-batch', 'a symbolic batch axis ("batch") instead of a fixed one')
    .option('--image-size <px>', 'input height and width (default 32 for CIFAR models, 224 otherwise)')
    .option('--no-fold-bn', 'keep BatchNormalization nodes instead of folding them into the convolutions')
    .option('--config <file>', 'JSON file with any of these options')
    .option('--json', 'print the result as JSON on stdout')
    .addHelpText('after', `
Examples:
  residual export --model resnet50 --weights resnet50.safetensors --out resnet50.onnx --dynamic-batch
  residual export --model resnet20 --weights runs/r20/model.safetensors --out r20.onnx --no-fold-bn`)
    .action(async (flags: Record<string, unknown>, cmd: Command) => {
      const o = resolveOptions(schema, flags, (k) => cmd.getOptionValueSource(k) === 'cli', flags.config as string | undefined);
      if (o.dynamicBatch && o.batchSize !== undefined) throw new UsageError('--batch-size and --dynamic-batch exclude each other');
      // Export only reads the weights; no kernel runs, so any backend serves and the CPU starts fastest.
      await selectBackend('cpu');
      if (o.model in BASELINES) throw new UsageError(`export writes the ResNets as ONNX; ${o.model} is not one of them`);
      const { model } = await loadModel(o.model, o.weights);
      if (!(model instanceof ResNet || model instanceof CifarResNet)) throw new Error(`internal: ${o.model} built a ${model.constructor.name}`);
      const size = o.imageSize ?? (isCifarModel(o.model) ? 32 : 224);
      const batch = o.dynamicBatch ? 'dynamic' : (o.batchSize ?? 1);
      const bytes = await exportOnnx(model, { opset: o.opset, foldBatchNorm: o.foldBn, batch, imageSize: size });
      await writeFile(o.out, bytes);
      info(`wrote ${o.model} as ONNX (opset ${o.opset}, batch-norm ${o.foldBn ? 'folded' : 'kept'}) to ${o.out}`);
      const input = [batch === 'dynamic' ? 'batch' : batch, 3, size, size];
      emit(o.json, { out: o.out, model: o.model, opset: o.opset, foldBatchNorm: o.foldBn, input, bytes: bytes.length }, (r) =>
        `${r.out}: input [${r.input.join(', ')}] -> logits, ${(r.bytes / 2 ** 20).toFixed(1)} MiB`);
    });
};
