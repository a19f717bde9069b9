// Winograd convolution for 3x3, stride-1, undilated, ungrouped convolutions: each m x m block of
// outputs ("tile") comes from an (m + 2) x (m + 2) input patch with (m + 2)² multiplies per (input,
// output) channel pair instead of 9·m². In the transformed domain the conv is (m + 2)² independent
// GEMMs U[ξ] [K x C] · V[ξ] [C x tiles], one per point ξ of the transform, with
//   U = G·g·Gᵀ (filter),  V = Bᵀ·d·B (input patch d),  y = Aᵀ·M·A (M the GEMMs' product at the ξ).
// F(2x2, 3x3) first (16 points):
//   Bᵀ = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1],  G = [1 0 0; ½ ½ ½; ½ -½ ½; 0 0 1],  Aᵀ = [1 1 1 0; 0 1 -1 -1].
// Bᵀ and Aᵀ hold only 0 and ±1 and G only exact halves, so the error stays within a small factor of
// direct summation's. F(4x4, 3x3) (36 points) follows at the end, and the filter gradient, the
// adjoint of either, between them. Kernels follow the (..., tid, nt) convention of kernels.ts;
// pointers are byte addresses, sizes count f32 elements. The first three helpers are kernels.ts's,
// which keeps its own private.

import { at, cut, epiBias, epiFinish, epiScale, epilogueFrom, finish, madd } from './common';

/** Output channels rounded up to whole rows of the register tile (4): U and M carry zero rows past K. */
// @ts-ignore: decorator
@inline function padded(k: i32): i32 {
  return (k + 3) & ~3;
}

/** Tap t of the filters k .. k + 3 (input channel c) as one vector; lanes past K are zero. */
// @ts-ignore: decorator
@inline function taps4(w: usize, k: i32, K: i32, C: i32, c: i32, t: i32): v128 {
  const step = <usize>C * 36;
  const g = at(w, (k * C + c) * 9 + t);
  let v = f32x4.splat(0);
  v = f32x4.replace_lane(v, 0, load<f32>(g));
  if (k + 1 < K) v = f32x4.replace_lane(v, 1, load<f32>(g + step));
  if (k + 2 < K) v = f32x4.replace_lane(v, 2, load<f32>(g + 2 * step));
  if (k + 3 < K) v = f32x4.replace_lane(v, 3, load<f32>(g + 3 * step));
  return v;
}

/**
 * Row i of F(m x m, 3x3)'s G times (a, b, e), as vectors. F(2x2, 3x3): a, (a + b + e)/2,
 * (a - b + e)/2 or e; F(4x4, 3x3): see `gRow4`.
 */
// @ts-ignore: decorator
@inline function gVec(m: i32, a: v128, b: v128, e: v128, i: i32): v128 {
  if (i == 0) return m == 2 ? a : f32x4.mul(a, f32x4.splat(0.25));
  if (i == m + 1) return e;
  if (m == 2) return f32x4.mul(i == 1 ? f32x4.add(f32x4.add(a, b), e) : f32x4.add(f32x4.sub(a, b), e), f32x4.splat(0.5));
  if (i < 3) return f32x4.mul(i == 1 ? f32x4.add(f32x4.add(a, b), e) : f32x4.add(f32x4.sub(a, b), e), f32x4.splat(<f32>(-1.0 / 6)));
  const s = f32x4.add(f32x4.mul(a, f32x4.splat(<f32>(1.0 / 24))), f32x4.mul(e, f32x4.splat(<f32>(1.0 / 6))));
  const t = f32x4.mul(b, f32x4.splat(<f32>(1.0 / 12)));
  return i == 3 ? f32x4.add(s, t) : f32x4.sub(s, t);
}

/**
 * U [(m + 2)²][Kp/4][C][4] = G·g·Gᵀ of w [K, C, 3, 3] for F(m x m, 3x3), rows past K zero: for each
 * ξ, the GEMM's A operand packed as panels of 4 output channels, a panel's four filters in the lanes
 * of f32 vectors. Threads split K. The scalar float64 form took 10 ms at 512x512 channels for
 * F(2x2, 3x3), about a third of a ResNet-50 inference at batch 1 over all its layers; this rounds
 * the sums in f32 (a few units in the last place of U).
 */
export function winogradFilter(w: usize, u: usize, K: i32, C: i32, m: i32, tid: i32, nt: i32): void {
  const Kp = padded(K), plane = (<usize>(Kp * C)) << 2;
  for (let k = cut(Kp, 4, tid, nt), k1 = cut(Kp, 4, tid + 1, nt); k < k1; k += 4) {
    const dst = at(u, k * C);
    if (m == 2) filterPanel(w, K, C, 2, k, dst, plane);
    else filterPanel(w, K, C, 4, k, dst, plane);
  }
}

/** The panel of filters k .. k + 3 of `winogradFilter`, [C][4] per point at dst, points `plane` bytes apart; m a constant where it is inlined. */
// @ts-ignore: decorator
@inline function filterPanel(w: usize, K: i32, C: i32, m: i32, k: i32, dst: usize, plane: usize): void {
  const n = m + 2;
  for (let c = 0; c < C; c++, dst += 16) {
    if (k >= K) {
      for (let xi = 0; xi < n * n; xi++) v128.store(dst + <usize>xi * plane, f32x4.splat(0));
      continue;
    }
    const g22 = taps4(w, k, K, C, c, 8);
    let g00 = g22, g01 = g22, g02 = g22, g10 = g22, g11 = g22, g12 = g22, g20 = g22, g21 = g22;
    if (k + 4 <= K) {
      // Taps 0-3 and 4-7 of the four filters by 4x4 transposes of their runs: a third of the
      // instructions of a gather lane by lane (ResNet-50's filters at batch 1 are transformed on
      // every call).
      const s = <usize>C * 36, p = at(w, (k * C + c) * 9);
      let e0 = v128.load(p), e1 = v128.load(p + s), e2 = v128.load(p + 2 * s), e3 = v128.load(p + 3 * s);
      let t0 = v128.shuffle<f32>(e0, e1, 0, 4, 1, 5), t1 = v128.shuffle<f32>(e2, e3, 0, 4, 1, 5);
      let t2 = v128.shuffle<f32>(e0, e1, 2, 6, 3, 7), t3 = v128.shuffle<f32>(e2, e3, 2, 6, 3, 7);
      g00 = v128.shuffle<f32>(t0, t1, 0, 1, 4, 5);
      g01 = v128.shuffle<f32>(t0, t1, 2, 3, 6, 7);
      g02 = v128.shuffle<f32>(t2, t3, 0, 1, 4, 5);
      g10 = v128.shuffle<f32>(t2, t3, 2, 3, 6, 7);
      e0 = v128.load(p, 16);
      e1 = v128.load(p + s, 16);
      e2 = v128.load(p + 2 * s, 16);
      e3 = v128.load(p + 3 * s, 16);
      t0 = v128.shuffle<f32>(e0, e1, 0, 4, 1, 5);
      t1 = v128.shuffle<f32>(e2, e3, 0, 4, 1, 5);
      t2 = v128.shuffle<f32>(e0, e1, 2, 6, 3, 7);
      t3 = v128.shuffle<f32>(e2, e3, 2, 6, 3, 7);
      g11 = v128.shuffle<f32>(t0, t1, 0, 1, 4, 5);
      g12 = v128.shuffle<f32>(t0, t1, 2, 3, 6, 7);
      g20 = v128.shuffle<f32>(t2, t3, 0, 1, 4, 5);
      g21 = v128.shuffle<f32>(t2, t3, 2, 3, 6, 7);
    } else {
      g00 = taps4(w, k, K, C, c, 0);
      g01 = taps4(w, k, K, C, c, 1);
      g02 = taps4(w, k, K, C, c, 2);
      g10 = taps4(w, k, K, C, c, 3);
      g11 = taps4(w, k, K, C, c, 4);
      g12 = taps4(w, k, K, C, c, 5);
      g20 = taps4(w, k, K, C, c, 6);
      g21 = taps4(w, k, K, C, c, 7);
    }
    // Rows i of G·g (three columns), each then times Gᵀ, written out so that every i and j is a
    // constant: a loop's branches on them cost as much as the arithmetic.
    pointsRow(m, dst, plane, 0, gVec(m, g00, g10, g20, 0), gVec(m, g01, g11, g21, 0), gVec(m, g02, g12, g22, 0));
    pointsRow(m, dst, plane, 1, gVec(m, g00, g10, g20, 1), gVec(m, g01, g11, g21, 1), gVec(m, g02, g12, g22, 1));
    pointsRow(m, dst, plane, 2, gVec(m, g00, g10, g20, 2), gVec(m, g01, g11, g21, 2), gVec(m, g02, g12, g22, 2));
    pointsRow(m, dst, plane, 3, gVec(m, g00, g10, g20, 3), gVec(m, g01, g11, g21, 3), gVec(m, g02, g12, g22, 3));
    if (m == 4) {
      pointsRow(m, dst, plane, 4, gVec(m, g00, g10, g20, 4), gVec(m, g01, g11, g21, 4), gVec(m, g02, g12, g22, 4));
      pointsRow(m, dst, plane, 5, gVec(m, g00, g10, g20, 5), gVec(m, g01, g11, g21, 5), gVec(m, g02, g12, g22, 5));
    }
  }
}

