/** `residual train`: the training loop with progress, metrics, atomic checkpoints and exact resume. */
import { appendFile, mkdir } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { z } from 'zod';
import { manualSeed } from '@residual/core';
import { saveTensors } from '@residual/core/node';
import { createLoader, type Loader } from '@residual/data';
import { createModel, getRecipe, isCifarModel, scaleRecipe, Trainer, MODELS, RECIPES, type ModelName, type Recipe } from '@residual/resnet';
import { selectBackend } from '../backend.js';
import { distributed, joinJob, runWithMpirun } from '../distributed.js';
import { CHECKPOINT_FILE, loadCheckpoint, saveCheckpoint, type RunRecord } from '../checkpoint.js';
import { evalTransform, openData, trainTransform } from '../data.js';
import { backendOption, nonNegative, nonNegativeInt, positiveInt, resolveOptions, UsageError } from '../options.js';
import { createProgress } from '../progress.js';
import { emit, info } from '../output.js';

/** Every option of `train`, as flags and as config keys. */
export const trainSchema = z.strictObject({
  model: z.enum(Object.keys(MODELS) as [ModelName, ...ModelName[]]).default('resnet20'),
  data: z.string().min(1).default('builtin:shapes'),
  epochs: positiveInt().optional(),
  iterations: positiveInt().optional(),
  batchSize: positiveInt().optional(),
  lr: nonNegative().optional(),
  momentum: nonNegative().optional(),
  weightDecay: nonNegative().optional(),
  labelSmoothing: z.coerce.number().min(0).max(1).optional(),
  warmupSteps: nonNegativeInt().optional(),
  seed: nonNegativeInt().default(0),
  out: z.string().optional(),
  trainSubset: positiveInt().optional(),
  valSplit: nonNegativeInt().optional(),
  recipe: z.enum(Object.keys(RECIPES) as [string, ...string[]]).optional(),
  resume: z.string().optional(),
  checkpointEvery: positiveInt().optional(),
  stopAfter: positiveInt().optional(),
  logEvery: positiveInt().default(50),
  workers: nonNegativeInt().optional(),
  augment: z.enum(['cifar', 'paper-imagenet', 'torchvision-imagenet', 'none']).optional(),
  syncBn: z.boolean().default(false),
  nproc: positiveInt().optional(),
  distTimeout: z.coerce.number().positive('must be > 0').optional(),
  backend: backendOption(),
  json: z.boolean().default(false),
});

/** Options after validation. */
export type TrainOptions = z.infer<typeof trainSchema>;

/** The result `train --json` prints. */
export interface TrainResult {
  out: string;
  model: string;
  data: string;
  backend: string;
  steps: number;
  epochs: number;
  trainLoss: number;
  trainAccuracy: number;
  valLoss: number | null;
  valAccuracy: number | null;
  imagesPerSecond: number;
  elapsedSeconds: number;
  interrupted: boolean;
  /** Processes that trained together (1 without MPI). */
  worldSize: number;
}

/** The recipe with the user's overrides applied. */
const recipeFor = (o: TrainOptions): Recipe => {
  const base = getRecipe(o.recipe ?? (o.data.startsWith('builtin:') ? 'quick' : isCifarModel(o.model) ? 'paper-cifar' : 'paper-imagenet'));
  return {
    ...base,
    batchSize: o.batchSize ?? base.batchSize,
    lr: o.lr ?? base.lr,
    momentum: o.momentum ?? base.momentum,
    weightDecay: o.weightDecay ?? base.weightDecay,
    labelSmoothing: o.labelSmoothing ?? base.labelSmoothing,
    augmentation: o.augment ?? base.augmentation,
    linearWarmupIterations: o.warmupSteps ?? base.linearWarmupIterations,
  };
};

/**
 * A checkpoint's loader position for `worldSize` ranks: mid-epoch every rank has consumed the same
 * number of its samples, so `position x oldWorldSize` samples of the epoch's order are done.
 */
const positionFor = (loader: RunRecord['loader'], from: number, to: number, perRankBatch: number): RunRecord['loader'] => {
  if (from === to || loader.position === 0) return loader;
  const done = loader.position * from;
  if (done % to !== 0 || (done / to) % perRankBatch !== 0)
    throw new UsageError(`cannot resume the run of ${from} ranks, ${loader.position} samples into epoch ${loader.epoch + 1}, on ${to} ranks: ` +
      `${done} samples is not a whole number of global batches of ${perRankBatch * to}; resume on ${from} ranks, or from the end of an epoch`);
  return { epoch: loader.epoch, position: done / to };
};

