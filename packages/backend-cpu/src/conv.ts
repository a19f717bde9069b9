/**
 * 2-D convolution as GEMM, in WebAssembly: the kernels unfold input patches straight into the GEMM's
 * packed panels (implicit im2col), so no column matrix is ever stored, except for the data gradient
 * of strided convolutions. 3x3 stride-1 convolutions with enough channels run as Winograd F(2x2, 3x3)
 * or F(4x4, 3x3) instead (assembly/winograd.ts). Operands outside the WebAssembly memory are copied in,
 * results out (Wasm.place).
 */
import type { Conv2dGeometry } from '@residual/core';
import { TransformCache, type WeightSource } from './transform-cache.js';
import { GEOMETRY, type Wasm } from './wasm.js';

/** What a forward conv does to its output as each tile is stored: y = act(conv·scale[k] + bias[k] + residual). */
export interface Epilogue {
  /** [K], multiplies each output channel (a folded inference batch-norm). */
  readonly scale?: Float32Array;
  /** [K], added per output channel. */
  readonly bias?: Float32Array;
  /** [N, K, OH, OW], added per output. */
  readonly residual?: Float32Array;
  /** max(y, 0) last, NaN and -0 to +0 (the op's float64 reference). */
  readonly relu?: boolean;
}

/**
 * Places a forward conv's operands (x, w, the epilogue's arrays, y, then `scratch` regions) and writes
 * its epilogue where the kernels read it: `epi` is the address to hand them.
 */
const placeConv = (wasm: Wasm, x: Float32Array, w: Float32Array, y: Float32Array, e: Epilogue, ...scratch: number[]) => {
  const extra = [e.bias, e.residual, e.scale].filter((a) => a !== undefined);
  const { at, done } = wasm.place([x, w, ...extra], [y], ...scratch);
  let i = 2;
  const bias = e.bias ? at[i++] : 0;
  const residual = e.residual ? at[i++] : 0;
  const scale = e.scale ? at[i++] : 0;
  const py = at[i++];
  return { px: at[0], pw: at[1], py, epi: wasm.epilogue(bias, residual, e.relu ?? false, scale), scratch: at.slice(i), done };
};

/** Multiply-adds of a convolution (the same for its two gradients). */
const macsOf = (g: Conv2dGeometry): number =>
  g.batch * g.outChannels * (g.inChannels / g.groups) * g.kernelH * g.kernelW * g.outH * g.outW;

/** Hands the geometry to the kernels, in the field order of assembly/kernels.ts. */
const setGeometry = (wasm: Wasm, g: Conv2dGeometry): void =>
  wasm.geometry([
    g.batch, g.inChannels, g.inH, g.inW, g.outChannels, g.kernelH, g.kernelW, g.strideH, g.strideW,
    g.padTop, g.padLeft, g.dilationH, g.dilationW, g.groups, g.outH, g.outW,
  ]);

/** Floats of V and M per Winograd block and thread (128 KiB: the best of 16-96 Ki floats measured at ResNet-20's shapes). */
const WINOGRAD_BLOCK = 32 * 1024;
/** The same for the filter gradient, whose GEMMs reduce over a block's tiles, so longer blocks pay (best of 32-256 Ki floats). */
const WINOGRAD_FILTER_BLOCK = 128 * 1024;

/**
 * Whether the conv runs as Winograd: 3x3 at stride 1, undilated and ungrouped, with enough channels
 * that the transforms cost less than they save. F(2x2, 3x3) measured against implicit GEMM at 2
 * threads: 1.3-2.8x faster from 8 to 512 channels (ResNet-20's and ResNet-50's shapes), 0.8-0.9x at
 * 3 input channels.
 */
const winogradFits = (g: Conv2dGeometry): boolean =>
  g.kernelH === 3 && g.kernelW === 3 && g.strideH === 1 && g.strideW === 1 && g.dilationH === 1 && g.dilationW === 1 &&
  g.groups === 1 && g.inChannels >= 8 && g.outChannels >= 8;