/** Stores row i of G·g·Gᵀ from row (a, b, e) of G·g: its m + 2 points, `plane` bytes apart. */
// @ts-ignore: decorator
@inline function pointsRow(m: i32, dst: usize, plane: usize, i: i32, a: v128, b: v128, e: v128): void {
  const o = dst + <usize>(i * (m + 2)) * plane;
  v128.store(o, gVec(m, a, b, e, 0));
  v128.store(o + plane, gVec(m, a, b, e, 1));
  v128.store(o + 2 * plane, gVec(m, a, b, e, 2));
  v128.store(o + 3 * plane, gVec(m, a, b, e, 3));
  if (m == 4) {
    v128.store(o + 4 * plane, gVec(m, a, b, e, 4));
    v128.store(o + 5 * plane, gVec(m, a, b, e, 5));
  }
}

/** Row i of F(m x m, 3x3)'s G times (a, b, e), in float64. */
// @ts-ignore: decorator
@inline function gRow(m: i32, a: f64, b: f64, e: f64, i: i32): f64 {
  if (m == 4) return gRow4(a, b, e, i);
  return i == 0 ? a : i == 1 ? (a + b + e) * 0.5 : i == 2 ? (a - b + e) * 0.5 : e;
}

/** Four floats of an input row from column `iw` on, zero where a column falls outside [0, W). */
// @ts-ignore: decorator
@inline function rowRun(row: usize, iw: i32, W: i32): v128 {
  const v = v128.load(at(row, iw));
  if (iw >= 0 && iw + 4 <= W) return v;
  return v128.and(v, i32x4.lt_u(i32x4.add(i32x4.splat(iw), i32x4(0, 1, 2, 3)), i32x4.splat(W)));
}

/** Row 0 of Aᵀ·M at column q, M's column q at m with its rows (ξ = q, 4 + q, ...) 4·ms bytes apart: M0q + M1q + M2q. */
// @ts-ignore: decorator
@inline function colSum(m: usize, ms: usize): v128 {
  return f32x4.add(f32x4.add(v128.load(m), v128.load(m + 4 * ms)), v128.load(m + 8 * ms));
}

/** Row 1 of Aᵀ·M at column q, as `colSum` reads M: M1q - M2q - M3q. */
// @ts-ignore: decorator
@inline function colDiff(m: usize, ms: usize): v128 {
  return f32x4.sub(f32x4.sub(v128.load(m + 4 * ms), v128.load(m + 8 * ms)), v128.load(m + 12 * ms));
}

/** The register tile of the GEMMs: dst[4 x 8] (row stride ds bytes) = packed U panel · V[c x 8] over c < C (row stride vs bytes). */
function product(C: i32, pa: usize, pb: usize, vs: usize, dst: usize, ds: usize): void {
  let c00 = f32x4.splat(0), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00;
  for (let p = 0; p < C; p++, pa += 16, pb += vs) {
    const b0 = v128.load(pb), b1 = v128.load(pb, 16);
    let a = v128.load32_splat(pa);
    c00 = madd(a, b0, c00);
    c01 = madd(a, b1, c01);
    a = v128.load32_splat(pa, 4);
    c10 = madd(a, b0, c10);
    c11 = madd(a, b1, c11);
    a = v128.load32_splat(pa, 8);
    c20 = madd(a, b0, c20);
    c21 = madd(a, b1, c21);
    a = v128.load32_splat(pa, 12);
    c30 = madd(a, b0, c30);
    c31 = madd(a, b1, c31);
  }
  v128.store(dst, c00);
  v128.store(dst, c01, 16);
  dst += ds;
  v128.store(dst, c10);
  v128.store(dst, c11, 16);
  dst += ds;
  v128.store(dst, c20);
  v128.store(dst, c21, 16);
  dst += ds;
  v128.store(dst, c30);
  v128.store(dst, c31, 16);
}

// The position (image, row, column of tiles) of a walk over tiles, row of tiles by row, which spares
// the hot loops three divisions a tile.
let walkImg = 0;
let walkRow = 0;
let walkCol = 0;

/** Starts a walk at tile g of P per image, TW per row. */
// @ts-ignore: decorator
@inline function walkFrom(g: i32, P: i32, TW: i32): void {
  walkImg = g / P;
  walkRow = (g % P) / TW;
  walkCol = g % TW;
}

/** Moves the walk on by `step` tiles within a row of tiles (or to its end), TW per row and TH rows per image. */
// @ts-ignore: decorator
@inline function walkOn(step: i32, TW: i32, TH: i32): void {
  walkCol += step;
  if (walkCol == TW) {
    walkCol = 0;
    if (++walkRow == TH) {
      walkRow = 0;
      walkImg++;
    }
  }
}

/**
 * Describes at d the next four tiles of the walk, moving it past the first `live` of them (the rest
 * read as padding): for m x m tiles whose patches start (padTop, padLeft) before them in plane `p`
 * of x [N, planes, H, W], tile l at d + 16·l as the address of its first row (u32 at 0), that row
 * (i32 at 4; H for padding) and its first column (i32 at 8). Four tiles of a group may lie in
 * different rows or images, so any width moves as vectors.
 */
function describe(
  d: usize, live: i32, m: i32, x: usize, planes: i32, p: i32, H: i32, W: i32, padTop: i32, padLeft: i32, TW: i32, TH: i32,
): void {
  for (let l = 0; l < 4; l++, d += 16) {
    const r = l < live ? walkRow * m - padTop : H;
    store<u32>(d, at(x, ((walkImg * planes + p) * H + r) * W));
    store<i32>(d, r, 4);
    store<i32>(d, walkCol * m - padLeft, 8);
    if (l < live) walkOn(1, TW, TH);
  }
}

/** Four floats of row r of a described tile (`describe`) from column `off` of it on, zero outside [0, H) x [0, W). */
// @ts-ignore: decorator
@inline function patchRun(d: usize, r: i32, off: i32, H: i32, W: i32): v128 {
  if (<u32>(load<i32>(d, 4) + r) >= <u32>H) return f32x4.splat(0);
  return rowRun(at(load<u32>(d), r * W), load<i32>(d, 8) + off, W);
}

/**
 * Stores v as four floats of row r of a described output tile, those inside [0, H) x [0, W), through
 * the epilogue's `finish` (its reads past W fall in the next row or the slack after the array).
 */
// @ts-ignore: decorator
@inline function storeRun(d: usize, r: i32, v: v128, H: i32, W: i32): void {
  if (load<i32>(d, 4) + r >= H) return;
  const s = load<i32>(d, 8), o = at(load<u32>(d), r * W + s);
  if (epiFinish) v = finish(v, o);
  if (s + 4 <= W) {
    v128.store(o, v);
    return;
  }
  v128.store32_lane(o, v, 0);
  if (s + 1 < W) v128.store32_lane(o, v, 1, 4);
  if (s + 2 < W) v128.store32_lane(o, v, 2, 8);
}

