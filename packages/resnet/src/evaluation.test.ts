import { beforeAll, describe, expect, it } from 'vitest';
import { flatten, manualSeed, mean, Module, mul, randn, setBackend, slice, softmax, tensor, type Tensor } from '@residual/core';
import { createReferenceBackend } from '@residual/core/testing';
import {
  BasicBlock, cropView, evaluateScores, fullyConvolutionalScores, mirror, multiScaleScores, ResNet, stackImages, tenCropScores,
  tenCropWindows, viewAveragedScores, type ImageCHW,
} from './index.js';

beforeAll(() => setBackend(createReferenceBackend()));

/** A CHW image whose every value names its place: c * 1000 + y * 37 + x. */
const handMade = (width: number, height: number): ImageCHW => {
  const data = new Float32Array(3 * width * height);
  for (let c = 0; c < 3; c++) for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) data[(c * height + y) * width + x] = c * 1000 + y * 37 + x;
  return { data, width, height };
};

/** The `size` square at (left, top) of the image or of its mirror, spelled out from handMade's formula. */
const expectedCrop = (width: number, left: number, top: number, size: number, mirrored: boolean) => {
  const out: number[] = [];
  for (let c = 0; c < 3; c++)
    for (let y = 0; y < size; y++) for (let x = 0; x < size; x++) out.push(c * 1000 + (top + y) * 37 + (mirrored ? width - 1 - (left + x) : left + x));
  return out;
};

const values = async (t: Tensor) => Array.from(await t.data());

const expectAllClose = (got: ArrayLike<number>, want: ArrayLike<number>, tol = 1e-6) => {
  expect(got.length).toBe(want.length);
  for (let i = 0; i < want.length; i++) expect(Math.abs(got[i] - want[i])).toBeLessThan(tol);
};

describe('views', () => {
  it('cropView copies the window, and with flip the window of the mirrored image', () => {
    const im = handMade(7, 5);
    expect(Array.from(cropView(im, { left: 2, top: 1, width: 3, height: 3 }).data)).toEqual(expectedCrop(7, 2, 1, 3, false));
    expect(Array.from(cropView(im, { left: 0, top: 2, width: 3, height: 3, flip: true }).data)).toEqual(expectedCrop(7, 0, 2, 3, true));
  });

  it('mirror reverses every row and is its own inverse', () => {
    const im = handMade(4, 2);
    const m = mirror(im);
    expect(Array.from(m.data.subarray(0, 8))).toEqual([3, 2, 1, 0, 40, 39, 38, 37]);
    expect(Array.from(mirror(m).data)).toEqual(Array.from(im.data));
  });

  it('ten crops: corners and centre, then the same of the mirror (torchvision TenCrop order)', () => {
    const im = handMade(7, 5);
    const windows = tenCropWindows(7, 5, 3);
    const places = [[0, 0], [4, 0], [0, 2], [4, 2], [2, 1]];
    expect(windows).toEqual([false, true].flatMap((flip) => places.map(([left, top]) => ({ left, top, width: 3, height: 3, flip }))));
    windows.forEach((w, i) => expect(Array.from(cropView(im, w).data)).toEqual(expectedCrop(7, places[i % 5][0], places[i % 5][1], 3, i >= 5)));
  });

  it('the centre crop rounds half offsets to even, like torchvision', () => {
    expect(tenCropWindows(10, 8, 3)[4]).toMatchObject({ left: 4, top: 2 }); // 3.5 -> 4, 2.5 -> 2
    expect(tenCropWindows(256, 341, 224)[4]).toMatchObject({ left: 16, top: 58 }); // 58.5 -> 58
  });

  it('rejects windows outside the image and crops larger than it', () => {
    expect(() => cropView(handMade(4, 4), { left: 2, top: 0, width: 3, height: 3 })).toThrow(/cropView: window 3x3 at \(2, 0\).*4x4/);
    expect(() => tenCropWindows(200, 300)).toThrow(/224 crop does not fit the 200x300/);
    expect(() => stackImages([handMade(4, 4), handMade(5, 4)])).toThrow(/differ in size/);
  });
});

/** Logits = per-channel mean of x weighted by column (so mirroring changes them): an answer computable by hand. */
class ColumnWeighted extends Module {
  forward(x: Tensor): Tensor {
    const w = x.shape[3];
    return mean(mul(x, tensor(Array.from({ length: w }, (_, i) => (i + 1) / w / 1000), [1, 1, 1, w])), [2, 3]);
  }
}

