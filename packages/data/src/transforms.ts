import { writeFiltered, writeRows, type TapList } from './kernel.js';
import { randInt, type Rand } from './random.js';

/** Three per-channel numbers, in R, G, B order. */
export type RGB = readonly [number, number, number];

/**
 * One geometric step, named after its torchvision twin. Steps are plain data, so a transform can be
 * sent to decoding workers and written in a config file.
 */
export type Step =
  /** Resize(size): the shorter side becomes `size`, the aspect ratio is kept. */
  | { readonly op: 'resize'; readonly size: number }
  /** The paper's scale augmentation: the shorter side becomes a uniform integer in [min, max]. */
  | { readonly op: 'randomResize'; readonly min: number; readonly max: number }
  /** CenterCrop(size); an image smaller than the crop is padded with zeros. */
  | { readonly op: 'centerCrop'; readonly size: number }
  /** RandomCrop(size, padding): zero-pad each side by `padding`, then crop at a uniform position. */
  | { readonly op: 'randomCrop'; readonly size: number; readonly padding?: number }
  /** RandomResizedCrop(size, scale, ratio): a random area and aspect ratio, resized to size x size. */
  | {
      readonly op: 'randomResizedCrop';
      readonly size: number;
      readonly scale?: readonly [number, number];
      readonly ratio?: readonly [number, number];
    }
  /** RandomHorizontalFlip(p). */
  | { readonly op: 'hflip'; readonly p?: number }
  /**
   * TenCrop(size), the last step only: the four corners and the centre, then the same five of the
   * mirrored image, in torchvision's order. A sample becomes 10 views (for 10-crop evaluation).
   */
  | { readonly op: 'tenCrop'; readonly size: number };

/**
 * AlexNet's PCA colour augmentation: every pixel (in [0, 1]) of an image moves by
 * `eigvec · (alpha * eigval)`, with one `alpha ~ N(0, alphaStd²)` per component drawn per image.
 * `eigvec[c][k]` is channel c of component k (the eigenvectors are the columns), as `computeStats` gives them.
 */
export interface Lighting {
  readonly alphaStd: number;
  readonly eigval: RGB;
  readonly eigvec: readonly [RGB, RGB, RGB];
}

/** Geometric steps, then ToTensor (pixels / 255), PCA lighting when given, and, with `mean` and `std`, Normalize. */
export interface Transform {
  readonly steps: readonly Step[];
  readonly lighting?: Lighting;
  readonly mean?: RGB;
  readonly std?: RGB;
}

/** Per-channel statistics of the CIFAR-10 training set (the values torchvision users pass). */
export const CIFAR10_NORM = { mean: [0.4914, 0.4822, 0.4465], std: [0.247, 0.2435, 0.2616] } as const satisfies {
  mean: RGB;
  std: RGB;
};
/** Per-channel statistics of the ImageNet training set (torchvision's). */
export const IMAGENET_NORM = { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] } as const satisfies {
  mean: RGB;
  std: RGB;
};

/**
 * The principal components of ImageNet's RGB pixels (in [0, 1]) that fb.resnet.torch trains with,
 * with its alphaStd of 0.1. `residual data stats` computes them for any data set.
 */
export const IMAGENET_PCA: Lighting = {
  alphaStd: 0.1,
  eigval: [0.2175, 0.0188, 0.0045],
  eigvec: [
    [-0.5675, 0.7192, 0.4009],
    [-0.5808, -0.0045, -0.814],
    [-0.5836, -0.6948, 0.4203],
  ],
};

/** The paper's CIFAR augmentation (section 4.2): 4-pixel zero pad, random 32x32 crop, horizontal flip. */
export function cifarAugment(norm: { mean: RGB; std: RGB } = CIFAR10_NORM): Transform {
  return { steps: [{ op: 'randomCrop', size: 32, padding: 4 }, { op: 'hflip' }], ...norm };
}

/**
 * The paper's ImageNet augmentation (section 3.4): shorter side uniform in [256, 480], random 224 crop,
 * flip, and, given `lighting` (e.g. IMAGENET_PCA), the PCA colour augmentation the paper takes from AlexNet.
 */
