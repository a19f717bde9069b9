/**
 * Top-k along the last axis, a workgroup per row. Round j finds, by a tree reduction, the best
 * element that ranks after round j-1's pick (value descending, then index ascending), so no element
 * needs marking and ties come out lower index first.
 */
import type { Program, WgslScalar } from '../header.js';

const WG = 64;

/** The program of top-k over `rows` rows of `length` elements of `type`. */
export const topkProgram = (type: WgslScalar, rows: number, length: number, k: number): Program => ({
  shaderKey: `topk|${type}`,
  workgroupSize: WG,
  dispatch: k === 0 ? 0 : rows,
  inputs: [{ name: 'x', type }],
  outputs: [
    { name: 'values', type },
    { name: 'indices', type: 'i32' },
  ],
  uniforms: [
    { name: 'length', type: 'u32', value: length },
    { name: 'k', type: 'u32', value: k },
  ],
  scalar: type,
  code: () => `const NONE = 0xffffffffu;
var<workgroup> sv: array<T, WG>;
var<workgroup> si: array<u32, WG>;
var<workgroup> prevV: T;
var<workgroup> prevI: u32;

fn run(group: u32, lid: u32) {
  let base = group * u.length;
  for (var j = 0u; j < u.k; j++) {
    var bv = lowest();
    var bi = NONE;
    for (var c = lid; c < u.length; c += WG) {
      let v = x[base + c];
      if ((j == 0u || ranksBefore(prevV, prevI, v, c)) && (bi == NONE || ranksBefore(v, c, bv, bi))) {
        bv = v;
        bi = c;
      }
    }
    sv[lid] = bv;
    si[lid] = bi;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
      if (lid < s) {
        let ov = sv[lid + s];
        let oi = si[lid + s];
        if (oi != NONE && (si[lid] == NONE || ranksBefore(ov, oi, sv[lid], si[lid]))) {
          sv[lid] = ov;
          si[lid] = oi;
        }
      }
      workgroupBarrier();
    }
    if (lid == 0u) {
      values[group * u.k + j] = sv[0];
      indices[group * u.k + j] = i32(si[0]);
      prevV = sv[0];
      prevI = si[0];
    }
    workgroupBarrier();
  }
}`,
});
