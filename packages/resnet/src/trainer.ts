/**
 * The training loop, reusable from code: one recipe, one model, batches from anywhere. The CLI's
 * `train` is this plus data loading, progress, metrics files and checkpoints.
 */
import {
  argmax, cast, crossEntropy, eq, getRngState, noGrad, ReduceLROnPlateau, reshape, setRngState, SGD, sum, tensor, tidy, topk,
  type Module, type RngState, type Schedule, type SgdState, type Tensor,
} from '@residual/core';
import { scheduleOf, type Recipe } from './recipes.js';

/** A batch as the data package yields it: NCHW images and i32 labels. */
export interface BatchLike {
  readonly images: Float32Array;
  readonly labels: Int32Array;
  readonly shape: readonly number[];
}

/** What one training step measured. */
export interface StepResult {
  readonly loss: number;
  readonly correct: number;
  readonly images: number;
  readonly lr: number;
}

/** Evaluation totals over a split. */
export interface EvalResult {
  readonly loss: number;
  readonly top1: number;
  readonly top5: number;
  readonly images: number;
}

/** Everything needed to continue a run exactly (besides the model's state dict and the data position). */
export interface TrainerState {
  readonly step: number;
  readonly epoch: number;
  readonly warmupDone: boolean;
  readonly recentErrors: number[];
  readonly optimizer: SgdState;
  readonly rng: RngState;
  readonly plateau?: { best: number; badEpochs: number; cooldownLeft: number };
}

/** Raised when the loss stops being finite; the last good checkpoint is what to resume from. */
export class DivergedError extends Error {
  override name = 'DivergedError';
}

/**
 * What the Trainer needs to train data-parallel across processes (`@residual/distributed`'s
 * `DataParallel` implements it): every rank runs the same steps, each on its share of the global batch.
 */
export interface Replicas {
  readonly rank: number;
  readonly worldSize: number;
  /** Once, before training: every rank takes rank 0's parameters and buffers (and checks the models agree). */
  start(): Promise<void>;
  /** Before a step's backward, with this rank's image count: gradients start reducing as backward produces them. */
  beginStep(images: number): void;
  /**
   * After backward: every gradient is now the global mean. Resolves with the global image count and
   * `metrics` summed across ranks (carried by the same collective as the gradients).
   */
  endStep(metrics?: readonly number[]): Promise<{ readonly images: number; readonly sums: readonly number[] }>;
  /** Sums each entry across ranks. */
  sum(values: Float64Array): Promise<Float64Array>;
  /** Copies rank 0's buffer to every rank. */
  broadcast(buffer: Float32Array): Promise<Float32Array>;
  /** Rank 0's JSON value on every rank. */
  broadcastObject<T>(value: T): Promise<T>;
}

/** Options of `Trainer`. */
export interface TrainerOptions {
  readonly model: Module;
  readonly recipe: Recipe;
  /**
   * Train data-parallel: `recipe.lr` and `recipe.batchSize` stay global, each rank's batches hold its
   * share, and a step's loss, gradient and metrics are those of the whole global batch.
   */
  readonly replicas?: Replicas;
  /** Batches per epoch (for epoch-based milestones). */
  readonly itersPerEpoch: number;
  /** Total iterations of the run (for cosine schedules). */
  readonly totalIterations: number;
}

/** Training steps, evaluation and checkpointable state for one model under one recipe. */
export class Trainer {
  readonly model: Module;
  readonly recipe: Recipe;
  readonly optimizer: SGD;
  readonly schedule: Schedule;
  readonly plateau: ReduceLROnPlateau | null;
  readonly replicas: Replicas | null;
  step = 0;
  epoch = 0;
  warmupDone: boolean;
  /** Training errors of the latest steps, for the error-triggered warm-up. */
  recentErrors: number[] = [];

  constructor({ model, recipe, itersPerEpoch, totalIterations, replicas }: TrainerOptions) {
    this.model = model;
    this.replicas = replicas ?? null;
    this.recipe = recipe;
    this.optimizer = new SGD(model.parameters(), {
      lr: recipe.lr, momentum: recipe.momentum, weightDecay: recipe.weightDecay, nesterov: recipe.nesterov,
    });
    this.schedule = scheduleOf(recipe, itersPerEpoch, totalIterations);
    this.plateau = recipe.schedule.kind === 'plateau'
      ? new ReduceLROnPlateau(this.optimizer, { factor: recipe.schedule.factor, patience: recipe.schedule.patience })
      : null;
    this.warmupDone = !recipe.warmup;
  }

  /** The learning rate the next step uses. */
  currentLr(): number {
    if (!this.warmupDone) return this.recipe.warmup!.lr;
    return this.plateau ? this.optimizer.lr : this.schedule(this.step);
  }

  /**
   * Data-parallel runs: makes every rank's model, optimizer and schedule rank 0's (after rank 0
   * alone loaded a checkpoint, or with fresh weights). Call once before the first step; a no-op alone.
   */
  async start(): Promise<void> {
    const r = this.replicas;
    if (!r) return;
    await r.start();
    const { optimizer: { groups, momentum }, ...rest } = await this.state();
    const shared = await r.broadcastObject({ ...rest, groups, sizes: momentum.map((m) => m?.length ?? 0) });
    const buffers: (Float32Array | null)[] = [];
    for (const [i, size] of shared.sizes.entries()) buffers.push(size ? await r.broadcast(r.rank === 0 ? momentum[i]! : new Float32Array(size)) : null);
    const { sizes: _, groups: g, ...state } = shared;
    this.load({ ...state, optimizer: { groups: g, momentum: buffers } });
  }

