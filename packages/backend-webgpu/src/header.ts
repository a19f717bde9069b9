/**
 * What a WGSL program is, and the one generated header every program is compiled with: its
 * bindings, its uniform block (with typed accessors for array fields), shared numeric helpers, the
 * strided index helper and the entry point. Programs write only `fn run(group: u32, lid: u32)`.
 */

/** Scalar types a binding or a uniform field can hold. */
export type WgslScalar = 'f32' | 'i32' | 'u32';

/** A storage buffer a program reads (inputs) or writes (outputs, bound read-write); vec4 for 16-byte loads. */
export interface BufferDecl {
  readonly name: string;
  readonly type: WgslScalar | 'vec4<f32>';
}

/** One uniform value, or an array of them (arrays are read through a generated accessor `name(i)`). */
export interface UniformField {
  readonly name: string;
  readonly type: WgslScalar;
  readonly value: number | readonly number[];
}

/**
 * A compute program. `shaderKey` must determine `code()` and the declarations (the pipeline cache
 * is keyed by it); `dispatch` is a count of workgroups, which the runtime folds into 2-D when it
 * exceeds the device's per-dimension limit (the header unfolds it into `group`).
 */
export interface Program {
  readonly shaderKey: string;
  readonly workgroupSize: number;
  readonly dispatch: number;
  readonly inputs: readonly BufferDecl[];
  readonly outputs: readonly BufferDecl[];
  readonly uniforms: readonly UniformField[];
  /** The element type the shared helpers (`isNan`, `maxOf`, `lowest`, ...) work on. Default f32. */
  readonly scalar?: WgslScalar;
  /** Emit `groupSum(v, lid)` / `groupMax(v, lid)`: f32 reductions across the workgroup. */
  readonly groupReductions?: boolean;
  /** Enable WGSL subgroups (the device must have the feature); the private `lane` holds the subgroup invocation id. */
  readonly subgroups?: boolean;
  /** WGSL defining `fn run(group: u32, lid: u32)` and anything it needs. */
  code(): string;
}

/** Word (4-byte) offset of each field in the uniform block; the block's size in words. */
export interface UniformLayout {
  readonly offsets: readonly number[];
  readonly words: number;
}

const GROUPS: UniformField = { name: 'groups', type: 'u32', value: 0 };
const fieldsOf = (p: Program): UniformField[] => [{ ...GROUPS, value: p.dispatch }, ...p.uniforms];
const isArray = (f: UniformField): f is UniformField & { value: readonly number[] } => typeof f.value !== 'number';
/** Arrays live in vec4 words (uniform arrays need a 16-byte stride); at least one. */
const vec4s = (f: UniformField) => Math.max(1, Math.ceil((f.value as readonly number[]).length / 4));

/** WGSL's uniform layout of the program's fields: scalars 4-byte aligned, arrays 16-byte aligned. */
export const uniformLayout = (p: Program): UniformLayout => {
  const offsets: number[] = [];
  let w = 0;
  for (const f of fieldsOf(p)) {
    if (isArray(f)) {
      w = Math.ceil(w / 4) * 4;
      offsets.push(w);
      w += 4 * vec4s(f);
    } else offsets.push(w++);
  }
  return { offsets, words: Math.ceil(w / 4) * 4 };
};

/** Writes the program's uniform values at `byteOffset` of `view`, in the layout above. */
export const packUniforms = (p: Program, layout: UniformLayout, view: DataView, byteOffset: number): void => {
  fieldsOf(p).forEach((f, i) => {
    const values = isArray(f) ? f.value : [f.value as number];
    values.forEach((v, j) => {
      const at = byteOffset + (layout.offsets[i] + j) * 4;
      if (f.type === 'f32') view.setFloat32(at, v, true);
      else if (f.type === 'i32') view.setInt32(at, v, true);
      else view.setUint32(at, v, true);
    });
  });
};

const uniformStruct = (p: Program): string => {
  const members = fieldsOf(p).map((f) => `  ${f.name}: ${isArray(f) ? `array<vec4<u32>, ${vec4s(f)}>` : f.type},`);
  const accessors = fieldsOf(p)
    .filter(isArray)
    .map((f) => `fn ${f.name}(i: u32) -> ${f.type} { return bitcast<${f.type}>(u.${f.name}[i >> 2u][i & 3u]); }`);
  return [`struct Uniforms {\n${members.join('\n')}\n}`, '@group(0) @binding(0) var<uniform> u: Uniforms;', ...accessors].join('\n');
};

