import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { keyedRandom, randInt } from './random.js';
import { openSource } from './sources.js';
import { computeStats, symmetricEigen3 } from './stats.js';

let root: string;
const N = 40;
let records: Uint8Array;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'residual-stats-'));
  // CIFAR-10 records with correlated channels: G follows R, B is independent, so the covariance has structure.
  const rand = keyedRandom(11);
  records = new Uint8Array(N * 3073);
  for (let i = 0; i < N; i++) {
    records[i * 3073] = i % 10;
    for (let p = 0; p < 1024; p++) {
      const r = randInt(rand, 0, 255);
      records[i * 3073 + 1 + p] = r;
      records[i * 3073 + 1 + 1024 + p] = Math.min(255, Math.floor(r / 2) + randInt(rand, 0, 60));
      records[i * 3073 + 1 + 2048 + p] = randInt(rand, 100, 140);
    }
  }
  await mkdir(join(root, 'cifar'));
  await writeFile(join(root, 'cifar', 'data_batch_1.bin'), records);
});
afterAll(() => rm(root, { recursive: true, force: true }));

/** Float64 mean, covariance and per-position mean of the records, computed directly from the bytes. */
function reference(ids: number[]) {
  const px = (i: number, c: number, p: number) => records[i * 3073 + 1 + c * 1024 + p] / 255;
  const count = ids.length * 1024;
  const mean = [0, 1, 2].map((c) => ids.reduce((a, i) => a + Array.from({ length: 1024 }, (_, p) => px(i, c, p)).reduce((x, y) => x + y, 0), 0) / count);
  const cov = [0, 1, 2].map((c) =>
    [0, 1, 2].map((d) => {
      let s = 0;
      for (const i of ids) for (let p = 0; p < 1024; p++) s += (px(i, c, p) - mean[c]) * (px(i, d, p) - mean[d]);
      return s / count;
    }),
  );
  const image = Array.from({ length: 3072 }, (_, k) => ids.reduce((a, i) => a + px(i, Math.floor(k / 1024), k % 1024), 0) / ids.length);
  return { mean, cov, image };
}

describe('symmetricEigen3', () => {
  it('recovers the eigenpairs of Q diag(3, 2, 0.5) Q^T, largest first', () => {
    const [a, b] = [0.3, -1.1];
    // A rotation from two Givens rotations.
    const r1 = [[Math.cos(a), -Math.sin(a), 0], [Math.sin(a), Math.cos(a), 0], [0, 0, 1]];
    const r2 = [[1, 0, 0], [0, Math.cos(b), -Math.sin(b)], [0, Math.sin(b), Math.cos(b)]];
    const q = r1.map((row) => [0, 1, 2].map((j) => row.reduce((s, x, k) => s + x * r2[k][j], 0)));
    const d = [0.5, 3, 2];
    const m = q.map((row) => [0, 1, 2].map((j) => row.reduce((s, x, k) => s + x * d[k] * q[j][k], 0)));
    const { values, vectors } = symmetricEigen3(m);
    expect(values.map((v) => +v.toFixed(12))).toEqual([3, 2, 0.5]);
    for (const [k, from] of [[0, 1], [1, 2], [2, 0]]) {
      const dot = [0, 1, 2].reduce((s, c) => s + vectors[c][k] * q[c][from], 0);
      expect(Math.abs(dot)).toBeCloseTo(1, 12);
      expect(Math.max(...[0, 1, 2].map((c) => Math.abs(vectors[c][k])))).toBe(Math.max(...[0, 1, 2].map((c) => vectors[c][k])));
    }
  });
});

describe('computeStats', () => {
  it('matches a float64 reference: per-channel mean and std, PCA of the covariance, mean image', async () => {
    const source = await openSource(`cifar10:${join(root, 'cifar')}`);
    const s = await computeStats({ source, split: 'train', meanImage: true });
    const ref = reference(Array.from({ length: N }, (_, i) => i));
    expect([s.images, s.pixels, s.skipped]).toEqual([N, N * 1024, 0]);
    s.mean.forEach((m, c) => expect(m).toBeCloseTo(ref.mean[c], 6));
    s.std.forEach((sd, c) => expect(sd).toBeCloseTo(Math.sqrt(ref.cov[c][c]), 6));
    // Each component is an eigenvector of the reference covariance with its eigenvalue, and they are orthonormal.
    for (let k = 0; k < 3; k++) {
      const v = [0, 1, 2].map((c) => s.pca.eigvec[c][k]);
      const cv = ref.cov.map((row) => row.reduce((a, x, j) => a + x * v[j], 0));
      cv.forEach((x, c) => expect(x).toBeCloseTo(s.pca.eigval[k] * v[c], 7));
      for (let j = 0; j < 3; j++) expect([0, 1, 2].reduce((a, c) => a + v[c] * s.pca.eigvec[c][j], 0)).toBeCloseTo(j === k ? 1 : 0, 9);
    }
    expect(s.pca.eigval[0]).toBeGreaterThan(s.pca.eigval[1]);
    expect(s.pca.eigval[1]).toBeGreaterThan(s.pca.eigval[2]);
    expect(s.meanImage!.width).toBe(32);
    for (const k of [0, 1500, 3071]) expect(s.meanImage!.data[k]).toBeCloseTo(ref.image[k], 6);
  });

  it('measures a random subset with limit, and refuses a mean image of mixed sizes', async () => {
    const source = await openSource(`cifar10:${join(root, 'cifar')}`);
    const sub = await computeStats({ source, split: 'train', limit: 7, seed: 2 });
    expect(sub.images).toBe(7);
    expect(sub.mean).not.toEqual((await computeStats({ source, split: 'train', limit: 7, seed: 3 })).mean);

    for (const [name, w] of [['a/0.png', 8], ['a/1.png', 9]] as const) {
      await mkdir(join(root, 'mixed', 'train', 'a'), { recursive: true });
      await writeFile(join(root, 'mixed', 'train', name), await sharp({ create: { width: w, height: 8, channels: 3, background: '#408000' } }).png().toBuffer());
    }
    const mixed = await openSource(`imagenet:${join(root, 'mixed')}`);
    const plain = await computeStats({ source: mixed, split: 'train', workers: 0 });
    expect(plain.mean.map((m) => +m.toFixed(6))).toEqual([+(64 / 255).toFixed(6), +(128 / 255).toFixed(6), 0]);
    expect(plain.std.map((x) => +x.toFixed(9))).toEqual([0, 0, 0]);
    await expect(computeStats({ source: mixed, split: 'train', meanImage: true, workers: 0 })).rejects.toThrow('a mean image needs a transform that crops to one size');
    const cropped = await computeStats({ source: mixed, split: 'train', meanImage: true, workers: 0, transform: { steps: [{ op: 'centerCrop', size: 4 }] } });
    expect(cropped.meanImage!.data.length).toBe(48);
    await expect(computeStats({ source: mixed, split: 'train', transform: { steps: [], mean: [0, 0, 0], std: [1, 1, 1] } })).rejects.toThrow('must not normalise');
  });
});
