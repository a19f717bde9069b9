import { createLoader } from './loader.js';
import type { Source, SplitName } from './sources.js';
import type { Lighting, RGB, Transform } from './transforms.js';

/** Options of computeStats. */
export interface StatsOptions {
  readonly source: Source;
  readonly split: SplitName;
  /** Geometric steps to measure through (e.g. resize + center crop, which a mean image needs); no mean/std. Default none. */
  readonly transform?: Transform;
  /** Also average the images position by position (they must come out one size). */
  readonly meanImage?: boolean;
  /** Measure this many images, drawn at random from (seed), instead of all. */
  readonly limit?: number;
  readonly seed?: number;
  /** Decoding threads, as createLoader's. */
  readonly workers?: number;
  /** Told of the images measured so far. */
  readonly onProgress?: (images: number) => void;
}

/** Pixel statistics of a split, in [0, 1] units (pixel / 255). */
export interface Stats {
  readonly images: number;
  readonly pixels: number;
  /** Images that could not be decoded (see the loader's report). */
  readonly skipped: number;
  readonly mean: RGB;
  /** Population standard deviation over every pixel. */
  readonly std: RGB;
  /** The principal components of the pixels' RGB covariance, largest first: `eigvec[c][k]` is channel c of component k. */
  readonly pca: Omit<Lighting, 'alphaStd'>;
  /** The per-position mean, CHW, when asked for. */
  readonly meanImage?: { readonly data: Float32Array; readonly width: number; readonly height: number };
}

const rgb = (f: (c: number) => number): RGB => [f(0), f(1), f(2)];

/**
 * The eigenvalues (descending) and eigenvectors (columns) of a symmetric 3x3 matrix, by Jacobi
 * rotations. Each eigenvector's sign is chosen to make its largest component positive.
 */
export function symmetricEigen3(m: readonly (readonly number[])[]): { values: RGB; vectors: [RGB, RGB, RGB] } {
  const a = m.map((row) => [...row]);
  const v = [
    [1, 0, 0],
    [0, 1, 0],
    [0, 0, 1],
  ];
  for (let sweep = 0; sweep < 50; sweep++) {
    const off = Math.abs(a[0][1]) + Math.abs(a[0][2]) + Math.abs(a[1][2]);
    if (off <= 1e-300 || off <= 1e-15 * (Math.abs(a[0][0]) + Math.abs(a[1][1]) + Math.abs(a[2][2]))) break;
    for (const [p, q] of [[0, 1], [0, 2], [1, 2]]) {
      if (a[p][q] === 0) continue;
      const theta = (a[q][q] - a[p][p]) / (2 * a[p][q]);
      const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
      const c = 1 / Math.sqrt(t * t + 1);
      const s = t * c;
      for (let k = 0; k < 3; k++) {
        const [akp, akq] = [a[k][p], a[k][q]];
        a[k][p] = c * akp - s * akq;
        a[k][q] = s * akp + c * akq;
      }
      for (let k = 0; k < 3; k++) {
        const [apk, aqk] = [a[p][k], a[q][k]];
        a[p][k] = c * apk - s * aqk;
        a[q][k] = s * apk + c * aqk;
      }
      for (let k = 0; k < 3; k++) {
        const [vkp, vkq] = [v[k][p], v[k][q]];
        v[k][p] = c * vkp - s * vkq;
        v[k][q] = s * vkp + c * vkq;
      }
    }
  }
  const order = [0, 1, 2].sort((i, j) => a[j][j] - a[i][i]);
  const column = (k: number) => {
    const col = [v[0][k], v[1][k], v[2][k]];
    const big = col.reduce((x, y) => (Math.abs(y) > Math.abs(x) ? y : x));
    return col.map((x) => (big < 0 ? -x : x));
  };
  const cols = order.map(column);
  const row = (c: number) => rgb((k) => cols[k][c]);
  return { values: rgb((k) => a[order[k]][order[k]]), vectors: [row(0), row(1), row(2)] };
}

/**
 * Per-channel mean and standard deviation, the RGB covariance's principal components (for PCA
 * lighting) and optionally the mean image of a split, decoding every image once (or `limit` of
 * them), so normalisation constants are measured rather than guessed. Sums are kept in float64.
 */
export async function computeStats(o: StatsOptions): Promise<Stats> {
  const transform = o.transform ?? { steps: [] };
  if (transform.mean || transform.std || transform.lighting) throw new Error('computeStats: the transform must not normalise or shift colours; stats are of pixel / 255');
  const limit = o.limit ?? Infinity;
  if (!(limit === Infinity || (Number.isSafeInteger(limit) && limit >= 1))) throw new Error(`computeStats: limit ${limit} is not an integer >= 1`);
  const workers = o.workers;
  const loader = await createLoader({
    source: o.source,
    split: o.split,
    batchSize: 1,
    transform,
    workers,
    prefetch: 4 * Math.max(1, workers ?? 4),
    shuffle: o.limit !== undefined,
    seed: o.seed ?? 0,
  });
  const sum = new Float64Array(3);
  const cross = new Float64Array(9); // sums of x_c * x_d
  let pixels = 0;
  let images = 0;
  let meanImage: { sum: Float64Array; width: number; height: number } | undefined;
  try {
    for await (const { images: data, shape } of loader) {
      const [, , height, width] = shape;
      const n = width * height;
      for (let i = 0; i < n; i++) {
        const r = data[i];
        const g = data[n + i];
        const b = data[2 * n + i];
        sum[0] += r;
        sum[1] += g;
        sum[2] += b;
        cross[0] += r * r;
        cross[1] += r * g;
        cross[2] += r * b;
        cross[4] += g * g;
        cross[5] += g * b;
        cross[8] += b * b;
      }
      if (o.meanImage) {
        meanImage ??= { sum: new Float64Array(3 * n), width, height };
        if (meanImage.width !== width || meanImage.height !== height) {
          throw new Error(`computeStats: images come out ${meanImage.width}x${meanImage.height} and ${width}x${height}; a mean image needs a transform that crops to one size`);
        }
        for (let i = 0; i < 3 * n; i++) meanImage.sum[i] += data[i];
      }
      pixels += n;
      images++;
      o.onProgress?.(images);
      if (images >= limit) break;
    }
  } finally {
    await loader.close();
  }
  if (images === 0) throw new Error(`computeStats: ${o.source.spec} ${o.split} has no readable images`);
  const mean = rgb((c) => sum[c] / pixels);
  const cov = [0, 1, 2].map((c) => [0, 1, 2].map((d) => cross[3 * Math.min(c, d) + Math.max(c, d)] / pixels - mean[c] * mean[d]));
  const { values, vectors } = symmetricEigen3(cov);
  return {
    images,
    pixels,
    skipped: loader.report().skipped,
    mean,
    std: rgb((c) => Math.sqrt(Math.max(0, cov[c][c]))),
    pca: { eigval: rgb((k) => Math.max(0, values[k])), eigvec: vectors },
    ...(meanImage && { meanImage: { data: Float32Array.from(meanImage.sum, (s) => s / images), width: meanImage.width, height: meanImage.height } }),
  };
}
