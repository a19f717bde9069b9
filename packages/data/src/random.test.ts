import { describe, expect, it } from 'vitest';
import { keyedRandom, permutation, randInt } from './random.js';

const draw = (r: () => number, n: number) => Array.from({ length: n }, r);

describe('keyedRandom', () => {
  it('is a pure function of its keys', () => {
    expect(draw(keyedRandom(7, 2, 40), 8)).toEqual(draw(keyedRandom(7, 2, 40), 8));
    const base = draw(keyedRandom(7, 2, 40), 8);
    for (const other of [keyedRandom(8, 2, 40), keyedRandom(7, 3, 40), keyedRandom(7, 2, 41), keyedRandom(7, 2), keyedRandom(7 + 2 ** 32, 2, 40)]) {
      expect(draw(other, 8)).not.toEqual(base);
    }
  });

  it('draws uniformly from [0, 1)', () => {
    const xs = draw(keyedRandom(1), 20_000);
    expect(Math.min(...xs)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...xs)).toBeLessThan(1);
    const mean = xs.reduce((a, b) => a + b) / xs.length;
    const variance = xs.reduce((a, b) => a + (b - mean) ** 2, 0) / xs.length;
    // For U(0,1): mean 1/2 (std error 0.002), variance 1/12.
    expect(mean).toBeCloseTo(0.5, 2);
    expect(variance).toBeCloseTo(1 / 12, 2);
    const deciles = new Array(10).fill(0);
    for (const x of xs) deciles[Math.floor(x * 10)]++;
    for (const d of deciles) expect(Math.abs(d - 2000)).toBeLessThan(200);
  });
});

describe('randInt and permutation', () => {
  it('randInt covers both ends and nothing else', () => {
    const r = keyedRandom(3);
    const seen = new Set(Array.from({ length: 500 }, () => randInt(r, 2, 5)));
    expect([...seen].sort()).toEqual([2, 3, 4, 5]);
  });

  it('permutation holds every index once and depends on the stream', () => {
    const p = permutation(1000, keyedRandom(1, 0));
    expect([...p].sort((a, b) => a - b)).toEqual(Array.from({ length: 1000 }, (_, i) => i));
    expect([...p]).not.toEqual(Array.from({ length: 1000 }, (_, i) => i));
    expect([...permutation(1000, keyedRandom(1, 0))]).toEqual([...p]);
    expect([...permutation(1000, keyedRandom(1, 1))]).not.toEqual([...p]);
  });
});
