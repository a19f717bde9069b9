/**
 * `residual eval --crops 10|multiscale` and `residual predict`'s ImageNet labels, end to end through the
 * built CLI, on a tiny ImageFolder and weights the tests write.
 */
import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MAIN, cli, json } from './fixtures.test-support.js';
import { beforeAll, describe, expect, it } from 'vitest';
import { manualSeed, noGrad, setBackend, softmax, tensor, zeros } from '@residual/core';
import { saveTensors } from '@residual/core/node';
import { createCpuBackend } from '@residual/backend-cpu';
import { IMAGENET_NORM, loadImage, type Step } from '@residual/data';
import { createModel, IMAGENET_LABELS, IMAGENET_WNIDS, tenCropScores } from '@residual/resnet';

// sharp is the data package's dependency, not the CLI's: load it from there.
const sharpModule = createRequire(fileURLToPath(new URL('../../../packages/data/package.json', import.meta.url)))('sharp');
const sharp = sharpModule.default ?? sharpModule;


/** An ImageFolder `val` split: one 30x30 PNG per class folder, and an unreadable file. */
const CLASSES = ['n01440764', 'n01443537'];
const makeImageFolder = async (): Promise<{ dir: string; files: string[] }> => {
  const dir = mkdtempSync(join(tmpdir(), 'residual-imagefolder-'));
  const files: string[] = [];
  for (const [label, wnid] of CLASSES.entries()) {
    mkdirSync(join(dir, 'val', wnid), { recursive: true });
    const px = Buffer.alloc(30 * 30 * 3);
    for (let i = 0; i < px.length; i++) px[i] = (i * 7919 + label * 101) % 256;
    const file = join(dir, 'val', wnid, 'image.png');
    await sharp(px, { raw: { width: 30, height: 30, channels: 3 } }).png().toFile(file);
    files.push(file);
  }
  writeFileSync(join(dir, 'val', CLASSES[1], 'broken.png'), 'not an image');
  return { dir, files };
};

/** top-1, top-5 and -log p[label] of one image's probabilities, counted by hand. */
const metricsOf = (p: ArrayLike<number>, label: number) => {
  const rank = Array.from(p).filter((v) => v > p[label]).length;
  return { top1: rank === 0 ? 1 : 0, top5: rank < 5 ? 1 : 0, loss: -Math.log(p[label]) };
};
const averaged = (ms: ReturnType<typeof metricsOf>[]) => ({
  top1: ms.reduce((a, m) => a + m.top1, 0) / ms.length,
  top5: ms.reduce((a, m) => a + m.top5, 0) / ms.length,
  loss: ms.reduce((a, m) => a + m.loss, 0) / ms.length,
});

const decode = (file: string, steps: Step[]) => loadImage(file, { steps, ...IMAGENET_NORM });

let data: { dir: string; files: string[] };
let weights: string;
let model: ReturnType<typeof createModel>;

beforeAll(async () => {
  if (!existsSync(MAIN)) throw new Error(`build the CLI first (pnpm build): ${MAIN} is missing`);
  setBackend(createCpuBackend());
  data = await makeImageFolder();
  manualSeed(1);
  model = createModel('resnet18');
  model.eval();
  weights = join(data.dir, 'resnet18.safetensors');
  await saveTensors(weights, model.stateDict());
});