export function scaleAugment(norm: { mean: RGB; std: RGB } = IMAGENET_NORM, min = 256, max = 480, size = 224, lighting?: Lighting): Transform {
  const steps: Step[] = [{ op: 'randomResize', min, max }, { op: 'randomCrop', size }, { op: 'hflip' }];
  return lighting ? { steps, lighting, ...norm } : { steps, ...norm };
}

/** torchvision's usual training augmentation: RandomResizedCrop(size) and a flip. */
export function resizedCropAugment(norm: { mean: RGB; std: RGB } = IMAGENET_NORM, size = 224): Transform {
  return { steps: [{ op: 'randomResizedCrop', size }, { op: 'hflip' }], ...norm };
}

/** The standard single-crop evaluation: Resize(resize), CenterCrop(size). */
export function centerCropEval(norm: { mean: RGB; std: RGB } = IMAGENET_NORM, resize = 256, size = 224): Transform {
  return { steps: [{ op: 'resize', size: resize }, { op: 'centerCrop', size }], ...norm };
}

/** The paper's 10-crop evaluation: Resize(resize), TenCrop(size); each sample gives 10 views. */
export function tenCropEval(norm: { mean: RGB; std: RGB } = IMAGENET_NORM, resize = 256, size = 224): Transform {
  return { steps: [{ op: 'resize', size: resize }, { op: 'tenCrop', size }], ...norm };
}

/**
 * Where the output window lies once every step has run: the whole source is resampled to
 * `sourceWidth` x `sourceHeight`, then the output reads the `width` x `height` window at (`left`, `top`)
 * of it, mirrored when `flip`. Only pixels inside `clip` (left, top, right, bottom; the source's bounds
 * cut by every crop on the way) are read: the rest is zero padding, exactly as if each step had run on
 * its own. Composing the steps first means each image is resampled at most once, by sharp.
 */
export interface Placement {
  readonly sourceWidth: number;
  readonly sourceHeight: number;
  readonly left: number;
  readonly top: number;
  readonly width: number;
  readonly height: number;
  readonly flip: boolean;
  readonly clip: readonly [number, number, number, number];
}

/**
 * The current image as a window of the source (x, y, w, h in source pixels, fractional), its size,
 * whether it is mirrored, and the part of the source that is still real pixels rather than padding.
 */
interface View {
  x: number;
  y: number;
  w: number;
  h: number;
  width: number;
  height: number;
  flip: boolean;
  clip: [number, number, number, number];
}

/** Python's round(): halves go to the even neighbour, as in torchvision's center_crop. */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

function crop(v: View, left: number, top: number, width: number, height: number): View {
  const sx = v.w / v.width;
  const sy = v.h / v.height;
  const fromLeft = v.flip ? v.width - left - width : left;
  const [x, y, w, h] = [v.x + fromLeft * sx, v.y + top * sy, width * sx, height * sy];
  const [l, t, r, b] = v.clip;
  const clip: View['clip'] = [Math.max(l, x), Math.max(t, y), Math.min(r, x + w), Math.min(b, y + h)];
  return { x, y, w, h, width, height, flip: v.flip, clip };
}

function resizeShorter(v: View, size: number): View {
  // torchvision truncates the longer side: int(size * long / short).
  const [width, height] =
    v.width <= v.height ? [size, Math.floor((size * v.height) / v.width)] : [Math.floor((size * v.width) / v.height), size];
  return { ...v, width, height };
}

function randomResizedCrop(v: View, step: Extract<Step, { op: 'randomResizedCrop' }>, rand: Rand): View {
  const [smin, smax] = step.scale ?? [0.08, 1];
  const [rmin, rmax] = step.ratio ?? [3 / 4, 4 / 3];
  const area = v.width * v.height;
  for (let attempt = 0; attempt < 10; attempt++) {
    const target = area * (smin + rand() * (smax - smin));
    const aspect = Math.exp(Math.log(rmin) + rand() * (Math.log(rmax) - Math.log(rmin)));
    const w = Math.round(Math.sqrt(target * aspect));
    const h = Math.round(Math.sqrt(target / aspect));
    if (w > 0 && h > 0 && w <= v.width && h <= v.height) {
      const top = randInt(rand, 0, v.height - h);
      const left = randInt(rand, 0, v.width - w);
      return { ...crop(v, left, top, w, h), width: step.size, height: step.size };
    }
  }
  // Like torchvision: fall back to the largest central crop whose ratio is in range.
  const inRatio = v.width / v.height;
  let w = v.width;
  let h = v.height;
  if (inRatio < rmin) h = Math.round(w / rmin);
  else if (inRatio > rmax) w = Math.round(h * rmax);
  const c = crop(v, Math.floor((v.width - w) / 2), Math.floor((v.height - h) / 2), w, h);
  return { ...c, width: step.size, height: step.size };
}

