/**
 * Data parallelism: every rank holds the same model, trains on its share of each global batch, and
 * takes the same step, because gradients are summed across ranks (in buckets, started while the
 * backward pass is still running where the backend reads tensors synchronously) and divided by the
 * global image count. Batch-norm is per rank by default, as the paper trained on several GPUs, with
 * rank 0's running statistics copied to all after every step so the ranks' models stay identical;
 * `syncBatchNorm` normalises with the statistics of the whole global batch instead.
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
  readonly data: Float32Array;
  ready: number;
  reduced: Promise<Float32Array> | null;
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
      // The first bucket carries one more element: the rank's image count, summed with the gradients
      // (exact in float32 below 2^24 images), so a step needs no collective of its own to count them.
      const extra = this.#buckets.length === 0 ? 1 : 0;
      this.#buckets.push({ params: current, offsets, data: new Float32Array(at + extra), ready: 0, reduced: null });
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
    const first = this.#buckets[0];
    if (first) first.data[first.data.length - 1] = images;
    if (this.overlap && !this.#unhook.length)
      this.#unhook = this.model.parameters().map((p) => p.onGradReady((t) => this.#gradReady(t)));
  }

  #gradReady(p: Tensor): void {
    const b = this.#buckets[this.#bucketOf.get(p)!];
    b.data.set(p.grad!.dataSync() as Float32Array, b.offsets[b.params.indexOf(p)]);
    if (++b.ready === b.params.length) b.reduced = this.group.allReduce(b.data);
  }

  /**
   * After backward: waits for every bucket (starting those backward did not fill, with zeros for
   * gradients it did not produce), makes each gradient the sum over ranks divided by the global
   * image count, and copies rank 0's batch-norm running statistics to every rank unless they are
   * synchronised. Resolves with the global image count.
   */
  async endStep(): Promise<number> {
    if (this.#images < 0) throw new DistributedError('endStep() without beginStep()');
    for (const b of this.#buckets) {
      if (b.reduced) continue;
      for (let i = 0; i < b.params.length; i++) {
        const g = b.params[i].grad;
        const values = g ? ((await g.data()) as Float32Array) : new Float32Array(b.params[i].size);
        b.data.set(values, b.offsets[i]);
      }
      b.reduced = this.group.allReduce(b.data);
    }
    const stats = this.#runningStatistics();
    const statsDone = stats.length ? this.#broadcastTensors(stats) : null;
    const first = await this.#buckets[0].reduced!;
    const total = first[first.length - 1];
    this.#images = -1;
    const scale = 1 / total;
    for (const b of this.#buckets) {
      const data = await b.reduced!;
      for (let i = 0, end = data.length - (b === this.#buckets[0] ? 1 : 0); i < end; i++) data[i] *= scale;
      b.params.forEach((p, i) => {
        const grad = noGrad(() => tensor(data.subarray(b.offsets[i], b.offsets[i] + p.size), p.shape).keep());
        p.grad?.dispose();
        p.grad = grad;
      });
    }
    await statsDone;
    return total;
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
