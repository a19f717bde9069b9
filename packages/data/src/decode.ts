import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import type { Sharp } from 'sharp';
import { keyedRandom } from './random.js';
import { chw, hwc, lightingShift, outputSize, plan, resampledSpan, upsampledSpan, validateTransform, writeResampled, writeUpsampled, writeWindow, type Layout, type Placement, type RGB, type Transform } from './transforms.js';

type SharpModule = typeof import('sharp').default;
let loaded: SharpModule | undefined;
let configure: ((s: SharpModule) => void) | undefined;

/**
 * sharp, loaded on first use, from its CommonJS build: it loads in 40 ms against 120 for its ES
 * module build, and a main thread that leaves decoding to workers, or a worker fed decoded pixels
 * (PPM shards, CIFAR), never needs it. The package's one way in to sharp. (Under vitest, require()
 * hands back a namespace with the function as its default.)
 */
export function sharp(): SharpModule {
  if (!loaded) {
    const m = createRequire(import.meta.url)('sharp');
    loaded = (m.default ?? m) as SharpModule;
    configure?.(loaded);
  }
  return loaded;
}

/** Settings for sharp, applied when it loads (at once if it has). */
export function configureSharp(f: (s: SharpModule) => void): void {
  configure = f;
  if (loaded) f(loaded);
}

/** File name extensions (lower case) taken for images; sharp decodes by content, whatever the name says. */
export const IMAGE_EXTENSIONS: ReadonlySet<string> = new Set(['.jpg', '.jpeg', '.png', '.webp', '.tif', '.tiff', '.gif', '.avif', '.ppm']);

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

/** Where a sample's floats go: a slot of a batch sized beforehand, else a new array of the sample's size. */
type Target = Float32Array | undefined;

function floatsFor(views: readonly Placement[], target: Target): Float32Array {
  const [{ width, height }] = views;
  const size = views.length * 3 * width * height;
  if (!target) return new Float32Array(size);
  if (target.length !== size) throw new Error(`came out ${views.length} x ${width}x${height}, not the size its batch was made for`);
  return target;
}

function toFloats(views: readonly Placement[], src: Uint8Array, layout: Layout, transform: Transform, shift: RGB, target: Target): Float32Array {
  const out = floatsFor(views, target);
  const size = out.length / views.length;
  views.forEach((p, v) => writeWindow(src, layout, p, transform, out.subarray(v * size, (v + 1) * size), shift));
  return out;
}

function checkSize(p: Placement, limit: number): void {
  if (p.sourceWidth * p.sourceHeight > limit) {
    throw new Error(`resampling to ${p.sourceWidth}x${p.sourceHeight} exceeds the pixel limit ${limit}`);
  }
}

/** The part [left, right) x [top, bottom) of the resampled image that the views read; at least one pixel. */
function windowOf(views: readonly Placement[]): [number, number, number, number] {
  const [{ sourceWidth: sw, sourceHeight: sh }] = views;
  let [l, top, r, b] = [sw, sh, 0, 0];
  for (const p of views) {
    l = Math.min(l, Math.max(0, p.clip[0], p.left));
    top = Math.min(top, Math.max(0, p.clip[1], p.top));
    r = Math.max(r, Math.min(sw, p.clip[2], p.left + p.width));
    b = Math.max(b, Math.min(sh, p.clip[3], p.top + p.height));
  }
  return r <= l || b <= top ? [0, 0, 1, 1] : [l, top, r, b]; // every view is padding: any pixel will do
}

/**
 * How an image's pixels become 8-bit RGB: `plain` (3-component JPEG) as decoded; `cmyk` (4-component
 * JPEG) as PIL converts it, R = (255 - C)(255 - K) / 255: libvips' ICC-based conversion cost 40 ms or
 * more an image (building the transform), ten times PIL's, and torchvision's users train on PIL's;
 * `convert` (grayscale, alpha, 16-bit, other formats) by libvips to sRGB.
 */
type Colour = 'plain' | 'cmyk' | 'convert';