function applyStep(v: View, step: Step, rand: Rand): View {
  switch (step.op) {
    case 'resize':
      return resizeShorter(v, step.size);
    case 'randomResize':
      return resizeShorter(v, randInt(rand, step.min, step.max));
    case 'centerCrop':
      return centerCrop(v, step.size);
    case 'randomCrop': {
      const pad = step.padding ?? 0;
      const top = randInt(rand, 0, v.height + 2 * pad - step.size) - pad;
      const left = randInt(rand, 0, v.width + 2 * pad - step.size) - pad;
      return crop(v, left, top, step.size, step.size);
    }
    case 'randomResizedCrop':
      return randomResizedCrop(v, step, rand);
    case 'hflip':
      return rand() < (step.p ?? 0.5) ? { ...v, flip: !v.flip } : v;
    case 'tenCrop':
      throw new Error('tenCrop must be the last step');
  }
}

function centerCrop(v: View, size: number): View {
  return crop(v, roundHalfEven((v.width - size) / 2), roundHalfEven((v.height - size) / 2), size, size);
}

/** torchvision's ten_crop: five_crop of the image (corners, then centre), then five_crop of its mirror. */
function tenCrop(v: View, size: number): View[] {
  if (size > v.width || size > v.height) throw new Error(`tenCrop ${size} is larger than the ${v.width}x${v.height} image`);
  const five = (u: View) => [
    crop(u, 0, 0, size, size),
    crop(u, u.width - size, 0, size, size),
    crop(u, 0, u.height - size, size, size),
    crop(u, u.width - size, u.height - size, size, size),
    centerCrop(u, size),
  ];
  return [...five(v), ...five({ ...v, flip: !v.flip })];
}

/**
 * Runs the geometric steps on a `width` x `height` image; every random draw comes from `rand`. One
 * placement, or ten after a final tenCrop; they share one source size, so the image is resampled once.
 */
export function plan(steps: readonly Step[], width: number, height: number, rand: Rand): Placement[] {
  let v: View = { x: 0, y: 0, w: width, h: height, width, height, flip: false, clip: [0, 0, width, height] };
  const last = steps.at(-1);
  const geometric = last?.op === 'tenCrop' ? steps.slice(0, -1) : steps;
  for (const step of geometric) v = applyStep(v, step, rand);
  return last?.op === 'tenCrop' ? tenCrop(v, last.size).map((u) => place(u, width, height)) : [place(v, width, height)];
}

function place(v: View, width: number, height: number): Placement {
  const sx = v.w / v.width;
  const sy = v.h / v.height;
  const [l, t, r, b] = v.clip;
  return {
    clip: [Math.round(l / sx), Math.round(t / sy), Math.round(r / sx), Math.round(b / sy)],
    sourceWidth: Math.max(1, Math.round(width / sx)),
    sourceHeight: Math.max(1, Math.round(height / sy)),
    left: Math.round(v.x / sx),
    top: Math.round(v.y / sy),
    width: v.width,
    height: v.height,
    flip: v.flip,
  };
}

