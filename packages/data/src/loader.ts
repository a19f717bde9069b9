import { availableParallelism } from 'node:os';
import { decodeBatch, DEFAULT_PIXEL_LIMIT, type BatchItem, type DecodedBatch, type DecodeOptions, type SampleInput } from './decode.js';
import { DecodePool } from './pool.js';
import { keyedRandom, permutation } from './random.js';
import { planStream, streamReads, type Shard, type StreamedSample } from './shards.js';
import type { Samples, Source, SplitName } from './sources.js';
import { validateTransform, type Transform } from './transforms.js';

/**
 * One batch: NCHW images, their labels, and the data set indices they came from. With a tenCrop
 * transform each sample gives `views` (10) consecutive images, so `shape[0]` is `views` times the
 * number of labels; otherwise `views` is 1.
 */
export interface Batch {
  readonly images: Float32Array;
  readonly labels: Int32Array;
  readonly shape: readonly [n: number, c: 3, h: number, w: number];
  readonly indices: readonly number[];
  readonly views: number;
}

/** Where a loader stands: the epoch, and how many of this rank's positions in it are consumed. */
export interface LoaderState {
  readonly epoch: number;
  readonly position: number;
}

/** A sample that was skipped, and why. */
export interface SkippedSample {
  readonly index: number;
  /** The file, for file sources; `shard#key` for shards. */
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
  /** Draw a new order every epoch from (seed, epoch); default false. Shards: the shard order and a shuffle buffer. */
  readonly shuffle?: boolean;
  /** Shards only: samples held in the shuffle buffer (memory: that many encoded images); default 1000. */
  readonly shuffleBuffer?: number;
  /** Shards only: samples read before the first draw of an epoch (the buffer then grows to its size); default 100, as WebDataset's. */
  readonly shuffleInitial?: number;
  /** Keys the order and every augmentation draw; default 0. */
  readonly seed?: number;
  /** Default: no geometric steps and no normalisation (values pixel / 255). */
  readonly transform?: Transform;
  /** Drop the last, short batch of an epoch; default false. */
  readonly dropLast?: boolean;
  /**
   * Decoding worker_threads for image files and shards, each decoding whole batches while the main
   * thread only hands out work; 0 decodes on the main thread. Default: one per two cores, as a
   * worker keeps libvips busy on about two (see the package README's benchmark for one against two
   * on 2 cores). CIFAR's raw pixels never use workers.
   */
  readonly workers?: number;
  /** Batches prepared ahead of the consumer; nothing beyond them is decoded until one is taken. Default max(2, workers), so every worker has a batch. */
  readonly prefetch?: number;
  /**
   * This process's share: rank in [0, worldSize). Rank r takes the samples at positions r, r +
   * worldSize, ... of the epoch's order, so every sample is seen once per epoch across ranks, and a
   * global batch of worldSize x batchSize is the same samples as one process's batch of that size.
   * Shards are dealt whole instead: every worldSize-th shard, wrapping around to even the counts.
   */
  readonly rank?: number;
  readonly worldSize?: number;
  /**
   * Every rank yields the same number of batches (default true; data-parallel training needs it):
   * when the epoch's last global batch has fewer samples than there are ranks, the ranks left
   * without one take one sample from the start of the order. False for evaluation, where each
   * rank's share is summed afterwards.
   */
  readonly evenBatches?: boolean;
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
  /** Resolves once the decoding workers have started (sharp loads in each at its first encoded image); at once without workers. */
  ready(): Promise<void>;
  report(): LoaderReport;
  /** Ends the decoding workers. */
  close(): Promise<void>;
}

function checkInt(name: string, v: number, min: number): void {
  if (!Number.isSafeInteger(v) || v < min) throw new Error(`createLoader: ${name} ${v} is not an integer >= ${min}`);
}

/** A sample on its way into a batch: its input, or why it has none. */
interface Item {
  readonly index: number;
  readonly label: number;
  readonly file?: string;
  readonly image?: string | SampleInput;
  readonly reason?: string;
}

/** One epoch of this rank: the positions handed out in order, and the items at some of them. */
interface Epoch {
  readonly order: Uint32Array;
  items(positions: Uint32Array): Promise<Item[]>;
  close(): Promise<void>;
}

/**
 * A loader over one split of a source. Iterating it (`for await`) yields the rest of the current
 * epoch from `state()`, then moves to the next epoch; leaving the loop early keeps the position, so the
 * next iteration continues where it stopped. The order is a pure function of (seed, epoch), and each
 * sample's augmentation of (seed, epoch, index), so neither depends on worker scheduling. Shards are
 * streamed: only what the shuffle buffer and the prefetched batches need is held in memory.
 */