/**
 * Whether the filter gradient runs as Winograd too: its per-thread sums [points][K][C] are read and
 * written once per block, which stops paying once they outgrow the cache (F(2x2, 3x3): 1.2-2x
 * faster up to 256x256 channels, 0.5x at 512x512).
 */
const winogradFilterFits = (g: Conv2dGeometry): boolean => winogradFits(g) && g.inChannels * g.outChannels <= 256 * 256;

/**
 * Floats of Winograd scratch per thread for C input and K output channels and 16 or 36 transform
 * points: blocks of T tiles (a multiple of 8) with V [points][C][T] and M [points][Kp][T], each plane
 * 16 floats apart, and a stage of 64 or 160 floats plus 16 of tile descriptors.
 */
const winogradScratch = (c: number, k: number, points: number, block: number): number => {
  const kp = Math.ceil(k / 4) * 4;
  const tiles = Math.max(8, Math.floor(block / (points * (c + kp))) & ~7);
  return points * (c + kp) * tiles + 32 * points + (points === 16 ? 80 : 176);
};

/** The kernels' shape arguments of a Winograd conv, in their order. */
const winogradShape = (g: Conv2dGeometry): number[] =>
  [g.batch, g.inChannels, g.inH, g.inW, g.outChannels, g.outH, g.outW, g.padTop, g.padLeft];

/**
 * Which Winograd form the forward conv takes: F(4x4, 3x3) multiplies less in its GEMMs, batch·(16·t2
 * - 36·t4) fewer multiply-adds per (input, output) channel pair with t2 and t4 the 2x2 and 4x4 tiles
 * per image, but transforms 36 filter points per pair where F(2x2, 3x3) transforms 16, and one
 * transformed point (written, then read by each thread) costs about as much as 20 multiply-adds of
 * the GEMMs. Measured at 2 threads: F(2x2, 3x3) 1.0-1.1x faster at batch 1 at 7x7 and 14x14
 * (ResNet-50's 512 and 256 channels); F(4x4, 3x3) 1.0x at 28x28 x 128 channels, 1.4x at 56x56 x 64,
 * 1.5x at ResNet-20's 8x8 x 64 (batch 128), 1.5x at 16x16 and 32x32.
 */
const forwardM = (g: Conv2dGeometry): 2 | 4 => {
  const tiles = (m: number) => Math.ceil(g.outH / m) * Math.ceil(g.outW / m);
  return g.batch * (16 * tiles(2) - 36 * tiles(4)) >= 20 * 20 ? 4 : 2;
};

/**
 * Bytes of Winograd filter transforms kept per runtime: ResNet-50's take 120 MiB at batch 1 and 180
 * MiB at batch 16, where F(4x4, 3x3) holds 4 times the filters' floats. Past it the transforms are
 * made on every call, as without a cache.
 */
const TRANSFORM_CACHE_BYTES = 256 * 2 ** 20;
const transformCaches = new WeakMap<Wasm, TransformCache>();

/** Floats of F(m x m, 3x3)'s filter transform U [(m + 2)²][Kp/4][C][4] (assembly/winograd.ts's `winogradFilter`). */
const filterFloats = (g: Conv2dGeometry, m: 2 | 4): number => (m + 2) ** 2 * Math.ceil(g.outChannels / 4) * 4 * g.inChannels;

/** Makes w's filter transform for F(m x m, 3x3) at byte address `pu`, w at `pw`. */
const filterTransform = (wasm: Wasm, g: Conv2dGeometry, m: 2 | 4, pw: number, pu: number): void =>
  wasm.run('winogradFilter', [pw, pu, g.outChannels, g.inChannels, m], (m + 2) ** 2 * g.outChannels * g.inChannels);

/**
 * The byte address of w's filter transform for F(m x m, 3x3) kept from an earlier call with the same
 * weights (`source`: w's storage and the version of its contents), or made now to be kept; 0 when
 * it is not kept (no source, a first call with these contents, the cache full).
 */