/** Checks a transform (it may come from a config file), naming the step at fault. */
export function validateTransform(t: Transform): void {
  t.steps.forEach((s, i) => {
    const fail = (what: string) => {
      throw new Error(`transform step ${i} (${s.op}): ${what}`);
    };
    const integer = (name: string, v: unknown, min: number) => {
      if (!(Number.isInteger(v) && (v as number) >= min)) fail(`${name} ${v} is not an integer >= ${min}`);
    };
    const range = (name: string, r: readonly [number, number] | undefined) => {
      if (r && !(r.length === 2 && r[0] > 0 && r[0] <= r[1])) fail(`${name} ${r.join(',')} is not [lo, hi] with 0 < lo <= hi`);
    };
    switch (s.op) {
      case 'randomResize':
        integer('min', s.min, 1);
        integer('max', s.max, s.min);
        break;
      case 'hflip':
        if (s.p !== undefined && !(s.p >= 0 && s.p <= 1)) fail(`p ${s.p} is not in [0, 1]`);
        break;
      case 'randomCrop':
        integer('padding', s.padding ?? 0, 0);
        integer('size', s.size, 1);
        break;
      case 'randomResizedCrop':
        range('scale', s.scale);
        range('ratio', s.ratio);
        integer('size', s.size, 1);
        break;
      case 'tenCrop':
        if (i !== t.steps.length - 1) fail('must be the last step');
        integer('size', s.size, 1);
        break;
      case 'resize':
      case 'centerCrop':
        integer('size', s.size, 1);
        break;
      default:
        fail('unknown op');
    }
  });
  for (const [name, v] of [['mean', t.mean], ['std', t.std]] as const) {
    if (v !== undefined && !(v.length === 3 && v.every(Number.isFinite))) throw new Error(`transform: ${name} must be three numbers (R, G, B)`);
  }
  if ((t.mean === undefined) !== (t.std === undefined)) throw new Error('transform: give both mean and std, or neither');
  if (t.std?.some((s) => !(s > 0))) throw new Error(`transform: std ${t.std.join(',')} must be positive`);
  if (t.lighting) {
    const { alphaStd, eigval, eigvec } = t.lighting;
    const finite = (v: unknown) => Array.isArray(v) && v.length === 3 && v.every(Number.isFinite);
    if (!(alphaStd >= 0) || !finite(eigval) || !(Array.isArray(eigvec) && eigvec.length === 3 && eigvec.every(finite))) {
      throw new Error('transform: lighting needs alphaStd >= 0, eigval of 3 numbers and eigvec of 3 rows of 3');
    }
  }
}

/** A standard normal draw (Box-Muller). */
function normal(rand: Rand): number {
  return Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
}

/** The per-channel shift of PCA lighting for one image, drawn after the geometric steps; zero without lighting. */
export function lightingShift(t: Transform, rand: Rand): RGB {
  if (!t.lighting) return [0, 0, 0];
  const { alphaStd, eigval, eigvec } = t.lighting;
  const w = eigval.map((e) => e * alphaStd * normal(rand));
  const at = (c: number) => eigvec[c][0] * w[0] + eigvec[c][1] * w[1] + eigvec[c][2] * w[2];
  return [at(0), at(1), at(2)];
}

/** How an 8-bit RGB image is laid out in memory, in elements. */
export interface Layout {
  readonly pixelStride: number;
  readonly rowStride: number;
  readonly channelStride: number;
}

/** Interleaved RGB rows, as sharp's raw output gives them. */
export function hwc(width: number): Layout {
  return { pixelStride: 3, rowStride: 3 * width, channelStride: 1 };
}

/** Channel planes, as CIFAR's records hold them. */
export function chw(width: number, height: number): Layout {
  return { pixelStride: 1, rowStride: width, channelStride: width * height };
}

/** Per channel: the scale and bias that take a pixel value to its normalised float (pixel / 255, lighting, mean, std). */
function normalisation(t: Transform, shift: RGB): { scale: number[]; bias: number[] } {
  const std = [0, 1, 2].map((c) => t.std?.[c] ?? 1);
  return { scale: std.map((s) => 1 / (255 * s)), bias: std.map((s, c) => (shift[c] - (t.mean?.[c] ?? 0)) / s) };
}

/** The output columns [lo, hi) of a placement that read real pixels rather than padding. */
function columnsInside(p: Placement): [number, number] {
  const [left, , right] = p.clip;
  return [Math.max(0, p.flip ? p.left + p.width - right : left - p.left), Math.min(p.width, p.flip ? p.left + p.width - left : right - p.left)];
}

/** The resampled image's column (row) read by output column x (row y). */
const columnOf = (p: Placement, x: number) => p.left + (p.flip ? p.width - 1 - x : x);

