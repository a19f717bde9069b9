/** `residual data`: inspect, benchmark, download, shard and measure data sets. */
import { availableParallelism } from 'node:os';
import type { Command } from 'commander';
import { z } from 'zod';
import {
  cifarAugment, centerCropEval, computeStats, createLoader, downloadCifar, makeShards, openSource, parseDataSpec, scaleAugment,
  type Source, type Transform,
} from '@residual/data';
import { nonNegativeInt, positiveInt, resolveOptions, UsageError } from '../options.js';
import { emit, info } from '../output.js';

const split = () => z.enum(['train', 'val', 'test']);

/** Opens SPEC, turning a malformed spec into a usage error. */
const open = async (spec: string, valSplit?: number): Promise<Source> => {
  try {
    parseDataSpec(spec);
  } catch (e) {
    throw new UsageError(`SPEC: ${(e as Error).message}`);
  }
  return openSource(spec, valSplit ? { valSplit } : {});
};

/** A progress line on stderr at most every 2 s: count, rate and, with a total, the ETA. */
const ticker = (label: string, total?: number) => {
  const started = performance.now();
  let last = started;
  return (done: number) => {
    const now = performance.now();
    if (now - last < 2000) return;
    last = now;
    const rate = done / ((now - started) / 1000);
    const eta = total ? `, ETA ${Math.round((total - done) / rate)}s` : '';
    info(`${label}: ${done}${total ? `/${total}` : ''} (${rate.toFixed(1)}/s${eta})`);
  };
};

/** Option parsing shared by every subcommand: flags (and a --config file) through the zod schema; `args` are the positionals. */
const options = <S extends z.ZodObject>(schema: S, args: Record<string, unknown>, flags: Record<string, unknown>, cmd: Command): z.infer<S> =>
  resolveOptions(schema, { ...flags, ...args }, (k) => k in args || cmd.getOptionValueSource(k) === 'cli', flags.config as string | undefined);

const inspectSchema = z.strictObject({ spec: z.string().min(1), valSplit: nonNegativeInt().optional(), workers: nonNegativeInt().optional(), json: z.boolean().default(false) });

const benchSchema = z.strictObject({
  spec: z.string().min(1),
  split: split().default('train'),
  augment: z.enum(['paper', 'cifar', 'none']).default('paper'),
  batchSize: positiveInt().default(32),
  epochs: positiveInt().default(1),
  workers: nonNegativeInt().optional(),
  valSplit: nonNegativeInt().optional(),
  json: z.boolean().default(false),
});

const downloadSchema = z.strictObject({
  dataset: z.enum(['cifar10', 'cifar100']),
  dir: z.string().min(1),
  url: z.string().url().optional(),
  md5: z.string().regex(/^[0-9a-fA-F]{32}$/, 'must be 32 hex digits').optional(),
  json: z.boolean().default(false),
});

const shardsSchema = z.strictObject({
  spec: z.string().min(1),
  out: z.string().min(1),
  perShard: positiveInt().default(10000),
  seed: nonNegativeInt().default(0),
  maxSide: positiveInt().optional(),
  quality: positiveInt().max(100).optional(),
  format: z.enum(['jpeg', 'ppm']).optional(),
  raw: positiveInt().optional(),
  json: z.boolean().default(false),
});

const statsSchema = z.strictObject({
  spec: z.string().min(1),
  split: split().default('train'),
  size: positiveInt().optional(),
  limit: positiveInt().optional(),
  seed: nonNegativeInt().default(0),
  meanImage: z.string().min(1).optional(),
  workers: nonNegativeInt().optional(),
  valSplit: nonNegativeInt().optional(),
  json: z.boolean().default(false),
});

/** Whether a spec holds 32x32 images, for which no resizing is needed. */
const isSmall = (spec: string) => ['cifar10', 'cifar100', 'builtin'].includes(parseDataSpec(spec).kind);

