// Where the data pipeline's time goes on a folder of images, stage by stage, for the paper's ImageNet
// augmentation (shorter side uniform in [256, 480], random 224 crop, flip, normalise).
//
//   node bench/data/profile.mjs --dir DIR [--split train] [--limit 500] [--workers N] [--batch-size 32]
//
// --workers defaults to the loader's own default.
//
// DIR is an ImageFolder tree (DIR/train/<class>/*.jpg). Prints one JSON line per stage, in CPU
// milliseconds per image (all threads of this process: libvips runs on libuv's pool), then one line
// for start-up. Stages are timed one at a time on one image after another, each pipeline built on the
// one before, so a stage's cost is the difference to the line above it:
//
//   read         the file's bytes
//   header       sharp's metadata() (size, orientation, bands): the loader's first look at a file
//   decode       every pixel decoded, in the file's own colour space
//   colour       + conversion to 8-bit sRGB by libvips (grayscale, CMYK and ICC profiles through lcms, alpha)
//   window       + resize to the drawn scale and cut the 224 crop, as one sharp pipeline
//   floats       + the crop as normalised CHW float32 (a plain loop, the lower bound of that step)
//   sample       the package's own decode of one sample, loadImage(bytes, scaleAugment()): what the
//                stages above add up to inside the package
//   loader       a whole epoch through createLoader with --workers threads, per image: sample plus
//                message passing, batch assembly and scheduling, spread over the cores
//
// The start-up line times the directory scan, and the first batch of a fresh loader against a batch
// of a warm one (worker threads starting, each loading sharp).
import { createRequire } from 'node:module';
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { positiveInts } from '../args.mjs';

const { values: opts } = parseArgs({
  options: {
    dir: { type: 'string' },
    split: { type: 'string', default: 'train' },
    limit: { type: 'string', default: '500' },
    workers: { type: 'string' },
    'batch-size': { type: 'string', default: '32' },
  },
});
if (!opts.dir) throw new Error('bench/data/profile.mjs: --dir DIR is required (an ImageFolder tree)');
const [limit, batchSize] = ['limit', 'batch-size'].map(positiveInts(opts));
const workers = opts.workers === undefined ? undefined : Number(opts.workers);
const data = await import('@residual/data').catch(() => import('../../packages/data/dist/index.js'));
// sharp is the package's own dependency; take the copy it resolves.
const sharp = createRequire(new URL('../../packages/data/package.json', import.meta.url))('sharp');

const scanStart = performance.now();
const source = await data.openSource(`imagenet:${opts.dir}`);
const { files } = await source.split(opts.split);
const scanMs = performance.now() - scanStart;
const list = files.slice(0, limit);
const bytes = await Promise.all(list.map((f) => readFile(f)));

/** CPU ms per image of `fn` run on every image in turn. */
const cpuPerImage = async (fn) => {
  const before = process.cpuUsage();
  for (let i = 0; i < list.length; i++) await fn(i);
  const { user, system } = process.cpuUsage(before);
  return (user + system) / 1000 / list.length;
};

// The same scale and crop draws for every stage: shorter side in [256, 480], a 224 window inside it.
let state = 12345;
const uniform = () => ((state = (state * 48271) % 2147483647) / 2147483647);
const metas = await Promise.all(bytes.map((b) => sharp(b, { autoOrient: true }).metadata()));
const draws = metas.map(({ autoOrient: { width, height } }) => {
  const side = 256 + Math.floor(uniform() * 225);
  const k = side / Math.min(width, height);
  const [w, h] = [Math.max(224, Math.round(width * k)), Math.max(224, Math.round(height * k))];
  return { w, h, left: Math.floor(uniform() * (w - 223)), top: Math.floor(uniform() * (h - 223)) };
});
const srgb = (s) => s.removeAlpha().toColourspace('srgb').raw({ depth: 'uchar' });
const windowOf = (i) => srgb(sharp(bytes[i], { autoOrient: true }).resize(draws[i].w, draws[i].h, { fit: 'fill', kernel: 'linear' }).extract({ left: draws[i].left, top: draws[i].top, width: 224, height: 224 }));
const out = new Float32Array(3 * 224 * 224);
const toFloats = (px) => {
  for (let c = 0; c < 3; c++) for (let p = 0; p < 224 * 224; p++) out[c * 224 * 224 + p] = (px[3 * p + c] / 255 - 0.45) / 0.225;
};

const stages = {};
stages.read = await cpuPerImage((i) => readFile(list[i]));
stages.header = await cpuPerImage((i) => sharp(bytes[i], { autoOrient: true }).metadata());
// CMYK stays CMYK here: sharp would otherwise convert it to sRGB on its own, hiding the colour stage.
const native = (i) => (metas[i].space === 'cmyk' ? sharp(bytes[i]).pipelineColourspace('cmyk').toColourspace('cmyk') : sharp(bytes[i]));
stages.decode = await cpuPerImage((i) => native(i).raw().toBuffer());
stages.colour = await cpuPerImage((i) => srgb(sharp(bytes[i], { autoOrient: true })).toBuffer());
stages.window = await cpuPerImage((i) => windowOf(i).toBuffer());
stages.floats = await cpuPerImage(async (i) => toFloats(await windowOf(i).toBuffer()));
const transform = data.scaleAugment();
stages.sample = await cpuPerImage((i) => data.loadImage(bytes[i], transform));

// A fresh loader: its first batch pays for starting the workers; the rest is the steady state.
const loaderStart = performance.now();
const cpuStart = process.cpuUsage();
const loader = await data.createLoader({ source, split: opts.split, batchSize, shuffle: true, transform, workers });
let firstBatchMs = 0;
const batchMs = [];
let images = 0;
let last = performance.now();
for await (const batch of loader) {
  const now = performance.now();
  if (images === 0) firstBatchMs = now - loaderStart;
  else batchMs.push(now - last);
  last = now;
  images += batch.labels.length;
}
const { user, system } = process.cpuUsage(cpuStart);
const epochSeconds = (performance.now() - loaderStart) / 1000;
await loader.close();
stages.loader = (user + system) / 1000 / images;

const round = (x) => Math.round(x * 1000) / 1000;
for (const [stage, ms] of Object.entries(stages)) console.log(JSON.stringify({ bench: 'data-profile', stage, cpuMsPerImage: round(ms), images: list.length }));
batchMs.sort((a, b) => a - b);
const steadyBatchMs = batchMs.length ? batchMs[Math.floor(batchMs.length / 2)] : firstBatchMs;
console.log(
  JSON.stringify({
    bench: 'data-profile',
    stage: 'start-up',
    scanMs: round(scanMs),
    firstBatchMs: round(firstBatchMs),
    medianBatchMs: round(steadyBatchMs),
    loaderImagesPerSecond: round(images / epochSeconds),
    workers: workers ?? 'default',
    batchSize,
  }),
);
