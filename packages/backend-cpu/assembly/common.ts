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

// --- the fused epilogue of a forward convolution: y = act(y·scale[k] + bias[k] + residual) --------
// Applied where an output tile is stored (the GEMM's register tile, the Winograd output transforms),
// so the output is written once. Globals are per instance, so per thread; `epilogueFrom` sets them
// at the start of every kernel that stores through them.

/** bias [K] of the running convolution, 0 when it has none. */
export let epiBias: usize = 0;
/** scale [K] of the running convolution (a folded batch-norm), applied before the bias; 0 when it has none. */
export let epiScale: usize = 0;
/** Whether a residual or a ReLU (`finish`) follows the bias. */
export let epiFinish = false;
/** Whether a residual is added. */
export let epiResidual = false;
/** The residual's address minus y's (wrapping): a residual element sits at its output's address plus this. */
export let epiDelta: usize = 0;
/** Whether a ReLU closes the epilogue. */
export let epiRelu = false;

/**
 * Reads the epilogue at `epi` (4 u32: bias, residual, relu, scale; addresses 0 when absent) for output
 * y; `epi` 0 is none.
 */
export function epilogueFrom(epi: usize, y: usize): void {
  const residual: usize = epi ? load<u32>(epi, 4) : 0;
  epiBias = epi ? load<u32>(epi) : 0;
  epiScale = epi ? load<u32>(epi, 12) : 0;
  epiResidual = residual != 0;
  epiDelta = residual - y;
  epiRelu = epi != 0 && load<u32>(epi, 8) != 0;
  epiFinish = epiResidual || epiRelu;
}

/**
 * v (four outputs stored at o) plus their residual, then the ReLU as max(0, v) where v > 0 only: NaN
 * and -0 become +0, as the op's float64 reference has it (`pmax` is one instruction on x86).
 */
// @ts-ignore: decorator
@inline export function finish(v: v128, o: usize): v128 {
  if (epiResidual) v = f32x4.add(v, v128.load(o + epiDelta));
  return epiRelu ? f32x4.pmax(f32x4.splat(0), v) : v;
}

/** `finish` for one output stored at o. */
// @ts-ignore: decorator
@inline export function finish1(v: f32, o: usize): f32 {
  if (epiResidual) v += load<f32>(o + epiDelta);
  return epiRelu && !(v > 0) ? 0 : v;
}
