import type { Dirent } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { IMAGE_EXTENSIONS } from './decode.js';
import { ensureShapes, type ShapesOptions } from './shapes.js';
import { openShards, type Shard } from './shards.js';
import { parseDataSpec, type DataSpec } from './spec.js';

/** The splits a source may have. */
export type SplitName = 'train' | 'val' | 'test';

/** The samples of one split: image files to decode, or raw 8-bit RGB planes (CIFAR) that need none. */
export type Samples =
  | { readonly kind: 'files'; readonly files: readonly string[]; readonly labels: Int32Array }
  | {
      readonly kind: 'planes';
      /** Each sample's R, G and B planes, one after another, `3 * width * height` bytes a sample. */
      readonly pixels: Uint8Array;
      readonly width: number;
      readonly height: number;
      readonly labels: Int32Array;
    };

/** A data set opened from a spec. */
export interface Source {
  readonly spec: string;
  /** Class names in label order. */
  readonly classes: readonly string[];
  /** Problems found while reading (empty class folders, stray files, missing batch files), each naming its file; none is fatal. */
  readonly issues: readonly string[];
  /** The splits with data of their own (CIFAR's `val` is its test file unless `valSplit` holds some training records out). */
  readonly splits: readonly SplitName[];
  /** The samples of a split, read once and cached. A streamed source (tar shards) cannot list them and rejects: see `shards`. */
  split(name: SplitName): Promise<Samples>;
  /** Streamed sources only: a split's tar shards in their fixed order, with their sample counts. */
  readonly shards?: (name: SplitName) => Promise<readonly Shard[]>;
  /** Shards of raw pixels only (`.chw` members): every sample's size, from shards.json. */
  readonly rawSize?: { readonly width: number; readonly height: number };
}

/** Options of openSource. */
export interface SourceOptions {
  /** CIFAR only: hold out the last `valSplit` training records as the `val` split (the paper's 45k/5k is 5000). */
  readonly valSplit?: number;
  /** builtin:shapes only: its size, seed and cache folder. */
  readonly shapes?: ShapesOptions;
}

/** Opens the data set a spec names (see parseDataSpec); builtin:shapes is generated on first use. */
export async function openSource(spec: string | DataSpec, options: SourceOptions = {}): Promise<Source> {
  const parsed = typeof spec === 'string' ? parseDataSpec(spec) : spec;
  const name =
    parsed.kind === 'builtin' ? `builtin:${parsed.name}` : parsed.kind === 'shards' ? `shards:${parsed.location}` : `${parsed.kind}:${parsed.dir}`;
  if (options.valSplit !== undefined && parsed.kind !== 'cifar10' && parsed.kind !== 'cifar100') {
    throw new Error(`${name}: valSplit applies to cifar10/cifar100 only`);
  }
  if (parsed.kind === 'builtin') return openImageFolder(name, await ensureShapes(options.shapes));
  if (parsed.kind === 'imagenet') return openImageFolder(name, parsed.dir);
  if (parsed.kind === 'shards') return openShards(name, parsed.location);
  return openCifar(name, parsed.kind, parsed.dir, options.valSplit ?? 0);
}

const SPLITS: readonly SplitName[] = ['train', 'val', 'test'];

interface Entry {
  readonly name: string;
  readonly isDir: boolean;
}