export async function createLoader(o: LoaderOptions): Promise<Loader> {
  const { source, split, batchSize, shuffle = false, seed = 0, dropLast = false, shuffleBuffer = 1000, shuffleInitial = 100 } = o;
  const { rank = 0, worldSize = 1, limitInputPixels = DEFAULT_PIXEL_LIMIT, transform = { steps: [] } } = o;
  const workers = o.workers ?? Math.ceil(availableParallelism() / 2);
  const prefetch = o.prefetch ?? Math.max(2, workers);
  checkInt('batchSize', batchSize, 1);
  checkInt('seed', seed, 0);
  checkInt('prefetch', prefetch, 1);
  checkInt('shuffleBuffer', shuffleBuffer, 1);
  checkInt('shuffleInitial', shuffleInitial, 1);
  checkInt('workers', workers, 0);
  checkInt('worldSize', worldSize, 1);
  checkInt('limitInputPixels', limitInputPixels, 1);
  if (!Number.isSafeInteger(rank) || rank < 0 || rank >= worldSize) throw new Error(`createLoader: rank ${rank} is not in [0, ${worldSize})`);
  validateTransform(transform);

  const shards = await source.shards?.(split);
  const samples: Samples | undefined = shards ? undefined : await source.split(split);
  if (shards && worldSize > shards.length) {
    throw new Error(`${source.spec} ${split}: worldSize ${worldSize} is more than its ${shards.length} shards; every rank needs a shard`);
  }
  const n = shards ? shards.reduce((a, s) => a + s.samples, 0) : samples!.labels.length;
  // Positions rank, rank + worldSize, ... below n; with dropLast every rank stops at the same count.
  const share = (r: number) => (n === 0 ? 0 : shards ? Math.ceil(n / worldSize) : dropLast ? Math.floor(n / worldSize) : Math.ceil((n - r) / worldSize));
  const lastShort = !shards && (o.evenBatches ?? true) && Math.ceil(share(rank) / batchSize) < Math.ceil(share(0) / batchSize);
  const perRank = share(rank) + (lastShort ? 1 : 0);
  const batches = dropLast ? Math.floor(perRank / batchSize) : Math.ceil(perRank / batchSize);
  let epoch = o.state?.epoch ?? 0;
  let position = o.state?.position ?? 0;
  checkInt('state.epoch', epoch, 0);
  checkInt('state.position', position, 0);
  if (position > perRank) throw new Error(`createLoader: state.position ${position} is past the ${perRank} samples of an epoch`);

  const options: DecodeOptions = { transform, seed, limitInputPixels };
  const pooled = workers > 0 && samples?.kind !== 'planes';
  // Started now, so the workers load while the caller does the rest of its setting up.
  let pool = pooled ? new DecodePool(workers, options) : undefined;

  const indexedEpoch = (s: Samples, ep: number): Epoch => {
    const all = shuffle ? permutation(n, keyedRandom(seed, ep)) : null;
    const order = Uint32Array.from({ length: perRank }, (_, k) => {
      const at = (rank + k * worldSize) % n;
      return all ? all[at] : at;
    });
    const item = (index: number): Item => {
      if (s.kind === 'files') return { index, label: s.labels[index], file: s.files[index], image: s.files[index] };
      const size = 3 * s.width * s.height;
      const input = { kind: 'planes', pixels: s.pixels.subarray(index * size, (index + 1) * size), width: s.width, height: s.height } as const;
      return { index, label: s.labels[index], image: input };
    };
    return { order, items: async (indices) => Array.from(indices, item), close: async () => {} };
  };

  const streamedEpoch = (list: readonly Shard[], ep: number, start: number): Epoch => {
    const plan = planStream(list.map((s) => s.samples), { epoch: ep, seed, shuffle, buffer: shuffleBuffer, initial: shuffleInitial, rank, worldSize });
    let total = 0;
    const offsets = list.map((s) => (total += s.samples) - s.samples);
    // Resuming: slots handed out before `start` are passed over, and reading begins at the shard of the first one still due.
    const given = new Uint8Array(perRank);
    for (let i = 0; i < start; i++) given[plan.order[i]] = 1;
    const first = plan.order.subarray(start).reduce((a, b) => Math.min(a, b), perRank);
    let from = 0;
    let end = plan.reads[0]?.take ?? 0;
    while (first >= end && from + 1 < plan.reads.length) end += plan.reads[++from].take;
    const stream = streamReads(list, plan.reads, from);
    const held = new Map<number, StreamedSample>();
    const toItem = ({ shard, position: at, sample }: StreamedSample): Item => {
      const index = offsets[shard] + at;
      const file = `${list[shard].url}#${sample.key}`;
      const { label = -1, image, pixels } = sample;
      const raw = source.rawSize;
      let reason = sample.reason;
      if (!reason && label >= source.classes.length) reason = `label ${label} is not below the ${source.classes.length} classes`;
      if (!reason && pixels && (!raw || pixels.length !== 3 * raw.width * raw.height)) {
        reason = raw ? `${pixels.length} bytes of pixels, not 3 x ${raw.width} x ${raw.height}` : 'raw .chw pixels, but no size for them in shards.json';
      }
      if (reason) return { index, label, file, reason };
      return { index, label, file, image: pixels ? { kind: 'planes', pixels, width: raw!.width, height: raw!.height } : { kind: 'encoded', bytes: image! } };
    };
    // Batches take their samples from the one stream in turn; their decoding overlaps.
    let queue: Promise<unknown> = Promise.resolve();
    const items = (slots: Uint32Array): Promise<Item[]> => {
      const taken = queue.then(async () => {
        const out: Item[] = [];
        for (const slot of slots) {
          while (!held.has(slot)) {
            const next = await stream.next();
            if (next.done) throw new Error(`${source.spec} ${split}: the shards ended before sample slot ${slot}`);
            if (!given[next.value.slot]) held.set(next.value.slot, next.value);
          }
          out.push(toItem(held.get(slot)!));
          held.delete(slot);
        }
        return out;
      });
      queue = taken.catch(() => {});
      return taken;
    };
    return { order: plan.order, items, close: async () => void (await stream.return(undefined)) };
  };

  let decoded = 0;
  let skipped = 0;
  const failures = new Map<number, SkippedSample>();

  const loadBatch = async (pending: Promise<Item[]>, ep: number): Promise<Batch | undefined> => {
    const items = await pending;
    const todo = items.filter((it) => it.reason === undefined);
    const work: BatchItem[] = todo.map((it) => ({ image: it.image!, epoch: ep, index: it.index }));
    let batch: DecodedBatch;
    try {
      if (pooled) pool ??= new DecodePool(workers, options);
      batch = await (pool ? pool.run(work) : decodeBatch(work, options));
    } catch (e) {
      const message = (e as Error).message;
      throw /^decode (worker failed|pool closed)/.test(message) ? e : new Error(`${source.spec} ${split}: ${message}`);
    }
    const reasons = new Map(todo.map((it, k) => [it, batch.skipped[k]]));
    const kept: Item[] = [];
    for (const it of items) {
      const reason = it.reason ?? reasons.get(it);
      if (reason === undefined) {
        kept.push(it);
        continue;
      }
      const s: SkippedSample = it.file === undefined ? { index: it.index, reason } : { index: it.index, file: it.file, reason };
      skipped++;
      failures.set(it.index, s);
      o.onSkip?.(s);
    }
    if (kept.length === 0) return undefined;
    const { width, height, views } = batch;
    decoded += kept.length;
    return {
      images: batch.images,
      labels: Int32Array.from(kept, (it) => it.label),
      shape: [kept.length * views, 3, height, width],
      indices: kept.map((it) => it.index),
      views,
    };
  };

  let iterating = false;
  async function* iterate(): AsyncGenerator<Batch> {
    if (iterating) throw new Error(`${source.spec} ${split}: the loader is already being iterated`);
    iterating = true;
    const ep = epoch;
    const plan = shards ? streamedEpoch(shards, ep, position) : indexedEpoch(samples!, ep);
    try {
      const spans: [number, number][] = [];
      for (let start = position; start < perRank; start += batchSize) {
        const end = Math.min(start + batchSize, perRank);
        if (end - start === batchSize || !dropLast) spans.push([start, end]);
      }
      const ahead: Promise<Batch | undefined>[] = [];
      for (let b = 0; b < spans.length; b++) {
        // Backpressure: at most `prefetch` batches are decoding or waiting to be taken.
        for (let next = b + ahead.length; next < spans.length && ahead.length < prefetch; next++) {
          const p = loadBatch(plan.items(plan.order.subarray(...spans[next])), ep);
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
      await plan.close();
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
    ready: async () => pool?.ready,
    report: () => ({ decoded, skipped, failures: [...failures.values()], issues: source.issues }),
    close,
    [Symbol.asyncIterator]: iterate,
    [Symbol.asyncDispose]: close,
  };
}