const softmaxOf = (z: number[]) => {
  const m = Math.max(...z);
  const e = z.map((v) => Math.exp(v - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
};

describe('10-crop scores', () => {
  it('average the softmax of the ten views', async () => {
    const im = handMade(7, 5);
    const perView = tenCropWindows(7, 5, 3).map((w) => {
      const px = expectedCrop(7, w.left, w.top, 3, w.flip!);
      return softmaxOf([0, 1, 2].map((c) => px.slice(c * 9, c * 9 + 9).reduce((a, v, i) => a + (v * ((i % 3) + 1)) / 3 / 1000, 0) / 9));
    });
    const want = [0, 1, 2].map((k) => perView.reduce((a, p) => a + p[k], 0) / 10);
    const got = tenCropScores(new ColumnWeighted(), im, 3);
    expect(got.shape).toEqual([1, 3]);
    expectAllClose(await values(got), want);
  });

  it("average each image's own consecutive views in a batch", async () => {
    const images = [handMade(3, 3), mirror(handMade(3, 3)), cropView(handMade(5, 3), { left: 2, top: 0, width: 3, height: 3 }), handMade(3, 3)];
    const each = await Promise.all(images.map((im) => values(softmax(new ColumnWeighted().forward(stackImages([im])), 1))));
    const got = viewAveragedScores(new ColumnWeighted(), stackImages(images), 2);
    expect(got.shape).toEqual([2, 3]);
    expectAllClose(await values(got), [0, 1, 2].map((k) => (each[0][k] + each[1][k]) / 2).concat([0, 1, 2].map((k) => (each[2][k] + each[3][k]) / 2)));
    expect(() => viewAveragedScores(new ColumnWeighted(), stackImages(images), 3)).toThrow(/batch of 4 is not a whole number of images of 3 views/);
  });
});

describe('fully-convolutional multi-scale scores (tiny ResNet, float64 reference)', () => {
  const net = () => {
    manualSeed(7);
    const m = new ResNet(BasicBlock, [1, 1, 1, 1], { numClasses: 5 });
    m.eval();
    return m;
  };

  it('with a 1x1 final feature map they equal softmax(forward(x))', async () => {
    const model = net();
    const x = randn([2, 3, 32, 32], { seed: 1 });
    const got = fullyConvolutionalScores(model, x);
    expect(got.shape).toEqual([2, 5]);
    expectAllClose(await values(got), await values(softmax(model.forward(x), 1)));
  });

  it('on a 2x2 feature map they average the softmax of fc at each position', async () => {
    const model = net();
    const x = randn([1, 3, 64, 64], { seed: 2 });
    const f = model.features(x);
    expect(f.shape).toEqual([1, 512, 2, 2]);
    const perPosition = await Promise.all(
      [[0, 0], [0, 1], [1, 0], [1, 1]].map(([i, j]) => values(softmax(model.fc.forward(flatten(slice(f, [0, 0, i, j], [1, 512, 1, 1]))), 1))),
    );
    const want = [0, 1, 2, 3, 4].map((k) => perPosition.reduce((a, p) => a + p[k], 0) / 4);
    expectAllClose(await values(fullyConvolutionalScores(model, x)), want);
    // Not the same as pooling first: softmax does not commute with the average.
    const pooled = await values(softmax(model.forward(x), 1));
    expect(Math.max(...pooled.map((p, k) => Math.abs(p - want[k])))).toBeGreaterThan(1e-6);
  });

  it('average over scales and mirrors', async () => {
    const model = net();
    const images: ImageCHW[] = await Promise.all(
      [1, 2].map(async (seed) => ({ data: (await randn([3, 32, 32], { seed }).data()) as Float32Array, width: 32, height: 32 })),
    );
    const views = images.flatMap((im) => [im, mirror(im)]);
    const each = await Promise.all(views.map((v) => values(softmax(model.forward(stackImages([v])), 1))));
    const want = [0, 1, 2, 3, 4].map((k) => each.reduce((a, p) => a + p[k], 0) / 4);
    const got = multiScaleScores(model, images);
    expect(got.shape).toEqual([1, 5]);
    expectAllClose(await values(got), want);
  });
});

describe('evaluateScores', () => {
  it('counts top-1, top-5 and the cross-entropy of the averaged probabilities', async () => {
    // Six classes so that a label can rank sixth (a top-5 miss).
    const p = [
      [0.5, 0.1, 0.1, 0.1, 0.1, 0.1], // label 0: top-1
      [0.3, 0.25, 0.2, 0.15, 0.07, 0.03], // label 4: top-5 only
      [0.3, 0.25, 0.2, 0.15, 0.07, 0.03], // label 5: ranked sixth
    ];
    const labels = Int32Array.of(0, 4, 5);
    const r = await evaluateScores([{ probabilities: tensor(p.slice(0, 2)), labels: labels.subarray(0, 2) }, { probabilities: tensor([p[2]]), labels: labels.subarray(2) }]);
    expect(r.images).toBe(3);
    expect(r.top1).toBeCloseTo(1 / 3, 6);
    expect(r.top5).toBeCloseTo(2 / 3, 6);
    expect(r.loss).toBeCloseTo(-(Math.log(0.5) + Math.log(0.07) + Math.log(0.03)) / 3, 5);
  });

  it('names a label outside the classes', async () => {
    await expect(evaluateScores([{ probabilities: tensor([[0.5, 0.5]]), labels: Int32Array.of(2) }])).rejects.toThrow(/label 2 is outside the 2 classes/);
  });
});