/** A folder's entries in sorted order (symbolic links followed), or undefined when it does not exist. */
async function entries(dir: string): Promise<Entry[] | undefined> {
  let list: Dirent[];
  try {
    list = await readdir(dir, { withFileTypes: true });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  const out = await Promise.all(
    list.map(async (e) => ({
      name: e.name,
      isDir: e.isDirectory() || (e.isSymbolicLink() && (await stat(join(dir, e.name)).catch(() => undefined))?.isDirectory() === true),
    })),
  );
  // Code-unit order, like Python's sorted(), so labels match torchvision's.
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** Every file under `dir`, in sorted path order, as torchvision's ImageFolder walks it. */
async function walk(dir: string): Promise<string[]> {
  const list = (await entries(dir)) ?? [];
  const nested = await Promise.all(list.map((e) => (e.isDir ? walk(join(dir, e.name)) : [join(dir, e.name)])));
  return nested.flat();
}

/** `root/<split>/<class>/**` with classes numbered in sorted folder order, as torchvision's ImageFolder does. */
async function openImageFolder(spec: string, root: string): Promise<Source> {
  let classes: string[] | undefined;
  const splits: SplitName[] = [];
  for (const split of SPLITS) {
    const list = await entries(join(root, split));
    if (!list) continue;
    splits.push(split);
    if (!classes) {
      classes = list.filter((e) => e.isDir).map((e) => e.name);
      if (classes.length === 0) throw new Error(`${spec}: ${join(root, split)} has no class folders`);
    }
  }
  if (!classes) throw new Error(`${spec}: ${root} has no train/, val/ or test/ folder`);
  const labelOf = new Map(classes.map((c, i) => [c, i]));
  const issues: string[] = [];

  const scan = async (split: SplitName): Promise<Samples> => {
    const dir = join(root, split);
    const list = await entries(dir);
    if (!list) throw new Error(`${spec}: ${root} has no ${split}/ folder`);
    const files: string[] = [];
    const labels: number[] = [];
    const walked = await Promise.all(list.map((e) => (e.isDir && labelOf.has(e.name) ? walk(join(dir, e.name)) : [])));
    list.forEach((e, k) => {
      const path = join(dir, e.name);
      const label = labelOf.get(e.name);
      if (!e.isDir) issues.push(`${path}: a file outside any class folder; ignored`);
      else if (label === undefined) issues.push(`${path}: not one of the ${classes.length} classes; ignored`);
      else {
        const images = walked[k].filter((file) => {
          const ok = IMAGE_EXTENSIONS.has(extname(file).toLowerCase());
          if (!ok) issues.push(`${file}: not an image file name; ignored`);
          return ok;
        });
        if (images.length === 0) issues.push(`${path}: empty class folder`);
        for (const file of images) {
          files.push(file);
          labels.push(label);
        }
      }
    });
    return { kind: 'files', files, labels: Int32Array.from(labels) };
  };
  return { spec, classes, issues, splits, split: cached(scan) };
}

function cached<T>(load: (split: SplitName) => Promise<T>): (split: SplitName) => Promise<T> {
  const done = new Map<SplitName, Promise<T>>();
  return (split) => {
    let p = done.get(split);
    if (!p) done.set(split, (p = load(split)));
    return p;
  };
}

const CIFAR = {
  cifar10: { train: [1, 2, 3, 4, 5].map((i) => `data_batch_${i}.bin`), test: 'test_batch.bin', labelBytes: 1, classes: 10, names: 'batches.meta.txt' },
  cifar100: { train: ['train.bin'], test: 'test.bin', labelBytes: 2, classes: 100, names: 'fine_label_names.txt' },
} as const;
const CIFAR_SIDE = 32;
const CIFAR_PIXELS = 3 * CIFAR_SIDE * CIFAR_SIDE;

interface Records {
  pixels: Uint8Array;
  labels: Int32Array;
}

/** Reads CIFAR binary files: each record is the label byte(s), then 1024 R, 1024 G and 1024 B bytes. */
async function readRecords(spec: string, paths: readonly string[], f: (typeof CIFAR)[keyof typeof CIFAR]): Promise<Records> {
  const record = f.labelBytes + CIFAR_PIXELS;
  const files = await Promise.all(paths.map((p) => readFile(p)));
  files.forEach((bytes, k) => {
    if (bytes.length % record !== 0) {
      const offset = bytes.length - (bytes.length % record);
      throw new Error(`${spec}: ${paths[k]} is ${bytes.length} bytes, not a whole number of ${record}-byte records; the record at offset ${offset} is cut short`);
    }
  });
  const total = files.reduce((n, b) => n + b.length / record, 0);
  const pixels = new Uint8Array(total * CIFAR_PIXELS);
  const labels = new Int32Array(total);
  let n = 0;
  files.forEach((bytes, k) => {
    for (let at = 0; at < bytes.length; at += record, n++) {
      // CIFAR-100 stores coarse then fine label: the fine one is the class.
      const label = bytes[at + f.labelBytes - 1];
      if (label >= f.classes) {
        throw new Error(`${spec}: ${paths[k]}: label ${label} at offset ${at + f.labelBytes - 1} is not below ${f.classes}`);
      }
      labels[n] = label;
      pixels.set(bytes.subarray(at + f.labelBytes, at + record), n * CIFAR_PIXELS);
    }
  });
  return { pixels, labels };
}

function planes(r: Records, from = 0, to = r.labels.length): Samples {
  return {
    kind: 'planes',
    pixels: r.pixels.subarray(from * CIFAR_PIXELS, to * CIFAR_PIXELS),
    labels: r.labels.subarray(from, to),
    width: CIFAR_SIDE,
    height: CIFAR_SIDE,
  };
}

/** CIFAR-10/100 in the official binary layout. `val` is the held-out tail of train when valSplit > 0, else the test file. */
async function openCifar(spec: string, kind: keyof typeof CIFAR, dir: string, valSplit: number): Promise<Source> {
  const f = CIFAR[kind];
  if (!Number.isSafeInteger(valSplit) || valSplit < 0) throw new Error(`${spec}: valSplit ${valSplit} is not a non-negative integer`);
  const issues: string[] = [];
  const present = new Set(((await entries(dir)) ?? []).map((e) => e.name));
  const trainFiles = f.train.filter((name) => present.has(name));
  if (trainFiles.length === 0) throw new Error(`${spec}: none of ${f.train.join(', ')} is in ${dir}`);
  for (const name of f.train) if (!present.has(name)) issues.push(`${join(dir, name)}: missing; training on the other batch files`);

  let classes = Array.from({ length: f.classes }, (_, i) => String(i));
  if (present.has(f.names)) {
    const names = (await readFile(join(dir, f.names), 'utf8')).split('\n').map((s) => s.trim()).filter(Boolean);
    if (names.length === f.classes) classes = names;
    else issues.push(`${join(dir, f.names)}: ${names.length} names for ${f.classes} classes; using label numbers`);
  }

  let train: Promise<Records> | undefined;
  const readTrain = async () => {
    const r = await readRecords(spec, trainFiles.map((name) => join(dir, name)), f);
    if (valSplit >= r.labels.length) throw new Error(`${spec}: valSplit ${valSplit} leaves none of the ${r.labels.length} training records`);
    return r;
  };
  const load = async (split: SplitName): Promise<Samples> => {
    if (split === 'test' || (split === 'val' && valSplit === 0)) {
      if (!present.has(f.test)) throw new Error(`${spec}: ${join(dir, f.test)} is missing`);
      return planes(await readRecords(spec, [join(dir, f.test)], f));
    }
    const r = await (train ??= readTrain());
    const cut = r.labels.length - valSplit;
    return split === 'train' ? planes(r, 0, cut) : planes(r, cut);
  };
  const splits: SplitName[] = ['train', ...(valSplit > 0 ? (['val'] as const) : []), ...(present.has(f.test) ? (['test'] as const) : [])];
  return { spec, classes, issues, splits, split: cached(load) };
}