const keptFilter = (wasm: Wasm, g: Conv2dGeometry, m: 2 | 4, w: Float32Array, source: WeightSource | undefined): number => {
  if (!source) return 0;
  let cache = transformCaches.get(wasm);
  if (!cache) transformCaches.set(wasm, (cache = new TransformCache(wasm, TRANSFORM_CACHE_BYTES)));
  return cache.get(source, m, filterFloats(g, m), (pu) => filterTransform(wasm, g, m, wasm.place([w], []).at[0], pu));
};

/**
 * The forward conv by Winograd F(m x m, 3x3), m = 2 or 4 (assembly/winograd.ts): filter transform,
 * then the fused transforms and GEMMs. With `source`, the filter transform is kept for later calls
 * with the same weights (`keptFilter`).
 */
export const winogradConv2d = (
  wasm: Wasm, g: Conv2dGeometry, x: Float32Array, w: Float32Array, y: Float32Array, m: 2 | 4 = forwardM(g), e: Epilogue = {},
  source?: WeightSource,
): void => {
  const points = (m + 2) ** 2;
  const kept = keptFilter(wasm, g, m, w, source);
  const stride = winogradScratch(g.inChannels, g.outChannels, points, WINOGRAD_BLOCK);
  const { px, pw, py, epi, scratch: [pu, scratch], done } = placeConv(wasm, x, w, y, e, kept ? 0 : filterFloats(g, m), wasm.threads * stride);
  if (!kept) filterTransform(wasm, g, m, pw, pu);
  // points multiplies per m x m outputs where direct takes 9 per output.
  const args = [px, kept || pu, py, scratch, stride * 4, ...winogradShape(g), epi];
  wasm.run(m === 4 ? 'winograd4Conv' : 'winogradConv', args, (macsOf(g) * points) / (9 * m * m));
  done();
};

/**
 * The filter gradient by Winograd F(m x m, 3x3): each thread sums dU over its tiles, then the sums,
 * added in order, turn into dw. F(4x4, 3x3) runs where rows have 16 outputs or more and its
 * per-thread sums (36·K·C floats) stay small: 1.2-1.4x faster than F(2x2, 3x3) up to 64x64
 * channels (1.0x at 8x8 outputs), 0.7x at 128x128.
 */
export const winogradBackwardFilter = (
  wasm: Wasm, g: Conv2dGeometry, x: Float32Array, dy: Float32Array, dw: Float32Array,
  m: 2 | 4 = g.outW >= 16 && g.inChannels * g.outChannels <= 64 * 64 ? 4 : 2,
): void => {
  const { inChannels: c, outChannels: k } = g;
  const points = (m + 2) ** 2;
  const stride = winogradScratch(c, k, points, WINOGRAD_FILTER_BLOCK);
  const part = points * k * c;
  const work = (macsOf(g) * points) / (9 * m * m);
  const nt = wasm.threadsFor(work);
  const { at: [px, pdy, pdw, parts, scratch], done } = wasm.place([x, dy], [dw], wasm.threads * part, wasm.threads * stride);
  wasm.run('winogradBackwardFilter', [px, pdy, parts, part * 4, scratch, stride * 4, ...winogradShape(g), m], work);
  wasm.run('winogradFilterGrad', [pdw, parts, part, nt, k, c, m], part * nt);
  done();
};

/** F(m x m, 3x3)'s tiles of a conv, rounded up to whole register tiles (8). */
const tilesOf = (g: Conv2dGeometry, m: number): number => Math.ceil((g.batch * Math.ceil(g.outH / m) * Math.ceil(g.outW / m)) / 8) * 8;