  /**
   * One forward/backward/update on a batch. Data-parallel, the batch is this rank's share: the
   * gradient is the mean over every rank's images, and the result counts the whole global batch.
   */
  async trainStep(batch: BatchLike): Promise<StepResult> {
    const n = batch.shape[0];
    const lr = this.currentLr();
    const r = this.replicas;
    this.optimizer.lr = lr;
    this.model.train();
    r?.beginStep(n);
    const { loss, correct } = tidy(() => {
      const x = tensor(batch.images, batch.shape);
      const y = tensor(batch.labels, [n], 'i32');
      const logits = this.model.forward(x);
      // Across ranks the loss is summed here and the gradient divided by the global count later.
      const l = crossEntropy(logits, y, { labelSmoothing: this.recipe.labelSmoothing, reduction: r ? 'sum' : 'mean' });
      l.backward();
      const c = noGrad(() => sum(cast(eq(argmax(logits, 1), y), 'f32')));
      return { loss: l, correct: c };
    });
    const [l, c] = await Promise.all([loss.data(), correct.data()]);
    loss.dispose();
    correct.dispose();
    let [lossValue, correctValue, images] = [l[0], c[0], n];
    if (r) {
      const total = await r.endStep([l[0], c[0]]);
      [lossValue, correctValue, images] = [total.sums[0] / total.images, total.sums[1], total.images];
    }
    this.optimizer.step();
    this.optimizer.zeroGrad();
    if (!Number.isFinite(lossValue))
      throw new DivergedError(`loss became ${lossValue} at step ${this.step + 1} (lr ${lr}); lower --lr or resume from the last checkpoint`);
    this.step++;
    this.#trackWarmup(1 - correctValue / images);
    return { loss: lossValue, correct: correctValue, images, lr };
  }

  #trackWarmup(error: number) {
    if (this.warmupDone) return;
    this.recentErrors.push(error);
    if (this.recentErrors.length > 20) this.recentErrors.shift();
    const mean = this.recentErrors.reduce((a, b) => a + b, 0) / this.recentErrors.length;
    if (this.recentErrors.length >= 5 && mean < this.recipe.warmup!.untilTrainError) this.warmupDone = true;
  }

  /** Loss and top-1/top-5 accuracy over batches, in evaluation mode (data-parallel: over every rank's batches). */
  async evaluate(batches: AsyncIterable<BatchLike> | Iterable<BatchLike>): Promise<EvalResult> {
    return evaluate(this.model, batches, this.replicas ?? undefined);
  }

  /** Ends an epoch: reports the validation error to a plateau schedule. */
  endEpoch(valError?: number): void {
    this.epoch++;
    if (this.plateau && valError !== undefined) this.plateau.step(valError);
  }

  /** The state to checkpoint. */
  async state(): Promise<TrainerState> {
    return {
      step: this.step,
      epoch: this.epoch,
      warmupDone: this.warmupDone,
      recentErrors: [...this.recentErrors],
      optimizer: await this.optimizer.stateDict(),
      rng: getRngState(),
      plateau: this.plateau?.state(),
    };
  }

  /** Restores `state()` (the model's weights are restored separately, from its state dict). */
  load(s: TrainerState): void {
    this.step = s.step;
    this.epoch = s.epoch;
    this.warmupDone = s.warmupDone;
    this.recentErrors = [...s.recentErrors];
    this.optimizer.loadStateDict(s.optimizer);
    setRngState(s.rng);
    if (this.plateau && s.plateau) this.plateau.load(s.plateau);
  }
}

/**
 * Loss and top-1/top-5 accuracy of a model over batches, in evaluation mode (the model is left in eval
 * mode). With `replicas`, each rank passes its share of the split and the totals are summed across ranks.
 */
export const evaluate = async (
  model: Module, batches: AsyncIterable<BatchLike> | Iterable<BatchLike>, replicas?: Pick<Replicas, 'sum'>,
): Promise<EvalResult> => {
  model.eval();
  let loss = 0;
  let top1 = 0;
  let top5 = 0;
  let images = 0;
  for await (const batch of batches) {
    const n = batch.shape[0];
    const parts = noGrad(() =>
      tidy(() => {
        const x = tensor(batch.images, batch.shape);
        const y = tensor(batch.labels, [n], 'i32');
        const logits = model.forward(x);
        const k = Math.min(5, logits.shape[1]);
        const { indices } = topk(logits, k);
        const hits = cast(eq(indices, reshape(y, [n, 1])), 'f32');
        const first = sum(cast(eq(argmax(logits, 1), y), 'f32'));
        return [crossEntropy(logits, y, { reduction: 'sum' }), first, sum(hits)] as Tensor[];
      }),
    );
    const [l, a1, a5] = await Promise.all(parts.map((t) => t.data()));
    parts.forEach((t) => t.dispose());
    loss += l[0];
    top1 += a1[0];
    top5 += a5[0];
    images += n;
  }
  if (replicas) [loss, top1, top5, images] = await replicas.sum(Float64Array.of(loss, top1, top5, images));
  return images === 0 ? { loss: NaN, top1: NaN, top5: NaN, images } : { loss: loss / images, top1: top1 / images, top5: top5 / images, images };
};
