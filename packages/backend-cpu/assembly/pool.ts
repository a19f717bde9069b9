// Max pooling, forward and backward, and the 1x1 pool that only subsamples. Kernels follow the
// (..., tid, nt) convention of kernels.ts.

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

/** The first maximum's step with indices: b where b > a, or where b is NaN and a is not (so the first NaN stays). */
// @ts-ignore: decorator
@inline function firstOf(a: v128, b: v128): v128 {
  return v128.or(f32x4.gt(b, a), v128.and(f32x4.ne(b, b), f32x4.eq(a, a)));
}

/**
 * Max pooling's backward pass: dx [P, H, W] = Σ dy over the windows whose first maximum each cell is
 * (row-major order, the first NaN winning), the geometry at `geom` as `maxPool2d` reads it. Windows
 * that lie whole within a row, at strides 1 and 2, are scanned four at a time with their maxima's
 * indices beside them, the others one by one; then each window's dy is added to its cell in output
 * order. Threads split the P planes, so every cell's sum runs in the same order whoever runs it.
 */
export function maxPool2dBackward(geom: usize, dy: usize, x: usize, dx: usize, tid: i32, nt: i32): void {
  const H = load<i32>(geom, 4), W = load<i32>(geom, 8), OH = load<i32>(geom, 12), OW = load<i32>(geom, 16);
  const kH = load<i32>(geom, 20), kW = load<i32>(geom, 24), sH = load<i32>(geom, 28), sW = load<i32>(geom, 32);
  const pT = load<i32>(geom, 36), pL = load<i32>(geom, 40);
  const plane = H * W, steps = i32x4(0, sW, 2 * sW, 3 * sW);
  // Outputs from `first` on read no column left of 0; up to `last` (exclusive), none right of W.
  const first = (pL + sW - 1) / sW, last = W - kW + pL >= 0 ? (W - kW + pL) / sW + 1 : 0;
  for (let p = cut(load<i32>(geom), 1, tid, nt), p1 = cut(load<i32>(geom), 1, tid + 1, nt); p < p1; p++) {
    const xp = at(x, p * plane), dxp = at(dx, p * plane);
    // Not a float past the plane: the next one may be another thread's.
    let i = 0;
    for (; i + 4 <= plane; i += 4) v128.store(at(dxp, i), f32x4.splat(0));
    for (; i < plane; i++) store<f32>(at(dxp, i), 0);
    for (let oh = 0; oh < OH; oh++) {
      const hs = oh * sH - pT, h0 = max(hs, 0), h1 = min(hs + kH, H);
      const g = at(dy, (p * OH + oh) * OW);
      for (let ow = 0; ow < OW; ) {
        if (sW <= 2 && ow >= first && ow + 4 <= min(last, OW)) {
          // Four whole windows: each lane scans its window from its first cell on.
          const ws = ow * sW - pL;
          let ai = i32x4.add(i32x4.splat(h0 * W + ws), steps);
          const r0 = at(xp, h0 * W + ws);
          let a = sW == 1 ? v128.load(r0) : v128.shuffle<f32>(v128.load(r0), v128.load(r0, 16), 0, 2, 4, 6);
          for (let h = h0; h < h1; h++) {
            for (let q = 0; q < kW; q++) {
              const c = h * W + ws + q, s = at(xp, c);
              const b = sW == 1 ? v128.load(s) : v128.shuffle<f32>(v128.load(s), v128.load(s, 16), 0, 2, 4, 6);
              const take = firstOf(a, b);
              a = v128.bitselect(b, a, take);
              ai = v128.bitselect(i32x4.add(i32x4.splat(c), steps), ai, take);
            }
          }
          const d = v128.load(at(g, ow));
          let o = at(dxp, i32x4.extract_lane(ai, 0));
          store<f32>(o, load<f32>(o) + f32x4.extract_lane(d, 0));
          o = at(dxp, i32x4.extract_lane(ai, 1));
          store<f32>(o, load<f32>(o) + f32x4.extract_lane(d, 1));
          o = at(dxp, i32x4.extract_lane(ai, 2));
          store<f32>(o, load<f32>(o) + f32x4.extract_lane(d, 2));
          o = at(dxp, i32x4.extract_lane(ai, 3));
          store<f32>(o, load<f32>(o) + f32x4.extract_lane(d, 3));
          ow += 4;
          continue;
        }
        const ws = ow * sW - pL, w0 = max(ws, 0), w1 = min(ws + kW, W);
        let best = load<f32>(at(xp, h0 * W + w0)), bi = h0 * W + w0;
        for (let h = h0; h < h1 && best == best; h++) {
          for (let c = h * W + w0, end = h * W + w1; c < end; c++) {
            const v = load<f32>(at(xp, c));
            if (v > best || v != v) {
              best = v;
              bi = c;
              if (v != v) break;
            }
          }
        }
        const o = at(dxp, bi);
        store<f32>(o, load<f32>(o) + load<f32>(at(g, ow)));
        ow++;
      }
    }
  }
}

