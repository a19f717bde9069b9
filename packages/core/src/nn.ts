/**
 * Neural-network modules in PyTorch's shape: named parameters and buffers, children, train/eval,
 * and state dicts whose keys are PyTorch's (`conv1.weight`, `bn1.running_mean`, `0.weight`, ...).
 */
import {
  adaptiveAvgPool2d, add, avgPool2d, batchNormTrain, channelAffine, concat, conv2d, crossEntropy, div, dropout, flatten, full, localResponseNorm,
  matmul, maxPool2d, mul, neg, rand, reciprocal, relu, reshape, rsqrt, slice, square, sub, sum, tensor, zeros, ones, type CrossEntropyOptions,
  type EpilogueOptions, type LocalResponseNormOptions,
} from './api.js';
import { isGradEnabled, noGrad, tidy, type Tensor } from './engine.js';
import type { Conv2dOptions, Pair, Pool2dOptions } from './geometry.js';

/** Raised by `loadStateDict`; lists every key at fault. */
export class StateDictError extends Error {
  override name = 'StateDictError';
  constructor(
    message: string,
    /** Keys the module has and the state dict lacks. */
    readonly missing: string[],
    /** Keys the state dict has and the module lacks. */
    readonly unexpected: string[],
    /** Keys present on both sides with different shapes or dtypes. */
    readonly mismatched: string[],
  ) {
    super(message);
  }
}

/** A state dict: names to tensors (a Map keeps PyTorch's order; a plain object is accepted on load). */
export type StateDict = Map<string, Tensor>;

/** Base class of every layer and network. */
export abstract class Module {
  /** Training mode (batch statistics) or evaluation mode (running statistics). */
  training = true;
  readonly #params = new Map<string, Tensor | null>();
  readonly #buffers = new Map<string, Tensor>();
  readonly #children = new Map<string, Module>();

  /** The computation; subclasses define it. */
  abstract forward(x: Tensor): Tensor;

  /** Same as `forward`. */
  call(x: Tensor): Tensor {
    return this.forward(x);
  }

  /** Registers a trainable tensor under `name` (it is marked `requireGrad`). Null leaves a slot (e.g. no bias). */
  protected registerParameter<T extends Tensor | null>(name: string, t: T): T {
    t?.requireGrad().keep();
    this.#params.set(name, t);
    return t;
  }

  /** Registers a non-trainable tensor saved in the state dict (running statistics). */
  protected registerBuffer(name: string, t: Tensor): Tensor {
    this.#buffers.set(name, t.keep());
    return t;
  }

  /** Registers a child module under `name`. */
  protected registerModule<M extends Module>(name: string, m: M): M {
    this.#children.set(name, m);
    return m;
  }