/** Runs training as the options say; resolves with the final result. */
export const runTrain = async (o: TrainOptions): Promise<TrainResult> => {
  const group = await joinJob(o.distTimeout);
  const worldSize = group?.worldSize ?? 1;
  const lead = !group || group.rank === 0;
  const say = lead ? info : () => {};
  const out = o.resume ?? o.out ?? join('runs', `${o.model}-${new Date().toISOString().replace(/[:.]/g, '-')}`);
  if (lead) await mkdir(out, { recursive: true });
  const backend = await selectBackend(o.backend);
  manualSeed(o.seed);
  let recipe = recipeFor(o);
  if (recipe.batchSize % worldSize !== 0)
    throw new UsageError(`--batch-size ${recipe.batchSize} is the global batch and must divide among ${worldSize} ranks; use a multiple of ${worldSize}`);
  const perRankBatch = recipe.batchSize / worldSize;
  const source = await openData(o.data, { valSplit: o.valSplit || undefined, trainSubset: o.trainSubset, seed: o.seed });
  const model = createModel(o.model, { numClasses: source.classes.length });
  if (o.syncBn && group) (await distributed()).syncBatchNorm(model, group);
  if (o.syncBn && !group) say('--sync-bn: one process, so batch-norm statistics are the batch\'s own already');
  // Rank 0 reads the checkpoint (other hosts may not see the run folder) and shares its record; its
  // weights, momentum and schedule reach the other ranks in trainer.start().
  const checkpoint = o.resume && lead ? await loadCheckpoint(o.resume, model.parameters().length) : null;
  const record = group ? await group.broadcastObject(checkpoint?.record ?? null) : checkpoint?.record ?? null;
  if (o.resume && !record) say(`no checkpoint in ${o.resume} yet (${CHECKPOINT_FILE}); starting from scratch`);
  const shard = { rank: group?.rank ?? 0, worldSize };
  if (record && (record.worldSize ?? 1) !== worldSize && record.loader.position !== 0 && (await source.shards?.('train')))
    throw new UsageError(`${o.data} is tar shards, dealt whole to each rank: resume this run mid-epoch on ${record.worldSize ?? 1} ranks, as it ran`);
  const train = await createLoader({
    source, split: 'train', batchSize: perRankBatch, shuffle: true, seed: o.seed, transform: trainTransform(o.data, recipe.augmentation),
    workers: o.workers, state: record ? positionFor(record.loader, record.worldSize ?? 1, worldSize, perRankBatch) : undefined, ...shard,
  });
  const valName = source.splits.includes('val') ? 'val' : source.splits.includes('test') ? 'test' : null;
  // Validation is split among the ranks and summed; a split of fewer shards than ranks leaves the
  // ranks past its shard count with nothing to evaluate (they still join the sum).
  const valShards = valName ? (await source.shards?.(valName))?.length : undefined;
  const valRanks = Math.min(worldSize, valShards ?? worldSize);
  const val: Loader | null = valName && shard.rank < valRanks
    ? await createLoader({
      source, split: valName, batchSize: Math.max(perRankBatch, 100), transform: evalTransform(o.data), workers: o.workers,
      rank: shard.rank, worldSize: valRanks, evenBatches: false,
    })
    : null;
  const total = o.iterations ?? (o.epochs ? o.epochs * train.batches : recipe.iterations ?? (recipe.epochs ?? 1) * train.batches);
  if (o.iterations || o.epochs) recipe = scaleRecipe(recipe, total);
  const replicas = group ? new (await distributed()).DataParallel(group, model) : undefined;
  const trainer = new Trainer({ model, recipe, itersPerEpoch: train.batches, totalIterations: total, replicas });
  let stats = { loss: 0, correct: 0, images: 0, steps: 0 };
  let elapsedBefore = 0;
  if (checkpoint) {
    model.loadStateDict(checkpoint.model);
    for (const t of checkpoint.model.values()) t.dispose();
    trainer.load(checkpoint.trainer);
  }
  await trainer.start();
  if (record) {
    stats = { ...record.epochStats };
    elapsedBefore = record.elapsedSeconds;
    say(`resuming ${out} at step ${trainer.step} (epoch ${trainer.epoch + 1})${(record.worldSize ?? 1) !== worldSize ? ` on ${worldSize} ranks (it ran on ${record.worldSize ?? 1})` : ''}`);
  }
  say(`training ${o.model} (${(model.numParameters() / 1e6).toFixed(2)}M parameters) on ${o.data}: ${train.samples} images${group ? ' per rank' : ''}, ` +
    `${total} steps of ${recipe.batchSize}${group ? ` (${worldSize} ranks of ${perRankBatch}, ${group.engine}${o.syncBn ? ', sync batch-norm' : ''})` : ''}, ` +
    `recipe ${recipe.name}, backend ${backend.name} (${backend.device})`);

  const metricsPath = join(out, 'metrics.jsonl');
  const writeMetric = async (m: Record<string, unknown>) => {
    if (lead) await appendFile(metricsPath, `${JSON.stringify(m)}\n`);
  };
  const started = Date.now();
  const elapsed = () => elapsedBefore + (Date.now() - started) / 1000;
  // Only rank 0 writes: the ranks' models are identical after every step.
  const save = async () => {
    if (!lead) return;
    const state = await trainer.state();
    await saveCheckpoint(out, model, state, { loader: train.state(), epochStats: stats, elapsedSeconds: elapsed(), options: o, worldSize });
  };
  const saveWeights = async () => {
    if (lead) await saveTensors(join(out, 'model.safetensors'), model.stateDict(), { format: 'pt', model: o.model, classes: JSON.stringify(source.classes) });
  };
  let interrupted = false;
  const onSigint = () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    say('\ninterrupted: saving a checkpoint (Ctrl-C again to quit at once)');
  };
  process.on('SIGINT', onSigint);
  const progress = lead ? createProgress(total, trainer.step, o.logEvery) : { update() {}, log() {}, stop() {} };
  // Every rank stops at the same step: a stop asked of any rank (Ctrl-C) is agreed on after each step.
  const agreeStop = async () => (group ? (await group.allReduce(Int32Array.of(interrupted ? 1 : 0), 'max'))[0] === 1 : interrupted);
  const startStep = trainer.step;
  let lastVal: { loss: number; top1: number } | null = null;
  let windowImages = 0;
  let windowStart = Date.now();
  let imagesPerSecond = 0;
  try {
    outer: while (trainer.step < total) {
      for await (const batch of train) {
        const r = await trainer.trainStep(batch);
        stats.loss += r.loss * r.images;
        stats.correct += r.correct;
        stats.images += r.images;
        stats.steps++;
        windowImages += r.images;
        const now = Date.now();
        if (now - windowStart > 2000 || trainer.step === total) {
          imagesPerSecond = (windowImages / (now - windowStart)) * 1000;
          windowImages = 0;
          windowStart = now;
        }
        progress.update(trainer.step, { epoch: trainer.epoch + 1, loss: stats.loss / stats.images, accuracy: stats.correct / stats.images, imagesPerSecond });
        if (trainer.step % o.logEvery === 0)
          await writeMetric({ type: 'step', step: trainer.step, epoch: trainer.epoch + 1, loss: r.loss, accuracy: r.correct / r.images, lr: r.lr, imagesPerSecond, elapsed: elapsed() });
        if (o.stopAfter && trainer.step - startStep >= o.stopAfter) interrupted = true;
        interrupted = await agreeStop();
        if (interrupted) break outer;
        if (o.checkpointEvery && trainer.step % o.checkpointEvery === 0) await save();
        if (trainer.step >= total) break;
      }
      // the epoch ended (or the run did): evaluate and record it
      const epochDone = train.state().position === 0 || trainer.step >= total;
      if (!epochDone) continue;
      const v = valName ? await trainer.evaluate(val ?? []) : null;
      lastVal = v;
      const line = {
        type: 'epoch', epoch: trainer.epoch + 1, step: trainer.step, trainLoss: stats.loss / stats.images, trainAccuracy: stats.correct / stats.images,
        valLoss: v?.loss ?? null, valAccuracy: v?.top1 ?? null, valTop5: v?.top5 ?? null, lr: trainer.currentLr(), imagesPerSecond, elapsed: elapsed(),
      };
      await writeMetric(line);
      progress.log(`epoch ${line.epoch}: train loss ${line.trainLoss.toFixed(4)} acc ${line.trainAccuracy.toFixed(4)}` +
        (v ? ` | ${valName} loss ${v.loss.toFixed(4)} acc ${v.top1.toFixed(4)}` : ''));
      trainer.endEpoch(v ? 1 - v.top1 : undefined);
      const last = stats;
      stats = { loss: 0, correct: 0, images: 0, steps: 0 };
      await save();
      await saveWeights();
      if (trainer.step >= total) {
        stats = last;
        break;
      }
    }
    if (interrupted) await save();
  } finally {
    progress.stop();
    process.off('SIGINT', onSigint);
    await train.close();
    await val?.close();
  }
  const report = train.report();
  if (report.skipped) info(`${group ? `rank ${group.rank}: ` : ''}`+`skipped ${report.skipped} unreadable images (see metrics); first: ${report.failures[0]?.file ?? report.failures[0]?.index}`);
  await saveWeights();
  replicas?.dispose();
  return {
    out, model: o.model, data: o.data, backend: backend.name, steps: trainer.step, epochs: trainer.epoch,
    trainLoss: stats.images ? stats.loss / stats.images : NaN, trainAccuracy: stats.images ? stats.correct / stats.images : NaN,
    valLoss: lastVal?.loss ?? null, valAccuracy: lastVal?.top1 ?? null, imagesPerSecond, elapsedSeconds: elapsed(), interrupted, worldSize,
  };
};