/** Raw 8-bit RGB of a sharp pipeline, checked to be the size asked for. */
async function rgb(image: Sharp, width: number, height: number, colour: Colour): Promise<Uint8Array> {
  if (colour === 'convert') image = image.removeAlpha().toColourspace('srgb');
  if (colour === 'cmyk') image = image.pipelineColourspace('cmyk').toColourspace('cmyk');
  const { data, info } = await image.raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
  const bands = colour === 'cmyk' ? 4 : 3;
  if (info.channels !== bands || info.width !== width || info.height !== height) {
    throw new Error(`decoded to ${info.width}x${info.height}x${info.channels}, expected ${width}x${height}x${bands}`);
  }
  if (colour !== 'cmyk') return data;
  const out = new Uint8Array(3 * width * height);
  for (let i = 0, j = 0; i < out.length; i += 3, j += 4) {
    const k = 255 - data[j + 3];
    out[i] = Math.round(((255 - data[j]) * k) / 255);
    out[i + 1] = Math.round(((255 - data[j + 1]) * k) / 255);
    out[i + 2] = Math.round(((255 - data[j + 2]) * k) / 255);
  }
  return out;
}

/** Views moved into a window that starts at (l, top). */
const shifted = (views: readonly Placement[], l: number, top: number): Placement[] =>
  views.map((p) => ({ ...p, left: p.left - l, top: p.top - top, clip: [p.clip[0] - l, p.clip[1] - top, p.clip[2] - l, p.clip[3] - top] as const }));

/**
 * Resamples `image` (`width` x `height`) to the placements' source size and reads only the part their
 * windows need. Enlarging, libvips decodes just the source pixels under the window and writeUpsampled
 * interpolates the crop straight into the floats. Otherwise libvips resizes (bilinear, as
 * torchvision's Resize), computing pixels on demand; straight from the JPEG decoder, which then
 * shrinks on load where the scale allows.
 */
async function resample(image: Sharp, width: number, height: number, views: readonly Placement[], colour: Colour, t: Transform, shift: RGB, target: Target): Promise<Float32Array> {
  const [{ sourceWidth: sw, sourceHeight: sh }] = views;
  const [l, top, r, b] = windowOf(views);
  if (sw >= width && sh >= height && (sw > width || sh > height)) {
    const [x0, x1] = upsampledSpan(width, sw, l, r);
    const [y0, y1] = upsampledSpan(height, sh, top, b);
    if (x0 > 0 || y0 > 0 || x1 < width || y1 < height) image = image.extract({ left: x0, top: y0, width: x1 - x0, height: y1 - y0 });
    const src = await rgb(image, x1 - x0, y1 - y0, colour);
    const w = { left: x0, top: y0, width: x1 - x0, height: y1 - y0, fullWidth: width, fullHeight: height };
    const out = floatsFor(views, target);
    const size = out.length / views.length;
    views.forEach((p, v) => writeUpsampled(src, w, p, t, out.subarray(v * size, (v + 1) * size), shift));
    return out;
  }
  if (sw !== width || sh !== height) image = image.resize(sw, sh, { fit: 'fill', kernel: 'linear' });
  if (l > 0 || top > 0 || r < sw || b < sh) image = image.extract({ left: l, top, width: r - l, height: b - top });
  const src = await rgb(image, r - l, b - top, colour);
  return toFloats(shifted(views, l, top), src, hwc(r - l), t, shift, target);
}

/** 8-bit RGB pixels, rows of interleaved R, G, B. */
export interface RgbImage {
  readonly data: Uint8Array;
  readonly width: number;
  readonly height: number;
}

const isSpace = (c: number) => c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d || c === 0x0b || c === 0x0c;

/**
 * The pixels of a binary PPM (`P6`, maxval 255): a view into `b`, nothing decoded or copied.
 * Undefined when `b` does not start with `P6`; an error saying what is wrong when it does but the
 * header or the size does not hold up.
 */
export function readPpm(b: Uint8Array): RgbImage | undefined {
  if (b.length < 2 || b[0] !== 0x50 || b[1] !== 0x36) return undefined;
  const fields: number[] = [];
  let at = 2;
  while (fields.length < 3) {
    while (at < b.length && (isSpace(b[at]) || b[at] === 0x23)) {
      if (b[at] === 0x23) while (at < b.length && b[at] !== 0x0a && b[at] !== 0x0d) at++; // a comment, to the end of its line
      else at++;
    }
    let value = 0;
    const from = at;
    while (at < b.length && b[at] >= 0x30 && b[at] <= 0x39 && at - from < 9) value = value * 10 + b[at++] - 0x30;
    if (at === from || (at < b.length && !isSpace(b[at]))) throw new Error(`PPM header: field ${fields.length + 1} (width, height, maxval) is not a number`);
    fields.push(value);
  }
  const [width, height, maxval] = fields;
  if (maxval !== 255) throw new Error(`PPM maxval ${maxval}: only 8-bit (255) is read`);
  if (width === 0 || height === 0) throw new Error(`PPM of ${width}x${height} pixels`);
  const size = 3 * width * height;
  at++; // the one whitespace byte after maxval
  if (b.length - at < size) throw new Error(`PPM of ${width}x${height} holds ${b.length - at} bytes of pixels, not ${size}: truncated`);
  return { data: b.subarray(at, at + size), width, height };
}