  /** Direct children, by name. */
  namedChildren(): [string, Module][] {
    return [...this.#children];
  }

  /** Every module of the tree, depth first, this one first (name '' for the root). */
  namedModules(prefix = ''): [string, Module][] {
    const out: [string, Module][] = [[prefix, this]];
    for (const [n, m] of this.#children) out.push(...m.namedModules(prefix ? `${prefix}.${n}` : n));
    return out;
  }

  /** Every parameter with its dotted name. */
  namedParameters(): [string, Tensor][] {
    return this.namedModules().flatMap(([p, m]) =>
      [...m.#params].filter((e): e is [string, Tensor] => e[1] !== null).map(([n, t]) => [p ? `${p}.${n}` : n, t] as [string, Tensor]),
    );
  }

  /** Every parameter. */
  parameters(): Tensor[] {
    return this.namedParameters().map(([, t]) => t);
  }

  /** Every buffer with its dotted name. */
  namedBuffers(): [string, Tensor][] {
    return this.namedModules().flatMap(([p, m]) => [...m.#buffers].map(([n, t]) => [p ? `${p}.${n}` : n, t] as [string, Tensor]));
  }

  /**
   * Parameters and buffers by name, in PyTorch's order (each module's parameters, then its buffers,
   * then its children). The tensors are the module's own: do not dispose them.
   */
  stateDict(): StateDict {
    const out: StateDict = new Map();
    for (const [p, m] of this.namedModules()) {
      const key = (n: string) => (p ? `${p}.${n}` : n);
      for (const [n, t] of m.#params) if (t) out.set(key(n), t);
      for (const [n, t] of m.#buffers) out.set(key(n), t);
    }
    return out;
  }

  /**
   * Copies tensors into this module's parameters and buffers by name. With `strict` (default), any
   * missing, unexpected or mis-shaped key is an error naming every one of them; otherwise the
   * matching keys load and the lists are returned.
   */
  loadStateDict(source: StateDict | Record<string, Tensor>, { strict = true } = {}): { missing: string[]; unexpected: string[] } {
    const src = source instanceof Map ? source : new Map(Object.entries(source));
    const own = this.stateDict();
    const missing = [...own.keys()].filter((k) => !src.has(k));
    const unexpected = [...src.keys()].filter((k) => !own.has(k));
    const mismatched = [...own].filter(([k, t]) => {
      const s = src.get(k);
      return s && (s.shape.join() !== t.shape.join() || s.dtype !== t.dtype);
    }).map(([k, t]) => {
      const s = src.get(k)!;
      return `${k} (expected ${t.dtype}[${t.shape.join(', ')}], got ${s.dtype}[${s.shape.join(', ')}])`;
    });
    if (mismatched.length || (strict && (missing.length || unexpected.length))) {
      const parts = [
        missing.length && `missing keys: ${missing.join(', ')}`,
        unexpected.length && `unexpected keys: ${unexpected.join(', ')}`,
        mismatched.length && `mismatched: ${mismatched.join('; ')}`,
      ].filter(Boolean);
      throw new StateDictError(`loadStateDict(${this.constructor.name}): ${parts.join('; ')}`, missing, unexpected, mismatched);
    }
    noGrad(() => {
      for (const [k, t] of own) {
        const s = src.get(k);
        if (s) t.assign(s);
      }
    });
    return { missing, unexpected };
  }

  /** Sets training mode on the whole tree; entering training drops what inference derived (`clearCaches`). */
  train(mode = true): this {
    for (const [, m] of this.namedModules()) m.training = mode;
    if (mode) this.clearCaches();
    return this;
  }

  /** Sets evaluation mode on the whole tree. */
  eval(): this {
    return this.train(false);
  }

  /** Number of trainable elements. */
  numParameters(): number {
    return this.parameters().reduce((n, t) => n + t.size, 0);
  }

  /**
   * Frees what the tree derived from its parameters for speed (batch-norm folded into convolution
   * weights); it is made again on next use. Never needed for correctness: derived values are
   * remade whenever a parameter they came from changes.
   */
  clearCaches(): void {
    for (const [, m] of this.namedModules()) m.releaseDerived();
  }

  /** Frees this module's own derived tensors (see `clearCaches`); modules that make some override it. */
  protected releaseDerived(): void {}

  /** Frees every parameter, buffer, gradient and derived tensor. */
  dispose(): void {
    this.clearCaches();
    for (const t of [...this.parameters(), ...this.namedBuffers().map(([, b]) => b)]) t.dispose();
  }
}

/** Fan-in of a weight [out, in, ...kernel]. */
const fanIn = (shape: readonly number[]) => shape.slice(1).reduce((a, b) => a * b, 1);

/** Options of `Conv2d` (PyTorch's `nn.Conv2d`). */
export interface Conv2dModuleOptions extends Conv2dOptions {
  bias?: boolean;
}

/** 2-D convolution layer; weight [out, in/groups, kh, kw], PyTorch's default initialisation. */
export class Conv2d extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  readonly options: Conv2dOptions;

  constructor(inChannels: number, outChannels: number, kernelSize: Pair, { bias = true, ...options }: Conv2dModuleOptions = {}) {
    super();
    const [kh, kw] = typeof kernelSize === 'number' ? [kernelSize, kernelSize] : kernelSize;
    const groups = options.groups ?? 1;
    const shape = [outChannels, inChannels / groups, kh, kw];
    if (!Number.isInteger(shape[1])) throw new Error(`Conv2d: in_channels ${inChannels} is not divisible by groups ${groups}`);
    const bound = 1 / Math.sqrt(fanIn(shape));
    this.weight = this.registerParameter('weight', rand(shape, { low: -bound, high: bound }));
    this.bias = this.registerParameter('bias', bias ? rand([outChannels], { low: -bound, high: bound }) : null);
    this.options = options;
  }

  /** The batch-norm folded into this convolution's epilogue, while the versions it was made from hold. */
  #folded: { bn: BatchNorm2d; versions: number[]; scale: Tensor; bias: Tensor } | null = null;

  forward(x: Tensor, epilogue: EpilogueOptions = {}): Tensor {
    return conv2d(x, this.weight, { ...this.options, ...epilogue, bias: this.bias ?? undefined });
  }

  /**
   * `bn` (in inference) folded onto this convolution: bn(conv(x)) = conv(x)·scale[k] + bias[k] with
   * scale = gamma / sqrt(running_var + eps) and bias = beta + (conv bias - running_mean)·scale; the
   * `conv2d` op takes both, and a backend folds scale into the weights it packs. Two [K] vectors,
   * cached, and remade when any tensor they came from has a new version (a weight load, an
   * optimizer step, a running-statistics update).
   */
  foldedWith(bn: BatchNorm2d): { scale: Tensor; bias: Tensor } {
    const sources = [this.bias, bn.weight, bn.bias, bn.runningMean, bn.runningVar];
    const versions = sources.map((t) => t?.version ?? 0);
    const f = this.#folded;
    if (f && f.bn === bn && f.versions.every((v, i) => v === versions[i])) return f;
    this.releaseDerived();
    const folded = noGrad(() =>
      tidy(() => {
        const scale = mul(bn.weight, rsqrt(add(bn.runningVar, bn.eps)));
        const centred = this.bias ? sub(this.bias, bn.runningMean) : neg(bn.runningMean);
        return { scale, bias: add(bn.bias, mul(centred, scale)) };
      }),
    );
    folded.scale.keep();
    folded.bias.keep();
    this.#folded = { bn, versions, ...folded };
    return folded;
  }

  protected override releaseDerived(): void {
    this.#folded?.scale.dispose();
    this.#folded?.bias.dispose();
    this.#folded = null;
  }
}

/** Options of `BatchNorm2d` (PyTorch's `nn.BatchNorm2d`). */
export interface BatchNormOptions {
  eps?: number;
  momentum?: number;
}

/**
 * Batch normalisation over [N, C, H, W] (or [N, C]): batch statistics in training (running statistics
 * updated with `momentum`, the unbiased variance as PyTorch does), running statistics in evaluation.
 */
export class BatchNorm2d extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor;
  readonly eps: number;
  readonly momentum: number;
  /**
   * Sync batch-norm: when set, training normalises with the statistics of every process's batch
   * together, summed across processes by this differentiable function (an all-reduce, whose
   * gradient is an all-reduce of the output gradient; `@residual/distributed`'s `syncBatchNorm` sets
   * it). Null (the default): each process's own batch, as the paper trained on several GPUs.
   */
  crossReplicaSum: ((t: Tensor) => Tensor) | null = null;
  /**
   * Called with the layer's response (after batch-norm, before the residual addition and ReLU that
   * are otherwise fused into it) on every forward, for analyses such as the paper's Figure 7. While
   * set, the epilogue runs as separate ops, and inference does not fold this layer into its convolution.
   */
  onResponse: ((y: Tensor) => void) | null = null;

  constructor(readonly numFeatures: number, { eps = 1e-5, momentum = 0.1 }: BatchNormOptions = {}) {
    super();
    this.eps = eps;
    this.momentum = momentum;
    this.weight = this.registerParameter('weight', ones([numFeatures]));
    this.bias = this.registerParameter('bias', zeros([numFeatures]));
    this.registerBuffer('running_mean', zeros([numFeatures]));
    this.registerBuffer('running_var', ones([numFeatures]));
    this.registerBuffer('num_batches_tracked', zeros([], 'i32'));
  }

  /** Running mean buffer. */
  get runningMean(): Tensor {
    return this.stateDict().get('running_mean')!;
  }
  /** Running variance buffer. */
  get runningVar(): Tensor {
    return this.stateDict().get('running_var')!;
  }
  /** Count of training batches seen. */
  get numBatchesTracked(): Tensor {
    return this.stateDict().get('num_batches_tracked')!;
  }

  /**
   * Normalises x, then applies the epilogue (a residual added, a ReLU after): in training one fused
   * `batchNormTrain` does all of it.
   */
  forward(x: Tensor, { residual, relu: withRelu = false }: EpilogueOptions = {}): Tensor {
    const hook = this.onResponse;
    if (hook && (residual || withRelu)) {
      const y = this.forward(x);
      const z = residual ? add(y, residual) : y;
      return withRelu ? relu(z) : z;
    }
    if (x.shape[1] !== this.numFeatures)
      throw new Error(`BatchNorm2d(${this.numFeatures}): input has ${x.shape[1]} channels (shape [${x.shape.join(', ')}])`);
    const rm = this.runningMean;
    const rv = this.runningVar;
    if (!this.training) {
      const scale = mul(this.weight, rsqrt(add(rv, this.eps)));
      const y = channelAffine(x, scale, sub(this.bias, mul(rm, scale)));
      hook?.(y);
      const z = residual ? add(y, residual) : y;
      return withRelu ? relu(z) : z;
    }
    if (this.crossReplicaSum) {
      const y = this.#syncForward(x, this.crossReplicaSum, residual, withRelu);
      hook?.(y);
      return y;
    }
    const { y, mean, invstd } = batchNormTrain(x, this.weight, this.bias, this.eps, { residual, relu: withRelu });
    const n = x.size / this.numFeatures;
    noGrad(() => {
      const m = this.momentum;
      const biasedVar = sub(reciprocal(mul(invstd, invstd)), this.eps);
      const newMean = add(mul(rm, 1 - m), mul(mean, m));
      const newVar = add(mul(rv, 1 - m), mul(biasedVar, (m * n) / Math.max(n - 1, 1)));
      rm.assign(newMean);
      rv.assign(newVar);
      const nbt = this.numBatchesTracked;
      nbt.assign(add(nbt, tensor([1], [], 'i32')));
      for (const t of [biasedVar, newMean, newVar]) t.dispose();
    });
    mean.dispose();
    invstd.dispose();
    hook?.(y);
    return y;
  }

  /**
   * Training with statistics over all processes, written with differentiable ops so autograd gives
   * the exact gradient: per-channel sums and the local count are summed across processes, giving the
   * global mean; then the centred sums of squares, giving the global (biased) variance, as the fused
   * op's two passes do. Four collectives per layer and step (two forward, two backward).
   */
  #syncForward(x: Tensor, allSum: (t: Tensor) => Tensor, residual: Tensor | undefined, withRelu: boolean): Tensor {
    const c = this.numFeatures;
    const axes = x.rank === 2 ? [0] : [0, ...x.shape.slice(2).map((_, i) => i + 2)];
    const perChannel = [1, c, ...x.shape.slice(2).map(() => 1)];
    const sums = allSum(concat([sum(x, axes), full([1], x.size / c)]));
    const count = slice(sums, [c], [1]);
    const mean = div(slice(sums, [0], [c]), count);
    const centred = sub(x, reshape(mean, perChannel));
    const variance = div(allSum(sum(square(centred), axes)), count);
    const invstd = rsqrt(add(variance, this.eps));
    const y = channelAffine(centred, mul(this.weight, invstd), this.bias);
    const z = residual ? add(y, residual) : y;
    noGrad(() =>
      tidy(() => {
        const m = this.momentum;
        const unbiased = mul(variance, div(count, sub(count, 1)));
        this.runningMean.assign(add(mul(this.runningMean, 1 - m), mul(mean, m)));
        this.runningVar.assign(add(mul(this.runningVar, 1 - m), mul(unbiased, m)));
        const nbt = this.numBatchesTracked;
        nbt.assign(add(nbt, tensor([1], [], 'i32')));
      }),
    );
    return withRelu ? relu(z) : z;
  }
}

/**
 * bn(conv(x)), then the epilogue (a residual added, a ReLU after), each mode at its fastest: in
 * training, the convolution and one fused batch-norm; in inference (eval mode, gradients off), one
 * convolution with the batch-norm folded in (see `Conv2d.foldedWith`) and the epilogue fused.
 * With gradients on in eval mode (input gradients, frozen statistics) it runs unfolded, so the
 * gradients reach the batch-norm's own parameters.
 */
export const convBn = (conv: Conv2d, bn: BatchNorm2d, x: Tensor, epilogue: EpilogueOptions = {}): Tensor => {
  if (bn.training || isGradEnabled() || bn.onResponse) return bn.forward(conv.forward(x), epilogue);
  const { scale, bias } = conv.foldedWith(bn);
  return conv2d(x, conv.weight, { ...conv.options, ...epilogue, scale, bias });
};

/** Fully connected layer: y = x Wᵀ + b, weight [out, in]. */
export class Linear extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;

  constructor(inFeatures: number, outFeatures: number, { bias = true } = {}) {
    super();
    const bound = 1 / Math.sqrt(inFeatures);
    this.weight = this.registerParameter('weight', rand([outFeatures, inFeatures], { low: -bound, high: bound }));
    this.bias = this.registerParameter('bias', bias ? rand([outFeatures], { low: -bound, high: bound }) : null);
  }

  forward(x: Tensor): Tensor {
    if (x.shape.at(-1) !== this.weight.shape[1])
      throw new Error(`Linear(${this.weight.shape[1]}, ${this.weight.shape[0]}): input has ${x.shape.at(-1)} features (shape [${x.shape.join(', ')}])`);
    const y = matmul(x, this.weight, { transB: true });
    return this.bias ? add(y, this.bias) : y;
  }
}

/** max(x, 0). */
export class ReLU extends Module {
  forward(x: Tensor): Tensor {
    return relu(x);
  }
}

/** Passes its input through. */
export class Identity extends Module {
  forward(x: Tensor): Tensor {
    return x;
  }
}

/** 2-D max pooling layer. */
export class MaxPool2d extends Module {
  constructor(readonly options: Pool2dOptions) {
    super();
  }
  forward(x: Tensor): Tensor {
    return maxPool2d(x, this.options);
  }
}

/** 2-D average pooling layer. */
export class AvgPool2d extends Module {
  constructor(readonly options: Pool2dOptions) {
    super();
  }
  forward(x: Tensor): Tensor {
    return avgPool2d(x, this.options);
  }
}

/** Adaptive average pooling to a fixed output size (see `adaptiveAvgPool2d`): [N,C,H,W] -> [N,C,oh,ow]. */
export class AdaptiveAvgPool2d extends Module {
  constructor(readonly outputSize: Pair = 1) {
    super();
  }
  forward(x: Tensor): Tensor {
    return adaptiveAvgPool2d(x, this.outputSize);
  }
}

/** Local response normalisation across channels (PyTorch's `nn.LocalResponseNorm`; see `localResponseNorm`). */
export class LocalResponseNorm extends Module {
  constructor(
    readonly size: number,
    readonly options: LocalResponseNormOptions = {},
  ) {
    super();
  }
  forward(x: Tensor): Tensor {
    return localResponseNorm(x, this.size, this.options);
  }
}

/** Dropout (PyTorch's `nn.Dropout`): a fresh mask every call in training mode, the identity in evaluation mode. */
export class Dropout extends Module {
  constructor(readonly p = 0.5) {
    super();
    if (!(p >= 0 && p <= 1)) throw new RangeError(`Dropout: p must be in [0, 1], got ${p}`);
  }
  forward(x: Tensor): Tensor {
    return dropout(x, this.p, { training: this.training });
  }
}

/** Flattens every axis from `startDim` on. */
export class Flatten extends Module {
  constructor(readonly startDim = 1) {
    super();
  }
  forward(x: Tensor): Tensor {
    return flatten(x, this.startDim);
  }
}

/** Runs children in order; they are named '0', '1', ... as in PyTorch. */
export class Sequential extends Module {
  readonly layers: Module[];
  constructor(...layers: Module[]) {
    super();
    this.layers = layers;
    layers.forEach((m, i) => this.registerModule(String(i), m));
  }
  forward(x: Tensor): Tensor {
    return this.layers.reduce((h, m) => m.forward(h), x);
  }
}

/** Cross-entropy loss module (PyTorch's `nn.CrossEntropyLoss`). */
export class CrossEntropyLoss {
  constructor(readonly options: CrossEntropyOptions = {}) {}
  /** Loss of logits [N, C] against i32 labels [N]. */
  forward(logits: Tensor, labels: Tensor): Tensor {
    return crossEntropy(logits, labels, this.options);
  }
}