/**
 * Stores lanes 0 and 1 of v as row r of a described output tile, those inside [0, H) x [0, W),
 * through the epilogue's `finish`.
 */
// @ts-ignore: decorator
@inline function storePair(d: usize, r: i32, v: v128, H: i32, W: i32): void {
  if (load<i32>(d, 4) + r >= H) return;
  const s = load<i32>(d, 8), o = at(load<u32>(d), r * W + s);
  if (epiFinish) v = finish(v, o);
  if (s + 1 < W) v128.store64_lane(o, v, 0);
  else v128.store32_lane(o, v, 0);
}

/**
 * Whether the input transforms may read m x m tiles' patch rows as vectors: they read up to 12 floats
 * past a row's end, 8 before its start (masked out), which the arena's slack allows.
 */
// @ts-ignore: decorator
@inline function vectorRows(m: i32, TW: i32, W: i32, padLeft: i32): bool {
  return padLeft <= 8 && m * TW + 2 - padLeft - W <= 12;
}

/**
 * V[ξ][c][j] = (Bᵀ·d·B)[ξ] for the patches d of tiles b + j, j < cols, of every channel c (planes vp
 * floats apart, rows T); columns past n are zero. The stage holds 64 floats, then 16 of tile
 * descriptors. `rowsIn` (`vectorRows`): each tile's patch rows move as vectors.
 */
function transformInput(
  x: usize, V: usize, vp: i32, T: i32, stage: usize, b: i32, n: i32, cols: i32,
  C: i32, H: i32, W: i32, P: i32, TW: i32, padTop: i32, padLeft: i32, rowsIn: bool,
): void {
  const xs = (<usize>vp) << 2, TH = P / TW, d = at(stage, 64);
  for (let c = 0; c < C; c++) {
    walkFrom(b, P, TW);
    for (let j = 0; j < cols; j += 4) {
      // Bᵀ·d·B: h = d·B row by row into the stage, then Bᵀ·h.
      if (rowsIn && j + 4 <= n && walkCol + 4 <= TW) {
        // Four tiles side by side read 2·4 + 2 adjacent columns.
        const ih = (walkRow << 1) - padTop, iw = (walkCol << 1) - padLeft;
        const row0 = at(x, ((walkImg * C + c) * H + ih) * W);
        walkOn(4, TW, TH);
        for (let r = 0; r < 4; r++) {
          let v0 = f32x4.splat(0), v1 = v0, v2 = v0, v3 = v0;
          if (<u32>(ih + r) < <u32>H) {
            const row = at(row0, r * W);
            v0 = rowRun(row, iw, W);
            v1 = rowRun(row, iw + 4, W);
            v2 = rowRun(row, iw + 2, W);
            v3 = rowRun(row, iw + 6, W);
          }
          // Column q of the four patches, input columns iw + 2·lane + q: even and odd lanes of two
          // runs (one two-source shuffle instruction each on x86).
          columns(
            at(stage, 16 * r), v128.shuffle<f32>(v0, v1, 0, 2, 4, 6), v128.shuffle<f32>(v0, v1, 1, 3, 5, 7),
            v128.shuffle<f32>(v2, v3, 0, 2, 4, 6), v128.shuffle<f32>(v2, v3, 1, 3, 5, 7),
          );
        }
      } else if (rowsIn) {
        describe(d, n - j, 2, x, C, c, H, W, padTop, padLeft, TW, TH);
        for (let r = 0; r < 4; r++) {
          const v0 = patchRun(d, r, 0, H, W), v1 = patchRun(d + 16, r, 0, H, W);
          const v2 = patchRun(d + 32, r, 0, H, W), v3 = patchRun(d + 48, r, 0, H, W);
          // Column q of the four patches: a 4x4 transpose.
          const t0 = v128.shuffle<f32>(v0, v1, 0, 4, 1, 5), t1 = v128.shuffle<f32>(v2, v3, 0, 4, 1, 5);
          const t2 = v128.shuffle<f32>(v0, v1, 2, 6, 3, 7), t3 = v128.shuffle<f32>(v2, v3, 2, 6, 3, 7);
          columns(
            at(stage, 16 * r), v128.shuffle<f32>(t0, t1, 0, 1, 4, 5), v128.shuffle<f32>(t0, t1, 2, 3, 6, 7),
            v128.shuffle<f32>(t2, t3, 0, 1, 4, 5), v128.shuffle<f32>(t2, t3, 2, 3, 6, 7),
          );
        }
      } else {
        for (let l = 0; l < 4; l++) {
          const g = b + j + l, img = g / P, p = g % P;
          const ih = ((p / TW) << 1) - padTop, iw = ((p % TW) << 1) - padLeft;
          const plane = at(x, (img * C + c) * H * W);
          for (let e = 0; e < 16; e++) {
            const r = ih + (e >> 2), s = iw + (e & 3);
            const inside = j + l < n && <u32>r < <u32>H && <u32>s < <u32>W;
            store<f32>(at(stage, 4 * e + l), inside ? load<f32>(at(plane, r * W + s)) : 0);
          }
        }
        for (let r = 0; r < 4; r++) {
          const d = at(stage, 16 * r);
          columns(d, v128.load(d), v128.load(d, 16), v128.load(d, 32), v128.load(d, 48));
        }
      }
      const dst = at(V, c * T + j);
      for (let q = 0; q < 4; q++) {
        const h0 = v128.load(at(stage, 4 * q)), h1 = v128.load(at(stage, 16 + 4 * q));
        const h2 = v128.load(at(stage, 32 + 4 * q)), h3 = v128.load(at(stage, 48 + 4 * q));
        const o = dst + <usize>q * xs;
        v128.store(o, f32x4.sub(h0, h2));
        v128.store(o + 4 * xs, f32x4.add(h1, h2));
        v128.store(o + 8 * xs, f32x4.sub(h2, h1));
        v128.store(o + 12 * xs, f32x4.sub(h1, h3));
      }
    }
  }
}

/** Row h = d·B of four patches' row d = (d0, d1, d2, d3), stored at h. */
// @ts-ignore: decorator
@inline function columns(h: usize, d0: v128, d1: v128, d2: v128, d3: v128): void {
  v128.store(h, f32x4.sub(d0, d2));
  v128.store(h, f32x4.add(d1, d2), 16);
  v128.store(h, f32x4.sub(d2, d1), 32);
  v128.store(h, f32x4.sub(d1, d3), 48);
}

/**
 * y [N,K,OH,OW] = conv(x [N,C,H,W], U) for a 3x3 kernel at stride 1 with padding (padTop, padLeft),
 * U from `winogradFilter` (m = 2). Threads split the N·⌈OH/2⌉·⌈OW/2⌉ tiles in runs of four; each thread
 * works through its run in blocks of T tiles, T a multiple of 8 set by its scratch (scratchStride
 * bytes = 4·(16·(C + Kp)·T + 592): V [16][C][T], M [16][Kp][T], an 80-float stage), so V and M of a
 * block stay in cache between the transforms and the GEMMs. The epilogue at `epi` (kernels.ts's
 * `conv2d` says how; 0: none) is applied as the output transform stores each tile.
 */
export function winogradConv(
  x: usize, u: usize, y: usize, scratch: usize, scratchStride: i32,
  N: i32, C: i32, H: i32, W: i32, K: i32, OH: i32, OW: i32, padTop: i32, padLeft: i32, epi: usize, tid: i32, nt: i32,
): void {
  epilogueFrom(epi, y);
  const Kp = padded(K), TW = (OW + 1) >> 1, TH = (OH + 1) >> 1, P = TH * TW;
  const T = (((scratchStride >> 2) - 592) / (16 * (C + Kp))) & ~7;
  // The 16 planes of V and M sit 16 floats further apart than their size: the transforms touch all
  // 16 at once, and planes a multiple of 4 KiB apart would fall into one cache set.
  const vp = C * T + 16, mp = Kp * T + 16;
  const V = scratch + <usize>tid * scratchStride, M = at(V, 16 * vp), stage = at(M, 16 * mp);
  const vs = (<usize>T) << 2, d = at(stage, 64);
  const rowsIn = vectorRows(2, TW, W, padLeft);
  const t1 = cut(N * P, 4, tid + 1, nt);
  for (let b = cut(N * P, 4, tid, nt); b < t1; b += T) {
    const n = min(T, t1 - b), cols = (n + 7) & ~7;
    transformInput(x, V, vp, T, stage, b, n, cols, C, H, W, P, TW, padTop, padLeft, rowsIn);
    // M[ξ] = U[ξ] · V[ξ]: 16 GEMMs [Kp x C] · [C x cols].
    for (let xi = 0; xi < 16; xi++) {
      const ua = at(u, xi * Kp * C), va = at(V, xi * vp), ma = at(M, xi * mp);
      for (let j = 0; j < cols; j += 8) {
        for (let k = 0; k < Kp; k += 4) product(C, at(ua, k * C), at(va, j), vs, at(ma, k * T + j), vs);
      }
    }
    outputs(M, (<usize>mp) << 2, T, d, y, b, n, 0, K, K, OH, OW, P, TW, TH);
  }
}

