import { availableParallelism } from 'node:os';
import { decodeFile, decodeSample, DEFAULT_PIXEL_LIMIT, type Decoded, type DecodeOptions } from './decode.js';
import { DecodePool } from './pool.js';
import { keyedRandom, permutation } from './random.js';
import type { Samples, Source, SplitName } from './sources.js';
import { validateTransform, type Transform } from './transforms.js';

/** One batch: NCHW images, their labels, and the data set indices they came from. */
export interface Batch {
  readonly images: Float32Array;
  readonly labels: Int32Array;
  readonly shape: readonly [n: number, c: 3, h: number, w: number];
  readonly indices: readonly number[];
}

/** Where a loader stands: the epoch, and how many of this rank's positions in it are consumed. */
export interface LoaderState {
  readonly epoch: number;
  readonly position: number;
}

/** A sample that was skipped, and why. */
export interface SkippedSample {
  readonly index: number;
  /** The file, for file sources. */
  readonly file?: string;
  readonly reason: string;
}

/** What a loader has done so far. */
export interface LoaderReport {
  /** Samples delivered in batches. */
  readonly decoded: number;
  /** Samples skipped, counting each time one is met. */
  readonly skipped: number;
  /** Each skipped sample once, with its latest reason. */
  readonly failures: readonly SkippedSample[];
  /** The source's own issues (empty class folders, stray files, missing batch files). */
  readonly issues: readonly string[];
}

/** Options of createLoader. */
export interface LoaderOptions {
  readonly source: Source;
  readonly split: SplitName;
  readonly batchSize: number;
  /** Draw a new order every epoch from (seed, epoch); default false. */
  readonly shuffle?: boolean;
  /** Keys the order and every augmentation draw; default 0. */
  readonly seed?: number;
  /** Default: no geometric steps and no normalisation (values pixel / 255). */
  readonly transform?: Transform;
  /** Drop the last, short batch of an epoch; default false. */
  readonly dropLast?: boolean;
  /** Decoding worker_threads for image files; 0 decodes on the main thread. Default min(4, cores - 1), at least 1. CIFAR's raw pixels never use workers. */
  readonly workers?: number;
  /** Batches prepared ahead of the consumer; nothing beyond them is decoded until one is taken. Default 2. */
  readonly prefetch?: number;
  /** This process's share: rank in [0, worldSize). Every rank gets ceil(n / worldSize) samples, wrapping around like PyTorch's DistributedSampler. */
  readonly rank?: number;
  readonly worldSize?: number;
  /** Images with more pixels are skipped undecoded; default sharp's 16383 x 16383. */
  readonly limitInputPixels?: number;
  /** Resume here (from a saved `state()`). */
  readonly state?: LoaderState;
  /** Told of each skipped sample as it happens. */
  readonly onSkip?: (s: SkippedSample) => void;
}

/** Batches of one split, an epoch per iteration. */
export interface Loader extends AsyncIterable<Batch>, AsyncDisposable {
  readonly classes: readonly string[];
  /** Samples per epoch for this rank. */
  readonly samples: number;
  /** Batches per epoch for this rank, at most (a batch whose every sample is skipped is not yielded). */
  readonly batches: number;
  /** Where the next iteration starts; save it to resume exactly. */
  state(): LoaderState;
  report(): LoaderReport;
  /** Ends the decoding workers. */
  close(): Promise<void>;
}

function checkInt(name: string, v: number, min: number): void {
  if (!Number.isSafeInteger(v) || v < min) throw new Error(`createLoader: ${name} ${v} is not an integer >= ${min}`);
}

/**
 * A loader over one split of a source. Iterating it (`for await`) yields the rest of the current
 * epoch from `state()`, then moves to the next epoch; leaving the loop early keeps the position, so the
 * next iteration continues where it stopped. The order is a pure function of (seed, epoch), and each
 * sample's augmentation of (seed, epoch, index), so neither depends on worker scheduling.
 */