const bindings = (p: Program): string =>
  [
    ...p.inputs.map((b, i) => `@group(0) @binding(${i + 1}) var<storage, read> ${b.name}: array<${b.type}>;`),
    ...p.outputs.map((b, i) => `@group(0) @binding(${p.inputs.length + i + 1}) var<storage, read_write> ${b.name}: array<${b.type}>;`),
  ].join('\n');

/** NaN-aware helpers over the program's scalar type T; for i32 the NaN tests vanish. */
const scalarHelpers = (t: WgslScalar): string => {
  const f = t === 'f32';
  return `alias T = ${t};
// NaN is tested on the bits: a driver's fast-math may fold \`v != v\` to false.
fn isNanF(v: f32) -> bool { return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u; }
fn isNan(v: T) -> bool { return ${f ? 'isNanF(v)' : 'false'}; }
// ReLU as the reference has it (\`v > 0 ? v : 0\`, so NaN maps to 0), and its gradient: dy where the
// output y passed. relu, reluBackward and the fused epilogues of conv2d and batch-norm all use these.
fn reluOf(v: f32) -> f32 { return select(0.0, v, v > 0.0); }
fn reluGrad(y: f32, dy: f32) -> f32 { return select(0.0, dy, y > 0.0); }
// Built outside const-expressions, where NaN and infinity are compile errors.
fn nan() -> f32 { var bits = 0x7fc00000u; return bitcast<f32>(bits); }
fn lowest() -> T { var bits = ${f ? '0xff800000u' : '0x80000000u'}; return bitcast<T>(bits); }
fn highest() -> T { var bits = ${f ? '0x7f800000u' : '0x7fffffffu'}; return bitcast<T>(bits); }
// max/min that propagate NaN (PyTorch's maximum/minimum/amax), which WGSL's max/min do not promise.
fn maxOf(a: T, b: T) -> T { return select(max(a, b), a + b, isNan(a) || isNan(b)); }
fn minOf(a: T, b: T) -> T { return select(min(a, b), a + b, isNan(a) || isNan(b)); }
// The order of argmax/topk: larger value first, then lower index; NaN after every number.
fn ranksBefore(v: T, i: u32, w: T, j: u32) -> bool {
  if (isNan(v) || isNan(w)) { return !isNan(v) || (isNan(w) && i < j); }
  return v > w || (v == w && i < j);
}`;
};

/**
 * `stridedOffset(flat, k)`: the element offset, in operand k's buffer, of the element at row-major
 * position `flat` of the iteration shape `shape`, with operand k's strides at strides[k*RANK ..].
 * Emitted for programs with `shape` and `strides` array fields.
 */
const stridedHelper = (rank: number): string => `const RANK = ${rank}u;
fn stridedOffset(flat: u32, k: u32) -> u32 {
  var rem = flat;
  var off = 0u;
  for (var d = RANK; d > 0u; d--) {
    let n = shape(d - 1u);
    off += (rem % n) * strides(k * RANK + d - 1u);
    rem /= n;
  }
  return off;
}`;

/** Tree reductions of one f32 per invocation across the workgroup; every invocation gets the result. */
const groupReductionHelpers = `var<workgroup> red: array<f32, WG>;
fn groupSum(v: f32, lid: u32) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { red[lid] += red[lid + s]; }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}
fn groupMax(v: f32, lid: u32) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { red[lid] = maxOf(red[lid], red[lid + s]); }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}`;

/** The full WGSL source of a program: the generated header, then the program's own code. */
export const shaderSource = (p: Program): string => {
  const shape = p.uniforms.find((f) => f.name === 'shape');
  const hasStrides = p.uniforms.some((f) => f.name === 'strides');
  return [
    p.subgroups ? 'enable subgroups;\nvar<private> lane: u32;' : '',
    `const WG = ${p.workgroupSize}u;`,
    uniformStruct(p),
    bindings(p),
    scalarHelpers(p.scalar ?? 'f32'),
    shape && hasStrides ? stridedHelper((shape.value as readonly number[]).length) : '',
    p.groupReductions ? groupReductionHelpers : '',
    `@compute @workgroup_size(${p.workgroupSize})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32${
      p.subgroups ? ', @builtin(subgroup_invocation_id) sid: u32' : ''
    }) {
  let group = wid.x + wid.y * nwg.x;
  if (group >= u.groups) { return; }${p.subgroups ? '\n  lane = sid;' : ''}
  run(group, lid);
}`,
    p.code(),
  ].join('\n\n');
};

/** Workgroups needed for `n` items at `per` items per workgroup. */
export const groupsFor = (n: number, per: number): number => Math.ceil(n / per);