/**
 * y = Aᵀ·M·A of F(2x2, 3x3) for tiles b .. b + n - 1 and output channels [k0, k1), four tiles at a
 * time, through the epilogue (the bias added to the tiles, `finish` as they are stored): M's row for
 * channel k at M + 4·(k - k0)·T bytes, its 16 planes ms bytes apart; tile descriptors at d.
 */
function outputs(
  M: usize, ms: usize, T: i32, d: usize, y: usize, b: i32, n: i32, k0: i32, k1: i32, K: i32, OH: i32, OW: i32, P: i32, TW: i32, TH: i32,
): void {
  for (let k = k0; k < k1; k++) {
    const bias = epiBias != 0, bv = bias ? v128.load32_splat(at(epiBias, k)) : f32x4.splat(0);
    const scaled = epiScale != 0, sv = scaled ? v128.load32_splat(at(epiScale, k)) : f32x4.splat(1);
    walkFrom(b, P, TW);
    for (let j = 0; j < n; j += 4) {
      const m = at(M, (k - k0) * T + j);
      // s = Aᵀ·M (2x4), by columns q.
      const s00 = colSum(m, ms), s01 = colSum(m + ms, ms), s02 = colSum(m + 2 * ms, ms), s03 = colSum(m + 3 * ms, ms);
      const s10 = colDiff(m, ms), s11 = colDiff(m + ms, ms), s12 = colDiff(m + 2 * ms, ms), s13 = colDiff(m + 3 * ms, ms);
      let y00 = f32x4.add(f32x4.add(s00, s01), s02), y01 = f32x4.sub(f32x4.sub(s01, s02), s03);
      let y10 = f32x4.add(f32x4.add(s10, s11), s12), y11 = f32x4.sub(f32x4.sub(s11, s12), s13);
      if (scaled) {
        y00 = f32x4.mul(y00, sv);
        y01 = f32x4.mul(y01, sv);
        y10 = f32x4.mul(y10, sv);
        y11 = f32x4.mul(y11, sv);
      }
      if (bias) {
        y00 = f32x4.add(y00, bv);
        y01 = f32x4.add(y01, bv);
        y10 = f32x4.add(y10, bv);
        y11 = f32x4.add(y11, bv);
      }
      if (j + 4 <= n && 2 * (walkCol + 4) <= OW) {
        // Four whole tiles side by side: two runs of 8 outputs.
        const oh = walkRow << 1;
        const r0 = at(y, ((walkImg * K + k) * OH + oh) * OW + (walkCol << 1));
        walkOn(4, TW, TH);
        let a = v128.shuffle<f32>(y00, y01, 0, 4, 1, 5), e = v128.shuffle<f32>(y00, y01, 2, 6, 3, 7);
        if (epiFinish) {
          a = finish(a, r0);
          e = finish(e, r0 + 16);
        }
        v128.store(r0, a);
        v128.store(r0, e, 16);
        if (oh + 1 < OH) {
          const r1 = at(r0, OW);
          a = v128.shuffle<f32>(y10, y11, 0, 4, 1, 5);
          e = v128.shuffle<f32>(y10, y11, 2, 6, 3, 7);
          if (epiFinish) {
            a = finish(a, r1);
            e = finish(e, r1 + 16);
          }
          v128.store(r1, a);
          v128.store(r1, e, 16);
        }
        continue;
      }
      // Row e of tile l: lanes l of ye0 and ye1, moved to lanes 0 and 1.
      describe(d, n - j, 2, y, K, k, OH, OW, 0, 0, TW, TH);
      const r00 = v128.shuffle<f32>(y00, y01, 0, 4, 1, 5), r01 = v128.shuffle<f32>(y00, y01, 2, 6, 3, 7);
      const r10 = v128.shuffle<f32>(y10, y11, 0, 4, 1, 5), r11 = v128.shuffle<f32>(y10, y11, 2, 6, 3, 7);
      storePair(d, 0, r00, OH, OW);
      storePair(d + 16, 0, v128.shuffle<f32>(r00, r00, 2, 3, 2, 3), OH, OW);
      storePair(d + 32, 0, r01, OH, OW);
      storePair(d + 48, 0, v128.shuffle<f32>(r01, r01, 2, 3, 2, 3), OH, OW);
      storePair(d, 1, r10, OH, OW);
      storePair(d + 16, 1, v128.shuffle<f32>(r10, r10, 2, 3, 2, 3), OH, OW);
      storePair(d + 32, 1, r11, OH, OW);
      storePair(d + 48, 1, v128.shuffle<f32>(r11, r11, 2, 3, 2, 3), OH, OW);
    }
  }
}

/**
 * `winogradConv` for few tiles and many channels (the deep layers of an inference at batch 1), from
 * the filters w [K, C, 3, 3] themselves: there every thread streamed all of U (16·Kp·C floats,
 * written by `winogradFilter`) past its few tiles. Here threads split the output channels instead,
 * each transforms the input of all T = N·⌈OH/2⌉·⌈OW/2⌉ tiles, and each panel of four filters is
 * transformed just before its GEMMs, so U never leaves the cache. Scratch per thread
 * (scratchStride bytes): V [16][C][T8] (T8 = T rounded up to 8; planes 16 floats apart), the panel's
 * U [16][C][4], its M [16][4][T8] (planes 16 floats apart) and an 80-float stage. The epilogue at
 * `epi` is applied as in `winogradConv`. `kept`, when not 0, is all of U as `winogradFilter` lays it
 * out, made by an earlier call: the panels read it instead of transforming w.
 */
export function winogradConvPanels(
  x: usize, w: usize, y: usize, scratch: usize, scratchStride: i32,
  N: i32, C: i32, H: i32, W: i32, K: i32, OH: i32, OW: i32, padTop: i32, padLeft: i32, epi: usize, kept: usize, tid: i32, nt: i32,
): void {
  epilogueFrom(epi, y);
  panels(x, w, y, scratch, scratchStride, N, C, H, W, K, OH, OW, padTop, padLeft, 2, kept, tid, nt);
}

/** `winogradConvPanels` by F(4x4, 3x3): 36 points, T = N·⌈OH/4⌉·⌈OW/4⌉ tiles and a 176-float stage. */
export function winograd4ConvPanels(
  x: usize, w: usize, y: usize, scratch: usize, scratchStride: i32,
  N: i32, C: i32, H: i32, W: i32, K: i32, OH: i32, OW: i32, padTop: i32, padLeft: i32, epi: usize, kept: usize, tid: i32, nt: i32,
): void {
  epilogueFrom(epi, y);
  panels(x, w, y, scratch, scratchStride, N, C, H, W, K, OH, OW, padTop, padLeft, 4, kept, tid, nt);
}

