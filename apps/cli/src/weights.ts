/** Loading weights files (safetensors or PyTorch `.pth`) for the commands. */
import { createMetaBackend, getBackend, setBackend, tensorsFromSafetensors, type SafetensorsInput, type SafetensorsTensor } from '@residual/core';
import { openWeights } from '@residual/core/node';
import { classifierKey, createModel, type ImageClassifier, type ModelName } from '@residual/resnet';
import { UsageError } from './options.js';

/**
 * How a read tensor is written back as safetensors: half precision and 64-bit integers as they were
 * stored, other floats as F32 (no precision lost: BF16 and F64 were read as f32), other integers as I32.
 */
export const asStored = (t: SafetensorsTensor): SafetensorsInput => ({
  data: t.data,
  shape: t.shape,
  dtype: t.sourceDtype === 'F16' || t.sourceDtype === 'I64' ? t.sourceDtype : t.dtype === 'i32' ? 'I32' : 'F32',
});

/** A model built to fit a weights file and loaded from it, with the class names the file records (if any). */
export const loadModel = async (name: ModelName, weightsPath: string): Promise<{ model: ImageClassifier; classes: string[] | null }> => {
  // The readers' messages start with the file's name already.
  const usage = (e: Error) => new UsageError(`--weights ${weightsPath}: ${e.message.replace(`${weightsPath}: `, '')}`);
  const file = await openWeights(weightsPath).catch((e: Error) => {
    throw usage(e);
  });
  try {
    const key = classifierKey(name);
    const fc = file.tensors.get(key);
    if (!fc) throw new UsageError(`--weights ${weightsPath}: no tensor "${key}"; is this a torchvision-named ${name} state dict?`);
    // Built on the meta backend, so no weights are drawn only to be overwritten (VGG-16's 138M took 14 s);
    // loading them puts every tensor on the active backend.
    const active = getBackend();
    setBackend(createMetaBackend());
    let model: ImageClassifier;
    try {
      model = createModel(name, { numClasses: fc.shape[0] });
    } finally {
      setBackend(active);
    }
    const tensors = await tensorsFromSafetensors(file).catch((e: Error) => {
      throw usage(e);
    });
    try {
      model.loadStateDict(tensors);
    } catch (e) {
      throw new UsageError(`--weights ${weightsPath} does not fit --model ${name}: ${(e as Error).message}`);
    } finally {
      for (const t of tensors.values()) t.dispose();
    }
    model.eval();
    let classes: string[] | null = null;
    if (file.metadata.classes) {
      try {
        classes = JSON.parse(file.metadata.classes) as string[];
      } catch {
        classes = null;
      }
    }
    return { model, classes };
  } finally {
    await file.close();
  }
};
