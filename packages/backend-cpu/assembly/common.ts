// Helpers every kernel file shares: thread slices, addresses, the multiply-add that is fused where
// relaxed SIMD is enabled.

/** acc + a·b, one rounding where relaxed SIMD (FMA) is enabled. */
// @ts-ignore: decorator
@inline export function madd(a: v128, b: v128, acc: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f32x4.relaxed_madd(a, b, acc);
  return f32x4.add(acc, f32x4.mul(a, b));
}

/** The start of thread `tid`'s run when [0, total) is cut into `nt` near-equal runs of whole `unit`s. */
export function cut(total: i32, unit: i32, tid: i32, nt: i32): i32 {
  const units = (total + unit - 1) / unit;
  return min(total, <i32>((<i64>units * tid) / nt) * unit);
}

/** Address of element `i` of an f32 array at `p`. */
// @ts-ignore: decorator
@inline export function at(p: usize, i: i32): usize {
  return p + ((<usize>i) << 2);
}