export async function createLoader(o: LoaderOptions): Promise<Loader> {
  const { source, split, batchSize, shuffle = false, seed = 0, dropLast = false, prefetch = 2 } = o;
  const { rank = 0, worldSize = 1, limitInputPixels = DEFAULT_PIXEL_LIMIT, transform = { steps: [] } } = o;
  const workers = o.workers ?? Math.max(1, Math.min(4, availableParallelism() - 1));
  checkInt('batchSize', batchSize, 1);
  checkInt('seed', seed, 0);
  checkInt('prefetch', prefetch, 1);
  checkInt('workers', workers, 0);
  checkInt('worldSize', worldSize, 1);
  checkInt('limitInputPixels', limitInputPixels, 1);
  if (!Number.isSafeInteger(rank) || rank < 0 || rank >= worldSize) throw new Error(`createLoader: rank ${rank} is not in [0, ${worldSize})`);
  validateTransform(transform);

  const samples: Samples = await source.split(split);
  const n = samples.labels.length;
  const perRank = n === 0 ? 0 : Math.ceil(n / worldSize);
  const batches = dropLast ? Math.floor(perRank / batchSize) : Math.ceil(perRank / batchSize);
  let epoch = o.state?.epoch ?? 0;
  let position = o.state?.position ?? 0;
  checkInt('state.epoch', epoch, 0);
  checkInt('state.position', position, 0);
  if (position > perRank) throw new Error(`createLoader: state.position ${position} is past the ${perRank} samples of an epoch`);

  const options: DecodeOptions = { transform, seed, limitInputPixels };
  let pool: DecodePool | undefined;
  const decode = (index: number, ep: number): Promise<Decoded | string> => {
    if (samples.kind === 'planes') {
      const size = 3 * samples.width * samples.height;
      const input = { kind: 'planes', pixels: samples.pixels.subarray(index * size, (index + 1) * size), width: samples.width, height: samples.height } as const;
      return decodeSample(input, ep, index, options).catch((e: Error) => e.message);
    }
    if (workers === 0) return decodeFile(samples.files[index], ep, index, options).catch((e: Error) => e.message);
    pool ??= new DecodePool(workers, options);
    return pool.run(samples.files[index], ep, index);
  };

  let decoded = 0;
  let skipped = 0;
  const failures = new Map<number, SkippedSample>();

  const loadBatch = async (indices: ArrayLike<number>, ep: number): Promise<Batch | undefined> => {
    const results = await Promise.all(Array.from(indices, (i) => decode(i, ep)));
    const kept: number[] = [];
    let first: Decoded | undefined;
    let firstIndex = 0;
    results.forEach((r, k) => {
      const index = indices[k];
      if (typeof r === 'string') {
        const s: SkippedSample = samples.kind === 'files' ? { index, file: samples.files[index], reason: r } : { index, reason: r };
        skipped++;
        failures.set(index, s);
        o.onSkip?.(s);
        return;
      }
      if (!first) [first, firstIndex] = [r, index];
      if (r.width !== first.width || r.height !== first.height) {
        throw new Error(
          `${source.spec} ${split}: sample ${index} came out ${r.width}x${r.height} but sample ${firstIndex} ${first.width}x${first.height}; end the transform with a crop to one size`,
        );
      }
      kept.push(k);
    });
    if (!first) return undefined;
    const { width, height } = first;
    const size = 3 * width * height;
    const images = new Float32Array(kept.length * size);
    kept.forEach((k, j) => images.set((results[k] as Decoded).data, j * size));
    decoded += kept.length;
    return {
      images,
      labels: Int32Array.from(kept, (k) => samples.labels[indices[k]]),
      shape: [kept.length, 3, height, width],
      indices: kept.map((k) => indices[k]),
    };
  };

  /** This rank's indices for an epoch: every worldSize-th of the epoch's order, wrapping so ranks get equal shares. */
  const order = (ep: number): Uint32Array => {
    const all = shuffle ? permutation(n, keyedRandom(seed, ep)) : null;
    return Uint32Array.from({ length: perRank }, (_, k) => {
      const at = (rank + k * worldSize) % n;
      return all ? all[at] : at;
    });
  };

  let iterating = false;
  async function* iterate(): AsyncGenerator<Batch> {
    if (iterating) throw new Error(`${source.spec} ${split}: the loader is already being iterated`);
    iterating = true;
    try {
      const ep = epoch;
      const mine = order(ep);
      const spans: [number, number][] = [];
      for (let start = position; start < perRank; start += batchSize) {
        const end = Math.min(start + batchSize, perRank);
        if (end - start === batchSize || !dropLast) spans.push([start, end]);
      }
      const ahead: Promise<Batch | undefined>[] = [];
      for (let b = 0; b < spans.length; b++) {
        // Backpressure: at most `prefetch` batches are decoding or waiting to be taken.
        for (let next = b + ahead.length; next < spans.length && ahead.length < prefetch; next++) {
          const p = loadBatch(mine.subarray(...spans[next]), ep);
          p.catch(() => {}); // a batch abandoned by an early exit must not become an unhandled rejection
          ahead.push(p);
        }
        const batch = await ahead.shift()!;
        // The state moves as a batch is handed over, so a checkpoint taken after a step resumes after it.
        [epoch, position] = b === spans.length - 1 ? [ep + 1, 0] : [ep, spans[b][1]];
        if (batch) yield batch;
      }
      if (spans.length === 0) [epoch, position] = [ep + 1, 0];
    } finally {
      iterating = false;
    }
  }

  const close = async () => {
    await pool?.close();
    pool = undefined;
  };
  return {
    classes: source.classes,
    samples: perRank,
    batches,
    state: () => ({ epoch, position }),
    report: () => ({ decoded, skipped, failures: [...failures.values()], issues: source.issues }),
    close,
    [Symbol.asyncIterator]: iterate,
    [Symbol.asyncDispose]: close,
  };
}
