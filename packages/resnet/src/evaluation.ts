/**
 * The test-time protocols of the paper's section 3.4 (Tables 3 and 4): a single center crop (`evaluate`),
 * the standard 10-crop test, and the fully-convolutional multi-scale test. Views are made on the host
 * from decoded CHW images; scores are computed with the active backend's tensors.
 */
import {
  add, argmax, cast, concat, conv2d, eq, log, maximum, mean, mul, noGrad, reshape, softmax, sum, tensor, tidy, topk,
  type Module, type Tensor,
} from '@residual/core';
import type { ResNet } from './models.js';
import type { EvalResult } from './trainer.js';

/** A decoded image as normalised CHW floats (what `@residual/data`'s `loadImage` returns). */
export interface ImageCHW {
  readonly data: Float32Array;
  readonly width: number;
  readonly height: number;
}

/** A rectangle of an image; with `flip` it is taken from the left-right mirror of the image. */
export interface Window {
  readonly left: number;
  readonly top: number;
  readonly width: number;
  readonly height: number;
  readonly flip?: boolean;
}

/** The shorter sides of the paper's multi-scale test. */
export const MULTI_SCALE_SIZES: readonly number[] = [224, 256, 384, 480, 640];

/** Copies a window of an image (of its mirror when `window.flip`, as torchvision's hflip-then-crop). */
export const cropView = (image: ImageCHW, window: Window): ImageCHW => {
  const { left, top, width, height, flip = false } = window;
  const { width: w, height: h, data } = image;
  if (data.length !== 3 * w * h) throw new Error(`cropView: image data has ${data.length} values, expected 3 x ${h} x ${w}`);
  if (![left, top, width, height].every(Number.isInteger) || left < 0 || top < 0 || width < 1 || height < 1 || left + width > w || top + height > h)
    throw new Error(`cropView: window ${width}x${height} at (${left}, ${top}) does not lie inside the ${w}x${h} image`);
  const out = new Float32Array(3 * width * height);
  for (let c = 0; c < 3; c++)
    for (let y = 0; y < height; y++) {
      const src = (c * h + top + y) * w;
      const dst = (c * height + y) * width;
      // The mirror's column left + x is the image's column w - 1 - left - x.
      if (flip) for (let x = 0; x < width; x++) out[dst + x] = data[src + w - 1 - left - x];
      else out.set(data.subarray(src + left, src + left + width), dst);
    }
  return { data: out, width, height };
};

/** The image mirrored left-right. */
export const mirror = (image: ImageCHW): ImageCHW => cropView(image, { left: 0, top: 0, width: image.width, height: image.height, flip: true });

/**
 * The 10-crop test's windows in torchvision's TenCrop order: the four corners and the centre of a
 * `size` square, then the same five of the mirrored image.
 */
export const tenCropWindows = (width: number, height: number, size = 224): Window[] => {
  if (size > width || size > height) throw new Error(`tenCrop: a ${size} crop does not fit the ${width}x${height} image`);
  // Python's round (halves to even), as torchvision's center_crop rounds; offsets are whole or halves.
  const centre = (extent: number) => {
    const d = (extent - size) / 2;
    return Number.isInteger(d) ? d : 2 * Math.round(d / 2);
  };
  const corners: [number, number][] = [[0, 0], [width - size, 0], [0, height - size], [width - size, height - size], [centre(width), centre(height)]];
  return [false, true].flatMap((flip) => corners.map(([left, top]) => ({ left, top, width: size, height: size, flip })));
};

/** Stacks same-sized images into an [N, 3, H, W] tensor. */
export const stackImages = (images: readonly ImageCHW[]): Tensor => {
  if (images.length === 0) throw new Error('stackImages: no images');
  const { width, height } = images[0];
  const bad = images.find((im) => im.width !== width || im.height !== height);
  if (bad) throw new Error(`stackImages: images differ in size (${width}x${height} and ${bad.width}x${bad.height})`);
  const all = new Float32Array(images.length * 3 * width * height);
  images.forEach((im, i) => all.set(im.data, i * 3 * width * height));
  return tensor(all, [images.length, 3, height, width]);
};

/**
 * Softmax scores averaged over each image's views: `x` holds N images' `views` views one image after
 * another ([N·views, 3, H, W], as a loader batches a multi-view transform); the result is [N, K].
 * Puts the model in eval mode.
 */
