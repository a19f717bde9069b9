/** Optimizers and learning-rate schedules (PyTorch's `torch.optim` semantics). */
import { tensor as tensorFrom, zeros } from './api.js';
import { noGrad, runOp, type Tensor } from './engine.js';

/** Hyper-parameters of SGD. */
export interface SgdOptions {
  lr: number;
  momentum?: number;
  dampening?: number;
  weightDecay?: number;
  nesterov?: boolean;
}

/** A group of parameters sharing hyper-parameters (unset ones come from the optimizer's defaults). */
export interface ParamGroup extends Partial<SgdOptions> {
  params: Tensor[];
}

/** An optimizer's saved state: per-group hyper-parameters and per-parameter momentum, by parameter index. */
export interface SgdState {
  readonly groups: Required<SgdOptions>[];
  /** Momentum buffers as plain arrays, by flat parameter index; null before a parameter's first step. */
  readonly momentum: (Float32Array | null)[];
}

/**
 * Stochastic gradient descent with momentum, dampening, Nesterov momentum and (coupled) weight decay,
 * exactly as `torch.optim.SGD`; each parameter's update is one fused in-place op.
 */
export class SGD {
  readonly groups: (Required<SgdOptions> & { params: Tensor[] })[];
  readonly #buffers = new Map<Tensor, Tensor>();

  constructor(params: Tensor[] | ParamGroup[], defaults: SgdOptions) {
    const full: Required<SgdOptions> = { momentum: 0, dampening: 0, weightDecay: 0, nesterov: false, ...defaults };
    if (!(full.lr >= 0)) throw new RangeError(`SGD: lr must be >= 0, got ${full.lr}`);
    if (full.momentum < 0) throw new RangeError(`SGD: momentum must be >= 0, got ${full.momentum}`);
    if (full.weightDecay < 0) throw new RangeError(`SGD: weightDecay must be >= 0, got ${full.weightDecay}`);
    if (full.nesterov && (full.momentum <= 0 || full.dampening !== 0)) throw new RangeError('SGD: Nesterov momentum needs momentum > 0 and zero dampening');
    const groups: ParamGroup[] = params.length && !(params[0] as ParamGroup).params ? [{ params: params as Tensor[] }] : (params as ParamGroup[]);
    this.groups = groups.map((g) => ({ ...full, ...g }));
  }

  /** The first group's learning rate; setting it sets every group's. */
  get lr(): number {
    return this.groups[0].lr;
  }
  set lr(value: number) {
    for (const g of this.groups) g.lr = value;
  }

  /** Applies one update to every parameter that has a gradient. */
  step(): void {
    noGrad(() => {
      for (const g of this.groups) {
        for (const p of g.params) {
          if (!p.grad) continue;
          let buf = this.#buffers.get(p);
          const firstStep = !buf;
          if (!buf && g.momentum !== 0) {
            buf = zeros(p.shape).keep();
            this.#buffers.set(p, buf);
          }
          runOp('sgdUpdate', { param: p, grad: p.grad, momentum: buf ?? p.grad }, {
            lr: g.lr, momentum: g.momentum, dampening: g.dampening, weightDecay: g.weightDecay, nesterov: g.nesterov, firstStep,
          });
        }
      }
    });
  }

  /** Drops every parameter's gradient (PyTorch's `zero_grad(set_to_none=True)`). */
  zeroGrad(): void {
    for (const g of this.groups)
      for (const p of g.params) {
        p.grad?.dispose();
        p.grad = null;
      }
  }

  #all(): Tensor[] {
    return this.groups.flatMap((g) => g.params);
  }

  /** The state to checkpoint (momentum buffers are read back from the device). */
  async stateDict(): Promise<SgdState> {
    const momentum = await Promise.all(this.#all().map(async (p) => {
      const b = this.#buffers.get(p);
      return b ? ((await b.data()) as Float32Array) : null;
    }));
    return { groups: this.groups.map(({ params: _p, ...h }) => h), momentum };
  }

  /** Restores a state from `stateDict()` for the same parameters in the same order. */
  loadStateDict(state: SgdState): void {
    const all = this.#all();
    if (state.momentum.length !== all.length || state.groups.length !== this.groups.length)
      throw new Error(`SGD.loadStateDict: state has ${state.groups.length} groups / ${state.momentum.length} parameters, optimizer has ${this.groups.length} / ${all.length}`);
    state.groups.forEach((h, i) => Object.assign(this.groups[i], h));
    for (const b of this.#buffers.values()) b.dispose();
    this.#buffers.clear();
    all.forEach((p, i) => {
      const m = state.momentum[i];
      if (!m) return;
      if (m.length !== p.size) throw new Error(`SGD.loadStateDict: momentum ${i} has ${m.length} values, parameter has ${p.size}`);
      const buf = zeros(p.shape).keep();
      noGrad(() => {
        const src = tensorFrom(m, p.shape);
        buf.assign(src);
        src.dispose();
      });
      this.#buffers.set(p, buf);
    });
  }
}

