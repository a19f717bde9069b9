/** Opening data for the commands: a spec, its transforms, an optional subset. */
import {
  keyedRandom, permutation, CIFAR10_NORM, centerCropEval, cifarAugment, openSource, parseDataSpec, resizedCropAugment, scaleAugment, type Samples, type Source,
  type Transform,
} from '@residual/data';
import type { AugmentationName } from '@residual/resnet';

/** Whether a spec holds 32x32 images (CIFAR and the built-in set). */
export const isSmallImageData = (spec: string): boolean => !['imagenet', 'shards'].includes(parseDataSpec(spec).kind);

/**
 * `--train-subset n`: CIFAR's records are already in random order, so the first n are kept (as a
 * PyTorch `Subset(range(n))` would); folder sources are sorted by class, so n files are drawn there
 * with a seeded shuffle (kept in folder order), giving every class its share.
 */
export const subsetSource = (source: Source, n: number | undefined, seed = 0): Source => {
  if (n === undefined) return source;
  const cut = (s: Samples): Samples => {
    if (n > s.labels.length) throw new Error(`--train-subset ${n}: the training split has only ${s.labels.length} images`);
    if (s.kind !== 'files') return { ...s, pixels: s.pixels.subarray(0, n * 3 * s.width * s.height), labels: s.labels.slice(0, n) };
    const keep = Array.from(permutation(s.labels.length, keyedRandom(seed, 0x5b5e7)).subarray(0, n)).sort((a, b) => a - b);
    return { ...s, files: keep.map((i) => s.files[i]), labels: Int32Array.from(keep, (i) => s.labels[i]) };
  };
  return { ...source, split: async (name) => (name === 'train' ? cut(await source.split('train')) : source.split(name)) };
};

/** Opens a data set for training or evaluation. */
export const openData = async (spec: string, { valSplit, trainSubset, seed }: { valSplit?: number; trainSubset?: number; seed?: number } = {}) =>
  subsetSource(await openSource(spec, valSplit ? { valSplit } : {}), trainSubset, seed);

/** The training transform for a data set and augmentation name. */
export const trainTransform = (spec: string, augmentation: AugmentationName): Transform => {
  if (isSmallImageData(spec)) return augmentation === 'none' ? { steps: [], ...CIFAR10_NORM } : cifarAugment();
  if (augmentation === 'paper-imagenet') return scaleAugment();
  if (augmentation === 'none') return centerCropEval();
  return resizedCropAugment();
};

/** The single-crop evaluation transform for a data set. */
export const evalTransform = (spec: string): Transform => (isSmallImageData(spec) ? { steps: [], ...CIFAR10_NORM } : centerCropEval());
