/**
 * Data parallelism: every rank holds the same model, trains on its share of each global batch, and
 * takes the same step, because gradients are summed across ranks (in buckets, started while the
 * backward pass is still running where the backend reads tensors synchronously) and divided by the
 * global image count. Batch-norm is per rank by default, as the paper trained on several GPUs, with
 * rank 0's running statistics copied to all after every step so the ranks' models stay identical;
 * `syncBatchNorm` normalises with the statistics of the whole global batch instead.
 *
 * A step is one collective where the model fits one bucket: the last bucket also carries the image
 * counts, the step's metrics and rank 0's running statistics (every other rank adds zeros, which
 * leaves rank 0's values exact), because each collective is a point where every rank waits for the
 * slowest, and on a shared host those waits, not the bytes, are what data parallelism costs.
 */
import { BatchNorm2d, customOp, getBackend, noGrad, tensor, type Module, type Tensor } from '@residual/core';
import { DistributedError, type ProcessGroup } from './group.js';

/** Options of `DataParallel`. */
export interface DataParallelOptions {
  /** Gradients are summed in buckets of about this many bytes (PyTorch's DDP uses 25 MB). Default 4 MiB. */
  readonly bucketBytes?: number;
  /**
   * Start summing a bucket as soon as backward has produced its gradients, overlapping the rest of
   * backward. Default: where the backend reads synchronously (the CPU); elsewhere after backward.
   */
  readonly overlap?: boolean;
}

interface Bucket {
  readonly params: Tensor[];
  readonly offsets: number[];
  /** The gradients' elements (the last bucket's `data` holds the step's extras after them). */
  readonly length: number;
  data: Float32Array;
  ready: number;
  reduced: Promise<Float32Array> | null;
}

/** What `endStep` resolves with: counts and metrics summed over every rank. */
export interface StepTotals {
  /** Images in the global batch. */
  readonly images: number;
  /** Each entry of the `metrics` given to `endStep`, summed across ranks (float32). */
  readonly sums: number[];
}

const describe = (model: Module): string[] =>
  [...model.stateDict()].map(([name, t]) => `${name} ${t.dtype}[${t.shape.join(', ')}]`);

/**
 * Keeps one model identical on every rank of `group` and turns each rank's gradients into the mean
 * over every rank's images. The `Trainer` of @residual/resnet drives it (its `replicas` option):
 * `start()` once, then per step `beginStep(images)`, backward, `await endStep()`, the optimizer step.
 */
export class DataParallel {
  readonly group: ProcessGroup;
  readonly model: Module;
  readonly overlap: boolean;
  readonly #buckets: Bucket[] = [];
  readonly #bucketOf = new Map<Tensor, number>();
  #images = -1;
  #unhook: (() => void)[] = [];

