/** Opening data for the commands: a spec, its transforms, an optional subset. */
import {
  CIFAR10_NORM, centerCropEval, cifarAugment, openSource, parseDataSpec, resizedCropAugment, scaleAugment, type Samples, type Source,
  type Transform,
} from '@residual/data';
import type { AugmentationName } from '@residual/resnet';

/** Whether a spec holds 32x32 images (CIFAR and the built-in set). */
export const isSmallImageData = (spec: string): boolean => !['imagenet', 'shards'].includes(parseDataSpec(spec).kind);

/** Keeps the first `n` samples of the training split (`--train-subset`). */
export const subsetSource = (source: Source, n: number | undefined): Source => {
  if (n === undefined) return source;
  const cut = (s: Samples): Samples => {
    if (n > s.labels.length) throw new Error(`--train-subset ${n}: the training split has only ${s.labels.length} images`);
    return s.kind === 'files'
      ? { ...s, files: s.files.slice(0, n), labels: s.labels.slice(0, n) }
      : { ...s, pixels: s.pixels.subarray(0, n * 3 * s.width * s.height), labels: s.labels.slice(0, n) };
  };
  return { ...source, split: async (name) => (name === 'train' ? cut(await source.split('train')) : source.split(name)) };
};

/** Opens a data set for training or evaluation. */
export const openData = async (spec: string, { valSplit, trainSubset }: { valSplit?: number; trainSubset?: number } = {}) =>
  subsetSource(await openSource(spec, valSplit ? { valSplit } : {}), trainSubset);

/** The training transform for a data set and augmentation name. */
export const trainTransform = (spec: string, augmentation: AugmentationName): Transform => {
  if (isSmallImageData(spec)) return augmentation === 'none' ? { steps: [], ...CIFAR10_NORM } : cifarAugment();
  if (augmentation === 'paper-imagenet') return scaleAugment();
  if (augmentation === 'none') return centerCropEval();
  return resizedCropAugment();
};

/** The single-crop evaluation transform for a data set. */
export const evalTransform = (spec: string): Transform => (isSmallImageData(spec) ? { steps: [], ...CIFAR10_NORM } : centerCropEval());