/** The two panel kernels, m a constant where inlined. */
// @ts-ignore: decorator
@inline function panels(
  x: usize, w: usize, y: usize, scratch: usize, scratchStride: i32,
  N: i32, C: i32, H: i32, W: i32, K: i32, OH: i32, OW: i32, padTop: i32, padLeft: i32, m: i32, kept: usize, tid: i32, nt: i32,
): void {
  const points = (m + 2) * (m + 2), TW = (OW + m - 1) / m, TH = (OH + m - 1) / m, P = TH * TW, n = N * P, T = (n + 7) & ~7;
  const vp = C * T + 16, mp = 4 * T + 16, vs = (<usize>T) << 2;
  const V = scratch + <usize>tid * scratchStride, U = at(V, points * vp), M = at(U, 4 * points * C), stage = at(M, points * mp);
  const k1 = cut(padded(K), 4, tid + 1, nt), rowsIn = vectorRows(m, TW, W, padLeft);
  let k = cut(padded(K), 4, tid, nt);
  if (k < k1) {
    if (m == 2) transformInput(x, V, vp, T, stage, 0, n, T, C, H, W, P, TW, padTop, padLeft, rowsIn);
    else transformInput4(x, V, vp, T, stage, 0, n, T, C, H, W, P, TW, padTop, padLeft, rowsIn);
  }
  for (; k < k1; k += 4) {
    if (!kept) filterPanel(w, K, C, m, k, U, (<usize>C) << 4);
    for (let xi = 0; xi < points; xi++) {
      const ua = kept ? at(kept, (xi * padded(K) + k) * C) : at(U, xi * 4 * C), va = at(V, xi * vp), ma = at(M, xi * mp);
      for (let j = 0; j < T; j += 8) product(C, ua, at(va, j), vs, at(ma, j), vs);
    }
    if (m == 2) outputs(M, (<usize>mp) << 2, T, at(stage, 64), y, 0, n, k, min(k + 4, K), K, OH, OW, P, TW, TH);
    else outputs4(M, (<usize>mp) << 2, T, stage, y, 0, n, k, min(k + 4, K), K, OH, OW, P, TW, TH);
  }
}

// --- filter gradient ----------------------------------------------------------------------------
// The adjoint of the forward pass: with D = A·dy·Aᵀ per tile (the gradient of M), dU[ξ] = Σ_tiles
// D[ξ]·V[ξ]ᵀ, (m + 2)² GEMMs [K x tiles]·[tiles x C] that reduce over the tiles, and dw = Gᵀ·dU·G.

/** Σ_j a[j]·b[j] over `n` floats (a multiple of 4), as a vector of four partial sums. */
// @ts-ignore: decorator
@inline function dot(a: usize, b: usize, n: i32): v128 {
  let acc = f32x4.splat(0);
  for (let j = 0; j < n; j += 4) acc = madd(v128.load(at(a, j)), v128.load(at(b, j)), acc);
  return acc;
}

/** The sum of a vector's lanes. */
// @ts-ignore: decorator
@inline function lanes(v: v128): f32 {
  const h = f32x4.add(v, v128.shuffle<f32>(v, v, 2, 3, 0, 1));
  return f32x4.extract_lane(h, 0) + f32x4.extract_lane(h, 1);
}

/** The sums of the lanes of a, b, c and e, as one vector. */
// @ts-ignore: decorator
@inline function sum4(a: v128, b: v128, c: v128, e: v128): v128 {
  const ab = f32x4.add(v128.shuffle<f32>(a, b, 0, 1, 4, 5), v128.shuffle<f32>(a, b, 2, 3, 6, 7));
  const ce = f32x4.add(v128.shuffle<f32>(c, e, 0, 1, 4, 5), v128.shuffle<f32>(c, e, 2, 3, 6, 7));
  return f32x4.add(v128.shuffle<f32>(ab, ce, 0, 2, 4, 6), v128.shuffle<f32>(ab, ce, 1, 3, 5, 7));
}

/**
 * part[k][c] += Σ_j d[k][j]·v[c][j] over j < n (a multiple of 4), rows of d and v T floats apart,
 * part rows C floats apart: two rows of d against four of v at a time, eight vector sums in registers.
 */
function reduceTiles(d: usize, v: usize, T: i32, n: i32, part: usize, K: i32, C: i32): void {
  const rs = (<usize>T) << 2;
  let k = 0;
  for (; k + 2 <= K; k += 2) {
    const d0 = at(d, k * T), d1 = d0 + rs;
    let c = 0;
    for (; c + 4 <= C; c += 4) {
      const v0 = at(v, c * T), v1 = v0 + rs, v2 = v1 + rs, v3 = v2 + rs;
      let a00 = f32x4.splat(0), a01 = a00, a02 = a00, a03 = a00, a10 = a00, a11 = a00, a12 = a00, a13 = a00;
      for (let o: usize = 0, end = (<usize>n) << 2; o < end; o += 16) {
        const x0 = v128.load(d0 + o), x1 = v128.load(d1 + o);
        let b = v128.load(v0 + o);
        a00 = madd(x0, b, a00);
        a10 = madd(x1, b, a10);
        b = v128.load(v1 + o);
        a01 = madd(x0, b, a01);
        a11 = madd(x1, b, a11);
        b = v128.load(v2 + o);
        a02 = madd(x0, b, a02);
        a12 = madd(x1, b, a12);
        b = v128.load(v3 + o);
        a03 = madd(x0, b, a03);
        a13 = madd(x1, b, a13);
      }
      const p0 = at(part, k * C + c), p1 = at(p0, C);
      v128.store(p0, f32x4.add(v128.load(p0), sum4(a00, a01, a02, a03)));
      v128.store(p1, f32x4.add(v128.load(p1), sum4(a10, a11, a12, a13)));
    }
    for (; c < C; c++) {
      const p0 = at(part, k * C + c);
      store<f32>(p0, load<f32>(p0) + lanes(dot(d0, at(v, c * T), n)));
      store<f32>(at(p0, C), load<f32>(at(p0, C)) + lanes(dot(d1, at(v, c * T), n)));
    }
  }
  for (; k < K; k++) {
    for (let c = 0; c < C; c++) {
      const p0 = at(part, k * C + c);
      store<f32>(p0, load<f32>(p0) + lanes(dot(at(d, k * T), at(v, c * T), n)));
    }
  }
}

/**
 * One thread's part of the filter gradient of a 3x3, stride-1 conv with padding (padTop, padLeft)
 * by F(m x m, 3x3), m = 2 or 4, with (m + 2)² points ξ: dU [points][K][C] = Σ over its tiles (the
 * split of `winogradConv`) of D[ξ]·V[ξ]ᵀ, written to `part` (partStride bytes per thread). Scratch
 * as the forward kernel's, with D [points][Kp][T] in M's place. `winogradFilterGrad` adds the parts
 * and turns them into dw.
 */
export function winogradBackwardFilter(
  x: usize, dy: usize, part: usize, partStride: i32, scratch: usize, scratchStride: i32,
  N: i32, C: i32, H: i32, W: i32, K: i32, OH: i32, OW: i32, padTop: i32, padLeft: i32, m: i32, tid: i32, nt: i32,
): void {
  const points = (m + 2) * (m + 2);
  const Kp = padded(K), TW = (OW + m - 1) / m, TH = (OH + m - 1) / m, P = TH * TW;
  const T = (((scratchStride >> 2) - 32 * points - (m == 2 ? 80 : 176)) / (points * (C + Kp))) & ~7;
  const vp = C * T + 16, dp = Kp * T + 16;
  const V = scratch + <usize>tid * scratchStride, D = at(V, points * vp), stage = at(D, points * dp);
  part += <usize>tid * partStride;
  for (let i = 0, e = points * K * C; i < e; i++) store<f32>(at(part, i), 0);
  const t1 = cut(N * P, 4, tid + 1, nt);
  for (let b = cut(N * P, 4, tid, nt); b < t1; b += T) {
    const n = min(T, t1 - b), cols = (n + 3) & ~3;
    if (m == 2) {
      transformInput(x, V, vp, T, stage, b, n, cols, C, H, W, P, TW, padTop, padLeft, vectorRows(2, TW, W, padLeft));
      transformGrad(dy, D, dp, T, stage, b, n, cols, K, OH, OW, P, TW);
    } else {
      transformInput4(x, V, vp, T, stage, b, n, cols, C, H, W, P, TW, padTop, padLeft, vectorRows(4, TW, W, padLeft));
      transformGrad4(dy, D, dp, T, stage, b, n, cols, K, OH, OW, P, TW);
    }
    for (let xi = 0; xi < points; xi++) reduceTiles(at(D, xi * dp), at(V, xi * vp), T, cols, at(part, xi * K * C), K, C);
  }
}

