/** Training recipes as data: the paper's CIFAR and ImageNet schedules, and torchvision's reference. */
import { multiStep, cosine, warmup as linearWarmup, type Schedule } from '@residual/core';

/** How the learning rate changes; `unit` says whether t counts iterations or epochs. */
export type ScheduleSpec =
  | { readonly kind: 'multistep'; readonly milestones: readonly number[]; readonly gamma: number; readonly unit: 'iteration' | 'epoch' }
  | { readonly kind: 'plateau'; readonly factor: number; readonly patience: number }
  | { readonly kind: 'cosine'; readonly unit: 'iteration' | 'epoch' }
  | { readonly kind: 'constant' };

/** The augmentation a recipe trains with (implemented by @residual/data). */
export type AugmentationName = 'cifar' | 'paper-imagenet' | 'torchvision-imagenet' | 'none';

/** A training recipe: everything about optimisation that is not the model or the data. */
export interface Recipe {
  readonly name: string;
  readonly description: string;
  readonly batchSize: number;
  readonly lr: number;
  readonly momentum: number;
  readonly weightDecay: number;
  readonly nesterov: boolean;
  readonly labelSmoothing: number;
  readonly schedule: ScheduleSpec;
  /** Stop after this many iterations (the CIFAR recipe) ... */
  readonly iterations?: number;
  /** ... or epochs. */
  readonly epochs?: number;
  /** Start at this rate until the training error falls below `untilTrainError` (ResNet-110's warm-up). */
  readonly warmup?: { readonly lr: number; readonly untilTrainError: number };
  /** Linear warm-up over the first iterations (torchvision-style). */
  readonly linearWarmupIterations?: number;
  readonly augmentation: AugmentationName;
  /** Images held out of the training set for validation (the paper's 45k/5k split on CIFAR). */
  readonly valSplit?: number;
}

/** Section 4.2: batch 128, lr 0.1, /10 at 32k and 48k iterations, stop at 64k, wd 1e-4, momentum 0.9. */
export const paperCifar: Recipe = {
  name: 'paper-cifar',
  description: 'He et al. 2015, section 4.2 (CIFAR-10)',
  batchSize: 128,
  lr: 0.1,
  momentum: 0.9,
  weightDecay: 1e-4,
  nesterov: false,
  labelSmoothing: 0,
  schedule: { kind: 'multistep', milestones: [32000, 48000], gamma: 0.1, unit: 'iteration' },
  iterations: 64000,
  augmentation: 'cifar',
  valSplit: 5000,
};

/** Section 4.2's ResNet-110: lr 0.01 until the training error is below 80% (about 400 iterations), then the CIFAR recipe. */
export const paperCifar110: Recipe = {
  ...paperCifar,
  name: 'paper-cifar-110',
  description: 'He et al. 2015, section 4.2, with the ResNet-110 warm-up',
  warmup: { lr: 0.01, untilTrainError: 0.8 },
};

/** Section 3.4: batch 256, lr 0.1 divided by 10 when the error plateaus, wd 1e-4, momentum 0.9, up to 60e4 iterations. */
export const paperImagenet: Recipe = {
  name: 'paper-imagenet',
  description: 'He et al. 2015, section 3.4 (ImageNet)',
  batchSize: 256,
  lr: 0.1,
  momentum: 0.9,
  weightDecay: 1e-4,
  nesterov: false,
  labelSmoothing: 0,
  schedule: { kind: 'plateau', factor: 0.1, patience: 5 },
  iterations: 600000,
  augmentation: 'paper-imagenet',
};

/** torchvision's reference script for ResNets: 90 epochs, lr 0.1 /10 every 30 epochs, batch 256. */
export const torchvisionImagenet: Recipe = {
  name: 'torchvision',
  description: "torchvision's classification reference (ResNet defaults)",
  batchSize: 256,
  lr: 0.1,
  momentum: 0.9,
  weightDecay: 1e-4,
  nesterov: false,
  labelSmoothing: 0,
  schedule: { kind: 'multistep', milestones: [30, 60], gamma: 0.1, unit: 'epoch' },
  epochs: 90,
  augmentation: 'torchvision-imagenet',
};

/**
 * The quick start: a ResNet-20 on the built-in shapes set in a few CPU minutes. Smaller batches give
 * more updates per image seen, and cosine decay needs no milestones tuned to the run length.
 */
export const quick: Recipe = {
  name: 'quick',
  description: 'quick start on builtin:shapes (not from the paper)',
  batchSize: 32,
  lr: 0.05,
  momentum: 0.9,
  weightDecay: 1e-4,
  nesterov: false,
  labelSmoothing: 0,
  schedule: { kind: 'cosine', unit: 'iteration' },
  epochs: 3,
  augmentation: 'cifar',
};

/** Every recipe by name. */
export const RECIPES: Readonly<Record<string, Recipe>> = {
  'paper-cifar': paperCifar,
  'paper-cifar-110': paperCifar110,
  'paper-imagenet': paperImagenet,
  torchvision: torchvisionImagenet,
  quick,
};

/** A recipe by name; an unknown name lists the known ones. */
export const getRecipe = (name: string): Recipe => {
  const r = RECIPES[name];
  if (!r) throw new Error(`unknown recipe '${name}'; known: ${Object.keys(RECIPES).join(', ')}`);
  return r;
};

/**
 * The recipe's rate as a function of the iteration, given the iterations per epoch. Plateau schedules
 * are driven by the trainer from validation error instead and return the base rate here.
 */
export const scheduleOf = (recipe: Recipe, itersPerEpoch: number, totalIterations: number): Schedule => {
  const s = recipe.schedule;
  const perUnit = (unit: 'iteration' | 'epoch') => (unit === 'epoch' ? itersPerEpoch : 1);
  let base: Schedule;
  switch (s.kind) {
    case 'multistep': {
      const f = perUnit(s.unit);
      base = multiStep(recipe.lr, s.milestones.map((m) => m * f), s.gamma);
      break;
    }
    case 'cosine':
      base = cosine(recipe.lr, totalIterations);
      break;
    default:
      base = () => recipe.lr;
  }
  return recipe.linearWarmupIterations ? linearWarmup(base, recipe.linearWarmupIterations, 0.01) : base;
};

/**
 * Scales a recipe to a shorter run, keeping its shape: milestones given in iterations move in
 * proportion to the new length (the paper's 32k/48k of 64k become 50% and 75% of the run).
 */
export const scaleRecipe = (recipe: Recipe, iterations: number): Recipe => {
  const s = recipe.schedule;
  const total = recipe.iterations;
  if (s.kind !== 'multistep' || s.unit !== 'iteration' || !total) return { ...recipe, iterations };
  return { ...recipe, iterations, schedule: { ...s, milestones: s.milestones.map((m) => Math.round((m / total) * iterations)) } };
};
