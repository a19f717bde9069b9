/**
 * conv2d's weight gradient as implicit GEMM: rows are the output channels of one group, columns the
 * (c, r, s) taps, depth the output pixels (n, oh, ow): dy times the same input taps the forward reads.
 * The output is small and the depth long, so the depth is split (split-K): the program writes
 * `splits` partial gradients one after another, which the caller sums.
 */
import type { Conv2dGeometry } from '@residual/core';
import type { Program } from '../header.js';
import { convUniforms, INPUT_TAPS } from './conv2d.js';
import { gemmProgram, gemmTile, type GemmKernel } from './gemm.js';

/**
 * Depth chunks for geometry g on `kernel`: enough for ~512 workgroups, but at least 1024 pixels per
 * chunk (so partial sums stay few) and at most 64 chunks.
 */
export const filterSplits = (g: Conv2dGeometry, kernel: GemmKernel): number => {
  const [tileM, tileN] = gemmTile(kernel, g.outChannels / g.groups);
  const tiles = g.groups * Math.ceil(g.outChannels / g.groups / tileM) * Math.ceil(((g.inChannels / g.groups) * g.kernelH * g.kernelW) / tileN);
  return Math.max(1, Math.min(Math.ceil(512 / tiles), Math.floor((g.batch * g.outH * g.outW) / 1024), 64));
};

/**
 * The program of the `splits` partial sums of dw = conv2dBackwardFilter(x, dy) on `kernel`, laid
 * out [splits, ...dw.shape] with `stride` elements from one to the next (default: dw's size).
 */
export const conv2dBackwardFilterProgram = (g: Conv2dGeometry, splits: number, kernel: GemmKernel, stride?: number): Program => {
  const weights = g.outChannels * (g.inChannels / g.groups) * g.kernelH * g.kernelW;
  return gemmProgram(
    {
      key: 'conv2dBackwardFilter',
      batch: g.groups,
      rows: g.outChannels / g.groups,
      cols: (g.inChannels / g.groups) * g.kernelH * g.kernelW,
      depth: g.batch * g.outH * g.outW,
      inputs: [
        { name: 'x', type: 'f32' },
        { name: 'dy', type: 'f32' },
      ],
      output: { name: 'dw', type: 'f32' },
      uniforms: [...convUniforms(g), { name: 'weights', type: 'u32', value: stride ?? weights }],
      splits,
      loaders: `${INPUT_TAPS}
alias Dep = Pixel;
alias Col = Tap;
fn depOf(g: u32, p: u32) -> Pixel { return pixelOf(p); }
fn colOf(g: u32, k: u32) -> Tap { return tapOf(g, k); }
fn loadA(g: u32, kq: u32, p: Pixel) -> f32 { return dy[(p.img * u.outC + g * u.kg + kq) * u.outH * u.outW + p.at]; }
fn loadB(g: u32, p: Pixel, t: Tap) -> f32 { return tap(p, t); }
fn storeC(g: u32, kq: u32, t: Tap, v: f32) { dw[split * u.weights + (g * u.kg + kq) * u.cols + t.k] = v; }`,
      aRuns: 'k',
      bRuns: 'k',
    },
    kernel,
  );
};
