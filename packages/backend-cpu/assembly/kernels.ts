// The CPU backend's WebAssembly kernels, in AssemblyScript. scripts/build-wasm.mjs compiles this file
// twice, with and without relaxed SIMD (the only difference is `madd`), into src/wasm.generated.ts.
//
// Every export runs one thread's share of an op: it takes (..., tid, nt) and works on the slice that
// `cut` gives thread `tid` of `nt`, so the same call on every thread of the pool (or all of them one
// after another on one thread) computes the whole op, with results independent of who ran which slice.
// Pointers are byte addresses in the shared memory; strides and sizes count f32 elements.

import { at, cut, epiBias, epiFinish, epiScale, epilogueFrom, finish, finish1, madd } from './common';

/** Rows and columns of the register tile: 8 accumulators of f32x4 plus two B vectors and one A splat. */
const MR = 4;
const NR = 8;
/** Cache blocking: a KC x NC panel of B (256 KiB) and an MC x KC block of A (64 KiB) per thread. */
const KC = 256;
const MC = 64;
const NC = 256;
/** Bytes of GEMM scratch per thread: packed A, packed B, a tile for partial edges, NR rows of columns. */
export const GEMM_SCRATCH: i32 = (MC * KC + KC * NC + MR * NR + NR * KC) << 2;

/** Copies `n` floats; the ranges do not overlap. */
function copyRun(dst: usize, src: usize, n: i32): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) v128.store(at(dst, i), v128.load(at(src, i)));
  for (; i < n; i++) store<f32>(at(dst, i), load<f32>(at(src, i)));
}

/** Zeroes `n` floats. */
function zeroRun(dst: usize, n: i32): void {
  const z = f32x4.splat(0);
  let i = 0;
  for (; i + 4 <= n; i += 4) v128.store(at(dst, i), z);
  for (; i < n; i++) store<f32>(at(dst, i), 0);
}

/** dst[i] += src[i] for `n` floats. */
function addRun(dst: usize, src: usize, n: i32): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) v128.store(at(dst, i), f32x4.add(v128.load(at(dst, i)), v128.load(at(src, i))));
  for (; i < n; i++) store<f32>(at(dst, i), load<f32>(at(dst, i)) + load<f32>(at(src, i)));
}

/**
 * Packs an mc x kc block of A (element (i, p) at a[i·rs + p·cs]) into panels of MR rows: panel by
 * panel, p-major, MR floats per p, rows past mc zero.
 */
function packA(a: usize, rs: i32, cs: i32, mc: i32, kc: i32, dst: usize): void {
  for (let i = 0; i < mc; i += MR, dst += (<usize>kc) << 4) {
    const rows = min(MR, mc - i);
    const src = at(a, i * rs);
    let p = 0;
    if (rows == MR && cs == 1) {
      // Four contiguous rows: 4x4 transposes.
      const r1 = at(src, rs), r2 = at(src, 2 * rs), r3 = at(src, 3 * rs);
      for (; p + 4 <= kc; p += 4) {
        const v0 = v128.load(at(src, p)), v1 = v128.load(at(r1, p)), v2 = v128.load(at(r2, p)), v3 = v128.load(at(r3, p));
        const t0 = v128.shuffle<f32>(v0, v1, 0, 4, 1, 5), t1 = v128.shuffle<f32>(v0, v1, 2, 6, 3, 7);
        const t2 = v128.shuffle<f32>(v2, v3, 0, 4, 1, 5), t3 = v128.shuffle<f32>(v2, v3, 2, 6, 3, 7);
        const d = at(dst, p * MR);
        v128.store(d, v128.shuffle<f32>(t0, t2, 0, 1, 4, 5));
        v128.store(d, v128.shuffle<f32>(t0, t2, 2, 3, 6, 7), 16);
        v128.store(d, v128.shuffle<f32>(t1, t3, 0, 1, 4, 5), 32);
        v128.store(d, v128.shuffle<f32>(t1, t3, 2, 3, 6, 7), 48);
      }
    } else if (rows == MR && rs == 1) {
      // The MR values of each p are adjacent already.
      for (; p < kc; p++) v128.store(at(dst, p * MR), v128.load(at(src, p * cs)));
    }
    for (; p < kc; p++) {
      for (let r = 0; r < MR; r++) store<f32>(at(dst, p * MR + r), r < rows ? load<f32>(at(src, r * rs + p * cs)) : 0);
    }
  }
}

/**
 * Packs a kc x nc block of B (element (p, j) at b[p·rs + j·cs]) into panels of NR columns: panel by
 * panel, p-major, NR floats per p, columns past nc zero.
 */
