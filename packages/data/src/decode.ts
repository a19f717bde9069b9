import { readFile } from 'node:fs/promises';
import sharp from 'sharp';
import { keyedRandom } from './random.js';
import { chw, hwc, plan, validateTransform, writeWindow, type Layout, type Placement, type Transform } from './transforms.js';

/** sharp's own default: larger inputs are refused before any pixel is decoded. */
export const DEFAULT_PIXEL_LIMIT = 0x3fff * 0x3fff;

/** One transformed sample: normalised CHW floats. */
export interface Decoded {
  readonly data: Float32Array<ArrayBuffer>;
  readonly width: number;
  readonly height: number;
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

function toFloats(p: Placement, src: Uint8Array, layout: Layout, transform: Transform): Decoded {
  const data = new Float32Array(3 * p.width * p.height);
  writeWindow(src, layout, p, transform, data);
  return { data, width: p.width, height: p.height };
}

function checkSize(p: Placement, limit: number): void {
  if (p.sourceWidth * p.sourceHeight > limit) {
    throw new Error(`resampling to ${p.sourceWidth}x${p.sourceHeight} exceeds the pixel limit ${limit}`);
  }
}

/**
 * Decodes and transforms one sample. Randomness is keyed by (seed, epoch, index), so the result does
 * not depend on which thread runs it or when. Encoded images are auto-oriented from EXIF, converted
 * to 8-bit sRGB (grayscale, CMYK and alpha included) and resampled once, letting libjpeg shrink on load.
 */
export async function decodeSample(input: SampleInput, epoch: number, index: number, o: DecodeOptions): Promise<Decoded> {
  const rand = keyedRandom(o.seed, epoch, index);
  if (input.kind === 'planes') {
    const p = plan(o.transform.steps, input.width, input.height, rand);
    if (p.sourceWidth === input.width && p.sourceHeight === input.height) {
      return toFloats(p, input.pixels, chw(input.width, input.height), o.transform);
    }
    checkSize(p, o.limitInputPixels);
    const planes = input.pixels;
    const n = input.width * input.height;
    const interleaved = new Uint8Array(3 * n);
    for (let i = 0; i < n; i++) for (let c = 0; c < 3; c++) interleaved[3 * i + c] = planes[c * n + i];
    const raw = { width: input.width, height: input.height, channels: 3 as const };
    const pixels = await sharp(interleaved, { raw }).resize(p.sourceWidth, p.sourceHeight, { fit: 'fill' }).raw().toBuffer();
    return toFloats(p, pixels, hwc(p.sourceWidth), o.transform);
  }
  const options = { autoOrient: true, limitInputPixels: o.limitInputPixels } as const;
  const meta = await sharp(input.bytes, options).metadata();
  const { width, height } = meta.autoOrient; // sharp has already refused inputs over the pixel limit
  const p = plan(o.transform.steps, width, height, rand);
  checkSize(p, o.limitInputPixels);
  let image = sharp(input.bytes, options);
  if (p.sourceWidth !== width || p.sourceHeight !== height) image = image.resize(p.sourceWidth, p.sourceHeight, { fit: 'fill' });
  const { data, info } = await image
    .removeAlpha()
    .toColourspace('srgb')
    .raw({ depth: 'uchar' })
    .toBuffer({ resolveWithObject: true });
  if (info.channels !== 3 || info.width !== p.sourceWidth || info.height !== p.sourceHeight) {
    throw new Error(`decoded to ${info.width}x${info.height}x${info.channels}, expected ${p.sourceWidth}x${p.sourceHeight}x3`);
  }
  return toFloats(p, data, hwc(info.width), o.transform);
}

/** Reads and decodes one image file; see decodeSample. */
export async function decodeFile(path: string, epoch: number, index: number, o: DecodeOptions): Promise<Decoded> {
  return decodeSample({ kind: 'encoded', bytes: await readFile(path) }, epoch, index, o);
}

/**
 * Decodes one image, a file or its bytes, through a transform exactly as the loader would: for
 * predicting or evaluating single images. Random steps draw from seed 0, epoch 0, index 0.
 */
export async function loadImage(image: string | Uint8Array, transform: Transform = { steps: [] }, limitInputPixels = DEFAULT_PIXEL_LIMIT): Promise<Decoded> {
  validateTransform(transform);
  const bytes = typeof image === 'string' ? await readFile(image) : image;
  return decodeSample({ kind: 'encoded', bytes }, 0, 0, { transform, seed: 0, limitInputPixels });
}
