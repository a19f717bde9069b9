/** `residual weights`: inspect safetensors files, and extract torchvision-named weights from a checkpoint. */
import type { Command } from 'commander';
import { openSafetensors, writeSafetensors } from '@residual/core/node';
import type { SafetensorsInput } from '@residual/core';
import { emit } from '../output.js';
import { UsageError } from '../options.js';

/** Registers `weights inspect` and `weights extract`. */
export const registerWeights = (program: Command): void => {
  const weights = program.command('weights').description('Inspect and convert weights files (safetensors)');
  weights
    .command('inspect')
    .argument('<file>', 'a safetensors file')
    .option('--json', 'print the result as JSON on stdout')
    .description('List tensors (name, dtype, shape), parameter count and metadata')
    .action(async (path: string, flags: { json?: boolean }) => {
      const file = await openSafetensors(path).catch((e: Error) => {
        throw new UsageError(e.message);
      });
      const tensors = [...file.header.tensors.values()].map((t) => ({ name: t.name, dtype: t.dtype, shape: [...t.shape] }));
      await file.close();
      const elements = tensors.reduce((n, t) => n + t.shape.reduce((a, b) => a * b, 1), 0);
      emit(!!flags.json, { file: path, tensors, elements, metadata: file.header.metadata }, (r) =>
        [...r.tensors.map((t) => `${t.name}  ${t.dtype}[${t.shape.join(', ')}]`), `${r.tensors.length} tensors, ${r.elements} elements`].join('\n'));
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
      for await (const [name, t] of file.entries())
        if (name.startsWith('model.')) tensors[name.slice(6)] = { data: t.data, shape: t.shape, dtype: t.sourceDtype === 'I64' ? 'I64' : t.dtype === 'i32' ? 'I32' : 'F32' };
      await file.close();
      if (Object.keys(tensors).length === 0) throw new UsageError(`${path}: no model.* tensors; is it a residual checkpoint?`);
      await writeSafetensors(flags.out, tensors, { format: 'pt' });
      emit(!!flags.json, { out: flags.out, tensors: Object.keys(tensors).length }, (r) => `wrote ${r.tensors} tensors to ${r.out}`);
    });
};