function packB(b: usize, rs: i32, cs: i32, kc: i32, nc: i32, dst: usize): void {
  for (let j = 0; j < nc; j += NR, dst += (<usize>kc) << 5) {
    const cols = min(NR, nc - j);
    const src = at(b, j * cs);
    let p = 0;
    if (cols == NR && cs == 1) {
      for (; p < kc; p++) {
        const s = at(src, p * rs), d = at(dst, p * NR);
        v128.store(d, v128.load(s));
        v128.store(d, v128.load(s, 16), 16);
      }
    } else if (cols == NR && rs == 1) {
      // Eight columns, each contiguous along p: two 4x4 transposes per four values of p.
      for (; p + 4 <= kc; p += 4) {
        const d = at(dst, p * NR);
        for (let h = 0; h < 2; h++) {
          const c0 = at(src, (4 * h) * cs + p);
          const v0 = v128.load(c0), v1 = v128.load(at(c0, cs)), v2 = v128.load(at(c0, 2 * cs)), v3 = v128.load(at(c0, 3 * cs));
          const t0 = v128.shuffle<f32>(v0, v1, 0, 4, 1, 5), t1 = v128.shuffle<f32>(v0, v1, 2, 6, 3, 7);
          const t2 = v128.shuffle<f32>(v2, v3, 0, 4, 1, 5), t3 = v128.shuffle<f32>(v2, v3, 2, 6, 3, 7);
          const dh = d + (<usize>h << 4);
          v128.store(dh, v128.shuffle<f32>(t0, t2, 0, 1, 4, 5));
          v128.store(dh, v128.shuffle<f32>(t0, t2, 2, 3, 6, 7), 32);
          v128.store(dh, v128.shuffle<f32>(t1, t3, 0, 1, 4, 5), 64);
          v128.store(dh, v128.shuffle<f32>(t1, t3, 2, 3, 6, 7), 96);
        }
      }
    }
    for (; p < kc; p++) {
      for (let q = 0; q < NR; q++) store<f32>(at(dst, p * NR + q), q < cols ? load<f32>(at(src, p * rs + q * cs)) : 0);
    }
  }
}

/**
 * The register tile: C[mr x nr] (+)= packed A panel · packed B panel over kc, at c with row stride
 * ldc. A full tile is loaded and stored as vectors; a partial one goes through `tile`. With `epi`
 * (the last panel of the sum), the epilogue is applied on the way out: row r's scale at scale + 4·r
 * and its bias at bias + 4·r (0: none), then `finish`.
 */
function kernel(
  kc: i32, pa: usize, pb: usize, c: usize, ldc: i32, accumulate: bool, mr: i32, nr: i32, tile: usize, epi: bool, bias: usize,
  scale: usize,
): void {
  let c00 = f32x4.splat(0), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00;
  for (let p = 0; p < kc; p++, pa += 16, pb += 32) {
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
  const full = mr == MR && nr == NR;
  const row = full ? (<usize>ldc) << 2 : 32;
  let d = full ? c : tile;
  if (full && accumulate) {
    c00 = f32x4.add(c00, v128.load(d));
    c01 = f32x4.add(c01, v128.load(d, 16));
    c10 = f32x4.add(c10, v128.load(d + row));
    c11 = f32x4.add(c11, v128.load(d + row, 16));
    c20 = f32x4.add(c20, v128.load(d + 2 * row));
    c21 = f32x4.add(c21, v128.load(d + 2 * row, 16));
    c30 = f32x4.add(c30, v128.load(d + 3 * row));
    c31 = f32x4.add(c31, v128.load(d + 3 * row, 16));
  }
  if (full && epi) {
    if (scale) {
      let s = v128.load32_splat(scale);
      c00 = f32x4.mul(c00, s);
      c01 = f32x4.mul(c01, s);
      s = v128.load32_splat(scale, 4);
      c10 = f32x4.mul(c10, s);
      c11 = f32x4.mul(c11, s);
      s = v128.load32_splat(scale, 8);
      c20 = f32x4.mul(c20, s);
      c21 = f32x4.mul(c21, s);
      s = v128.load32_splat(scale, 12);
      c30 = f32x4.mul(c30, s);
      c31 = f32x4.mul(c31, s);
    }
    if (bias) {
      let b = v128.load32_splat(bias);
      c00 = f32x4.add(c00, b);
      c01 = f32x4.add(c01, b);
      b = v128.load32_splat(bias, 4);
      c10 = f32x4.add(c10, b);
      c11 = f32x4.add(c11, b);
      b = v128.load32_splat(bias, 8);
      c20 = f32x4.add(c20, b);
      c21 = f32x4.add(c21, b);
      b = v128.load32_splat(bias, 12);
      c30 = f32x4.add(c30, b);
      c31 = f32x4.add(c31, b);
    }
    if (epiFinish) {
      c00 = finish(c00, d);
      c01 = finish(c01, d + 16);
      c10 = finish(c10, d + row);
      c11 = finish(c11, d + row + 16);
      c20 = finish(c20, d + 2 * row);
      c21 = finish(c21, d + 2 * row + 16);
      c30 = finish(c30, d + 3 * row);
      c31 = finish(c31, d + 3 * row + 16);
    }
  }
  v128.store(d, c00);
  v128.store(d, c01, 16);
  d += row;
  v128.store(d, c10);
  v128.store(d, c11, 16);
  d += row;
  v128.store(d, c20);
  v128.store(d, c21, 16);
  d += row;
  v128.store(d, c30);
  v128.store(d, c31, 16);
  if (full) return;
  for (let r = 0; r < mr; r++) {
    for (let q = 0; q < nr; q++) {
      const o = at(c, r * ldc + q);
      let v = (accumulate ? load<f32>(o) : 0) + load<f32>(at(tile, r * NR + q));
      if (epi) {
        if (scale) v *= load<f32>(at(scale, r));
        if (bias) v += load<f32>(at(bias, r));
        v = finish1(v, o);
      }
      store<f32>(o, v);
    }
  }
}

/** Where `gemm` reads B: a matrix, or the column matrix of the image at b (`geo`), or its transpose. */
const MATRIX = 0;
const COLS = 1;
const COLS_T = 2;

/**
 * C[m x n] (+)= A[m x k] · B[k x n], A(i, p) at a[i·rsA + p·csA], C(i, j) at c[i·ldc + j], B as
 * `source` says (a MATRIX has B(p, j) at b[p·rsB + j·csB]; the column matrices start at column
 * j0); `scratch` holds GEMM_SCRATCH bytes. With `epi`, row i ends with the epilogue (its scale and
 * bias at scale + 4·i and bias + 4·i, 0: none). Goto's loop order: a KC x NC panel of B stays in cache while MC x KC
 * blocks of A stream past it.
 */
function gemm(
  m: i32, n: i32, k: i32, a: usize, rsA: i32, csA: i32, source: i32, b: usize, rsB: i32, csB: i32, j0: i32,
  c: usize, ldc: i32, accumulate: bool, scratch: usize, epi: bool, bias: usize, scale: usize = 0,
): void {
  if (k == 0 && !accumulate) {
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        const o = at(c, i * ldc + j);
        store<f32>(o, epi ? finish1(bias ? load<f32>(at(bias, i)) : 0, o) : 0);
      }
    }
    return;
  }
  const pa = scratch;
  const pb = at(pa, MC * KC);
  const tile = at(pb, KC * NC);
  const rows = at(tile, MR * NR);
  for (let jc = 0; jc < n; jc += NC) {
    const nc = min(NC, n - jc);
    for (let pc = 0; pc < k; pc += KC) {
      const kc = min(KC, k - pc);
      if (source == MATRIX) packB(at(b, pc * rsB + jc * csB), rsB, csB, kc, nc, pb);
      else if (source == COLS) packCols(b, pc, kc, j0 + jc, nc, pb);
      else packColsT(b, pc, kc, j0 + jc, nc, pb, rows);
      const acc = accumulate || pc > 0, last = epi && pc + kc == k;
      for (let ic = 0; ic < m; ic += MC) {
        const mc = min(MC, m - ic);
        packA(at(a, ic * rsA + pc * csA), rsA, csA, mc, kc, pa);
        for (let jr = 0; jr < nc; jr += NR) {
          for (let ir = 0; ir < mc; ir += MR) {
            kernel(
              kc, at(pa, ir * kc), at(pb, jr * kc), at(c, (ic + ir) * ldc + jc + jr), ldc, acc, min(MR, mc - ir), min(NR, nc - jr), tile,
              last, bias ? at(bias, ic + ir) : 0, scale ? at(scale, ic + ir) : 0,
            );
          }
        }
      }
    }
  }
}