// --- schedules ---------------------------------------------------------------------------------

/** A learning-rate schedule: the rate at step t (an iteration or an epoch, as the caller counts). */
export type Schedule = (t: number) => number;

/** lr · gamma^(number of milestones <= t) — PyTorch's MultiStepLR. */
export const multiStep = (lr: number, milestones: readonly number[], gamma = 0.1): Schedule => (t) =>
  lr * gamma ** milestones.filter((m) => m <= t).length;

/** Cosine annealing from lr to `minLr` over `total` steps, then flat — PyTorch's CosineAnnealingLR closed form. */
export const cosine = (lr: number, total: number, minLr = 0): Schedule => (t) =>
  t >= total ? minLr : minLr + ((lr - minLr) * (1 + Math.cos((Math.PI * t) / total))) / 2;

/** Linear warm-up: from startFactor·s(0) to s(steps) over `steps`, then `schedule` — PyTorch's LinearLR chained. */
export const warmup = (schedule: Schedule, steps: number, startFactor = 0.1): Schedule => (t) =>
  t >= steps ? schedule(t) : schedule(t) * (startFactor + ((1 - startFactor) * t) / steps);

/** A constant rate. */
export const constant = (lr: number): Schedule => () => lr;

/** Options of `ReduceLROnPlateau`, as PyTorch's. */
export interface PlateauOptions {
  mode?: 'min' | 'max';
  factor?: number;
  patience?: number;
  threshold?: number;
  thresholdMode?: 'rel' | 'abs';
  cooldown?: number;
  minLr?: number;
}

/**
 * Divides the learning rate when a metric stops improving — the paper's ImageNet rule ("divided by 10
 * when the error plateaus"), with PyTorch's ReduceLROnPlateau semantics.
 */
export class ReduceLROnPlateau {
  readonly options: Required<PlateauOptions>;
  best: number;
  badEpochs = 0;
  cooldownLeft = 0;

  constructor(readonly optimizer: { lr: number }, options: PlateauOptions = {}) {
    this.options = { mode: 'min', factor: 0.1, patience: 10, threshold: 1e-4, thresholdMode: 'rel', cooldown: 0, minLr: 0, ...options };
    if (!(this.options.factor < 1)) throw new RangeError(`ReduceLROnPlateau: factor must be < 1, got ${this.options.factor}`);
    this.best = this.options.mode === 'min' ? Infinity : -Infinity;
  }

  #better(v: number): boolean {
    const { mode, threshold, thresholdMode } = this.options;
    if (mode === 'min') return v < (thresholdMode === 'rel' ? this.best * (1 - threshold) : this.best - threshold);
    return v > (thresholdMode === 'rel' ? this.best * (1 + threshold) : this.best + threshold);
  }

  /** Reports the epoch's metric; lowers the rate when it has not improved for `patience` epochs. */
  step(metric: number): void {
    if (this.#better(metric)) {
      this.best = metric;
      this.badEpochs = 0;
    } else this.badEpochs++;
    if (this.cooldownLeft > 0) {
      this.cooldownLeft--;
      this.badEpochs = 0;
    }
    if (this.badEpochs > this.options.patience) {
      this.optimizer.lr = Math.max(this.optimizer.lr * this.options.factor, this.options.minLr);
      this.cooldownLeft = this.options.cooldown;
      this.badEpochs = 0;
    }
  }

  /** State to checkpoint. */
  state(): { best: number; badEpochs: number; cooldownLeft: number } {
    return { best: this.best, badEpochs: this.badEpochs, cooldownLeft: this.cooldownLeft };
  }

  /** Restores `state()`. */
  load(s: { best: number; badEpochs: number; cooldownLeft: number }): void {
    ({ best: this.best, badEpochs: this.badEpochs, cooldownLeft: this.cooldownLeft } = s);
  }
}
