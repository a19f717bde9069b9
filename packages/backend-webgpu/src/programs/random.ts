/**
 * Philox 4x32-10 random fill, matching core's `philoxFill` element by element: an invocation per
 * counter block, 4 uniform or 2 normal draws each. u32 products' high words come from 16-bit
 * halves (WGSL has no 64-bit integers). Each value is formed from the integer words so that f32
 * rounding stays relative to the result, not to its parts:
 * - uniform a + (b-a)·u is evaluated as (b-a)·(u - u0) about the zero crossing u0 = -a/(b-a)
 *   (clamped to [0, 1]), the difference taken in integers first, so draws near 0 keep ~1e-7
 *   relative accuracy instead of f32's absolute 1e-7·|a|;
 * - normal: ln u1 and cos(2π u2) use exact argument reduction and short series (f32 log and cos
 *   lose relative accuracy near u1 = 1 and the zeros of cos). With mean 0 the draw is within ~4e-7
 *   relative of the float64 reference; a nonzero mean adds f32's rounding of mean + std·z.
 */
import type { RandomAttrs } from '@residual/core';
import { groupsFor, type Program, type UniformField } from '../header.js';

const WG = 256;

/** WGSL `philox(counter, key) -> vec4<u32>`, core's `philox4x32`; shared with the dropout program. */
export const PHILOX = `fn mulhi(a: u32, b: u32) -> u32 {
  let al = a & 0xffffu;
  let ah = a >> 16u;
  let bl = b & 0xffffu;
  let bh = b >> 16u;
  let m1 = ah * bl + ((al * bl) >> 16u);
  let m2 = al * bh + (m1 & 0xffffu);
  return ah * bh + (m1 >> 16u) + (m2 >> 16u);
}

fn philox(counter: vec4<u32>, key: vec2<u32>) -> vec4<u32> {
  var c = counter;
  var k = key;
  for (var r = 0u; r < 10u; r++) {
    let hi0 = mulhi(0xd2511f53u, c.x);
    let lo0 = 0xd2511f53u * c.x;
    let hi1 = mulhi(0xcd9e8d57u, c.z);
    let lo1 = 0xcd9e8d57u * c.z;
    c = vec4<u32>(hi1 ^ c.y ^ k.x, lo1, hi0 ^ c.w ^ k.y, lo0);
    k += vec2<u32>(0x9e3779b9u, 0xbb67ae85u);
  }
  return c;
}`;

/** WGSL turning Philox words into uniform and normal draws (see the module comment). */
const DRAWS = `const TWO_NEG_32 = 2.3283064365386963e-10;

// (w + 0.5) / 2^32, the reference's open-interval uniform.
fn unit(w: u32) -> f32 { return fma(f32(w), TWO_NEG_32, 0.5 * TWO_NEG_32); }

// a + (b-a)·(w + 0.5)/2^32 as base + scale·((w + 0.5) - pivot), pivot = pivotHi·256 + pivotLo + (0.5 - half);
// both partial differences are exact in f32, so only their sum and the final fma round.
fn uniformAt(w: u32) -> f32 {
  let hi = f32(i32(w >> 8u) - i32(u.pivotHi)) * 256.0;
  let lo = f32(i32(w & 255u) - i32(u.pivotLo)) + u.half;
  return fma(u.scale, hi + lo, u.base);
}

// ln((w + 0.5) / 2^32). Above 1/2 it is ln(1 - c) with c = (2^32 - 1 - w + 0.5) / 2^32 formed
// exactly, as -2·atanh(c / (2 - c)) by its series (t <= 1/3, so 9 terms reach 1e-9).
fn lnUnit(w: u32) -> f32 {
  if (w < 0x80000000u) { return log(unit(w)); }
  let c = unit(0xffffffffu - w);
  let t = c / (2.0 - c);
  let t2 = t * t;
  var p = 1.0 / 17.0;
  for (var n = 15.0; n > 0.0; n -= 2.0) { p = fma(p, t2, 1.0 / n); }
  return -2.0 * t * p;
}

// cos(2π (w + 0.5) / 2^32). The top 3 bits pick an octant, the rest give an angle in (0, π/4)
// (reflected in odd octants), where Taylor series of sin and cos are accurate in f32.
fn cosTurn(w: u32) -> f32 {
  let octant = w >> 29u;
  let low = w & 0x1fffffffu;
  let r = select(low, 0x1fffffffu - low, (octant & 1u) != 0u);
  let phi = fma(f32(r), 1.4629180792671596e-9, 0.5 * 1.4629180792671596e-9);
  let p2 = phi * phi;
  let s = phi * fma(fma(fma(fma(p2, 1.0 / 362880.0, -1.0 / 5040.0), p2, 1.0 / 120.0), p2, -1.0 / 6.0), p2, 1.0);
  let cs = fma(fma(fma(fma(fma(p2, -1.0 / 3628800.0, 1.0 / 40320.0), p2, -1.0 / 720.0), p2, 1.0 / 24.0), p2, -0.5), p2, 1.0);
  let v = select(cs, s, ((octant + 1u) & 2u) != 0u);
  return select(v, -v, ((octant + 2u) & 4u) != 0u);
}`;