/**
 * One matrix product C = A·B as `gemm` takes it, C dense [m x n]. Threads split the longer side of C
 * into whole tiles.
 */
export function matmul(
  m: i32, n: i32, k: i32, a: usize, rsA: i32, csA: i32, b: usize, rsB: i32, csB: i32,
  c: usize, scratch: usize, scratchStride: i32, tid: i32, nt: i32,
): void {
  scratch += <usize>tid * scratchStride;
  if (n >= m) {
    const j0 = cut(n, NR, tid, nt), j1 = cut(n, NR, tid + 1, nt);
    gemm(m, j1 - j0, k, a, rsA, csA, MATRIX, at(b, j0 * csB), rsB, csB, 0, at(c, j0), n, false, scratch, false, 0);
  } else {
    const i0 = cut(m, MR, tid, nt), i1 = cut(m, MR, tid + 1, nt);
    gemm(i1 - i0, n, k, at(a, i0 * rsA), rsA, csA, MATRIX, b, rsB, csB, 0, at(c, i0 * n), n, false, scratch, false, 0);
  }
}

// --- convolution -----------------------------------------------------------------------------------

/** The conv geometry, read from the 16 i32 that `geom` points at (the order of src/conv.ts). */
// @ts-ignore: decorator
@unmanaged class Geometry {
  batch: i32; inC: i32; inH: i32; inW: i32; outC: i32; kH: i32; kW: i32; strideH: i32; strideW: i32;
  padTop: i32; padLeft: i32; dilH: i32; dilW: i32; groups: i32; outH: i32; outW: i32;
}

/** The geometry of the conv kernel running on this thread (globals are per instance, so per thread). */
let geo = changetype<Geometry>(0);

/**
 * Unfolds one row of image x's column matrix, the patch entry reading input rows oh·sh + dr and
 * columns ow·sw + ds of channel c, over output positions [j0, j1); position j goes to float
 * ((j - j0) >> 3)·8·kc + ((j - j0) & 7) of dst, the layout of a row of B panels kc deep (contiguous
 * when kc is 1). Entries over the padding are zero. Where runs of four positions stay in one output
 * row, they move as vectors; those reads may pass a row's ends (masked out), which the slack the
 * arena keeps around every operand allows.
 */