/**
 * The F(m x m, 3x3) that `winogradPanelsConv2d` takes for g, if it runs by panels at all (else null).
 * Its filter transform stays in the cache, so F(4x4, 3x3) pays from a smaller saving of GEMM
 * multiply-adds per channel pair (tiles counted as the GEMMs' columns, padded to 8) than `forwardM`
 * asks. Panels pay where each thread's share of U outweighs V (tiles at most half the output
 * channels) and V, the transformed input of all tiles, stays within 2 MiB. Measured at 2 threads
 * against the best of the block forms: at batch 1, 1.2x faster at 7x7 x 512 channels (F(2x2, 3x3)),
 * 1.1x at 14x14 x 256 and 1.35x at 28x28 x 128 (F(4x4, 3x3)); at batch 2, 1.1x at 7x7 x 512 (F(2x2,
 * 3x3), F(4x4, 3x3) 0.85x) and 1.0x at 14x14 x 256. At 56x56 x 64, where V outweighs U, blocks
 * are as fast.
 */
const panelsM = (g: Conv2dGeometry): 2 | 4 | null => {
  const m = 16 * tilesOf(g, 2) - 36 * tilesOf(g, 4) >= 300 ? 4 : 2;
  const tiles = tilesOf(g, m);
  return 2 * tiles <= g.outChannels && (m + 2) ** 2 * g.inChannels * tiles <= 2 ** 19 ? m : null;
};

/**
 * The forward conv by F(m x m, 3x3) with the output channels split between threads, each panel of
 * four filters transformed just before its GEMMs (winogradConvPanels, winograd4ConvPanels): no
 * thread streams all the transformed filters past a few tiles, and they never leave the cache. Where
 * a transform of w is kept (`source`, `keptFilter`), the panels read it instead: 1.1-1.3x faster at
 * ResNet-50's 7x7 and 14x14 layers at batch 1 on one thread, with the weights of 12 such layers in
 * turn so that they stream from memory as in a whole network (U is 1.8x or 4x w's bytes, but loads
 * as whole vectors where the transform gathers the taps of four filters).
 */
export const winogradPanelsConv2d = (
  wasm: Wasm, g: Conv2dGeometry, x: Float32Array, w: Float32Array, y: Float32Array, m: 2 | 4, e: Epilogue = {}, source?: WeightSource,
): void => {
  const { inChannels: c } = g;
  const t = tilesOf(g, m);
  const points = (m + 2) ** 2;
  const kept = keptFilter(wasm, g, m, w, source);
  // V, a panel's U and M, the stage (assembly/winograd.ts).
  const stride = points * (c * t + 16) + 4 * points * c + points * (4 * t + 16) + (m === 2 ? 80 : 176);
  const { px, pw, py, epi, scratch: [scratch], done } = placeConv(wasm, x, w, y, e, wasm.threads * stride);
  const kernel = m === 4 ? 'winograd4ConvPanels' : 'winogradConvPanels';
  wasm.run(kernel, [px, pw, py, scratch, stride * 4, ...winogradShape(g), epi, kept], (macsOf(g) * points) / (9 * m * m));
  done();
};

/** The forward conv as a GEMM with implicit im2col (any geometry). */
export const implicitConv2d = (wasm: Wasm, g: Conv2dGeometry, x: Float32Array, w: Float32Array, y: Float32Array, e: Epilogue = {}): void => {
  const { px, pw, py, epi, scratch: [scratch], done } = placeConv(wasm, x, w, y, e, wasm.threads * wasm.gemmScratch);
  setGeometry(wasm, g);
  wasm.run('conv2d', [GEOMETRY, px, pw, py, scratch, wasm.gemmScratch * 4, epi], macsOf(g));
  done();
};

/**
 * Runs the forward conv on (x, w) under geometry g with epilogue e: Winograd where it pays, else
 * implicit GEMM; `source` identifies w's contents for the filter transforms kept.
 */
const forward = (wasm: Wasm, g: Conv2dGeometry, x: Float32Array, w: Float32Array, y: Float32Array, e: Epilogue = {}, source?: WeightSource): void => {
  if (!winogradFits(g)) return implicitConv2d(wasm, g, x, w, y, e);
  const m = panelsM(g);
  if (m) winogradPanelsConv2d(wasm, g, x, w, y, m, e, source);
  else winogradConv2d(wasm, g, x, w, y, forwardM(g), e, source);
};

