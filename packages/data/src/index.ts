export { parseDataSpec, type DataSpec } from './spec.js';
export { openSource, type Samples, type Source, type SourceOptions, type SplitName } from './sources.js';
export { defaultCacheDir, ensureShapes, SHAPE_CLASSES, type ShapesOptions } from './shapes.js';
export { DEFAULT_PIXEL_LIMIT, loadImage, type Decoded } from './decode.js';
export {
  centerCropEval,
  CIFAR10_NORM,
  cifarAugment,
  IMAGENET_NORM,
  IMAGENET_PCA,
  resizedCropAugment,
  scaleAugment,
  tenCropEval,
  type Lighting,
  type RGB,
  type Step,
  type Transform,
} from './transforms.js';
export {
  createLoader,
  type Batch,
  type Loader,
  type LoaderOptions,
  type LoaderReport,
  type LoaderState,
  type SkippedSample,
} from './loader.js';
export { shardSamples, type Shard, type ShardManifest, type ShardSample } from './shards.js';
export { makeShards, type MakeShardsOptions } from './make-shards.js';
export { CIFAR_ARCHIVES, downloadCifar, type DownloadOptions, type DownloadResult } from './download.js';
export { computeStats, type Stats, type StatsOptions } from './stats.js';
export { keyedRandom, permutation, randInt, type Rand } from './random.js';