function unfold(x: usize, c: i32, dr: i32, ds: i32, j0: i32, j1: i32, dst: usize, kc: i32): void {
  const g = geo;
  const H = g.inH, W = g.inW, OW = g.outW, sh = g.strideH, sw = g.strideW;
  const xc = at(x, c * H * W);
  if (!(sw <= 2 && OW % 4 == 0 && j0 % 4 == 0 && j1 % 4 == 0)) {
    for (let j = j0, oh = j0 / OW, ow = j0 % OW; j < j1; j++) {
      const jr = j - j0;
      const ih = oh * sh + dr, iw = ow * sw + ds;
      const inside = <u32>ih < <u32>H && <u32>iw < <u32>W;
      store<f32>(at(dst, (((jr >> 3) * kc) << 3) + (jr & 7)), inside ? load<f32>(at(xc, ih * W + iw)) : 0);
      if (++ow == OW) {
        ow = 0;
        oh++;
      }
    }
    return;
  }
  // Runs of four positions: the next run is 16 bytes on, or the next panel's first half after a second half.
  const skip = ((<usize>kc) << 5) - 32;
  const steps = sw == 1 ? i32x4(0, 1, 2, 3) : i32x4(0, 2, 4, 6);
  const width = i32x4.splat(W);
  // A run needs masking when one of its columns iw, ..., iw + 3·sw falls outside [0, W).
  const last = W - 1 - 3 * sw;
  let d = dst;
  for (let j = j0, oh = j0 / OW, ow0 = j0 % OW; j < j1; oh++, ow0 = 0) {
    const end = min(j1, j + OW - ow0);
    const ih = oh * sh + dr;
    if (<u32>ih >= <u32>H) {
      for (; j < end; j += 4, d += 16 + (((j - j0) & 4) == 0 ? skip : 0)) v128.store(d, f32x4.splat(0));
      continue;
    }
    let iw = ow0 * sw + ds;
    for (let src = at(xc, ih * W + iw); j < end; j += 4, iw += 4 * sw, src += 16 * sw, d += 16 + (((j - j0) & 4) == 0 ? skip : 0)) {
      let v = sw == 1 ? v128.load(src) : v128.shuffle<f32>(v128.load(src), v128.load(src, 16), 0, 2, 4, 6);
      if (last < 0 || <u32>iw > <u32>last) v = v128.and(v, i32x4.lt_u(i32x4.add(i32x4.splat(iw), steps), width));
      v128.store(d, v);
    }
  }
}

/**
 * `packB` for the column matrix of image x (rows: patch entries (c, r, s); columns: output
 * positions): rows [pc, pc + kc) x columns [jc, jc + nc), unfolded straight into the panels.
 */
function packCols(x: usize, pc: i32, kc: i32, jc: i32, nc: i32, dst: usize): void {
  const g = geo;
  const R = g.kH, S = g.kW;
  let c = pc / (R * S), r = (pc % (R * S)) / S, s = pc % S;
  for (let p = 0; p < kc; p++) {
    unfold(x, c, r * g.dilH - g.padTop, s * g.dilW - g.padLeft, jc, jc + nc, at(dst, p * NR), kc);
    if (++s == S) {
      s = 0;
      if (++r == R) {
        r = 0;
        c++;
      }
    }
  }
  const tail = nc & (NR - 1);
  if (tail) for (let p = 0; p < kc; p++) zeroRun(at(dst, ((nc >> 3) * kc + p) * NR + tail), NR - tail);
}

/** Entries [p0, p0 + n) of row `row` of the column matrix of image x, into dst. */
function colRow(x: usize, row: i32, p0: i32, n: i32, dst: usize): void {
  const g = geo;
  const S = g.kW, taps = g.kH * S;
  const r = (row % taps) / S, s = row % S;
  unfold(x, row / taps, r * g.dilH - g.padTop, s * g.dilW - g.padLeft, p0, p0 + n, dst, 1);
}

/**
 * `packB` for the transposed column matrix of image x (rows: output positions; columns: patch
 * entries): each panel's NR patch rows are unfolded into `rows`, then transposed into the panel.
 */
function packColsT(x: usize, pc: i32, kc: i32, jc: i32, nc: i32, dst: usize, rows: usize): void {
  for (let jp = 0; jp < nc; jp += NR, dst += (<usize>kc) << 5) {
    for (let q = 0; q < NR; q++) {
      if (jp + q < nc) colRow(x, jc + jp + q, pc, kc, at(rows, q * kc));
      else zeroRun(at(rows, q * kc), kc);
    }
    packB(rows, 1, kc, kc, NR, dst);
  }
}