/**
 * D[ξ][k][j] = (A·dy·Aᵀ)[ξ] of the 2x2 output gradients of tiles b + j, j < cols, zero past the edges
 * and past n; tile descriptors at stage + 64 floats.
 */
function transformGrad(dy: usize, D: usize, dp: i32, T: i32, stage: usize, b: i32, n: i32, cols: i32, K: i32, OH: i32, OW: i32, P: i32, TW: i32): void {
  const TH = P / TW, ds = (<usize>dp) << 2, d = at(stage, 64);
  for (let k = 0; k < K; k++) {
    walkFrom(b, P, TW);
    for (let j = 0; j < cols; j += 4) {
      // Rows 0 (u) and 1 (w) of the four tiles, two floats each: runs of 8 for four whole tiles side
      // by side, else the first two lanes of each tile's runs.
      let u0 = f32x4.splat(0), u1 = u0, w0 = u0, w1 = u0;
      if (j + 4 <= n && 2 * (walkCol + 4) <= OW) {
        const oh = walkRow << 1;
        const r0 = at(dy, ((walkImg * K + k) * OH + oh) * OW + (walkCol << 1));
        walkOn(4, TW, TH);
        u0 = v128.load(r0);
        u1 = v128.load(r0, 16);
        if (oh + 1 < OH) {
          w0 = v128.load(at(r0, OW));
          w1 = v128.load(at(r0, OW), 16);
        }
      } else {
        describe(d, n - j, 2, dy, K, k, OH, OW, 0, 0, TW, TH);
        u0 = v128.shuffle<f32>(patchRun(d, 0, 0, OH, OW), patchRun(d + 16, 0, 0, OH, OW), 0, 1, 4, 5);
        u1 = v128.shuffle<f32>(patchRun(d + 32, 0, 0, OH, OW), patchRun(d + 48, 0, 0, OH, OW), 0, 1, 4, 5);
        w0 = v128.shuffle<f32>(patchRun(d, 1, 0, OH, OW), patchRun(d + 16, 1, 0, OH, OW), 0, 1, 4, 5);
        w1 = v128.shuffle<f32>(patchRun(d + 32, 1, 0, OH, OW), patchRun(d + 48, 1, 0, OH, OW), 0, 1, 4, 5);
      }
      const y00 = v128.shuffle<f32>(u0, u1, 0, 2, 4, 6), y01 = v128.shuffle<f32>(u0, u1, 1, 3, 5, 7);
      const y10 = v128.shuffle<f32>(w0, w1, 0, 2, 4, 6), y11 = v128.shuffle<f32>(w0, w1, 1, 3, 5, 7);
      // Rows of A·dy: (y0·), (y0· + y1·), (y0· - y1·), (-y1·); each row (p, q) times Aᵀ: (p, p + q, p - q, -q).
      const dst = at(D, k * T + j);
      spreadRow(dst, ds, y00, y01);
      spreadRow(dst + 4 * ds, ds, f32x4.add(y00, y10), f32x4.add(y01, y11));
      spreadRow(dst + 8 * ds, ds, f32x4.sub(y00, y10), f32x4.sub(y01, y11));
      spreadRow(dst + 12 * ds, ds, f32x4.neg(y10), f32x4.neg(y11));
    }
  }
}

/** Stores the row (p, p + q, p - q, -q) of D at dst, its entries ds bytes apart. */
// @ts-ignore: decorator
@inline function spreadRow(dst: usize, ds: usize, p: v128, q: v128): void {
  v128.store(dst, p);
  v128.store(dst + ds, f32x4.add(p, q));
  v128.store(dst + 2 * ds, f32x4.sub(p, q));
  v128.store(dst + 3 * ds, f32x4.neg(q));
}

/**
 * dw [K, C, 3, 3] = Gᵀ·dU·G of F(m x m, 3x3) with dU the sum of `nparts` parts [(m + 2)²][K][C]
 * (partStride floats apart, added in order), in float64 and rounded once. Threads split K·C.
 */
export function winogradFilterGrad(dw: usize, parts: usize, partStride: i32, nparts: i32, K: i32, C: i32, m: i32, tid: i32, nt: i32): void {
  const plane = K * C;
  for (let e = cut(plane, 1, tid, nt), e1 = cut(plane, 1, tid + 1, nt); e < e1; e++) {
    const src = at(parts, e), dst = at(dw, 9 * e);
    for (let r = 0; r < 3; r++) {
      // Row r of Gᵀ·dU (m + 2 entries), then times G.
      const t0 = gtAt(m, src, partStride, nparts, plane, r, 0), t1 = gtAt(m, src, partStride, nparts, plane, r, 1);
      const t2 = gtAt(m, src, partStride, nparts, plane, r, 2), t3 = gtAt(m, src, partStride, nparts, plane, r, 3);
      const t4 = m == 4 ? gtAt(m, src, partStride, nparts, plane, r, 4) : 0;
      const t5 = m == 4 ? gtAt(m, src, partStride, nparts, plane, r, 5) : 0;
      for (let q = 0; q < 3; q++) {
        let s = t0 * gAt(m, 0, q) + t1 * gAt(m, 1, q) + t2 * gAt(m, 2, q) + t3 * gAt(m, 3, q);
        if (m == 4) s += t4 * gAt(m, 4, q) + t5 * gAt(m, 5, q);
        store<f32>(at(dst, 3 * r + q), <f32>s);
      }
    }
  }
}

/** Element (i, q) of F(m x m, 3x3)'s G. */
// @ts-ignore: decorator
@inline function gAt(m: i32, i: i32, q: i32): f64 {
  return gRow(m, q == 0 ? 1 : 0, q == 1 ? 1 : 0, q == 2 ? 1 : 0, i);
}

/** Element (r, j) of Gᵀ·dU, dU[ξ] at src + ξ·plane floats summed over the parts. */
function gtAt(m: i32, src: usize, partStride: i32, nparts: i32, plane: i32, r: i32, j: i32): f64 {
  let s: f64 = 0;
  for (let i = 0; i < m + 2; i++) s += gAt(m, i, r) * partsSum(src, partStride, nparts, ((m + 2) * i + j) * plane);
  return s;
}

/** Σ over the parts of element i of each, in order, in float64. */
function partsSum(src: usize, partStride: i32, nparts: i32, i: i32): f64 {
  let s: f64 = 0;
  for (let t = 0; t < nparts; t++) s += <f64>load<f32>(at(src, t * partStride + i));
  return s;
}

// --- F(4x4, 3x3) --------------------------------------------------------------------------------
// Each 4x4 block of outputs from a 6x6 patch: 36 GEMMs, 2.25 multiplies per output and channel pair
// against F(2x2, 3x3)'s 4, with transforms on the points 0, ±1, ±2 and ∞:
//   Bᵀ = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1],
//   G = [¼ 0 0; -⅙ -⅙ -⅙; -⅙ ⅙ -⅙; 1/24 1/12 ⅙; 1/24 -1/12 ⅙; 0 0 1],
//   Aᵀ = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1].
// Their larger entries cost accuracy (winograd.test.ts measures it). Layouts as in F(2x2, 3x3), with
// 36 planes; the stage holds 160 floats, then 16 of tile descriptors.

/** Row i of G times (a, b, e), in float64. */
// @ts-ignore: decorator
@inline function gRow4(a: f64, b: f64, e: f64, i: i32): f64 {
  if (i == 0) return a * 0.25;
  if (i == 1) return -(a + b + e) / 6;
  if (i == 2) return -(a - b + e) / 6;
  if (i == 3) return a / 24 + b / 12 + e / 6;
  if (i == 4) return a / 24 - b / 12 + e / 6;
  return e;
}