/**
 * A 1x1 pool (ResNet's option-A shortcut), which only subsamples, the geometry at `geom` as
 * `maxPool2d` reads it: with `forward`, y [P, OH, OW] = x at (oh·sH, ow·sW); else dx [P, H, W] = dy
 * at those cells and 0 elsewhere (y is dy, x is dx). Stride 2 along rows moves as vectors (even
 * lanes of two, or one interleaved with zeros). Threads split the rows written.
 */
export function subsample(geom: usize, x: usize, y: usize, forward: i32, tid: i32, nt: i32): void {
  const P = load<i32>(geom), H = load<i32>(geom, 4), W = load<i32>(geom, 8), OH = load<i32>(geom, 12), OW = load<i32>(geom, 16);
  const sH = load<i32>(geom, 28), sW = load<i32>(geom, 32);
  const zero = f32x4.splat(0);
  if (forward) {
    for (let i = cut(P * OH, 1, tid, nt), i1 = cut(P * OH, 1, tid + 1, nt); i < i1; i++) {
      const src = at(x, ((i / OH) * H + (i % OH) * sH) * W), dst = at(y, i * OW);
      let ow = 0;
      if (sW == 1) for (; ow + 4 <= OW; ow += 4) v128.store(at(dst, ow), v128.load(at(src, ow)));
      else if (sW == 2) {
        for (; ow + 4 <= OW; ow += 4) {
          const s = at(src, 2 * ow);
          v128.store(at(dst, ow), v128.shuffle<f32>(v128.load(s), v128.load(s, 16), 0, 2, 4, 6));
        }
      }
      for (; ow < OW; ow++) store<f32>(at(dst, ow), load<f32>(at(src, ow * sW)));
    }
    return;
  }
  for (let i = cut(P * H, 1, tid, nt), i1 = cut(P * H, 1, tid + 1, nt); i < i1; i++) {
    const h = i % H, dst = at(x, i * W);
    let w = 0;
    if (h % sH == 0 && h / sH < OH) {
      const src = at(y, ((i / H) * OH + h / sH) * OW);
      if (sW == 1) for (; w + 4 <= OW; w += 4) v128.store(at(dst, w), v128.load(at(src, w)));
      else if (sW == 2) {
        for (; w + 8 <= W; w += 8) {
          const d = v128.load(at(src, w >> 1));
          v128.store(at(dst, w), v128.shuffle<f32>(d, zero, 0, 4, 1, 5));
          v128.store(at(dst, w), v128.shuffle<f32>(d, zero, 2, 6, 3, 7), 16);
        }
      }
      for (; w < W; w++) store<f32>(at(dst, w), w % sW == 0 && w / sW < OW ? load<f32>(at(src, w / sW)) : 0);
    } else {
      for (; w + 4 <= W; w += 4) v128.store(at(dst, w), zero);
      for (; w < W; w++) store<f32>(at(dst, w), 0);
    }
  }
}