/**
 * y [N,K,OH,OW] = act(conv(x [N,C,H,W], w [K,C/groups,R,S]) + bias + residual), the epilogue applied
 * by the kernels as they store each output tile. `source` (w's storage and the version of its
 * contents) lets a Winograd conv keep its filter transform for the next call with the same weights.
 */
export const conv2d = (
  wasm: Wasm, x: Float32Array, w: Float32Array, y: Float32Array, g: Conv2dGeometry, epilogue: Epilogue = {}, source?: WeightSource,
): void => {
  if (y.length > 0) forward(wasm, g, x, w, y, epilogue, source);
};

/**
 * w [K, C/g, R, S] as the weights of the transposed convolution: [C, K/g, R, S], each kernel turned
 * by 180 degrees.
 */
const flipped = (w: Float32Array, g: Conv2dGeometry): Float32Array => {
  const cg = g.inChannels / g.groups;
  const kg = g.outChannels / g.groups;
  const taps = g.kernelH * g.kernelW;
  const out = new Float32Array(w.length);
  for (let grp = 0; grp < g.groups; grp++) {
    for (let k = 0; k < kg; k++) {
      for (let c = 0; c < cg; c++) {
        const src = ((grp * kg + k) * cg + c) * taps;
        const dst = ((grp * cg + c) * kg + k) * taps + taps - 1;
        for (let t = 0; t < taps; t++) out[dst - t] = w[src + t];
      }
    }
  }
  return out;
};

/**
 * dx [N,C,H,W] from dy [N,K,OH,OW] and w. At stride 1 this is a convolution of dy with the turned
 * weights (padding dilation·(R-1) - pad), which runs as fast as the forward pass; strided
 * convolutions multiply out each image's column matrix and fold it back.
 */
export const conv2dBackwardData = (wasm: Wasm, dy: Float32Array, w: Float32Array, dx: Float32Array, g: Conv2dGeometry): void => {
  if (dx.length === 0) return;
  if (g.strideH === 1 && g.strideW === 1) {
    const t: Conv2dGeometry = {
      ...g, inChannels: g.outChannels, inH: g.outH, inW: g.outW, outChannels: g.inChannels, outH: g.inH, outW: g.inW,
      padTop: g.dilationH * (g.kernelH - 1) - g.padTop, padLeft: g.dilationW * (g.kernelW - 1) - g.padLeft,
      padBottom: g.dilationH * (g.kernelH - 1) - g.padBottom, padRight: g.dilationW * (g.kernelW - 1) - g.padRight,
    };
    forward(wasm, t, dy, flipped(w, g), dx);
    return;
  }
  const stride = wasm.gemmScratch + (g.inChannels / g.groups) * g.kernelH * g.kernelW * g.outH * g.outW;
  const { at: [pdy, pw, pdx, scratch], done } = wasm.place([dy, w], [dx], wasm.threads * stride);
  setGeometry(wasm, g);
  wasm.run('conv2dBackwardData', [GEOMETRY, pdy, pw, pdx, scratch, stride * 4], macsOf(g));
  done();
};

/** dw [K,C/groups,R,S] = Σ over images of dy·colsᵀ: each thread sums its images, then the parts are added in order. */
export const conv2dBackwardFilter = (wasm: Wasm, x: Float32Array, dy: Float32Array, dw: Float32Array, g: Conv2dGeometry): void => {
  if (dw.length === 0) return;
  if (winogradFilterFits(g)) return winogradBackwardFilter(wasm, g, x, dy, dw);
  const macs = macsOf(g);
  const nt = wasm.threadsFor(macs);
  const { at: [px, pdy, pdw, parts, scratch], done } = wasm.place([x, dy], [dw], wasm.threads * dw.length, wasm.threads * wasm.gemmScratch);
  setGeometry(wasm, g);
  wasm.run('conv2dBackwardFilter', [GEOMETRY, px, pdy, parts, dw.length * 4, scratch, wasm.gemmScratch * 4], macs);
  wasm.run('sumParts', [pdw, parts, dw.length, dw.length, nt], dw.length * nt);
  done();
};