/** 8-bit RGB pixels as a binary PPM (`P6`): the header, then the pixels as they are. */
export function writePpm({ data, width, height }: RgbImage): Uint8Array<ArrayBuffer> {
  if (data.length !== 3 * width * height) throw new Error(`writePpm: ${data.length} bytes are not 3 x ${width} x ${height}`);
  const head = new TextEncoder().encode(`P6\n${width} ${height}\n255\n`);
  const out = new Uint8Array(head.length + data.length);
  out.set(head);
  out.set(data, head.length);
  return out;
}

/**
 * Transforms pixels already decoded (a PPM's, or CIFAR's planes interleaved) with no libvips pipeline
 * at all: the crop is computed from the source rows under it, enlarged by bilinear interpolation as
 * `resample` does, or reduced through PIL's widened bilinear filter (torchvision's antialiased Resize),
 * in floats, where `resample` has libvips reduce to 8 bits.
 */
function fromPixels(img: RgbImage, views: readonly Placement[], t: Transform, shift: RGB, target: Target): Float32Array {
  const { data, width, height } = img;
  const [{ sourceWidth: sw, sourceHeight: sh }] = views;
  if (sw === width && sh === height) return toFloats(views, data, hwc(width), t, shift, target);
  const enlarging = sw >= width && sh >= height;
  const [, top, , bottom] = windowOf(views);
  const [y0, y1] = (enlarging ? upsampledSpan : resampledSpan)(height, sh, top, bottom);
  const rows = data.subarray(3 * width * y0, 3 * width * y1);
  const w = { left: 0, top: y0, width, height: y1 - y0, fullWidth: width, fullHeight: height };
  const write = enlarging ? writeUpsampled : writeResampled;
  const out = floatsFor(views, target);
  const size = out.length / views.length;
  views.forEach((p, v) => write(rows, w, p, t, out.subarray(v * size, (v + 1) * size), shift));
  return out;
}

/** What the loader needs to know of an encoded image before planning: its displayed size, and how its pixels become 8-bit RGB. */
export interface Header {
  readonly width: number;
  readonly height: number;
  readonly orientation: number;
  /** False for anything but a 3-component 8-bit JPEG: grayscale, CMYK, alpha, 16-bit need converting to 8-bit RGB. */
  readonly plain: boolean;
  /** A 4-component (CMYK or YCCK) JPEG. */
  readonly cmyk?: boolean;
  /** A baseline (sequential) JPEG, which decodes in one pass; progressive ones take several. */
  readonly baseline?: boolean;
}

const u16 = (b: Uint8Array, at: number, little = false) => (little ? b[at] | (b[at + 1] << 8) : (b[at] << 8) | b[at + 1]);
const u32 = (b: Uint8Array, at: number, little: boolean) => (little ? u16(b, at, true) + u16(b, at + 2, true) * 65536 : u16(b, at) * 65536 + u16(b, at + 2));

/** The EXIF orientation in an APP1 segment's bytes [at, end), or 1. */
function exifOrientation(b: Uint8Array, at: number, end: number): number {
  if (end - at < 14 || String.fromCharCode(...b.subarray(at, at + 4)) !== 'Exif') return 1;
  const tiff = at + 6;
  const little = b[tiff] === 0x49;
  const ifd = tiff + u32(b, tiff + 4, little);
  if (ifd + 2 > end) return 1;
  for (let k = 0, n = u16(b, ifd, little); k < n && ifd + 14 + 12 * k <= end; k++) {
    const entry = ifd + 2 + 12 * k;
    if (u16(b, entry, little) === 0x0112) return u16(b, entry + 8, little);
  }
  return 1;
}

/**
 * Reads a JPEG's size, component count and EXIF orientation from its markers, without decoding: a
 * call to sharp's metadata() costs about as much CPU as a quarter of the decode of a 224x224 image.
 * Undefined for anything else, or anything unusual, which then goes through metadata().
 */