  constructor(group: ProcessGroup, model: Module, { bucketBytes = 4 << 20, overlap }: DataParallelOptions = {}) {
    this.group = group;
    this.model = model;
    this.overlap = overlap ?? getBackend().readSync !== undefined;
    // Backward reaches the last layers first: buckets follow the parameters in reverse order.
    let current: Tensor[] = [];
    let size = 0;
    const close = () => {
      if (!current.length) return;
      const offsets: number[] = [];
      let at = 0;
      for (const p of current) {
        offsets.push(at);
        at += p.size;
      }
      this.#buckets.push({ params: current, offsets, length: at, data: new Float32Array(at), ready: 0, reduced: null });
      current = [];
      size = 0;
    };
    for (const p of [...model.parameters()].reverse()) {
      this.#bucketOf.set(p, this.#buckets.length);
      current.push(p);
      size += p.size * 4;
      if (size >= bucketBytes) close();
    }
    close();
    if (!this.#buckets.length) throw new DistributedError('DataParallel: the model has no parameters to train');
  }

  /** This process's rank. */
  get rank(): number {
    return this.group.rank;
  }
  /** The number of processes. */
  get worldSize(): number {
    return this.group.worldSize;
  }

  /**
   * Checks that every rank built the same model (names, shapes and dtypes), then gives every rank
   * rank 0's parameters and buffers. A mismatch is an error on every rank, saying what differs.
   */
  async start(): Promise<void> {
    const mine = describe(this.model);
    const reference = await this.group.broadcastObject(mine);
    const differs = reference.length !== mine.length || reference.some((d, i) => d !== mine[i]);
    const flags = new Int32Array(this.worldSize);
    flags[this.rank] = differs ? 1 : 0;
    await this.group.allReduce(flags);
    const bad = [...flags].flatMap((f, r) => (f ? [r] : []));
    if (bad.length) {
      const first = mine.findIndex((d, i) => d !== reference[i]);
      const here = differs
        ? first >= 0 && first < reference.length
          ? `: here ${mine[first]}, on rank 0 ${reference[first]}`
          : `: ${mine.length} tensors here, ${reference.length} on rank 0`
        : '';
      throw new DistributedError(`rank ${this.rank}: the model differs between ranks (ranks ${bad.join(', ')} differ from rank 0${here}); every rank must build the same model`);
    }
    await this.#broadcastTensors([...this.model.stateDict().values()]);
  }

  /**
   * Before a step's backward: this rank's image count (summed across ranks, to divide by), and the
   * gradient hooks that start each bucket's sum once backward has produced all its gradients.
   */
  beginStep(images: number): void {
    this.#images = images;
    for (const b of this.#buckets) {
      b.ready = 0;
      b.reduced = null;
    }
    if (this.overlap && !this.#unhook.length)
      this.#unhook = this.model.parameters().map((p) => p.onGradReady((t) => this.#gradReady(t)));
  }

  #gradReady(p: Tensor): void {
    const b = this.#buckets[this.#bucketOf.get(p)!];
    b.data.set(p.grad!.dataSync() as Float32Array, b.offsets[b.params.indexOf(p)]);
    // The last bucket waits for endStep, which adds the step's extras: its gradients (the first
    // layers') are backward's last work, so starting it from here would gain nothing.
    if (++b.ready === b.params.length && b !== this.#buckets.at(-1)) b.reduced = this.group.allReduce(b.data);
  }

  /**
   * After backward: waits for every bucket (starting those backward did not fill, with zeros for
   * gradients it did not produce), makes each gradient the sum over ranks divided by the global
   * image count, and copies rank 0's batch-norm running statistics to every rank unless they are
   * synchronised. `metrics` (the same count on every rank: a loss sum, a count of correct answers)
   * travel in the same collective and come back summed.
   */
  async endStep(metrics: readonly number[] = []): Promise<StepTotals> {
    if (this.#images < 0) throw new DistributedError('endStep() without beginStep()');
    const stats = this.#runningStatistics();
    const last = this.#buckets.at(-1)!;
    const extras = 1 + metrics.length + stats.reduce((n, t) => n + t.size, 0);
    if (last.data.length !== last.length + extras) {
      // The hooks may have filled the gradients already: they move to the resized buffer.
      const data = new Float32Array(last.length + extras);
      data.set(last.data.subarray(0, last.length));
      last.data = data;
    }
    for (const b of this.#buckets) {
      if (b.reduced) continue;
      // A bucket whose every gradient came through the hooks is filled already.
      for (let i = 0; b.ready < b.params.length && i < b.params.length; i++) {
        const g = b.params[i].grad;
        if (g) b.data.set((await g.data()) as Float32Array, b.offsets[i]);
        else b.data.fill(0, b.offsets[i], b.offsets[i] + b.params[i].size);
      }
      if (b === last) {
        let at = last.length;
        last.data[at++] = this.#images;
        for (const m of metrics) last.data[at++] = m;
        for (const t of stats) {
          if (this.rank === 0) last.data.set((await t.data()) as Float32Array, at);
          else last.data.fill(0, at, at + t.size);
          at += t.size;
        }
      }
      b.reduced = this.group.allReduce(b.data);
    }
    const reducedLast = await last.reduced!;
    let at = last.length;
    const images = reducedLast[at++];
    const sums = metrics.map(() => reducedLast[at++]);
    if (this.rank !== 0)
      noGrad(() => {
        for (const t of stats) {
          const v = tensor(reducedLast.subarray(at, at + t.size), t.shape);
          t.assign(v);
          v.dispose();
          at += t.size;
        }
      });
    this.#images = -1;
    const scale = 1 / images;
    for (const b of this.#buckets) {
      const data = await b.reduced!;
      for (let i = 0; i < b.length; i++) data[i] *= scale;
      b.params.forEach((p, i) => {
        const grad = noGrad(() => tensor(data.subarray(b.offsets[i], b.offsets[i] + p.size), p.shape).keep());
        p.grad?.dispose();
        p.grad = grad;
      });
    }
    return { images, sums };
  }

  /** Per-rank batch-norm statistics (f32 buffers of layers that are not synchronised). */
  #runningStatistics(): Tensor[] {
    return this.model.namedModules().flatMap(([, m]) =>
      m instanceof BatchNorm2d && m.training && !m.crossReplicaSum ? [m.runningMean, m.runningVar] : [],
    );
  }

  /** Copies rank 0's values of `tensors` (f32 and i32) to every rank, one broadcast per dtype. */
  async #broadcastTensors(tensors: Tensor[]): Promise<void> {
    for (const dtype of ['f32', 'i32'] as const) {
      const list = tensors.filter((t) => t.dtype === dtype);
      if (!list.length) continue;
      const total = list.reduce((n, t) => n + t.size, 0);
      const flat = dtype === 'f32' ? new Float32Array(total) : new Int32Array(total);
      if (this.rank === 0) {
        let at = 0;
        for (const t of list) {
          flat.set(await t.data(), at);
          at += t.size;
        }
      }
      await this.group.broadcast(flat);
      if (this.rank === 0) continue;
      let at = 0;
      noGrad(() => {
        for (const t of list) {
          const v = tensor(flat.subarray(at, at + t.size), t.shape, dtype);
          t.assign(v);
          v.dispose();
          at += t.size;
        }
      });
    }
  }

  /** Sums each entry across ranks (metrics: losses, counts). */
  sum(values: Float64Array): Promise<Float64Array> {
    return this.group.allReduce(values);
  }

  /** Copies `root`'s buffer to every rank. */
  broadcast(buffer: Float32Array, root = 0): Promise<Float32Array> {
    return this.group.broadcast(buffer, root);
  }

  /** `root`'s JSON value on every rank. */
  broadcastObject<T>(value: T, root = 0): Promise<T> {
    return this.group.broadcastObject(value, root);
  }

  /** Removes the gradient hooks. */
  dispose(): void {
    this.#unhook.forEach((u) => u());
    this.#unhook = [];
  }
}

/**
 * `x` summed across every rank of `group`, as one differentiable step: the gradient of a sum that
 * every rank uses is the sum of every rank's output gradient, another all-reduce. Blocks until the
 * ranks have all contributed (it runs inside synchronous forward and backward passes), so the
 * backend must read tensors synchronously (the CPU backend does).
 */
export const allReduceTensor = (group: ProcessGroup, x: Tensor): Tensor => {
  const sumAcross = (t: Tensor): Tensor => {
    if (!getBackend().readSync)
      throw new DistributedError(`sync batch-norm needs a backend that reads tensors synchronously (the CPU); '${getBackend().name}' does not`);
    const data = group.allReduceSync(t.dataSync() as Float32Array);
    return tensor(data, t.shape);
  };
  return customOp('allReduce', { x }, () => [sumAcross(x)], (_ctx, [dy]) => ({ x: dy ? sumAcross(dy) : null }))[0];
};

/**
 * Turns every batch-norm layer of `model` into a sync batch-norm over `group` (PyTorch's
 * `SyncBatchNorm.convert_sync_batchnorm`): in training, each normalises with the mean and variance of
 * the whole global batch, and its gradient accounts for every rank's images. Returns the model.
 */
export const syncBatchNorm = <M extends Module>(model: M, group: ProcessGroup): M => {
  for (const [, m] of model.namedModules()) if (m instanceof BatchNorm2d) m.crossReplicaSum = (t) => allReduceTensor(group, t);
  return model;
};