/** Bᵀ·d of six vectors, stored at dst, dst + step, ... */
// @ts-ignore: decorator
@inline function inputRow4(dst: usize, step: usize, d0: v128, d1: v128, d2: v128, d3: v128, d4: v128, d5: v128): void {
  const four = f32x4.splat(4), five = f32x4.splat(5);
  const a = f32x4.sub(d4, f32x4.mul(four, d2)), b = f32x4.sub(d3, f32x4.mul(four, d1));
  const c = f32x4.sub(d4, d2), e = f32x4.mul(f32x4.splat(2), f32x4.sub(d3, d1));
  v128.store(dst, f32x4.add(f32x4.sub(f32x4.mul(four, d0), f32x4.mul(five, d2)), d4));
  v128.store(dst + step, f32x4.add(a, b));
  v128.store(dst + 2 * step, f32x4.sub(a, b));
  v128.store(dst + 3 * step, f32x4.add(c, e));
  v128.store(dst + 4 * step, f32x4.sub(c, e));
  v128.store(dst + 5 * step, f32x4.add(f32x4.sub(f32x4.mul(four, d1), f32x4.mul(five, d3)), d5));
}

/** Aᵀ·m of six vectors, stored at dst, dst + step, ... */
// @ts-ignore: decorator
@inline function outputRow4(dst: usize, step: usize, m0: v128, m1: v128, m2: v128, m3: v128, m4: v128, m5: v128): void {
  const a = f32x4.add(m1, m2), b = f32x4.sub(m1, m2), c = f32x4.add(m3, m4), e = f32x4.sub(m3, m4);
  v128.store(dst, f32x4.add(f32x4.add(m0, a), c));
  v128.store(dst + step, f32x4.add(b, f32x4.mul(f32x4.splat(2), e)));
  v128.store(dst + 2 * step, f32x4.add(a, f32x4.mul(f32x4.splat(4), c)));
  v128.store(dst + 3 * step, f32x4.add(f32x4.add(b, f32x4.mul(f32x4.splat(8), e)), m5));
}

/**
 * `transformInput` for F(4x4, 3x3): V[ξ][c][j] = (Bᵀ·d·B)[ξ] of the 6x6 patches, h = d·B row by row
 * into the stage (row r at 24·r floats), then Bᵀ·h by columns; tile descriptors at stage + 160 floats.
 */
function transformInput4(
  x: usize, V: usize, vp: i32, T: i32, stage: usize, b: i32, n: i32, cols: i32,
  C: i32, H: i32, W: i32, P: i32, TW: i32, padTop: i32, padLeft: i32, rowsIn: bool,
): void {
  const TH = P / TW, xs = (<usize>vp) << 2, d = at(stage, 160);
  for (let c = 0; c < C; c++) {
    walkFrom(b, P, TW);
    for (let j = 0; j < cols; j += 4) {
      if (rowsIn) {
        // Four tiles side by side read 4·4 + 2 adjacent columns; others are read tile by tile.
        const run = j + 4 <= n && walkCol + 4 <= TW;
        const ih = (walkRow << 2) - padTop, iw = (walkCol << 2) - padLeft;
        const row0 = at(x, ((walkImg * C + c) * H + ih) * W);
        if (run) walkOn(4, TW, TH);
        else describe(d, n - j, 4, x, C, c, H, W, padTop, padLeft, TW, TH);
        for (let r = 0; r < 6; r++) {
          let a0 = f32x4.splat(0), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
          if (!run) {
            a0 = patchRun(d, r, 0, H, W);
            a1 = patchRun(d + 16, r, 0, H, W);
            a2 = patchRun(d + 32, r, 0, H, W);
            a3 = patchRun(d + 48, r, 0, H, W);
            b0 = patchRun(d, r, 2, H, W);
            b1 = patchRun(d + 16, r, 2, H, W);
            b2 = patchRun(d + 32, r, 2, H, W);
            b3 = patchRun(d + 48, r, 2, H, W);
          } else if (<u32>(ih + r) < <u32>H) {
            const row = at(row0, r * W);
            a0 = rowRun(row, iw, W);
            a1 = rowRun(row, iw + 4, W);
            a2 = rowRun(row, iw + 8, W);
            a3 = rowRun(row, iw + 12, W);
            b0 = rowRun(row, iw + 2, W);
            b1 = rowRun(row, iw + 6, W);
            b2 = rowRun(row, iw + 10, W);
            b3 = rowRun(row, iw + 14, W);
          }
          // Column q of the four patches by 4x4 transposes: q = 0, 1 of the runs from their column 0,
          // q = 2..5 of those from column 2.
          const s01 = v128.shuffle<f32>(a0, a1, 0, 4, 1, 5), s23 = v128.shuffle<f32>(a2, a3, 0, 4, 1, 5);
          const u01 = v128.shuffle<f32>(b0, b1, 0, 4, 1, 5), u23 = v128.shuffle<f32>(b2, b3, 0, 4, 1, 5);
          const w01 = v128.shuffle<f32>(b0, b1, 2, 6, 3, 7), w23 = v128.shuffle<f32>(b2, b3, 2, 6, 3, 7);
          inputRow4(
            at(stage, 24 * r), 16,
            v128.shuffle<f32>(s01, s23, 0, 1, 4, 5), v128.shuffle<f32>(s01, s23, 2, 3, 6, 7),
            v128.shuffle<f32>(u01, u23, 0, 1, 4, 5), v128.shuffle<f32>(u01, u23, 2, 3, 6, 7),
            v128.shuffle<f32>(w01, w23, 0, 1, 4, 5), v128.shuffle<f32>(w01, w23, 2, 3, 6, 7),
          );
        }
      } else {
        for (let l = 0; l < 4; l++) {
          const g = b + j + l, p = g % P;
          const ih = ((p / TW) << 2) - padTop, iw = ((p % TW) << 2) - padLeft;
          const plane = at(x, ((g / P) * C + c) * H * W);
          for (let e = 0; e < 36; e++) {
            const r = ih + e / 6, s = iw + e % 6;
            const inside = j + l < n && <u32>r < <u32>H && <u32>s < <u32>W;
            store<f32>(at(stage, 4 * e + l), inside ? load<f32>(at(plane, r * W + s)) : 0);
          }
        }
        for (let r = 0; r < 6; r++) {
          const d = at(stage, 24 * r);
          inputRow4(d, 16, v128.load(d), v128.load(d, 16), v128.load(d, 32), v128.load(d, 48), v128.load(d, 64), v128.load(d, 80));
        }
      }
      const dst = at(V, c * T + j);
      for (let q = 0; q < 6; q++) {
        const h = at(stage, 4 * q);
        inputRow4(dst + <usize>q * xs, 6 * xs, v128.load(h), v128.load(h, 96), v128.load(h, 192), v128.load(h, 288), v128.load(h, 384), v128.load(h, 480));
      }
    }
  }
}

/**
 * `winogradConv` by F(4x4, 3x3): tiles are 4x4 outputs, U from `winogradFilter` (m = 4), and the scratch
 * holds V [36][C][T], M [36][Kp][T] (planes 16 floats apart) and a 176-float stage:
 * scratchStride = 4·(36·(C + Kp)·T + 1328) bytes. The epilogue at `epi` is applied as in `winogradConv`.
 */
export function winograd4Conv(
  x: usize, u: usize, y: usize, scratch: usize, scratchStride: i32,
  N: i32, C: i32, H: i32, W: i32, K: i32, OH: i32, OW: i32, padTop: i32, padLeft: i32, epi: usize, tid: i32, nt: i32,
): void {
  epilogueFrom(epi, y);
  const Kp = padded(K), TW = (OW + 3) >> 2, TH = (OH + 3) >> 2, P = TH * TW;
  const T = (((scratchStride >> 2) - 1328) / (36 * (C + Kp))) & ~7;
  const vp = C * T + 16, mp = Kp * T + 16;
  const V = scratch + <usize>tid * scratchStride, M = at(V, 36 * vp), stage = at(M, 36 * mp);
  const vs = (<usize>T) << 2, ms = (<usize>mp) << 2;
  const rowsIn = vectorRows(4, TW, W, padLeft);
  const t1 = cut(N * P, 4, tid + 1, nt);
  for (let b = cut(N * P, 4, tid, nt); b < t1; b += T) {
    const n = min(T, t1 - b), cols = (n + 7) & ~7;
    transformInput4(x, V, vp, T, stage, b, n, cols, C, H, W, P, TW, padTop, padLeft, rowsIn);
    for (let xi = 0; xi < 36; xi++) {
      const ua = at(u, xi * Kp * C), va = at(V, xi * vp), ma = at(M, xi * mp);
      for (let j = 0; j < cols; j += 8) {
        for (let k = 0; k < Kp; k += 4) product(C, at(ua, k * C), at(va, j), vs, at(ma, k * T + j), vs);
      }
    }
    outputs4(M, ms, T, stage, y, b, n, 0, K, K, OH, OW, P, TW, TH);
  }
}