/** Adds rows [c0·R·S, c1·R·S) of a column matrix back onto channels [c0, c1) of image x: the transpose of unfolding. */
function col2im(x: usize, col: usize, c0: i32, c1: i32): void {
  const g = geo;
  const H = g.inH, W = g.inW, OH = g.outH, OW = g.outW, sh = g.strideH, sw = g.strideW;
  const plane = OH * OW;
  let row = c0 * g.kH * g.kW;
  for (let c = c0; c < c1; c++) {
    for (let r = 0; r < g.kH; r++) {
      const dr = r * g.dilH - g.padTop;
      for (let s = 0; s < g.kW; s++, row++) {
        const ds = s * g.dilW - g.padLeft;
        for (let oh = 0; oh < OH; oh++) {
          const ih = oh * sh + dr;
          if (<u32>ih >= <u32>H) continue;
          const src = at(col, row * plane + oh * OW), xr = at(x, (c * H + ih) * W);
          for (let ow = 0; ow < OW; ow++) {
            const iw = ow * sw + ds;
            if (<u32>iw < <u32>W) store<f32>(at(xr, iw), load<f32>(at(xr, iw)) + load<f32>(at(src, ow)));
          }
        }
      }
    }
  }
}

/** A 1x1, stride-1, unpadded convolution: the image already is its column matrix. */
function pointwise(g: Geometry): bool {
  return g.kH == 1 && g.kW == 1 && g.strideH == 1 && g.strideW == 1 && g.padTop == 0 && g.padLeft == 0 &&
    g.outH == g.inH && g.outW == g.inW;
}

/**
 * y [N,K,OH,OW] = act(conv(x [N,C,H,W], w [K,C/groups,R,S]) + bias + residual), the epilogue at
 * `epi` (`epilogueFrom`; 0: none) applied as each tile is stored. Threads split the images. With
 * fewer images than threads they split the output positions where a group's column matrix (patch x
 * OH·OW) outweighs its filters (K/groups x patch), so each thread unfolds only its share of the
 * columns (ResNet-50's 7x7/2 stem at batch 1 unfolded the whole image on every thread), else the
 * output channels, so each thread streams only its share of the filters (the deep layers, where
 * filters are most of the bytes).
 */
export function conv2d(geom: usize, x: usize, w: usize, y: usize, scratch: usize, scratchStride: i32, epi: usize, tid: i32, nt: i32): void {
  const g = (geo = changetype<Geometry>(geom));
  epilogueFrom(epi, y);
  const cg = g.inC / g.groups, kg = g.outC / g.groups, patch = cg * g.kH * g.kW, plane = g.outH * g.outW;
  scratch += <usize>tid * scratchStride;
  const byImage = g.batch >= nt, byPosition = !byImage && plane > kg;
  const n0 = byImage ? cut(g.batch, 1, tid, nt) : 0, n1 = byImage ? cut(g.batch, 1, tid + 1, nt) : g.batch;
  const byChannel = !byImage && !byPosition;
  const i0 = byChannel ? cut(kg, MR, tid, nt) : 0, i1 = byChannel ? cut(kg, MR, tid + 1, nt) : kg;
  const j0 = byPosition ? cut(plane, NR, tid, nt) : 0, j1 = byPosition ? cut(plane, NR, tid + 1, nt) : plane;
  const pw = pointwise(g);
  for (let img = n0; img < n1; img++) {
    for (let grp = 0; grp < g.groups; grp++) {
      const xs = at(x, (img * g.inC + grp * cg) * g.inH * g.inW);
      gemm(
        i1 - i0, j1 - j0, patch, at(w, (grp * kg + i0) * patch), patch, 1,
        pw ? MATRIX : COLS, pw ? at(xs, j0) : xs, plane, 1, j0,
        at(y, (img * g.outC + grp * kg + i0) * plane + j0), plane, false, scratch,
        epi != 0, epiBias ? at(epiBias, grp * kg + i0) : 0, epiScale ? at(epiScale, grp * kg + i0) : 0,
      );
    }
  }
}

/**
 * dx [N,C,H,W] from dy [N,K,OH,OW] and w for strided convolutions (src/conv.ts runs stride 1 as a
 * convolution of dy): per image and group the columns wᵀ·dy, folded back onto the image. Threads
 * split the images, or the input channels when there are fewer images than threads. The scratch
 * holds GEMM_SCRATCH bytes and then one image's column matrix.
 */
export function conv2dBackwardData(geom: usize, dy: usize, w: usize, dx: usize, scratch: usize, scratchStride: i32, tid: i32, nt: i32): void {
  const g = (geo = changetype<Geometry>(geom));
  const cg = g.inC / g.groups, kg = g.outC / g.groups, taps = g.kH * g.kW, patch = cg * taps, plane = g.outH * g.outW;
  const inPlane = g.inH * g.inW;
  scratch += <usize>tid * scratchStride;
  const col = scratch + GEMM_SCRATCH;
  const byImage = g.batch >= nt;
  const n0 = byImage ? cut(g.batch, 1, tid, nt) : 0, n1 = byImage ? cut(g.batch, 1, tid + 1, nt) : g.batch;
  const c0 = byImage ? 0 : cut(cg, 1, tid, nt), c1 = byImage ? cg : cut(cg, 1, tid + 1, nt);
  for (let img = n0; img < n1; img++) {
    for (let grp = 0; grp < g.groups; grp++) {
      const dxs = at(dx, (img * g.inC + grp * cg) * inPlane);
      gemm(
        (c1 - c0) * taps, plane, kg, at(w, grp * kg * patch + c0 * taps), 1, patch,
        MATRIX, at(dy, (img * g.outC + grp * kg) * plane), plane, 1, 0, at(col, c0 * taps * plane), plane, false, scratch, false, 0,
      );
      zeroRun(at(dxs, c0 * inPlane), (c1 - c0) * inPlane);
      col2im(dxs, col, c0, c1);
    }
  }
}

