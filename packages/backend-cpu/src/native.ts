/**
 * The native provider: ResNet's heavy ops on oneDNN (native/onednn.cc), loaded where the addon was
 * built at install (Node only). Its functions work on the backend's own arrays in place (views of the
 * WebAssembly memory, or ordinary arrays): the two providers share every tensor without copies.
 */
import type { Conv2dGeometry } from '@residual/core';

/** The addon's functions (native/onednn.cc documents each). */
export interface OneDnn {
  conv2dForward(
    x: Float32Array, w: Float32Array, wVersion: number, scale: Float32Array | null, scaleVersion: number, bias: Float32Array | null,
    residual: Float32Array | null, y: Float32Array, geometry: Int32Array, relu: boolean,
  ): void;
  conv2dBackwardData(dy: Float32Array, w: Float32Array, wVersion: number, dx: Float32Array, geometry: Int32Array): void;
  conv2dBackwardFilter(x: Float32Array, dy: Float32Array, dw: Float32Array, geometry: Int32Array): void;
  /** The oneDNN implementation a shape runs: pass 0 forward, 1 data gradient, 2 filter gradient. */
  convImpl(geometry: Int32Array, pass: 0 | 1 | 2): string;
  sgemm(
    transA: boolean, transB: boolean, m: number, n: number, k: number,
    a: Float32Array, aOffset: number, b: Float32Array, bOffset: number, c: Float32Array, cOffset: number,
  ): void;
  batchNormTrain(
    x: Float32Array, gamma: Float32Array, beta: Float32Array, residual: Float32Array | null, y: Float32Array,
    mean: Float32Array, invstd: Float32Array, n: number, c: number, inner: number, eps: number, relu: boolean, blocked: boolean,
  ): void;
  batchNormBackward(
    dy: Float32Array, x: Float32Array, gamma: Float32Array, mean: Float32Array, invstd: Float32Array, y: Float32Array | null,
    dx: Float32Array, dgamma: Float32Array, dbeta: Float32Array, dresidual: Float32Array | null, n: number, c: number, inner: number,
    blocked: boolean,
  ): void;
  /** Max-pool over nChw16c (c a multiple of 16), NaN winning. */
  maxPool2d(
    x: Float32Array, y: Float32Array, n: number, c: number, h: number, w: number, oh: number, ow: number,
    kh: number, kw: number, sh: number, sw: number, padTop: number, padLeft: number,
  ): void;
  /** An activation [n, c, h, w] from row-major to nChw16c (toBlocked) or back, out of place. */
  reorderActivation(src: Float32Array, dst: Float32Array, n: number, c: number, h: number, w: number, toBlocked: boolean): void;
  setThreads(n: number): void;
  info(): { version: string; isa: string; cachedWeightBytes: number };
  clearCaches(): void;
}

/** Why the native provider is not available, and what would make it so. */
export const NATIVE_HINT = 'apt-get install libdnnl-dev, then reinstall @residual/backend-cpu';

// Node's modules, where there are any (browsers load this file too, and take the WebAssembly provider).
const node = typeof process !== 'undefined' && process.versions?.node !== undefined
  ? { module: await import('node:module'), fs: await import('node:fs') }
  : null;

let loaded: { addon: OneDnn } | { missing: string } | undefined;

/** The addon, or why there is none (not Node, not built, or built against a library that is gone). */
export const loadOneDnn = (): { addon: OneDnn } | { missing: string } => {
  if (loaded) return loaded;
  if (!node) return (loaded = { missing: 'native code runs only in Node' });
  const path = new URL('../native/build/Release/residual_onednn.node', import.meta.url);
  if (!node.fs.existsSync(path)) return (loaded = { missing: 'the oneDNN addon was not built at install' });
  try {
    return (loaded = { addon: node.module.createRequire(import.meta.url)(path.pathname) as OneDnn });
  } catch (e) {
    return (loaded = { missing: `the oneDNN addon does not load (${(e as Error).message.split('\n')[0]})` });
  }
};

/** The geometry as the addon reads it (native/onednn.cc, struct Geometry). */
export const geometryArray = (g: Conv2dGeometry): Int32Array =>
  Int32Array.of(
    g.batch, g.inChannels, g.inH, g.inW, g.outChannels, g.kernelH, g.kernelW, g.strideH, g.strideW,
    g.padTop, g.padLeft, g.padBottom, g.padRight, g.dilationH, g.dilationW, g.groups, g.outH, g.outW,
  );
