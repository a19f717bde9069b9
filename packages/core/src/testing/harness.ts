/**
 * The kit's machinery: deterministic inputs, moving data between the reference and the active
 * backend, and the comparison rule.
 *
 * Tolerance. A float32 result `got` of an element whose float64 reference is `want` passes when
 *
 *     |got - want| <= RTOL * sqrt(k) * (|want| + scale),   RTOL = 1e-5 (about 80 f32 ulps)
 *
 * where `k` is the length of the longest sum feeding the element (1 for elementwise ops; C·R·S
 * for a conv, K for a matmul, the reduced count for a reduction) — rounding errors of a sum grow
 * like sqrt(k) — and `scale` is the magnitude of the terms combined (max|a|·max|b| for a product,
 * max|x| for a sum, max|logit| for a log-sum-exp), which gives sums that cancel to ~0 an absolute
 * floor. NaN must meet NaN; infinities, and values beyond the f32 range, must meet the infinity
 * f32 rounds them to. i32 outputs and pure data movement (layout ops, copies, fills, max/argmax/
 * topk) compare exactly.
 */
import { tensor } from '../api.js';
import { tidy, type Tensor } from '../engine.js';
import type { DType } from '../ops.js';
import { numel, refTensor, type RefTensor } from './reference.js';

/** Relative tolerance of one f32 rounding step, with headroom (see the module comment). */
export const RTOL = 1e-5;

/** A reference tensor that also says which dtype the backend holds it in (default f32). */
export type KitTensor = RefTensor & { readonly dtype?: DType };

/** How closely an output must match: `exact`, or the (k, scale) of the module comment. */
export type Tolerance = 'exact' | { readonly k?: number; readonly scale?: number };

/**
 * A small seeded generator (SplitMix32-style mixing of a Weyl sequence), independent of every
 * backend's random ops; seeded from the case name so each case draws the same inputs alone or in a suite.
 */
export class Rng {
  #s: number;

  constructor(seed: string | number) {
    let h = 0x811c9dc5;
    for (const ch of String(seed)) h = Math.imul(h ^ ch.charCodeAt(0), 0x01000193);
    this.#s = h >>> 0;
  }

  /** A float in [0, 1). */
  next(): number {
    this.#s = (this.#s + 0x9e3779b9) >>> 0;
    let z = this.#s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return ((z ^ (z >>> 16)) >>> 0) / 4294967296;
  }

  /** f32-representable uniform values in [lo, hi). */
  uniform(shape: readonly number[], lo = -1, hi = 1): KitTensor {
    return refTensor(shape, Array.from({ length: numel(shape) }, () => Math.fround(lo + (hi - lo) * this.next())));
  }

  /** Values with |v| in [lo, hi) and a random sign: away from the kinks and poles at 0. */
  signed(shape: readonly number[], lo: number, hi: number): KitTensor {
    const t = this.uniform(shape, lo, hi);
    return refTensor(shape, t.data.map((v) => (this.next() < 0.5 ? -v : v)));
  }

  /** Integers in [lo, hi), held as i32 (or as f32 when asked, to make ties). */
  ints(shape: readonly number[], lo: number, hi: number, dtype: DType = 'i32'): KitTensor {
    return { ...refTensor(shape, Array.from({ length: numel(shape) }, () => lo + Math.floor((hi - lo) * this.next()))), dtype };
  }

  /**
   * Distinct values evenly spaced over [lo, hi] in random order: no ties and a gap much wider than
   * a finite-difference step, so max/min/pool/sort are differentiable at every point drawn.
   */
  distinct(shape: readonly number[], lo = -1, hi = 1): KitTensor {
    const n = numel(shape);
    const v = Array.from({ length: n }, (_, i) => Math.fround(lo + ((hi - lo) * i) / Math.max(n - 1, 1)));
    for (let i = n - 1; i > 0; i--) {
      const j = Math.floor(this.next() * (i + 1));
      [v[i], v[j]] = [v[j], v[i]];
    }
    return refTensor(shape, v);
  }
}

/** Marks a reference tensor as held in i32. */
export const asI32 = (t: RefTensor): KitTensor => ({ ...t, dtype: 'i32' });

/** Uploads a kit tensor to the active backend. */
export const toTensor = (t: KitTensor): Tensor =>
  t.dtype === 'i32' ? tensor(Int32Array.from(t.data), t.shape, 'i32') : tensor(Float32Array.from(t.data), t.shape, 'f32');

