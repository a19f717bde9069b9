/** Weight initialisation in place (PyTorch's `torch.nn.init`), drawing from the global generator. */
import { full, rand, randn } from './api.js';
import { noGrad, type Tensor } from './engine.js';

/** Fills t with a fresh tensor's values by taking its storage: no copy, and no freed block left behind per call. */
const fill = (t: Tensor, make: () => Tensor): Tensor => noGrad(() => t.adopt(make()));

/** Fills with draws from U(low, high). */
export const uniform_ = (t: Tensor, low = 0, high = 1): Tensor => fill(t, () => rand(t.shape, { low, high }));
/** Fills with draws from N(mean, std²). */
export const normal_ = (t: Tensor, mean = 0, std = 1): Tensor => fill(t, () => randn(t.shape, { mean, std }));
/** Fills with a constant. */
export const constant_ = (t: Tensor, value: number): Tensor => fill(t, () => full(t.shape, value, t.dtype));

/** Options of the He (Kaiming) initialisers. */
export interface KaimingOptions {
  /** 'fanIn' keeps forward variances (He et al. 2015, as the ResNet paper cites); 'fanOut' backward ones (torchvision). */
  mode?: 'fanIn' | 'fanOut';
  nonlinearity?: 'relu' | 'linear';
}

/** Fan-in and fan-out of a weight [out, in, ...kernel]. */
export const fans = (shape: readonly number[]): { fanIn: number; fanOut: number } => {
  if (shape.length < 2) throw new Error(`fans: a weight needs rank >= 2, got [${shape.join(', ')}]`);
  const receptive = shape.slice(2).reduce((a, b) => a * b, 1);
  return { fanIn: shape[1] * receptive, fanOut: shape[0] * receptive };
};

const kaimingStd = (shape: readonly number[], { mode = 'fanIn', nonlinearity = 'relu' }: KaimingOptions) => {
  const gain = nonlinearity === 'relu' ? Math.SQRT2 : 1;
  const f = fans(shape);
  return gain / Math.sqrt(mode === 'fanIn' ? f.fanIn : f.fanOut);
};

/** He normal initialisation: N(0, gain² / fan). */
export const kaimingNormal_ = (t: Tensor, opts: KaimingOptions = {}): Tensor => normal_(t, 0, kaimingStd(t.shape, opts));
/** He uniform initialisation: U(-b, b) with b = gain * sqrt(3 / fan). */
export const kaimingUniform_ = (t: Tensor, opts: KaimingOptions = {}): Tensor => {
  const b = kaimingStd(t.shape, opts) * Math.sqrt(3);
  return uniform_(t, -b, b);
};
