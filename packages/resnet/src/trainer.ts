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

/** Options of `Trainer`. */
export interface TrainerOptions {
  readonly model: Module;
  readonly recipe: Recipe;
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
  step = 0;
  epoch = 0;
  warmupDone: boolean;
  /** Training errors of the latest steps, for the error-triggered warm-up. */
  recentErrors: number[] = [];

  constructor({ model, recipe, itersPerEpoch, totalIterations }: TrainerOptions) {
    this.model = model;
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

  /** One forward/backward/update on a batch. */
  async trainStep(batch: BatchLike): Promise<StepResult> {
    const n = batch.shape[0];
    const lr = this.currentLr();
    this.optimizer.lr = lr;
    this.model.train();
    const { loss, correct } = tidy(() => {
      const x = tensor(batch.images, batch.shape);
      const y = tensor(batch.labels, [n], 'i32');
      const logits = this.model.forward(x);
      const l = crossEntropy(logits, y, { labelSmoothing: this.recipe.labelSmoothing });
      l.backward();
      const c = noGrad(() => sum(cast(eq(argmax(logits, 1), y), 'f32')));
      return { loss: l, correct: c };
    });
    this.optimizer.step();
    this.optimizer.zeroGrad();
    const [l, c] = await Promise.all([loss.data(), correct.data()]);
    loss.dispose();
    correct.dispose();
    if (!Number.isFinite(l[0]))
      throw new DivergedError(`loss became ${l[0]} at step ${this.step + 1} (lr ${lr}); lower --lr or resume from the last checkpoint`);
    this.step++;
    this.#trackWarmup(1 - c[0] / n);
    return { loss: l[0], correct: c[0], images: n, lr };
  }

  #trackWarmup(error: number) {
    if (this.warmupDone) return;
    this.recentErrors.push(error);
    if (this.recentErrors.length > 20) this.recentErrors.shift();
    const mean = this.recentErrors.reduce((a, b) => a + b, 0) / this.recentErrors.length;
    if (this.recentErrors.length >= 5 && mean < this.recipe.warmup!.untilTrainError) this.warmupDone = true;
  }

  /** Loss and top-1/top-5 accuracy over batches, in evaluation mode. */
  async evaluate(batches: AsyncIterable<BatchLike> | Iterable<BatchLike>): Promise<EvalResult> {
    return evaluate(this.model, batches);
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

/** Loss and top-1/top-5 accuracy of a model over batches, in evaluation mode (the model is left in eval mode). */
export const evaluate = async (model: Module, batches: AsyncIterable<BatchLike> | Iterable<BatchLike>): Promise<EvalResult> => {
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
  return images === 0 ? { loss: NaN, top1: NaN, top5: NaN, images } : { loss: loss / images, top1: top1 / images, top5: top5 / images, images };
};