/** What came back from the backend. */
export interface Readback {
  readonly shape: readonly number[];
  readonly dtype: DType;
  readonly data: ArrayLike<number>;
}

/** Reads a tensor back to the host. */
export const readback = async (t: Tensor): Promise<Readback> => ({ shape: [...t.shape], dtype: t.dtype, data: await t.data() });

/** Runs `make` in a tidy scope, reads back every tensor it returns, then frees them. */
export const runAndRead = async (make: () => Tensor[]): Promise<Readback[]> => {
  const outs = tidy(make);
  try {
    return await Promise.all(outs.map(readback));
  } finally {
    for (const t of outs) t.dispose();
  }
};

const fmtShape = (s: readonly number[]) => `[${s.join(', ')}]`;

/** A shape as case names write it: `[2,3]`. */
export const shapeName = (s: readonly number[]): string => `[${s.join(',')}]`;

const unravel = (i: number, shape: readonly number[]): number[] => {
  const idx: number[] = [];
  for (let d = shape.length - 1; d >= 0; d--) {
    idx.unshift(i % shape[d]);
    i = Math.floor(i / shape[d]);
  }
  return idx;
};

/** Largest |v| of a tensor's data (0 when empty): the usual `scale` of a tolerance. */
export const maxAbs = (...ts: RefTensor[]): number => ts.reduce((m, t) => t.data.reduce((a, v) => Math.max(a, Math.abs(v)), m), 0);

/**
 * Throws unless `got` has `want`'s shape and dtype and every element is within tolerance; the
 * message names the case, the worst element (flat and multi-index), got vs want and the bound.
 */
export const expectClose = (label: string, got: Readback, want: RefTensor, dtype: DType, tol: Tolerance = {}): void => {
  if (got.shape.length !== want.shape.length || got.shape.some((d, i) => d !== want.shape[i]))
    throw new Error(`${label}: shape ${fmtShape(got.shape)}, want ${fmtShape(want.shape)}`);
  if (got.dtype !== dtype) throw new Error(`${label}: dtype ${got.dtype}, want ${dtype}`);
  if (got.data.length !== want.data.length) throw new Error(`${label}: ${got.data.length} elements, want ${want.data.length}`);
  const exact = tol === 'exact' || dtype === 'i32';
  const { k = 1, scale = 0 } = tol === 'exact' ? {} : tol;
  const bound = (w: number) => (exact ? 0 : RTOL * Math.sqrt(Math.max(k, 1)) * (Math.abs(w) + scale));
  let bad = 0;
  let worst = -1;
  let worstExcess = -Infinity;
  for (let i = 0; i < want.data.length; i++) {
    const g = got.data[i];
    const w = want.data[i];
    // Beyond the f32 range the only right answer is the infinity f32 rounds to.
    const ok = Number.isNaN(w) ? Number.isNaN(g) : !Number.isFinite(Math.fround(w)) ? g === Math.fround(w) : Math.abs(g - w) <= bound(w);
    if (ok) continue;
    bad++;
    const excess = Number.isFinite(g - w) ? Math.abs(g - w) - bound(w) : Infinity;
    if (excess > worstExcess) [worst, worstExcess] = [i, excess];
  }
  if (bad === 0) return;
  const g = got.data[worst];
  const w = want.data[worst];
  throw new Error(
    `${label}: ${bad} of ${want.data.length} elements off; worst at ${worst} ${fmtShape(unravel(worst, want.shape))}: ` +
      `got ${g}, want ${w} (|diff| ${Math.abs(g - w)} > ${exact ? 'exact' : `tol ${bound(w)}`})`,
  );
};

/** Throws unless `fn` throws an error whose message contains every one of `parts`. */
export const expectThrows = (label: string, fn: () => unknown, ...parts: string[]): void => {
  let message: string | null = null;
  try {
    tidy(() => void fn());
  } catch (e) {
    message = e instanceof Error ? e.message : String(e);
  }
  const wanted = parts.map((p) => JSON.stringify(p)).join(', ');
  if (message === null) throw new Error(`${label}: expected an error mentioning ${wanted}, but nothing was thrown`);
  const missing = parts.filter((p) => !message.includes(p));
  if (missing.length) throw new Error(`${label}: the error "${message}" does not mention ${missing.map((p) => JSON.stringify(p)).join(', ')}`);
};