export const viewAveragedScores = (model: Module, x: Tensor, views: number): Tensor => {
  if (!Number.isInteger(views) || views < 1 || x.shape[0] % views !== 0)
    throw new Error(`viewAveragedScores: a batch of ${x.shape[0]} is not a whole number of images of ${views} views`);
  model.eval();
  return noGrad(() =>
    tidy(() => {
      const p = softmax(model.forward(x), 1);
      return mean(reshape(p, [x.shape[0] / views, views, p.shape[1]]), [1]);
    }),
  );
};

/** The 10-crop test of one image (already resized, e.g. shorter side 256): scores averaged over the ten views, [1, K]. */
export const tenCropScores = (model: Module, image: ImageCHW, size = 224): Tensor =>
  tidy(() => viewAveragedScores(model, stackImages(tenCropWindows(image.width, image.height, size).map((w) => cropView(image, w))), 10));

/**
 * The fully-convolutional form of a ResNet: the fc layer applied at every position of the last feature
 * map (a 1x1 convolution with fc's weights), softmax at each position, averaged over positions: [N, K].
 * For a 1x1 feature map this is softmax(forward(x)). Puts the model in eval mode.
 */
export const fullyConvolutionalScores = (model: ResNet, x: Tensor): Tensor => {
  model.eval();
  return noGrad(() =>
    tidy(() => {
      const { weight, bias } = model.fc;
      const [k, c] = weight.shape;
      let logits = conv2d(model.features(x), reshape(weight, [k, c, 1, 1]));
      if (bias) logits = add(logits, reshape(bias, [1, k, 1, 1]));
      return mean(softmax(logits, 1), [2, 3]);
    }),
  );
};

/**
 * The multi-scale test of one image, given once per scale (e.g. resized so its shorter side is each of
 * MULTI_SCALE_SIZES): fully-convolutional scores of every scale and its mirror, averaged: [1, K].
 */
export const multiScaleScores = (model: ResNet, scales: readonly ImageCHW[]): Tensor => {
  if (scales.length === 0) throw new Error('multiScaleScores: no scales');
  // One view at a time: the activations of the largest scale bound the memory used.
  const views = scales.flatMap((im) => [im, mirror(im)]);
  return tidy(() => mean(concat(views.map((v) => fullyConvolutionalScores(model, stackImages([v]))), 0), [0], true));
};

/** Class probabilities of N images (averaged over views) and their labels. */
export interface ScoredBatch {
  /** [N, K] probabilities; `evaluateScores` disposes it. */
  readonly probabilities: Tensor;
  readonly labels: Int32Array;
}

/** Below this a probability counts as this, so one hopeless image cannot make the mean loss infinite. */
const MIN_PROBABILITY = 1e-30;

/**
 * Top-1/top-5 accuracy and loss (cross-entropy of the averaged probabilities: mean of -log p[label])
 * over scored batches.
 */
export const evaluateScores = async (scored: AsyncIterable<ScoredBatch> | Iterable<ScoredBatch>): Promise<EvalResult> => {
  let loss = 0;
  let top1 = 0;
  let top5 = 0;
  let images = 0;
  for await (const { probabilities: p, labels } of scored) {
    const [n, k] = p.shape;
    if (p.rank !== 2 || labels.length !== n) {
      p.dispose();
      throw new Error(`evaluateScores: probabilities [${p.shape.join(', ')}] do not match ${labels.length} labels`);
    }
    const bad = labels.find((l) => !(l >= 0 && l < k));
    if (bad !== undefined) {
      p.dispose();
      throw new Error(`evaluateScores: label ${bad} is outside the ${k} classes`);
    }
    const oneHot = new Float32Array(n * k);
    labels.forEach((l, i) => (oneHot[i * k + l] = 1));
    const parts = noGrad(() =>
      tidy(() => {
        const y = tensor(labels, [n], 'i32');
        const { indices } = topk(p, Math.min(5, k));
        const hit5 = sum(cast(eq(indices, reshape(y, [n, 1])), 'f32'));
        const hit1 = sum(cast(eq(argmax(p, 1), y), 'f32'));
        const picked = maximum(sum(mul(p, tensor(oneHot, [n, k])), [1]), MIN_PROBABILITY);
        return [sum(log(picked)), hit1, hit5];
      }),
    );
    p.dispose();
    const [l, a1, a5] = await Promise.all(parts.map((t) => t.data()));
    parts.forEach((t) => t.dispose());
    loss -= l[0];
    top1 += a1[0];
    top5 += a5[0];
    images += n;
  }
  return images === 0 ? { loss: NaN, top1: NaN, top5: NaN, images } : { loss: loss / images, top1: top1 / images, top5: top5 / images, images };
};