/** Registers `train` on the program. */
export const registerTrain = (program: Command): void => {
  program
    .command('train')
    .description('Train a network (default: ResNet-20 on the built-in shapes data set)')
    .option('--model <name>', `network: ${Object.keys(MODELS).join(', ')}`)
    .option('--data <spec>', 'builtin:shapes | cifar10:DIR | cifar100:DIR | imagenet:DIR')
    .option('--epochs <n>', 'train this many epochs (the recipe schedule is scaled to fit)')
    .option('--iterations <n>', 'train this many steps (the recipe schedule is scaled to fit)')
    .option('--batch-size <n>', "images per step (default: the recipe's)")
    .option('--lr <rate>', "learning rate (default: the recipe's)")
    .option('--momentum <m>', 'SGD momentum')
    .option('--weight-decay <wd>', 'L2 weight decay')
    .option('--label-smoothing <s>', 'label smoothing in [0, 1]')
    .option('--warmup-steps <n>', "raise the learning rate linearly from 1% over the first n steps (torchvision's --lr-warmup-epochs, in steps)")
    .option('--seed <n>', 'seed of initialisation, order and augmentation')
    .option('--out <dir>', 'run folder (metrics.jsonl, model.safetensors, checkpoint.safetensors)')
    .option('--train-subset <n>', 'use only the first n training images')
    .option('--val-split <n>', "CIFAR: hold out the last n training images for validation (the paper's 45k/5k: 5000); default: validate on the test file")
    .option('--recipe <name>', `training recipe: ${Object.keys(RECIPES).join(', ')}`)
    .option('--resume <dir>', 'continue the run in dir (starts fresh if it has no checkpoint)')
    .option('--checkpoint-every <steps>', 'also checkpoint every this many steps')
    .option('--stop-after <steps>', 'checkpoint and stop after this many steps of this invocation (resume later)')
    .option('--log-every <steps>', 'write a metrics line every this many steps')
    .option('--workers <n>', 'decoding threads')
    .option('--augment <name>', 'cifar | paper-imagenet | torchvision-imagenet | none')
    .option('--nproc <n>', 'train as n processes on this host (runs mpirun; --batch-size and --lr stay global)')
    .option('--sync-bn', 'across processes: batch-norm statistics of the whole global batch (default: each process its own)')
    .option('--dist-timeout <seconds>', 'across processes: how long a rank waits for the others before giving up (default 45)')
    .option('--backend <name>', 'cpu | webgpu | auto')
    .option('--config <file>', 'JSON file with any of these options (flags override it)')
    .option('--json', 'print the result as JSON on stdout')
    .addHelpText('after', `
Examples:
  residual train                                   # ResNet-20 on the built-in data set
  residual train --model resnet20 --data cifar10:~/cifar-10-batches-bin --epochs 3 --out runs/r20
  residual train --resume runs/r20                 # continue exactly where it stopped
  residual train --nproc 2 --out runs/r20x2        # two processes on this host (Open MPI)
  mpirun -np 8 --hostfile hosts residual train ... # eight processes on the hosts of a hostfile`)
    .action(async (flags: Record<string, unknown>, cmd: Command) => {
      const o = resolveOptions(trainSchema, flags, (k) => cmd.getOptionValueSource(k) === 'cli', flags.config as string | undefined);
      if (o.epochs && o.iterations) throw new UsageError('--epochs and --iterations: give one, not both');
      if (o.resume && o.out && o.out !== o.resume) throw new UsageError('--resume and --out name different folders; --resume continues in place');
      if (o.nproc && o.nproc > 1 && !(await distributed()).launchInfo()) {
        // Ctrl-C reaches mpirun too, which stops the ranks: wait for it and pass on its exit code.
        process.on('SIGINT', () => {});
        process.exit(await runWithMpirun(o.nproc, process.argv.slice(2)));
      }
      if (o.resume && !existsSync(o.resume)) await mkdir(o.resume, { recursive: true });
      const result = await runTrain(o);
      const dist = await distributed();
      const lead = dist.rank === 0;
      dist.finalize();
      if (!lead) return;
      emit(o.json, result, (r) =>
        `done: ${r.steps} steps, train acc ${r.trainAccuracy.toFixed(4)}${r.valAccuracy !== null ? `, val acc ${r.valAccuracy.toFixed(4)}` : ''}; weights in ${join(r.out, 'model.safetensors')}`);
    });
};
