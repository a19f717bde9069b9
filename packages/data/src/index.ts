export { parseDataSpec, type DataSpec } from './spec.js';
export { openSource, type Samples, type Source, type SourceOptions, type SplitName } from './sources.js';
export { defaultCacheDir, ensureShapes, SHAPE_CLASSES, type ShapesOptions } from './shapes.js';
export { DEFAULT_PIXEL_LIMIT, loadImage, type Decoded } from './decode.js';
export {
  centerCropEval,
  CIFAR10_NORM,
  cifarAugment,
  IMAGENET_NORM,
  resizedCropAugment,
  scaleAugment,
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