/**
 * One thread's part of dw [K,C/groups,R,S] = Σ over images of dy·colsᵀ per group: the sum over its
 * share of the images, written to `part` (zeros when it has none). `sumParts` adds the parts up.
 */
export function conv2dBackwardFilter(
  geom: usize, x: usize, dy: usize, part: usize, partStride: i32, scratch: usize, scratchStride: i32, tid: i32, nt: i32,
): void {
  const g = (geo = changetype<Geometry>(geom));
  const cg = g.inC / g.groups, kg = g.outC / g.groups, patch = cg * g.kH * g.kW, plane = g.outH * g.outW;
  scratch += <usize>tid * scratchStride;
  part += <usize>tid * partStride;
  const n0 = cut(g.batch, 1, tid, nt), n1 = cut(g.batch, 1, tid + 1, nt);
  if (n0 == n1) zeroRun(part, g.outC * patch);
  const source = pointwise(g) ? MATRIX : COLS_T;
  for (let img = n0; img < n1; img++) {
    for (let grp = 0; grp < g.groups; grp++) {
      gemm(
        kg, patch, plane, at(dy, (img * g.outC + grp * kg) * plane), plane, 1,
        source, at(x, (img * g.inC + grp * cg) * g.inH * g.inW), 1, plane, 0,
        at(part, grp * kg * patch), patch, img > n0, scratch, false, 0,
      );
    }
  }
}

/** dst[e] = Σ_t parts[t][e] over `parts` arrays `stride` floats apart, summed in order t = 0, 1, ... */
export function sumParts(dst: usize, parts: usize, count: i32, stride: i32, nparts: i32, tid: i32, nt: i32): void {
  const e0 = cut(count, 4, tid, nt), e1 = cut(count, 4, tid + 1, nt);
  copyRun(at(dst, e0), at(parts, e0), e1 - e0);
  for (let t = 1; t < nparts; t++) addRun(at(dst, e0), at(parts, t * stride + e0), e1 - e0);
}

// --- per-channel kernels over x [N, C, inner] ---------------------------------------------------

/** Σ x over `n` floats, in float64. */
function sum64(x: usize, n: i32): f64 {
  let a = f64x2.splat(0), b = a;
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const v = v128.load(at(x, i));
    a = f64x2.add(a, f64x2.promote_low_f32x4(v));
    b = f64x2.add(b, f64x2.promote_low_f32x4(v128.shuffle<f32>(v, v, 2, 3, 2, 3)));
  }
  let s = f64x2.extract_lane(a, 0) + f64x2.extract_lane(a, 1) + f64x2.extract_lane(b, 0) + f64x2.extract_lane(b, 1);
  for (; i < n; i++) s += <f64>load<f32>(at(x, i));
  return s;
}

/** Σ (x - mu)² over `n` floats, in float64. */
function sumSquares64(x: usize, n: i32, mu: f64): f64 {
  const m = f64x2.splat(mu);
  let a = f64x2.splat(0), b = a;
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const v = v128.load(at(x, i));
    const d0 = f64x2.sub(f64x2.promote_low_f32x4(v), m), d1 = f64x2.sub(f64x2.promote_low_f32x4(v128.shuffle<f32>(v, v, 2, 3, 2, 3)), m);
    a = f64x2.add(a, f64x2.mul(d0, d0));
    b = f64x2.add(b, f64x2.mul(d1, d1));
  }
  let s = f64x2.extract_lane(a, 0) + f64x2.extract_lane(a, 1) + f64x2.extract_lane(b, 0) + f64x2.extract_lane(b, 1);
  for (; i < n; i++) {
    const d = <f64>load<f32>(at(x, i)) - mu;
    s += d * d;
  }
  return s;
}

/** y = (x - m)·k + t over `n` floats. */
function affineRun(x: usize, y: usize, n: i32, m: f32, k: f32, t: f32): void {
  const mv = f32x4.splat(m), kv = f32x4.splat(k), tv = f32x4.splat(t);
  let i = 0;
  for (; i + 4 <= n; i += 4) v128.store(at(y, i), f32x4.add(f32x4.mul(f32x4.sub(v128.load(at(x, i)), mv), kv), tv));
  for (; i < n; i++) store<f32>(at(y, i), (load<f32>(at(x, i)) - m) * k + t);
}

/**
 * y = act((x - m)·k + t + r) over `n` floats, r the residual (when `residual`), act a ReLU (when
 * `relu`) that sends NaN and -0 to +0 as `finish` does; both constants where inlined.
 */
