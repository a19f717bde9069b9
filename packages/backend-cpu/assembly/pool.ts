// Max pooling's forward pass. Kernels follow the (..., tid, nt) convention of kernels.ts.

import { at, cut } from './common';

/** b where b > a or b is NaN, else a: the scan step of a window's first maximum, NaN winning. */
// @ts-ignore: decorator
@inline function later(a: v128, b: v128): v128 {
  return v128.bitselect(b, a, v128.or(f32x4.gt(b, a), f32x4.ne(b, b)));
}

/**
 * y [P, OH, OW] = the first maximum of each kH x kW window (strides sH, sW; padding pT, pL, never a
 * maximum) in row-major order, NaN winning, as PyTorch scans (so -0 or +0, whichever comes first).
 * Geometry at `geom`, 11 i32: P, H, W, OH, OW, kH, kW, sH, sW, pT, pL. Each input row of an output
 * row's windows is copied into a row of the scratch (column c at pL + c, -∞ at the padding;
 * scratchStride bytes per thread, at least 4·(max(pL + W, (OW - 1)·sW + kW) + 8)), its windows
 * scanned along it, four at a time at strides 1 and 2, and the rows' results in order into y's row.
 * Threads split the P·OH output rows.
 */
export function maxPool2d(geom: usize, x: usize, y: usize, scratch: usize, scratchStride: i32, tid: i32, nt: i32): void {
  const H = load<i32>(geom, 4), W = load<i32>(geom, 8), OH = load<i32>(geom, 12), OW = load<i32>(geom, 16);
  const kH = load<i32>(geom, 20), kW = load<i32>(geom, 24), sH = load<i32>(geom, 28), sW = load<i32>(geom, 32);
  const pT = load<i32>(geom, 36), pL = load<i32>(geom, 40);
  const row = scratch + <usize>tid * scratchStride, reach = (OW - 1) * sW + kW;
  for (let c = 0; c < pL; c++) store<f32>(at(row, c), -Infinity);
  const rows = load<i32>(geom) * OH;
  for (let i = cut(rows, 1, tid, nt), i1 = cut(rows, 1, tid + 1, nt); i < i1; i++) {
    const oh = i % OH, hs = oh * sH - pT, h0 = max(hs, 0), h1 = min(hs + kH, H);
    const out = at(y, i * OW);
    for (let h = h0; h < h1; h++) {
      // Whole vectors of columns: a few past W are read (the arena's slack), then padding overwrites them.
      const src = at(x, ((i / OH) * H + h) * W), dst = at(row, pL);
      for (let c = 0; c < W; c += 4) v128.store(at(dst, c), v128.load(at(src, c)));
      for (let c = pL + W; c < reach; c++) store<f32>(at(row, c), -Infinity);
      let ow = 0;
      if (sW <= 2) {
        for (; ow + 4 <= OW; ow += 4) {
          // Columns sW·(ow + l) + q: a run, or the even lanes of the 8 from there.
          let v = f32x4.splat(-Infinity);
          for (let q = 0; q < kW; q++) {
            const a = at(row, sW * ow + q);
            v = later(v, sW == 1 ? v128.load(a) : v128.shuffle<f32>(v128.load(a), v128.load(a, 16), 0, 2, 4, 6));
          }
          const o = at(out, ow);
          v128.store(o, h == h0 ? v : later(v128.load(o), v));
        }
      }
      for (; ow < OW; ow++) {
        let v: f32 = -Infinity;
        for (let q = 0; q < kW; q++) {
          const e = load<f32>(at(row, ow * sW + q));
          if (e > v || e != e) v = e;
        }
        const o = at(out, ow), b = load<f32>(o);
        if (h == h0 || v > b || v != v) store<f32>(o, v);
      }
    }
  }
}
