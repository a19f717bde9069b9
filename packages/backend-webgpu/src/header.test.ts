import { describe, expect, it } from 'vitest';
import { packUniforms, shaderSource, uniformLayout, type Program } from './header.js';
import { sizeClass } from './pool.js';

const program = (uniforms: Program['uniforms']): Program => ({
  shaderKey: 'test', workgroupSize: 64, dispatch: 5, inputs: [], outputs: [], uniforms, code: () => '',
});

describe('the uniform block', () => {
  it('lays fields out as WGSL does: scalars 4-byte aligned, vec4-word arrays 16-byte aligned', () => {
    // groups (implicit) @0, size @1, shape (3 -> 1 vec4) @4..7, alpha @8, strides (5 -> 2 vec4) @12..19.
    const p = program([
      { name: 'size', type: 'u32', value: 7 },
      { name: 'shape', type: 'u32', value: [2, 3, 4] },
      { name: 'alpha', type: 'f32', value: 0.5 },
      { name: 'strides', type: 'i32', value: [1, -2, 3, 4, 5] },
    ]);
    const layout = uniformLayout(p);
    expect(layout).toEqual({ offsets: [0, 1, 4, 8, 12], words: 20 });
    const view = new DataView(new ArrayBuffer(80));
    packUniforms(p, layout, view, 0);
    const words = new Int32Array(view.buffer);
    expect([...words.subarray(0, 7)]).toEqual([5, 7, 0, 0, 2, 3, 4]);
    expect(new Float32Array(view.buffer)[8]).toBe(0.5);
    expect([...words.subarray(12, 17)]).toEqual([1, -2, 3, 4, 5]);
  });

  it('declares the same layout in WGSL, with an accessor per array', () => {
    const src = shaderSource(program([{ name: 'size', type: 'u32', value: 1 }, { name: 'shape', type: 'u32', value: [1, 2, 3, 4, 5] }]));
    expect(src).toMatch(/struct Uniforms \{\s*groups: u32,\s*size: u32,\s*shape: array<vec4<u32>, 2>,\s*\}/);
    expect(src).toContain('fn shape(i: u32) -> u32');
  });
});

describe('size classes', () => {
  it('round up by at most a quarter, never below the request, to a 4-byte multiple', () => {
    for (let bytes = 1; bytes < 1 << 20; bytes = Math.ceil(bytes * 1.37) + 1) {
      const c = sizeClass(bytes);
      expect(c).toBeGreaterThanOrEqual(bytes);
      expect(c % 4).toBe(0);
      if (bytes > 256) expect(c).toBeLessThanOrEqual(bytes * 1.25);
    }
    expect([4, 256, 257, 1000, 1024, 1025, 4000].map(sizeClass)).toEqual([256, 256, 320, 1024, 1024, 1280, 4096]);
  });
});
