/** Loading weights files for the commands. */
import { loadTensors } from '@residual/core/node';
import { openSafetensors } from '@residual/core/node';
import { createModel, type CifarResNet, type ResNet } from '@residual/resnet';
import { UsageError } from './options.js';

/** A model built to fit a weights file and loaded from it, with the class names the file records (if any). */
export const loadModel = async (name: string, weightsPath: string): Promise<{ model: ResNet | CifarResNet; classes: string[] | null }> => {
  const file = await openSafetensors(weightsPath).catch((e: Error) => {
    throw new UsageError(`--weights ${weightsPath}: ${e.message}`);
  });
  const fc = file.header.tensors.get('fc.weight');
  const classesMeta = file.header.metadata.classes;
  await file.close();
  if (!fc) throw new UsageError(`--weights ${weightsPath}: no tensor "fc.weight"; is this a torchvision-named ResNet state dict?`);
  const model = createModel(name, { numClasses: fc.shape[0] });
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