/**
 * Copies the placement's window of `src` (already at the placement's source size) into `out`
 * as normalised CHW floats; pixels outside the clip read as 0 before the lighting `shift` and normalisation.
 */
export function writeWindow(src: Uint8Array, layout: Layout, p: Placement, t: Transform, out: Float32Array, shift: RGB = [0, 0, 0]): void {
  const { width: ow, height: oh } = p;
  const [, top, , bottom] = p.clip;
  const [lo, hi] = columnsInside(p);
  const cols = { first: new Int32Array(ow), next: new Int32Array(ow), frac: new Float32Array(ow) };
  for (let x = lo; x < hi; x++) cols.first[x] = cols.next[x] = columnOf(p, x) * layout.pixelStride;
  const rows = { first: new Int32Array(oh), next: new Int32Array(oh), frac: new Float32Array(oh) };
  for (let y = 0; y < oh; y++) {
    const sy = p.top + y;
    rows.first[y] = rows.next[y] = sy >= top && sy < bottom ? sy : -1;
  }
  const { scale, bias } = normalisation(t, shift);
  writeRows(src, layout.rowStride, layout.channelStride, cols, rows, lo, hi, out, scale, bias);
}

/**
 * The size every sample comes out at, when the steps fix it (the last size-setting step is a crop),
 * so a batch can be allocated before any image is decoded; undefined when it depends on the image.
 */
export function outputSize(steps: readonly Step[]): { width: number; height: number; views: number } | undefined {
  let size: number | undefined;
  for (const s of steps) {
    if (s.op === 'resize' || s.op === 'randomResize') size = undefined;
    else if (s.op !== 'hflip') size = s.size;
  }
  return size === undefined ? undefined : { width: size, height: size, views: steps.at(-1)?.op === 'tenCrop' ? 10 : 1 };
}

/** Where an HWC window of an image lies in it: `src` holds `width` x `height` pixels from (`left`, `top`) of a `fullWidth` x `fullHeight` image. */
export interface SourceWindow {
  readonly left: number;
  readonly top: number;
  readonly width: number;
  readonly height: number;
  readonly fullWidth: number;
  readonly fullHeight: number;
}

/** The source pixels [lo, hi) that bilinear enlargement of `full` to `size` reads for outputs [from, to). */
export function upsampledSpan(full: number, size: number, from: number, to: number): [number, number] {
  const at = (x: number) => Math.min(full - 1, Math.max(0, Math.floor(((x + 0.5) * full) / size - 0.5)));
  return [at(from), Math.min(full, at(to - 1) + 2)];
}

/**
 * writeWindow for a placement that enlarges the image (sourceWidth >= fullWidth, sourceHeight >=
 * fullHeight): each output pixel is interpolated from the 2 x 2 source pixels around its centre,
 * edges clamped, which is what PIL's bilinear filter (torchvision's Resize) computes when enlarging.
 * Done here rather than by libvips because only the crop is computed, straight into `out`, fused with
 * the flip and normalisation: libvips would resample whole rows and hand back bytes to convert again.
 */
export function writeUpsampled(src: Uint8Array, w: SourceWindow, p: Placement, t: Transform, out: Float32Array, shift: RGB = [0, 0, 0]): void {
  const { width: ow, height: oh } = p;
  const [, top, , bottom] = p.clip;
  const [lo, hi] = columnsInside(p);
  // Source pixel (as a window offset, times `unit`) of the two taps around output position `at`, and the second's weight.
  const tap = (taps: { first: Int32Array; next: Int32Array; frac: Float32Array }, i: number, at: number, full: number, size: number, from: number, unit: number) => {
    const u = Math.min(full - 1, Math.max(0, ((at + 0.5) * full) / size - 0.5));
    const i0 = Math.floor(u);
    taps.first[i] = (i0 - from) * unit;
    taps.next[i] = (Math.min(i0 + 1, full - 1) - from) * unit;
    taps.frac[i] = u - i0;
  };
  const cols = { first: new Int32Array(ow), next: new Int32Array(ow), frac: new Float32Array(ow) };
  for (let x = lo; x < hi; x++) tap(cols, x, columnOf(p, x), w.fullWidth, p.sourceWidth, w.left, 3);
  const rows = { first: new Int32Array(oh), next: new Int32Array(oh), frac: new Float32Array(oh) };
  for (let y = 0; y < oh; y++) {
    const sy = p.top + y;
    if (sy >= top && sy < bottom) tap(rows, y, sy, w.fullHeight, p.sourceHeight, w.top, 1);
    else rows.first[y] = -1;
  }
  const { scale, bias } = normalisation(t, shift);
  writeRows(src, 3 * w.width, 1, cols, rows, lo, hi, out, scale, bias);
}