describe('eval --crops', () => {
  const base = () => ['eval', '--model', 'resnet18', '--weights', weights, '--data', `imagenet:${data.dir}`, '--split', 'val'];

  it('10 averages the softmax of the ten views of each image resized to 256, skipping unreadable files', async () => {
    const r = json([...base(), '--crops', '10']);
    const want = averaged(
      await Promise.all(data.files.map(async (f, label) => metricsOf(await tenCropScores(model, await decode(f, [{ op: 'resize', size: 256 }])).data(), label))),
    );
    expect(r).toMatchObject({ images: 2, skipped: 1, top1: want.top1, top5: want.top5 });
    expect(r.loss).toBeCloseTo(want.loss, 4);
  }, 180_000);

  it('multiscale at a scale whose feature map is 1x1 averages softmax(forward) of the image and its mirror', async () => {
    const r = json([...base(), '--crops', 'multiscale', '--scales', '32']);
    const ms = await Promise.all(
      data.files.map(async (f, label) => {
        const views = await Promise.all([[], [{ op: 'hflip', p: 1 } as const]].map((flip) => decode(f, [{ op: 'resize', size: 32 }, ...flip])));
        const x = tensor(new Float32Array([...views[0].data, ...views[1].data]), [2, 3, 32, 32]);
        const p = await noGrad(() => softmax(model.forward(x), 1)).data();
        return metricsOf(Array.from({ length: 1000 }, (_, k) => (p[k] + p[1000 + k]) / 2), label);
      }),
    );
    const want = averaged(ms);
    expect(r).toMatchObject({ images: 2, skipped: 1, top1: want.top1, top5: want.top5 });
    expect(r.loss).toBeCloseTo(want.loss, 4);
  }, 180_000);

  it('rejects bad combinations, naming the flag', () => {
    const noWeights = ['eval', '--model', 'resnet18', '--weights', 'none.safetensors'];
    const cases: [string[], RegExp][] = [
      [[...noWeights, '--data', 'builtin:shapes', '--crops', '10'], /--crops 10 needs imagenet: data/],
      [[...noWeights, '--data', `imagenet:${data.dir}`, '--crops', '7'], /--crops: /],
      [[...noWeights, '--data', `imagenet:${data.dir}`, '--crops', '10', '--scales', '224'], /--scales applies to --crops multiscale only/],
      [[...noWeights, '--data', `imagenet:${data.dir}`, '--crops', 'multiscale', '--scales', '224,x'], /--scales: /],
    ];
    for (const [args, message] of cases) {
      const r = cli(args);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(message);
    }
  });
});

describe('predict labels', () => {
  /** resnet18 weights whose scores ignore the image: fc weight 0, so the class probabilities are softmax(bias). */
  const constantWeights = async (bias: number[], metadata?: Record<string, string>) => {
    const m = createModel('resnet18', { numClasses: bias.length });
    m.fc.weight.assign(zeros([bias.length, 512]));
    m.fc.bias!.assign(tensor(bias));
    const file = join(data.dir, `constant-${bias.length}.safetensors`);
    await saveTensors(file, m.stateDict(), metadata);
    return file;
  };
  const softmaxOf = (z: number[]) => {
    const e = z.map(Math.exp);
    const s = e.reduce((a, b) => a + b, 0);
    return e.map((v) => v / s);
  };

  it("1000-class weights without class names get ImageNet's wnids and labels", async () => {
    const bias = Array.from({ length: 1000 }, (_, i) => (i === 207 ? 5 : -i / 100));
    const [r] = json(['predict', '--model', 'resnet18', '--weights', await constantWeights(bias), '--top', '3', data.files[0]]);
    const p = softmaxOf(bias);
    expect(r.file).toBe(data.files[0]);
    expect(r.top.map((t: { index: number }) => t.index)).toEqual([207, 0, 1]);
    expect(r.top.map((t: { wnid: string; label: string }) => [t.wnid, t.label])).toEqual([
      ['n02099601', 'golden retriever'], ['n01440764', 'tench'], ['n01443537', 'goldfish'],
    ]);
    expect(IMAGENET_WNIDS[207]).toBe('n02099601');
    expect(IMAGENET_LABELS[207]).toBe('golden retriever');
    r.top.forEach((t: { index: number; probability: number }) => expect(t.probability).toBeCloseTo(p[t.index], 5));
  }, 120_000);

  it('class names recorded in the weights win; a recorded wnid is shown by its ImageNet label', async () => {
    const file = await constantWeights([2, 1, 0], { classes: JSON.stringify(['n01443537', 'cat', 'dog']) });
    const [r] = json(['predict', '--model', 'resnet18', '--weights', file, data.files[0]]);
    expect(r.top.map((t: { index: number; wnid: string | null; label: string }) => [t.index, t.wnid, t.label])).toEqual([
      [0, 'n01443537', 'goldfish'], [1, null, 'cat'], [2, null, 'dog'],
    ]);
    const human = cli(['predict', '--model', 'resnet18', '--weights', file, data.files[0]]);
    expect(human.stdout).toMatch(/%\s+goldfish \(n01443537\)\n.*%\s+cat\n/);
  }, 120_000);
});
