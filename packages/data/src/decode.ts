import { readFile } from 'node:fs/promises';
import sharp, { type Sharp } from 'sharp';
import { keyedRandom } from './random.js';
import { chw, hwc, lightingShift, plan, validateTransform, writeWindow, type Layout, type Placement, type RGB, type Transform } from './transforms.js';

/** File name extensions (lower case) taken for images; sharp decodes by content, whatever the name says. */
export const IMAGE_EXTENSIONS: ReadonlySet<string> = new Set(['.jpg', '.jpeg', '.png', '.webp', '.tif', '.tiff', '.gif', '.avif']);

/** sharp's own default: larger inputs are refused before any pixel is decoded. */
export const DEFAULT_PIXEL_LIMIT = 0x3fff * 0x3fff;

/** One transformed sample: normalised CHW floats, `views` images of `width` x `height` one after another (10 after tenCrop, else 1). */
export interface Decoded {
  readonly data: Float32Array<ArrayBuffer>;
  readonly width: number;
  readonly height: number;
  readonly views: number;
}

/** What a sample's pixels come from. */
export type SampleInput =
  | { readonly kind: 'encoded'; readonly bytes: Uint8Array }
  | { readonly kind: 'planes'; readonly pixels: Uint8Array; readonly width: number; readonly height: number };

/** Options shared by every decode: the transform, the seed its draws are keyed by, and the pixel limit. */
export interface DecodeOptions {
  readonly transform: Transform;
  readonly seed: number;
  readonly limitInputPixels: number;
}

function toFloats(views: readonly Placement[], src: Uint8Array, layout: Layout, transform: Transform, shift: RGB): Decoded {
  const [{ width, height }] = views;
  const size = 3 * width * height;
  const data = new Float32Array(views.length * size);
  views.forEach((p, v) => writeWindow(src, layout, p, transform, data.subarray(v * size, (v + 1) * size), shift));
  return { data, width, height, views: views.length };
}

function checkSize(p: Placement, limit: number): void {
  if (p.sourceWidth * p.sourceHeight > limit) {
    throw new Error(`resampling to ${p.sourceWidth}x${p.sourceHeight} exceeds the pixel limit ${limit}`);
  }
}

/**
 * Resamples `image` to the placements' source size (bilinear, as torchvision's Resize) and reads only
 * the part their windows need: libvips computes pixels on demand, so a crop of an enlarged image
 * costs the crop, not the enlargement.
 */
async function resample(image: Sharp, views: readonly Placement[], resize: boolean, t: Transform, shift: RGB): Promise<Decoded> {
  const [{ sourceWidth: sw, sourceHeight: sh }] = views;
  let [l, top, r, b] = [sw, sh, 0, 0];
  for (const p of views) {
    l = Math.min(l, Math.max(0, p.clip[0], p.left));
    top = Math.min(top, Math.max(0, p.clip[1], p.top));
    r = Math.max(r, Math.min(sw, p.clip[2], p.left + p.width));
    b = Math.max(b, Math.min(sh, p.clip[3], p.top + p.height));
  }
  if (r <= l || b <= top) [l, top, r, b] = [0, 0, 1, 1]; // every view is padding: any pixel will do
  if (resize) image = image.resize(sw, sh, { fit: 'fill', kernel: 'linear' });
  if (l > 0 || top > 0 || r < sw || b < sh) image = image.extract({ left: l, top, width: r - l, height: b - top });
  const { data, info } = await image.removeAlpha().toColourspace('srgb').raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
  if (info.channels !== 3 || info.width !== r - l || info.height !== b - top) {
    throw new Error(`decoded to ${info.width}x${info.height}x${info.channels}, expected ${r - l}x${b - top}x3`);
  }
  const moved = views.map((p) => ({ ...p, left: p.left - l, top: p.top - top, clip: [p.clip[0] - l, p.clip[1] - top, p.clip[2] - l, p.clip[3] - top] as const }));
  return toFloats(moved, data, hwc(r - l), t, shift);
}

/**
 * Decodes and transforms one sample. Randomness is keyed by (seed, epoch, index), so the result does
 * not depend on which thread runs it or when. Encoded images are auto-oriented from EXIF, converted
 * to 8-bit sRGB (grayscale, CMYK and alpha included) and resampled once, letting libjpeg shrink on load.
 */
export async function decodeSample(input: SampleInput, epoch: number, index: number, o: DecodeOptions): Promise<Decoded> {
  const rand = keyedRandom(o.seed, epoch, index);
  if (input.kind === 'planes') {
    const views = plan(o.transform.steps, input.width, input.height, rand);
    const [p] = views;
    const shift = lightingShift(o.transform, rand);
    if (p.sourceWidth === input.width && p.sourceHeight === input.height) {
      return toFloats(views, input.pixels, chw(input.width, input.height), o.transform, shift);
    }
    checkSize(p, o.limitInputPixels);
    const planes = input.pixels;
    const n = input.width * input.height;
    const interleaved = new Uint8Array(3 * n);
    for (let i = 0; i < n; i++) for (let c = 0; c < 3; c++) interleaved[3 * i + c] = planes[c * n + i];
    const raw = { width: input.width, height: input.height, channels: 3 as const };
    return resample(sharp(interleaved, { raw }), views, true, o.transform, shift);
  }
  const options = { autoOrient: true, limitInputPixels: o.limitInputPixels } as const;
  const meta = await sharp(input.bytes, options).metadata();
  const { width, height } = meta.autoOrient; // sharp has already refused inputs over the pixel limit
  const views = plan(o.transform.steps, width, height, rand);
  const [p] = views;
  const shift = lightingShift(o.transform, rand);
  checkSize(p, o.limitInputPixels);
  const resize = p.sourceWidth !== width || p.sourceHeight !== height;
  return resample(sharp(input.bytes, options), views, resize, o.transform, shift);
}

/** Decodes one encoded image, a file or its bytes; see decodeSample. */
export async function decodeFile(image: string | Uint8Array, epoch: number, index: number, o: DecodeOptions): Promise<Decoded> {
  return decodeSample({ kind: 'encoded', bytes: typeof image === 'string' ? await readFile(image) : image }, epoch, index, o);
}

/**
 * Decodes one image, a file or its bytes, through a transform exactly as the loader would: for
 * predicting or evaluating single images (with tenCropEval(), its 10 views). Random steps draw from
 * seed 0, epoch 0, index 0.
 */
export async function loadImage(image: string | Uint8Array, transform: Transform = { steps: [] }, limitInputPixels = DEFAULT_PIXEL_LIMIT): Promise<Decoded> {
  validateTransform(transform);
  return decodeFile(image, 0, 0, { transform, seed: 0, limitInputPixels });
}
