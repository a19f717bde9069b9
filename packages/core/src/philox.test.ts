import { describe, expect, it } from 'vitest';
import { addCounter, mulhi32, philox4x32, philoxFill } from './philox.js';

describe('philox4x32-10', () => {
  // Known-answer vectors published with the Random123 library (kat_vectors).
  it.each([
    [[0, 0, 0, 0], [0, 0], [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]],
    [[0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff], [0xffffffff, 0xffffffff], [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]],
    [[0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0], [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]],
  ])('matches the published vector for counter %j key %j', (c, k, want) => {
    expect(Array.from(philox4x32(c[0], c[1], c[2], c[3], k[0], k[1]))).toEqual(want);
  });

  it('computes the high word of 32x32-bit products exactly', () => {
    for (const [a, b] of [[0xffffffff, 0xffffffff], [0xd2511f53, 0x12345678], [1, 0xffffffff], [0x10000, 0x10000]]) {
      expect(mulhi32(a, b)).toBe(Number((BigInt(a) * BigInt(b)) >> 32n));
    }
  });

  it('carries counter additions into the high word', () => {
    expect(addCounter([0xffffffff, 7], 1)).toEqual([0, 8]);
    expect(addCounter([5, 0], 2 ** 32 + 3)).toEqual([8, 1]);
  });

  it('draws uniforms in the interval and normals with the right moments', () => {
    const u = philoxFill(new Float32Array(100_000), 'uniform', [1, 2], [0, 0], -2, 3);
    expect(Math.min(...u)).toBeGreaterThan(-2);
    expect(Math.max(...u)).toBeLessThan(3);
    const mean = (a: Float32Array) => a.reduce((s, x) => s + x, 0) / a.length;
    expect(mean(u)).toBeCloseTo(0.5, 1);
    const n = philoxFill(new Float32Array(100_000), 'normal', [9, 0], [0, 0], 1, 2);
    const m = mean(n);
    const sd = Math.sqrt(n.reduce((s, x) => s + (x - m) ** 2, 0) / n.length);
    expect(m).toBeCloseTo(1, 1);
    expect(sd).toBeCloseTo(2, 1);
  });

  it('gives each element from its own counter, so a draw split in two equals the whole', () => {
    const whole = philoxFill(new Float32Array(10), 'normal', [3, 0], [0, 0], 0, 1);
    const tail = philoxFill(new Float32Array(6), 'normal', [3, 0], [2, 0], 0, 1);
    expect(Array.from(whole.subarray(4))).toEqual(Array.from(tail));
  });
});