/**
 * y = Aᵀ·M·A of F(4x4, 3x3) for tiles b .. b + n - 1 and output channels [k0, k1), as `outputs`
 * reads M, through the epilogue as there: s = Aᵀ·M by columns into the stage (s[a][q] at 4·(6·a +
 * q) floats), then the rows of s times A (y[a][e] at 96 + 4·(4·a + e) floats); tile descriptors at
 * stage + 160 floats.
 */
function outputs4(
  M: usize, ms: usize, T: i32, stage: usize, y: usize, b: i32, n: i32, k0: i32, k1: i32, K: i32, OH: i32, OW: i32, P: i32, TW: i32, TH: i32,
): void {
  const ys = at(stage, 96), d = at(stage, 160);
  for (let k = k0; k < k1; k++) {
    const bias = epiBias != 0, bv = bias ? v128.load32_splat(at(epiBias, k)) : f32x4.splat(0);
    const scaled = epiScale != 0, sv = scaled ? v128.load32_splat(at(epiScale, k)) : f32x4.splat(1);
    walkFrom(b, P, TW);
    for (let j = 0; j < n; j += 4) {
      const m = at(M, (k - k0) * T + j);
      for (let q = 0; q < 6; q++) {
        const mq = m + <usize>q * ms;
        outputRow4(
          at(stage, 4 * q), 96, v128.load(mq), v128.load(mq + 6 * ms), v128.load(mq + 12 * ms),
          v128.load(mq + 18 * ms), v128.load(mq + 24 * ms), v128.load(mq + 30 * ms),
        );
      }
      for (let a = 0; a < 4; a++) {
        const s = at(stage, 24 * a);
        outputRow4(at(ys, 16 * a), 16, v128.load(s), v128.load(s, 16), v128.load(s, 32), v128.load(s, 48), v128.load(s, 64), v128.load(s, 80));
      }
      // Four whole tiles side by side: runs of 16 outputs; others are stored tile by tile.
      const run = j + 4 <= n && 4 * (walkCol + 4) <= OW, oh = walkRow << 2;
      const r0 = at(y, ((walkImg * K + k) * OH + oh) * OW + (walkCol << 2));
      if (run) walkOn(4, TW, TH);
      else describe(d, n - j, 4, y, K, k, OH, OW, 0, 0, TW, TH);
      for (let a = 0; a < 4; a++) {
        // Row a of tile l: lanes l of y[a][0..3], a 4x4 transpose.
        const e = at(ys, 16 * a);
        const e0 = v128.load(e), e1 = v128.load(e, 16), e2 = v128.load(e, 32), e3 = v128.load(e, 48);
        const t0 = v128.shuffle<f32>(e0, e1, 0, 4, 1, 5), t1 = v128.shuffle<f32>(e2, e3, 0, 4, 1, 5);
        const t2 = v128.shuffle<f32>(e0, e1, 2, 6, 3, 7), t3 = v128.shuffle<f32>(e2, e3, 2, 6, 3, 7);
        let y0 = v128.shuffle<f32>(t0, t1, 0, 1, 4, 5), y1 = v128.shuffle<f32>(t0, t1, 2, 3, 6, 7);
        let y2 = v128.shuffle<f32>(t2, t3, 0, 1, 4, 5), y3 = v128.shuffle<f32>(t2, t3, 2, 3, 6, 7);
        if (scaled) {
          y0 = f32x4.mul(y0, sv);
          y1 = f32x4.mul(y1, sv);
          y2 = f32x4.mul(y2, sv);
          y3 = f32x4.mul(y3, sv);
        }
        if (bias) {
          y0 = f32x4.add(y0, bv);
          y1 = f32x4.add(y1, bv);
          y2 = f32x4.add(y2, bv);
          y3 = f32x4.add(y3, bv);
        }
        if (run) {
          if (oh + a >= OH) break;
          const o = at(r0, a * OW);
          if (epiFinish) {
            y0 = finish(y0, o);
            y1 = finish(y1, o + 16);
            y2 = finish(y2, o + 32);
            y3 = finish(y3, o + 48);
          }
          v128.store(o, y0);
          v128.store(o, y1, 16);
          v128.store(o, y2, 32);
          v128.store(o, y3, 48);
        } else {
          storeRun(d, a, y0, OH, OW);
          storeRun(d + 16, a, y1, OH, OW);
          storeRun(d + 32, a, y2, OH, OW);
          storeRun(d + 48, a, y3, OH, OW);
        }
      }
    }
  }
}

/** A·y of four vectors (A = Aᵀ's transpose: rows 1 0 0 0; 1 1 1 1; 1 -1 1 -1; 1 2 4 8; 1 -2 4 -8; 0 0 0 1), stored at dst, dst + step, ... */
// @ts-ignore: decorator
@inline function gradRow4(dst: usize, step: usize, y0: v128, y1: v128, y2: v128, y3: v128): void {
  const e = f32x4.add(y0, y2), o = f32x4.add(y1, y3);
  const e4 = f32x4.add(y0, f32x4.mul(f32x4.splat(4), y2)), o4 = f32x4.add(f32x4.mul(f32x4.splat(2), y1), f32x4.mul(f32x4.splat(8), y3));
  v128.store(dst, y0);
  v128.store(dst + step, f32x4.add(e, o));
  v128.store(dst + 2 * step, f32x4.sub(e, o));
  v128.store(dst + 3 * step, f32x4.add(e4, o4));
  v128.store(dst + 4 * step, f32x4.sub(e4, o4));
  v128.store(dst + 5 * step, y3);
}

/**
 * `transformGrad` for F(4x4, 3x3): D = A·dy·Aᵀ of the 4x4 output gradients, h = dy·Aᵀ row by row
 * into the stage (row a at 64 + 24·a floats), then A·h by columns; tile descriptors at stage + 160 floats.
 */
function transformGrad4(dy: usize, D: usize, dp: i32, T: i32, stage: usize, b: i32, n: i32, cols: i32, K: i32, OH: i32, OW: i32, P: i32, TW: i32): void {
  const TH = P / TW, ds = (<usize>dp) << 2, hs = at(stage, 64), d = at(stage, 160);
  for (let k = 0; k < K; k++) {
    walkFrom(b, P, TW);
    for (let j = 0; j < cols; j += 4) {
      describe(d, n - j, 4, dy, K, k, OH, OW, 0, 0, TW, TH);
      for (let a = 0; a < 4; a++) {
        // Column e of the four tiles' row a: a 4x4 transpose of their runs.
        const e0 = patchRun(d, a, 0, OH, OW), e1 = patchRun(d + 16, a, 0, OH, OW);
        const e2 = patchRun(d + 32, a, 0, OH, OW), e3 = patchRun(d + 48, a, 0, OH, OW);
        const t0 = v128.shuffle<f32>(e0, e1, 0, 4, 1, 5), t1 = v128.shuffle<f32>(e2, e3, 0, 4, 1, 5);
        const t2 = v128.shuffle<f32>(e0, e1, 2, 6, 3, 7), t3 = v128.shuffle<f32>(e2, e3, 2, 6, 3, 7);
        gradRow4(
          at(hs, 24 * a), 16, v128.shuffle<f32>(t0, t1, 0, 1, 4, 5), v128.shuffle<f32>(t0, t1, 2, 3, 6, 7),
          v128.shuffle<f32>(t2, t3, 0, 1, 4, 5), v128.shuffle<f32>(t2, t3, 2, 3, 6, 7),
        );
      }
      const dst = at(D, k * T + j);
      for (let q = 0; q < 6; q++) {
        const h = at(hs, 4 * q);
        gradRow4(dst + <usize>q * ds, 6 * ds, v128.load(h), v128.load(h, 96), v128.load(h, 192), v128.load(h, 288));
      }
    }
  }
}