// @ts-ignore: decorator
@inline function affineEpilogueRun(x: usize, y: usize, r: usize, n: i32, m: f32, k: f32, t: f32, residual: bool, relu: bool): void {
  const mv = f32x4.splat(m), kv = f32x4.splat(k), tv = f32x4.splat(t), zero = f32x4.splat(0);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    let v = f32x4.add(f32x4.mul(f32x4.sub(v128.load(at(x, i)), mv), kv), tv);
    if (residual) v = f32x4.add(v, v128.load(at(r, i)));
    v128.store(at(y, i), relu ? f32x4.pmax(zero, v) : v);
  }
  for (; i < n; i++) {
    let v = (load<f32>(at(x, i)) - m) * k + t;
    if (residual) v += load<f32>(at(r, i));
    store<f32>(at(y, i), relu && !(v > 0) ? 0 : v);
  }
}

/**
 * Batch-norm training forward with batch statistics and its fused epilogue: mean, then the biased
 * variance from squared deviations (two passes in float64, so a large mean does not cancel it),
 * invstd = 1/sqrt(var + eps), y = act((x - mean)·invstd·gamma + beta + residual), centred on the f32
 * mean with the rest of the mean folded into the shift; `residual` 0 is none, act a ReLU when `relu`
 * is 1. The epilogue rides on the pass that writes y, so a residual block's closing batch-norm,
 * addition and ReLU read and write each activation once. Threads split the channels.
 */
export function batchNormTrain(
  x: usize, y: usize, gamma: usize, beta: usize, mean: usize, invstd: usize, n: i32, c: i32, inner: i32, eps: f64,
  residual: usize, relu: i32, tid: i32, nt: i32,
): void {
  const count = <f64>n * inner;
  for (let ch = cut(c, 1, tid, nt), end = cut(c, 1, tid + 1, nt); ch < end; ch++) {
    let s: f64 = 0;
    for (let b = 0; b < n; b++) s += sum64(at(x, (b * c + ch) * inner), inner);
    const mu = s / count;
    let q: f64 = 0;
    for (let b = 0; b < n; b++) q += sumSquares64(at(x, (b * c + ch) * inner), inner, mu);
    const is = 1 / Math.sqrt(q / count + eps);
    const scale = is * <f64>load<f32>(at(gamma, ch));
    const centre = <f32>mu, k = <f32>scale;
    const shift = <f32>(<f64>load<f32>(at(beta, ch)) - (mu - centre) * scale);
    for (let b = 0; b < n; b++) {
      const o = (b * c + ch) * inner, xo = at(x, o), yo = at(y, o), ro = at(residual, o);
      if (residual && relu) affineEpilogueRun(xo, yo, ro, inner, centre, k, shift, true, true);
      else if (residual) affineEpilogueRun(xo, yo, ro, inner, centre, k, shift, true, false);
      else if (relu) affineEpilogueRun(xo, yo, ro, inner, centre, k, shift, false, true);
      else affineRun(xo, yo, inner, centre, k, shift);
    }
    store<f32>(at(mean, ch), <f32>mu);
    store<f32>(at(invstd, ch), <f32>is);
  }
}

/**
 * Σ g and Σ g·(x - mu) over `n` floats in float64, into bnSum and bnSumX, with g = dy masked where
 * y <= 0 (when `masked`), stored to dres (when `keep`): the first pass of `batchNormBackward`.
 */
// @ts-ignore: decorator
@inline function gradSums(dy: usize, x: usize, y: usize, dres: usize, n: i32, mu: f64, masked: bool, keep: bool): void {
  const m = f64x2.splat(mu), zero = f32x4.splat(0);
  let a0 = f64x2.splat(0), a1 = a0, p0 = a0, p1 = a0;
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    let g = v128.load(at(dy, i));
    if (masked) g = v128.and(g, f32x4.gt(v128.load(at(y, i)), zero));
    if (keep) v128.store(at(dres, i), g);
    const v = v128.load(at(x, i));
    const g0 = f64x2.promote_low_f32x4(g), g1 = f64x2.promote_low_f32x4(v128.shuffle<f32>(g, g, 2, 3, 2, 3));
    const d0 = f64x2.sub(f64x2.promote_low_f32x4(v), m), d1 = f64x2.sub(f64x2.promote_low_f32x4(v128.shuffle<f32>(v, v, 2, 3, 2, 3)), m);
    a0 = f64x2.add(a0, g0);
    a1 = f64x2.add(a1, g1);
    p0 = f64x2.add(p0, f64x2.mul(g0, d0));
    p1 = f64x2.add(p1, f64x2.mul(g1, d1));
  }
  let sdy = f64x2.extract_lane(a0, 0) + f64x2.extract_lane(a0, 1) + f64x2.extract_lane(a1, 0) + f64x2.extract_lane(a1, 1);
  let sdyx = f64x2.extract_lane(p0, 0) + f64x2.extract_lane(p0, 1) + f64x2.extract_lane(p1, 0) + f64x2.extract_lane(p1, 1);
  for (; i < n; i++) {
    let g = load<f32>(at(dy, i));
    if (masked && !(load<f32>(at(y, i)) > 0)) g = 0;
    if (keep) store<f32>(at(dres, i), g);
    sdy += <f64>g;
    sdyx += <f64>g * (<f64>load<f32>(at(x, i)) - mu);
  }
  bnSum += sdy;
  bnSumX += sdyx;
}

