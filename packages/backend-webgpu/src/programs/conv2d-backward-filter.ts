/**
 * conv2d's weight gradient as implicit GEMM: rows are the output channels of one group, columns the
 * (c, r, s) taps, depth the output pixels (n, oh, ow) — dy times the same input taps the forward reads.
 * The output is small and the depth long, so the depth is split (split-K): the program writes
 * `splits` partial gradients one after another, which the caller sums.
 */
import type { Conv2dGeometry } from '@residual/core';
import type { Program } from '../header.js';
import { convUniforms, INPUT_TAP } from './conv2d.js';
import { gemmProgram } from './gemm.js';

/**
 * Depth chunks for geometry g: enough for ~512 workgroups, but at least 1024 pixels per chunk
 * (so partial sums stay few) and at most 64 chunks.
 */
export const filterSplits = (g: Conv2dGeometry): number => {
  const tiles = g.groups * Math.ceil(g.outChannels / g.groups / 64) * Math.ceil(((g.inChannels / g.groups) * g.kernelH * g.kernelW) / 64);
  return Math.max(1, Math.min(Math.ceil(512 / tiles), Math.floor((g.batch * g.outH * g.outW) / 1024), 64));
};

/** The program of the `splits` partial sums of dw = conv2dBackwardFilter(x, dy), laid out [splits, ...dw.shape]. */
export const conv2dBackwardFilterProgram = (g: Conv2dGeometry, splits: number): Program =>
  gemmProgram({
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
    uniforms: [...convUniforms(g), { name: 'weights', type: 'u32', value: g.outChannels * (g.inChannels / g.groups) * g.kernelH * g.kernelW }],
    splits,
    loaders: `${INPUT_TAP}
fn loadA(g: u32, kq: u32, k: u32) -> f32 {
  let plane = u.outH * u.outW;
  return dy[((k / plane) * u.outC + g * u.kg + kq) * plane + k % plane];
}
fn loadB(g: u32, k: u32, col: u32) -> f32 {
  let ow = k % u.outW;
  let t = k / u.outW;
  let s = col % u.kW;
  let rc = col / u.kW;
  return tap(g, t / u.outH, rc / u.kH, t % u.outH, ow, rc % u.kH, s);
}
fn storeC(g: u32, kq: u32, col: u32, v: f32) { dw[split * u.weights + (g * u.kg + kq) * u.cols + col] = v; }`,
    aRuns: 'k',
    bRuns: 'k',
  });