/**
 * PIL's taps for output position `at` of an axis resampled from `full` to `size` with its bilinear
 * (triangle) filter, as torchvision's Resize computes it: the filter is widened by the reduction
 * factor when reducing (so every source pixel counts), weights normalised over the pixels inside the
 * image. The first source pixel and the weights.
 */
function triangleTaps(at: number, full: number, size: number): [number, number[]] {
  const scale = full / size;
  const support = Math.max(scale, 1);
  const center = (at + 0.5) * scale;
  const first = Math.max(0, Math.trunc(center - support + 0.5));
  const end = Math.min(full, Math.trunc(center + support + 0.5));
  const weights: number[] = [];
  for (let j = first; j < end; j++) weights.push(Math.max(0, 1 - Math.abs((j - center + 0.5) / support)));
  const sum = weights.reduce((a, b) => a + b, 0);
  return [first, weights.map((w) => w / sum)];
}

/** The source pixels [lo, hi) that resampling `full` to `size` with PIL's bilinear filter reads for outputs [from, to). */
export function resampledSpan(full: number, size: number, from: number, to: number): [number, number] {
  const [lo] = triangleTaps(from, full, size);
  const [last, weights] = triangleTaps(to - 1, full, size);
  return [lo, last + weights.length];
}

/**
 * Tap lists for the positions `at(i)` (undefined: none, -1 as the first tap) of an axis, relative to
 * a window starting at `from` of `length` pixels, `unit` apart; lists shorter than the longest are
 * padded with zero weights, shifted back where they would run past the window's end.
 */
function tapList(n: number, at: (i: number) => number | undefined, full: number, size: number, from: number, length: number, unit: number): TapList {
  const lists = Array.from({ length: n }, (_, i) => {
    const a = at(i);
    return a === undefined ? undefined : triangleTaps(a, full, size);
  });
  const taps = Math.max(1, ...lists.map((l) => l?.[1].length ?? 0));
  const first = new Int32Array(n).fill(-1);
  const weights = new Float32Array(n * taps);
  lists.forEach((l, i) => {
    if (!l) return;
    const start = l[0] - from;
    const back = Math.max(0, start + taps - length);
    first[i] = (start - back) * unit;
    weights.set(l[1], i * taps + back);
  });
  return { first, weights, taps };
}

/**
 * writeWindow for any placement, through PIL's bilinear filter on each axis (widened when reducing,
 * as torchvision's Resize with antialiasing): only the crop is computed, from the source rows and
 * columns under it, straight into `out` as floats (no rounding to 8 bits between the resampling and
 * the normalisation). `src` holds the HWC window `w` of the image.
 */
export function writeResampled(src: Uint8Array, w: SourceWindow, p: Placement, t: Transform, out: Float32Array, shift: RGB = [0, 0, 0]): void {
  const { width: ow, height: oh } = p;
  const [, top, , bottom] = p.clip;
  const [lo, hi] = columnsInside(p);
  // Columns outside [lo, hi) are padding, never read by the kernel.
  const cols = tapList(ow, (x) => (x >= lo && x < hi ? columnOf(p, x) : undefined), w.fullWidth, p.sourceWidth, w.left, w.width, 3);
  const rows = tapList(oh, (y) => (p.top + y >= top && p.top + y < bottom ? p.top + y : undefined), w.fullHeight, p.sourceHeight, w.top, w.height, 1);
  const { scale, bias } = normalisation(t, shift);
  writeFiltered(src, 3 * w.width, w.height, cols, rows, lo, hi, out, scale, bias);
}