// The running sums of `gradSums` (globals are per instance, so per thread).
let bnSum: f64 = 0;
let bnSumX: f64 = 0;

/**
 * dx = g·k + (x - m)·kx + k0 over `n` floats, g = dy masked where y <= 0 (when `masked`): the second
 * pass of `batchNormBackward`.
 */
// @ts-ignore: decorator
@inline function gradRun(dy: usize, x: usize, y: usize, dx: usize, n: i32, m: f32, k: f32, kx: f32, k0: f32, masked: bool): void {
  const kdy = f32x4.splat(k), kxx = f32x4.splat(kx), kc = f32x4.splat(k0), mv = f32x4.splat(m), zero = f32x4.splat(0);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    let g = v128.load(at(dy, i));
    if (masked) g = v128.and(g, f32x4.gt(v128.load(at(y, i)), zero));
    const d = f32x4.sub(v128.load(at(x, i)), mv);
    v128.store(at(dx, i), f32x4.add(f32x4.add(f32x4.mul(g, kdy), f32x4.mul(d, kxx)), kc));
  }
  for (; i < n; i++) {
    let g = load<f32>(at(dy, i));
    if (masked && !(load<f32>(at(y, i)) > 0)) g = 0;
    store<f32>(at(dx, i), g * k + (load<f32>(at(x, i)) - m) * kx + k0);
  }
}

/**
 * The batch-norm gradient in closed form, with x̂ = (x - mean)·invstd and M values per channel, and
 * the fused epilogue's part: g = dy masked where y <= 0 (y the forward's output; `y` 0 when it had no
 * ReLU), stored to dres when given (the residual's gradient); dbeta = Σ g, dgamma = Σ g·x̂ (float64
 * sums), dx = gamma·invstd·(g - dbeta/M - x̂·dgamma/M). The first pass masks and keeps g; the second
 * reads it back from dres (one array where dy and y are two), else masks again. Threads split the
 * channels.
 */
export function batchNormBackward(
  dy: usize, x: usize, gamma: usize, mean: usize, invstd: usize, dx: usize, dgamma: usize, dbeta: usize,
  n: i32, c: i32, inner: i32, y: usize, dres: usize, tid: i32, nt: i32,
): void {
  const count = <f64>n * inner;
  for (let ch = cut(c, 1, tid, nt), end = cut(c, 1, tid + 1, nt); ch < end; ch++) {
    const mu = <f64>load<f32>(at(mean, ch)), is = <f64>load<f32>(at(invstd, ch));
    bnSum = 0;
    bnSumX = 0;
    for (let b = 0; b < n; b++) {
      const o = (b * c + ch) * inner, dyo = at(dy, o), xo = at(x, o), yo = at(y, o), ro = at(dres, o);
      if (y && dres) gradSums(dyo, xo, yo, ro, inner, mu, true, true);
      else if (y) gradSums(dyo, xo, yo, ro, inner, mu, true, false);
      else if (dres) gradSums(dyo, xo, yo, ro, inner, mu, false, true);
      else gradSums(dyo, xo, yo, ro, inner, mu, false, false);
    }
    const sdy = bnSum, dg = bnSumX * is;
    const k = <f64>load<f32>(at(gamma, ch)) * is;
    // dx = g·k + (x - mean)·kx + k0 with kx = -k·invstd·dgamma/M, k0 = -k·dbeta/M; mean is an f32, so x - mean is exact to a rounding.
    const kv = <f32>k, kx = <f32>((-k * dg * is) / count), k0 = <f32>((-k * sdy) / count), mf = <f32>mu;
    for (let b = 0; b < n; b++) {
      const o = (b * c + ch) * inner, xo = at(x, o), dxo = at(dx, o);
      if (dres) gradRun(at(dres, o), xo, 0, dxo, inner, mf, kv, kx, k0, false);
      else if (y) gradRun(at(dy, o), xo, at(y, o), dxo, inner, mf, kv, kx, k0, true);
      else gradRun(at(dy, o), xo, 0, dxo, inner, mf, kv, kx, k0, false);
    }
    store<f32>(at(dgamma, ch), <f32>dg);
    store<f32>(at(dbeta, ch), <f32>sdy);
  }
}

/** y = x·scale[c] + shift[c] along axis 1 of x [N, C, inner]. Threads split the (image, channel) planes. */
export function channelAffine(x: usize, scale: usize, shift: usize, y: usize, n: i32, c: i32, inner: i32, tid: i32, nt: i32): void {
  for (let p = cut(n * c, 1, tid, nt), end = cut(n * c, 1, tid + 1, nt); p < end; p++) {
    const ch = p % c;
    affineRun(at(x, p * inner), at(y, p * inner), inner, 0, load<f32>(at(scale, ch)), load<f32>(at(shift, ch)));
  }
}

// The elementwise kernels live in their own file.
export * from './elementwise';

// The Winograd convolutions live in their own file.
export * from './winograd';
export * from './pool';
