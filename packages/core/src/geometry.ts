/** Convolution and pooling geometry, computed once here and handed to kernels. */
import { ShapeError, type Shape } from './shape.js';

/** Everything a conv2d kernel (forward or backward) needs to know about sizes. */
export interface Conv2dGeometry {
  readonly batch: number;
  readonly inChannels: number;
  readonly inH: number;
  readonly inW: number;
  readonly outChannels: number;
  readonly kernelH: number;
  readonly kernelW: number;
  readonly strideH: number;
  readonly strideW: number;
  readonly padTop: number;
  readonly padLeft: number;
  readonly padBottom: number;
  readonly padRight: number;
  readonly dilationH: number;
  readonly dilationW: number;
  readonly groups: number;
  readonly outH: number;
  readonly outW: number;
}

/** Everything a 2-D pooling kernel needs. */
export interface Pool2dGeometry {
  readonly batch: number;
  readonly channels: number;
  readonly inH: number;
  readonly inW: number;
  readonly kernelH: number;
  readonly kernelW: number;
  readonly strideH: number;
  readonly strideW: number;
  readonly padTop: number;
  readonly padLeft: number;
  readonly outH: number;
  readonly outW: number;
  /** avg-pool only: whether padded cells count in the divisor (PyTorch's `count_include_pad`). */
  readonly countIncludePad: boolean;
}

/** A size given once for both axes, or as [h, w]. */
export type Pair = number | readonly [number, number];

const pair = (v: Pair, what: string, min: number): [number, number] => {
  const p: [number, number] = typeof v === 'number' ? [v, v] : [v[0], v[1]];
  if (p.some((x) => !Number.isInteger(x) || x < min)) throw new ShapeError(`${what} must be integer(s) >= ${min}, got ${JSON.stringify(v)}`);
  return p;
};

/** Conv2d options, as PyTorch's `nn.Conv2d` takes them. */
export interface Conv2dOptions {
  stride?: Pair;
  padding?: Pair;
  dilation?: Pair;
  groups?: number;
}

const outSize = (inp: number, k: number, s: number, p0: number, p1: number, d: number) =>
  Math.floor((inp + p0 + p1 - d * (k - 1) - 1) / s) + 1;

/** The geometry of `conv2d(x, w)` for x [N,C,H,W] and w [K,C/groups,R,S]. */
export const conv2dGeometry = (x: Shape, w: Shape, opts: Conv2dOptions = {}, op = 'conv2d'): Conv2dGeometry => {
  if (x.length !== 4) throw new ShapeError(`${op}: input must be [N, C, H, W], got [${x.join(', ')}]`);
  if (w.length !== 4) throw new ShapeError(`${op}: weight must be [K, C/groups, R, S], got [${w.join(', ')}]`);
  const groups = opts.groups ?? 1;
  if (!Number.isInteger(groups) || groups < 1) throw new ShapeError(`${op}: groups must be an integer >= 1, got ${groups}`);
  const [batch, inChannels, inH, inW] = x;
  const [outChannels, cPerGroup, kernelH, kernelW] = w;
  if (inChannels % groups !== 0 || outChannels % groups !== 0)
    throw new ShapeError(`${op}: channels (in ${inChannels}, out ${outChannels}) must divide by groups=${groups}`);
  if (cPerGroup * groups !== inChannels)
    throw new ShapeError(`${op}: weight [${w.join(', ')}] expects ${cPerGroup * groups} input channels, input [${x.join(', ')}] has ${inChannels}`);
  const [strideH, strideW] = pair(opts.stride ?? 1, `${op}: stride`, 1);
  const [padH, padW] = pair(opts.padding ?? 0, `${op}: padding`, 0);
  const [dilationH, dilationW] = pair(opts.dilation ?? 1, `${op}: dilation`, 1);
  const outH = outSize(inH, kernelH, strideH, padH, padH, dilationH);
  const outW = outSize(inW, kernelW, strideW, padW, padW, dilationW);
  if (outH <= 0 || outW <= 0)
    throw new ShapeError(`${op}: kernel ${kernelH}x${kernelW} (dilation ${dilationH}x${dilationW}) does not fit input ${inH}x${inW} with padding ${padH}x${padW}`);
  return {
    batch, inChannels, inH, inW, outChannels, kernelH, kernelW, strideH, strideW,
    padTop: padH, padLeft: padW, padBottom: padH, padRight: padW, dilationH, dilationW, groups, outH, outW,
  };
};

/** Pooling options, as PyTorch's `nn.MaxPool2d` / `nn.AvgPool2d` take them (stride defaults to the kernel). */
export interface Pool2dOptions {
  kernelSize: Pair;
  stride?: Pair;
  padding?: Pair;
  countIncludePad?: boolean;
}

/** The geometry of a 2-D pool over x [N,C,H,W]. */
export const pool2dGeometry = (x: Shape, opts: Pool2dOptions, op = 'pool2d'): Pool2dGeometry => {
  if (x.length !== 4) throw new ShapeError(`${op}: input must be [N, C, H, W], got [${x.join(', ')}]`);
  const [kernelH, kernelW] = pair(opts.kernelSize, `${op}: kernelSize`, 1);
  const [strideH, strideW] = pair(opts.stride ?? opts.kernelSize, `${op}: stride`, 1);
  const [padTop, padLeft] = pair(opts.padding ?? 0, `${op}: padding`, 0);
  if (padTop * 2 > kernelH || padLeft * 2 > kernelW)
    throw new ShapeError(`${op}: padding ${padTop}x${padLeft} must be at most half the kernel ${kernelH}x${kernelW}`);
  const [batch, channels, inH, inW] = x;
  const outH = outSize(inH, kernelH, strideH, padTop, padTop, 1);
  const outW = outSize(inW, kernelW, strideW, padLeft, padLeft, 1);
  if (outH <= 0 || outW <= 0) throw new ShapeError(`${op}: kernel ${kernelH}x${kernelW} does not fit input ${inH}x${inW}`);
  return {
    batch, channels, inH, inW, kernelH, kernelW, strideH, strideW, padTop, padLeft, outH, outW,
    countIncludePad: opts.countIncludePad ?? true,
  };
};