export function jpegHeader(b: Uint8Array): Header | undefined {
  if (b[0] !== 0xff || b[1] !== 0xd8) return undefined;
  let orientation = 1;
  for (let at = 2; at + 4 <= b.length; ) {
    if (b[at] !== 0xff) return undefined;
    const marker = b[at + 1];
    if (marker === 0xff) {
      at++; // fill byte
      continue;
    }
    const end = at + 2 + u16(b, at + 2);
    if (marker === 0xe1) orientation = exifOrientation(b, at + 4, Math.min(end, b.length));
    else if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
      if (at + 10 > b.length || b[at + 4] !== 8) return undefined;
      const [height, width, components] = [u16(b, at + 5), u16(b, at + 7), b[at + 9]];
      if (width === 0 || height === 0 || orientation < 1 || orientation > 8) return undefined;
      const turned = orientation >= 5;
      const size = { width: turned ? height : width, height: turned ? width : height };
      return { ...size, orientation, plain: components === 3, cmyk: components === 4, baseline: marker === 0xc0 || marker === 0xc1 };
    } else if (marker === 0xda || marker === 0xd9) return undefined;
    at = end;
  }
  return undefined;
}

/**
 * A sharp pipeline for encoded bytes, with the image's displayed size and how its colours become RGB.
 * The image is turned only when EXIF asks: sharp then orients before any crop, which costs
 * shrink-on-load. Embedded ICC profiles are ignored, as PIL ignores them: torchvision's weights were
 * trained on those pixels, and libvips' transform cost more than the decoding (7 ms against 3 for a
 * 500x375 JPEG).
 */
async function open(bytes: Uint8Array, limitInputPixels: number): Promise<{ image: Sharp; header: Header; colour: Colour }> {
  let header = jpegHeader(bytes);
  if (!header || header.width * header.height > limitInputPixels) {
    const meta = await sharp()(bytes, { autoOrient: true, limitInputPixels }).metadata();
    header = { ...meta.autoOrient, orientation: meta.orientation ?? 1, plain: false };
  }
  const image = sharp()(bytes, { autoOrient: header.orientation > 1, ignoreIcc: true, limitInputPixels });
  return { image, header, colour: header.plain ? 'plain' : header.cmyk ? 'cmyk' : 'convert' };
}

/** An encoded image decoded whole, upright, as 8-bit RGB exactly as the loader sees it (for preprocessing it once). */
export async function decodeRgb(bytes: Uint8Array, limitInputPixels = DEFAULT_PIXEL_LIMIT): Promise<RgbImage> {
  const ppm = readPpm(bytes);
  if (ppm) return ppm;
  const { image, header, colour } = await open(bytes, limitInputPixels);
  return { data: await rgb(image, header.width, header.height, colour), width: header.width, height: header.height };
}

/**
 * Decodes and transforms one sample, into `target` when given (a batch's slot, which must be the
 * sample's size). Randomness is keyed by (seed, epoch, index), so the result does not depend on which
 * thread runs it or when. Encoded images are auto-oriented from EXIF, converted to 8-bit RGB as PIL
 * does (grayscale, CMYK and alpha included; embedded ICC profiles ignored) and resampled once,
 * letting libjpeg shrink on load. Binary PPMs (what `makeShards({ format: 'ppm' })` stores) are read
 * here, without libvips: their pixels are used where they lie.
 */
export async function decodeSample(input: SampleInput, epoch: number, index: number, o: DecodeOptions, target?: Float32Array): Promise<Decoded> {
  const rand = keyedRandom(o.seed, epoch, index);
  const done = (views: readonly Placement[], data: Float32Array): Decoded => ({ data: data as Float32Array<ArrayBuffer>, width: views[0].width, height: views[0].height, views: views.length });
  if (input.kind === 'planes') {
    const views = plan(o.transform.steps, input.width, input.height, rand);
    const [p] = views;
    const shift = lightingShift(o.transform, rand);
    if (p.sourceWidth === input.width && p.sourceHeight === input.height) {
      return done(views, toFloats(views, input.pixels, chw(input.width, input.height), o.transform, shift, target));
    }
    checkSize(p, o.limitInputPixels);
    const planes = input.pixels;
    const n = input.width * input.height;
    const interleaved = new Uint8Array(3 * n);
    for (let i = 0; i < n; i++) for (let c = 0; c < 3; c++) interleaved[3 * i + c] = planes[c * n + i];
    return done(views, fromPixels({ data: interleaved, width: input.width, height: input.height }, views, o.transform, shift, target));
  }
  const ppm = readPpm(input.bytes);
  if (ppm) {
    if (ppm.width * ppm.height > o.limitInputPixels) throw new Error(`PPM of ${ppm.width}x${ppm.height} exceeds the pixel limit ${o.limitInputPixels}`);
    const views = plan(o.transform.steps, ppm.width, ppm.height, rand);
    const shift = lightingShift(o.transform, rand);
    checkSize(views[0], o.limitInputPixels);
    return done(views, fromPixels(ppm, views, o.transform, shift, target));
  }
  const { image, header, colour } = await open(input.bytes, o.limitInputPixels);
  const { width, height } = header;
  const views = plan(o.transform.steps, width, height, rand);
  const shift = lightingShift(o.transform, rand);
  checkSize(views[0], o.limitInputPixels);
  return done(views, await resample(image, width, height, views, colour, o.transform, shift, target));
}

