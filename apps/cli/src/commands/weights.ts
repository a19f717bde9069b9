/** `residual weights`: inspect weights files, convert PyTorch checkpoints, extract weights from a training checkpoint. */
import type { Command } from 'commander';
import { openSafetensors, openWeights, writeSafetensors } from '@residual/core/node';
import type { SafetensorsInput } from '@residual/core';
import { emit } from '../output.js';
import { UsageError } from '../options.js';
import { asStored } from '../weights.js';

/** Registers `weights inspect`, `weights convert` and `weights extract`. */
export const registerWeights = (program: Command): void => {
  const weights = program.command('weights').description('Inspect and convert weights files (safetensors, PyTorch .pth)');
  weights
    .command('inspect')
    .argument('<file>', 'a safetensors file or a PyTorch checkpoint (.pth)')
    .option('--json', 'print the result as JSON on stdout')
    .description('List tensors (name, dtype as stored, shape), parameter count and metadata')
    .action(async (path: string, flags: { json?: boolean }) => {
      const file = await openWeights(path).catch((e: Error) => {
        throw new UsageError(e.message);
      });
      const tensors = [...file.tensors.values()].map((t) => ({ name: t.name, dtype: t.dtype, shape: [...t.shape] }));
      await file.close();
      const elements = tensors.reduce((n, t) => n + t.shape.reduce((a, b) => a * b, 1), 0);
      emit(!!flags.json, { file: path, format: file.format, tensors, elements, metadata: file.metadata }, (r) =>
        [...r.tensors.map((t) => `${t.name}  ${t.dtype}[${t.shape.join(', ')}]`), `${r.tensors.length} tensors, ${r.elements} elements (${r.format})`].join('\n'));
    });
  weights
    .command('convert')
    .argument('<in>', 'a PyTorch checkpoint (.pth, from torch.save) or a safetensors file')
    .argument('<out>', 'the safetensors file to write')
    .option('--json', 'print the result as JSON on stdout')
    .description('Write the state dict of a PyTorch checkpoint as safetensors, reading it without running its pickle')
    .addHelpText('after', `
The state dict is the checkpoint itself, or what it holds under "state_dict" or
"model"; a "module." prefix on every key (nn.DataParallel) is dropped. F16 and
I64 tensors are written as stored, BF16 and F64 as F32 (what residual reads),
other integers as I32. A checkpoint that needs more than a weights-only load
(any other Python global, or a pickle opcode a state dict never uses) is refused
with the name of what it asked for.

Example:
  residual weights convert resnet50-11ad3fa6.pth resnet50.safetensors`)
    .action(async (input: string, out: string, flags: { json?: boolean }) => {
      const file = await openWeights(input).catch((e: Error) => {
        throw new UsageError(e.message);
      });
      const tensors: Record<string, SafetensorsInput> = {};
      try {
        for await (const [name, t] of file.entries()) tensors[name] = asStored(t);
      } catch (e) {
        throw new UsageError((e as Error).message);
      } finally {
        await file.close();
      }
      await writeSafetensors(out, tensors, { format: 'pt' });
      emit(!!flags.json, { out, tensors: Object.keys(tensors).length }, (r) => `wrote ${r.tensors} tensors to ${r.out}`);
    });
  weights
    .command('extract')
    .argument('<checkpoint>', 'a training checkpoint (checkpoint.safetensors)')
    .requiredOption('--out <file>', 'where to write the torchvision-named state dict')
    .option('--json', 'print the result as JSON on stdout')
    .description("Write a checkpoint's model weights as a torchvision-named safetensors state dict")
    .action(async (path: string, flags: { out: string; json?: boolean }) => {
      const file = await openSafetensors(path);
      const tensors: Record<string, SafetensorsInput> = {};
      for await (const [name, t] of file.entries()) if (name.startsWith('model.')) tensors[name.slice(6)] = asStored(t);
      await file.close();
      if (Object.keys(tensors).length === 0) throw new UsageError(`${path}: no model.* tensors; is it a residual checkpoint?`);
      await writeSafetensors(flags.out, tensors, { format: 'pt' });
      emit(!!flags.json, { out: flags.out, tensors: Object.keys(tensors).length }, (r) => `wrote ${r.tensors} tensors to ${r.out}`);
    });
};