/** The transform `--augment` names: the paper's ImageNet or CIFAR augmentation, or the evaluation transform. */
const benchTransform = (spec: string, augment: 'paper' | 'cifar' | 'none'): Transform => {
  if (augment === 'paper') return scaleAugment();
  if (augment === 'cifar') return cifarAugment();
  return isSmall(spec) ? { steps: [] } : centerCropEval();
};

/** Registers `data` and its subcommands. */
export const registerData = (program: Command): void => {
  const data = program.command('data').description('Inspect, benchmark, download, shard and measure data sets');
  const common = (c: Command) => c.option('--config <file>', 'JSON file with any of these options').option('--json', 'print the result as JSON on stdout');

  common(
    data
      .command('inspect')
      .argument('<spec>', 'imagenet:DIR | cifar10:DIR | cifar100:DIR | shards:PATTERN|DIR|URL | builtin:shapes')
      .description('Decode every image of every split once; count classes, images and unreadable files')
      .option('--val-split <n>', 'CIFAR: the last n training images form the val split')
      .option('--workers <n>', 'decoding threads'),
  ).action(async (spec: string, flags: Record<string, unknown>, cmd: Command) => {
    const o = options(inspectSchema, { spec }, flags, cmd);
    const source = await open(o.spec, o.valSplit);
    const splits: Record<string, number> = {};
    const unreadableFiles: string[] = [];
    let images = 0;
    // Resized whole, not cropped: a crop reads only part of an image and could miss where a file is cut short.
    const transform: Transform = { steps: [{ op: 'resize', size: 16 }] };
    for (const name of source.splits) {
      const loader = await createLoader({ source, split: name, batchSize: 1, prefetch: 64, workers: o.workers, transform });
      const tick = ticker(`inspect ${name}`, loader.samples);
      for await (const _ of loader) tick(loader.report().decoded + loader.report().skipped);
      const report = loader.report();
      await loader.close();
      splits[name] = loader.samples;
      images += loader.samples;
      unreadableFiles.push(...report.failures.map((f) => f.file ?? `${name} sample ${f.index}`));
    }
    for (const issue of source.issues) info(issue);
    emit(o.json, { classes: source.classes.length, images, unreadable: unreadableFiles.length, unreadableFiles, splits, issues: source.issues }, (r) =>
      [
        `${r.classes} classes, ${r.images} images (${Object.entries(r.splits).map(([k, v]) => `${k} ${v}`).join(', ')}), ${r.unreadable} unreadable`,
        ...r.unreadableFiles.map((f) => `  unreadable: ${f}`),
      ].join('\n'));
  });

  common(
    data
      .command('bench')
      .argument('<spec>', 'a data spec, as for inspect')
      .description('Stream a split through decoding and augmentation; report images per second')
      .option('--split <name>', 'train | val | test', 'train')
      .option('--augment <name>', "paper (the paper's ImageNet scale augmentation) | cifar | none (the evaluation transform)", 'paper')
      .option('--batch-size <n>', 'images per batch', '32')
      .option('--epochs <n>', 'passes over the split', '1')
      .option('--workers <n>', 'decoding threads (default: one per two cores, as each keeps libvips busy on about two)')
      .option('--val-split <n>', 'CIFAR: the last n training images form the val split')
      .addHelpText('after', '\nExample:\n  residual data bench imagenet:/data/imagenet --split val --augment paper --batch-size 64 --json'),
  ).action(async (spec: string, flags: Record<string, unknown>, cmd: Command) => {
    const o = options(benchSchema, { spec }, flags, cmd);
    // performance.now() counts from the process's start: Node's own start-up and these imports included.
    const source = await open(o.spec);
    const loader = await createLoader({
      source, split: o.split, batchSize: o.batchSize, shuffle: true, transform: benchTransform(o.spec, o.augment), workers: o.workers,
    });
    info(`bench ${o.spec} ${o.split}: ${loader.samples} images x ${o.epochs} epochs, augment ${o.augment}`);
    const tick = ticker('images', loader.samples * o.epochs);
    let [firstBatch, firstImages] = [0, 0];
    try {
      for (let e = 0; e < o.epochs; e++) {
        for await (const batch of loader) {
          if (!firstBatch) [firstBatch, firstImages] = [performance.now(), batch.labels.length];
          tick(loader.report().decoded);
        }
      }
    } finally {
      await loader.close();
    }
    const seconds = performance.now() / 1000;
    const { decoded, skipped } = loader.report();
    const result = {
      images: decoded, skipped, seconds, imagesPerSecond: decoded / seconds,
      startupSeconds: firstBatch / 1000, steadyImagesPerSecond: (decoded - firstImages) / (seconds - firstBatch / 1000),
      cpuSeconds: ((u) => (u.user + u.system) / 1e6)(process.cpuUsage()),
      augment: o.augment, batchSize: o.batchSize, workers: o.workers ?? Math.ceil(availableParallelism() / 2),
      // libvips' decoding threads, as set for this process (null: libuv's default of 4).
      uvThreadpoolSize: process.env.UV_THREADPOOL_SIZE ? Number(process.env.UV_THREADPOOL_SIZE) : null,
    };
    emit(o.json, result, (r) =>
      `${r.images} images in ${r.seconds.toFixed(2)} s from start: ${r.imagesPerSecond.toFixed(1)} images/s (first batch after ${r.startupSeconds.toFixed(2)} s, then ${r.steadyImagesPerSecond.toFixed(1)}/s; ${r.skipped} skipped)`);
  });

  common(
    data
      .command('download')
      .argument('<dataset>', 'cifar10 | cifar100')
      .argument('<dir>', 'folder to create, holding the binary batch files')
      .description('Download CIFAR-10/100 (binary version), check its MD5 and extract it atomically')
      .option('--url <url>', 'address of the official binary archive (or a mirror); default $RESIDUAL_CIFAR10_URL / $RESIDUAL_CIFAR100_URL')
      .option('--md5 <hex>', 'the MD5 the archive must have (default: the official archive\'s)')
      .addHelpText('after', '\nExample:\n  residual data download cifar10 ~/data/cifar10 && residual train --model resnet20 --data cifar10:~/data/cifar10'),
  ).action(async (dataset: string, dir: string, flags: Record<string, unknown>, cmd: Command) => {
    const o = options(downloadSchema, { dataset, dir }, flags, cmd);
    const tick = ticker('downloaded bytes');
    const r = await downloadCifar(o.dataset, o.dir, { url: o.url, md5: o.md5, onProgress: (n) => tick(n) });
    emit(o.json, r, (x) => (x.bytes === 0 ? `${x.dir} already holds ${o.dataset}` : `${o.dataset}: ${x.bytes} bytes, MD5 ${x.md5} checked, extracted to ${x.dir}`));
  });

  const shards = data.command('shards').description('Tar shards (WebDataset convention) for streaming');
  common(
    shards
      .command('make')
      .argument('<spec>', 'an image-file data set: imagenet:DIR or builtin:shapes')
      .argument('<out>', 'an empty or new folder for the shards and shards.json')
      .description('Write every split as shuffled tar shards of a fixed number of samples, with shards.json')
      .option('--per-shard <n>', 'samples per shard', '10000')
      .option('--seed <n>', 'seed of the order samples are dealt into shards', '0')
      .option('--max-side <px>', 're-encode as JPEG, shorter side shrunk to at most px (480 keeps all the paper\'s scales)')
      .option('--quality <q>', 'JPEG quality of --max-side (default 90)')
      .option('--format <f>', 'how --max-side stores images: jpeg (default), or ppm: decoded pixels that no epoch decodes again, about 5x the disk')
      .option('--raw <px>', 'store raw 8-bit px x px pixels instead (CIFAR-sized data; images are resized and centre-cropped)')
      .addHelpText('after', '\nExample:\n  residual data shards make imagenet:/data/imagenet /data/imagenet-shards --per-shard 10000 --max-side 480 --quality 90\n  residual data shards make imagenet:/data/imagenet /data/imagenet-ppm --max-side 480 --format ppm\n  residual train --model resnet50 --data shards:/data/imagenet-shards'),
  ).action(async (spec: string, out: string, flags: Record<string, unknown>, cmd: Command) => {
    const o = options(shardsSchema, { spec, out }, flags, cmd);
    if (o.quality !== undefined && o.maxSide === undefined) throw new UsageError('--quality applies to --max-side');
    if (o.format !== undefined && o.maxSide === undefined) throw new UsageError('--format applies to --max-side');
    if (o.quality !== undefined && o.format === 'ppm') throw new UsageError('--quality applies to --format jpeg, not ppm');
    if (o.raw !== undefined && o.maxSide !== undefined) throw new UsageError('give --max-side (JPEG) or --raw (pixels), not both');
    const source = await open(o.spec);
    const manifest = await makeShards({
      source, out: o.out, perShard: o.perShard, seed: o.seed, maxSide: o.maxSide, quality: o.quality, format: o.format, raw: o.raw,
      onShard: (s, shard) => info(`${s}: ${shard.url} (${shard.samples} samples)`),
    });
    const splits = Object.fromEntries(Object.entries(manifest.splits).map(([k, list]) => [k, { shards: list.length, samples: list.reduce((a, s) => a + s.samples, 0) }]));
    emit(o.json, { out: o.out, classes: manifest.classes.length, splits }, (r) =>
      `wrote ${Object.entries(r.splits).map(([k, v]) => `${k}: ${v.samples} samples in ${v.shards} shards`).join(', ')} to ${r.out}`);
  });

  common(
    data
      .command('stats')
      .argument('<spec>', 'a data spec, as for inspect')
      .description('Per-channel mean and std, the RGB principal components (PCA lighting) and optionally the mean image of a split')
      .option('--split <name>', 'train | val | test', 'train')
      .option('--size <px>', 'resize the shorter side to px and centre-crop px x px first (needed for --mean-image on mixed sizes)')
      .option('--limit <n>', 'measure n images drawn at random instead of all')
      .option('--seed <n>', 'seed of the --limit draw', '0')
      .option('--mean-image <file>', 'write the mean image (CHW, float32) to this safetensors file, as tensor "mean"')
      .option('--workers <n>', 'decoding threads')
      .option('--val-split <n>', 'CIFAR: the last n training images form the val split')
      .addHelpText('after', '\nExample:\n  residual data stats cifar10:~/data/cifar10 --json'),
  ).action(async (spec: string, flags: Record<string, unknown>, cmd: Command) => {
    const o = options(statsSchema, { spec }, flags, cmd);
    const source = await open(o.spec, o.valSplit);
    const transform: Transform = { steps: o.size ? [{ op: 'resize', size: o.size }, { op: 'centerCrop', size: o.size }] : [] };
    const tick = ticker('images measured', o.limit);
    const s = await computeStats({ source, split: o.split, transform, meanImage: !!o.meanImage, limit: o.limit, seed: o.seed, workers: o.workers, onProgress: tick });
    if (s.meanImage && o.meanImage) {
      // Loaded here only: the tensor library is not needed by the other data commands.
      const { writeSafetensors } = await import('@residual/core/node');
      await writeSafetensors(o.meanImage, { mean: { data: s.meanImage.data, shape: [3, s.meanImage.height, s.meanImage.width] } }, { spec: o.spec, split: o.split });
    }
    const result = { images: s.images, pixels: s.pixels, skipped: s.skipped, mean: s.mean, std: s.std, pca: s.pca, ...(o.meanImage && { meanImage: o.meanImage }) };
    const fmt = (v: readonly number[]) => v.map((x) => x.toFixed(4)).join(' ');
    emit(o.json, result, (r) =>
      [
        `${r.images} images of ${o.spec} ${o.split} (${r.skipped} unreadable)`,
        `mean ${fmt(r.mean)}`,
        `std  ${fmt(r.std)}`,
        `pca eigval ${fmt(r.pca.eigval)}`,
        ...r.pca.eigvec.map((row, c) => `    eigvec ${'RGB'[c]} ${fmt(row)}`),
      ].join('\n'));
  });
};