/** Decodes one encoded image, a file or its bytes; see decodeSample. */
export async function decodeFile(image: string | Uint8Array, epoch: number, index: number, o: DecodeOptions): Promise<Decoded> {
  return decodeSample({ kind: 'encoded', bytes: typeof image === 'string' ? await readFile(image) : image }, epoch, index, o);
}

/** One sample of a batch: an image file, or its input; and the (epoch, index) its draws are keyed by. */
export interface BatchItem {
  readonly image: string | SampleInput;
  readonly epoch: number;
  readonly index: number;
}

/** A batch of decoded samples: the kept ones' floats one after another, and why each other one was skipped. */
export interface DecodedBatch {
  readonly images: Float32Array<ArrayBuffer>;
  readonly width: number;
  readonly height: number;
  readonly views: number;
  /** Per item: undefined when it was kept (kept samples keep their order), else why it was skipped. */
  readonly skipped: readonly (string | undefined)[];
}

/**
 * Decodes a batch into one array, the only copy of its pixels: when the transform fixes the output
 * size, each sample writes its floats straight into its slot. Bad samples are skipped (with their
 * reason); samples of different sizes are an error, as they cannot share a batch.
 */
export async function decodeBatch(items: readonly BatchItem[], o: DecodeOptions): Promise<DecodedBatch> {
  const fixed = outputSize(o.transform.steps);
  const per = fixed ? fixed.views * 3 * fixed.width * fixed.height : 0;
  const slots = fixed && new Float32Array(items.length * per);
  // Every sample at once: libvips decodes them on libuv's threads while this thread writes the floats
  // of those done, so one thread keeps about two cores busy. Files are read synchronously: the thread
  // has nothing else to do meanwhile, and a read through libuv's pool would queue behind the decodes.
  const attempt = async (k: number): Promise<Decoded | string> => {
    const { image, epoch, index } = items[k];
    try {
      const input: SampleInput = typeof image === 'string' ? { kind: 'encoded', bytes: readFileSync(image) } : image;
      return await decodeSample(input, epoch, index, o, slots?.subarray(k * per, (k + 1) * per));
    } catch (e) {
      return (e as Error).message;
    }
  };
  const results = await Promise.all(items.map((_, k) => attempt(k)));
  // libvips keeps one error buffer for the whole process: samples failing at once swap or lose each
  // other's messages. A failed sample is tried again alone, so the reason reported is its own.
  for (const [k, r] of results.entries()) if (typeof r === 'string') results[k] = await attempt(k);
  const skipped = results.map((r) => (typeof r === 'string' ? r : undefined));
  const kept = results.flatMap((r, k) => (typeof r === 'string' ? [] : [k]));
  const first = results[kept[0]] as Decoded | undefined;
  const size = fixed ?? first ?? { width: 0, height: 0, views: 1 };
  if (slots) {
    kept.forEach((k, j) => j !== k && slots.copyWithin(j * per, k * per, (k + 1) * per));
    // A batch that lost samples is cut to its own buffer, for consumers that read `images.buffer` whole.
    return { images: kept.length === items.length ? slots : slots.slice(0, kept.length * per), ...size, skipped };
  }
  const each = first ? first.data.length : 0;
  const images = new Float32Array(kept.length * each);
  kept.forEach((k, j) => {
    const d = results[k] as Decoded;
    if (d.width !== first!.width || d.height !== first!.height) {
      throw new Error(`sample ${items[k].index} came out ${d.width}x${d.height} but sample ${items[kept[0]].index} ${first!.width}x${first!.height}; end the transform with a crop to one size`);
    }
    images.set(d.data, j * each);
  });
  return { images, width: size.width, height: size.height, views: size.views, skipped };
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
