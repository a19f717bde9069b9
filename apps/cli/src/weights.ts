/** Loading weights files for the commands. */
import { createMetaBackend, getBackend, setBackend } from '@residual/core';
import { loadTensors } from '@residual/core/node';
import { openSafetensors } from '@residual/core/node';
import { classifierKey, createModel, type ImageClassifier, type ModelName } from '@residual/resnet';
import { UsageError } from './options.js';

/** A model built to fit a weights file and loaded from it, with the class names the file records (if any). */
export const loadModel = async (name: ModelName, weightsPath: string): Promise<{ model: ImageClassifier; classes: string[] | null }> => {
  const file = await openSafetensors(weightsPath).catch((e: Error) => {
    throw new UsageError(`--weights ${weightsPath}: ${e.message}`);
  });
  const key = classifierKey(name);
  const fc = file.header.tensors.get(key);
  const classesMeta = file.header.metadata.classes;
  await file.close();
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
  const tensors = await loadTensors(weightsPath);
  try {
    model.loadStateDict(tensors);
  } catch (e) {
    throw new UsageError(`--weights ${weightsPath} does not fit --model ${name}: ${(e as Error).message}`);
  } finally {
    for (const t of tensors.values()) t.dispose();
  }
  model.eval();
  let classes: string[] | null = null;
  if (classesMeta) {
    try {
      classes = JSON.parse(classesMeta) as string[];
    } catch {
      classes = null;
    }
  }
  return { model, classes };
};