/**
 * The uniforms of a Philox stream over `size` elements in `blocks` counter blocks, keyed by `seed`
 * from `counter` on: the fields `PHILOX`'s users read, in the order both programs lay them out.
 */
export const philoxUniforms = (size: number, blocks: number, seed: readonly number[], counter: readonly number[]): UniformField[] => [
  { name: 'size', type: 'u32', value: size },
  { name: 'blocks', type: 'u32', value: blocks },
  { name: 'seed', type: 'u32', value: [seed[0] >>> 0, seed[1] >>> 0] },
  { name: 'counter', type: 'u32', value: [counter[0] >>> 0, counter[1] >>> 0] },
];

/** The program of `randomFill` for `size` elements. */
export const randomProgram = (size: number, a: RandomAttrs): Program => {
  const per = a.dist === 'uniform' ? 4 : 2;
  const blocks = Math.ceil(size / per);
  const width = a.b - a.a;
  const crossing = width === 0 ? 0 : Math.min(Math.max(-a.a / width, 0), 1);
  const pivot = crossing * 2 ** 32;
  const whole = Math.floor(pivot);
  return {
    shaderKey: `random|${a.dist}`,
    workgroupSize: WG,
    dispatch: groupsFor(blocks, WG),
    inputs: [],
    outputs: [{ name: 'y', type: 'f32' }],
    uniforms: [
      ...philoxUniforms(size, blocks, a.seed, a.counter),
      // normal: mean and std.
      { name: 'a', type: 'f32', value: a.a },
      { name: 'b', type: 'f32', value: a.b },
      // uniform: the pivot and the value there (0 when the range crosses 0, else the nearer bound).
      { name: 'pivotHi', type: 'u32', value: Math.floor(whole / 256) },
      { name: 'pivotLo', type: 'u32', value: whole % 256 },
      { name: 'half', type: 'f32', value: 0.5 - (pivot - whole) },
      { name: 'scale', type: 'f32', value: width * 2 ** -32 },
      { name: 'base', type: 'f32', value: crossing > 0 && crossing < 1 ? 0 : a.a + width * crossing },
    ],
    code: () => `${PHILOX}

${DRAWS}

fn run(group: u32, lid: u32) {
  let blk = group * WG + lid;
  if (blk >= u.blocks) { return; }
  let lo = counter(0u) + blk;
  let hi = counter(1u) + select(0u, 1u, lo < blk);
  let w = philox(vec4<u32>(lo, hi, 0u, 0u), vec2<u32>(seed(0u), seed(1u)));
  let first = blk * ${per}u;
${
  a.dist === 'uniform'
    ? `  for (var j = 0u; j < 4u && first + j < u.size; j++) { y[first + j] = uniformAt(w[j]); }`
    : `  let z0 = sqrt(-2.0 * lnUnit(w.x)) * cosTurn(w.y);
  y[first] = fma(u.b, z0, u.a);
  if (first + 1u < u.size) { y[first + 1u] = fma(u.b, sqrt(-2.0 * lnUnit(w.z)) * cosTurn(w.w), u.a); }`
}
}`,
  };
};
