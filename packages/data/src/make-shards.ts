import { createWriteStream } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { keyedRandom, permutation } from './random.js';
import { MANIFEST, type Shard, type ShardManifest } from './shards.js';
import type { Source, SplitName } from './sources.js';

/** Options of makeShards. */
export interface MakeShardsOptions {
  /** An image-file source: `imagenet:DIR` or `builtin:shapes`. */
  readonly source: Source;
  /** A folder that does not exist yet, or is empty. */
  readonly out: string;
  /** Samples per shard (the last of a split holds the rest). */
  readonly perShard: number;
  /** Keys the order samples are dealt into shards; default 0. */
  readonly seed?: number;
  /** Told of each shard once written. */
  readonly onShard?: (split: SplitName, shard: Shard) => void;
}

const ID_DIGITS = 9;
const SHARD_DIGITS = 6;
const READ_AHEAD = 8;

/**
 * Writes each split of an image-file source as tar shards in the WebDataset convention
 * (`<split>-000000.tar`: `000000042.jpg` + `000000042.cls` per sample, the original bytes, no
 * re-encoding), in an order shuffled from (seed, split) so every shard holds a mix of classes, then
 * `shards.json` with the classes and each shard's sample count. Each shard is written to a temporary
 * file and renamed into place, and shards.json comes last, so a folder with one is complete.
 */
export async function makeShards(o: MakeShardsOptions): Promise<ShardManifest> {
  const { source, out, perShard, seed = 0 } = o;
  if (!Number.isSafeInteger(perShard) || perShard < 1) throw new Error(`makeShards: perShard ${perShard} is not an integer >= 1`);
  if (!Number.isSafeInteger(seed) || seed < 0) throw new Error(`makeShards: seed ${seed} is not an integer >= 0`);
  await mkdir(out, { recursive: true });
  if ((await readdir(out)).length > 0) throw new Error(`makeShards: ${out} is not empty`);
  const splits: Partial<Record<SplitName, Shard[]>> = {};
  for (const [s, split] of source.splits.entries()) {
    const samples = await source.split(split);
    if (samples.kind !== 'files') throw new Error(`makeShards: ${source.spec} holds raw records, not image files; shards are made from imagenet:DIR or builtin:shapes`);
    const order = permutation(samples.files.length, keyedRandom(seed, s));
    const list: Shard[] = (splits[split] = []);
    for (let start = 0, k = 0; start < order.length; start += perShard, k++) {
      const url = `${split}-${String(k).padStart(SHARD_DIGITS, '0')}.tar`;
      const ids = order.subarray(start, start + perShard);
      await writeShard(join(out, url), ids, samples.files, samples.labels);
      list.push({ url, samples: ids.length });
      o.onShard?.(split, { url: join(out, url), samples: ids.length });
    }
  }
  const manifest: ShardManifest = { classes: source.classes, splits };
  const tmp = join(out, `.${MANIFEST}.tmp`);
  await writeFile(tmp, `${JSON.stringify(manifest, null, 1)}\n`);
  await rename(tmp, join(out, MANIFEST));
  return manifest;
}

async function writeShard(path: string, ids: Uint32Array, files: readonly string[], labels: Int32Array): Promise<void> {
  const tmp = `${path}.tmp`;
  const pack = tar.pack();
  const written = pipeline(pack, createWriteStream(tmp));
  const add = (name: string, data: Uint8Array) =>
    new Promise<void>((resolve, reject) =>
      // A fixed time and mode make a shard a pure function of its samples.
      pack.entry({ name, size: data.length, mtime: new Date(0), mode: 0o644 }, Buffer.from(data.buffer, data.byteOffset, data.length), (e) => (e ? reject(e) : resolve())),
    );
  try {
    // Files are read a few ahead of the writer; a read abandoned by an error must not go unhandled.
    const read = (k: number) => {
      const p = readFile(files[ids[k]]);
      p.catch(() => {});
      return p;
    };
    const ahead = Array.from(ids.subarray(0, READ_AHEAD), (_, k) => read(k));
    for (let k = 0; k < ids.length; k++) {
      const id = ids[k];
      const bytes = await ahead.shift()!;
      if (k + READ_AHEAD < ids.length) ahead.push(read(k + READ_AHEAD));
      const key = String(id).padStart(ID_DIGITS, '0');
      await add(`${key}${extname(files[id]).toLowerCase()}`, bytes);
      await add(`${key}.cls`, new TextEncoder().encode(String(labels[id])));
    }
    pack.finalize();
    await written;
    await rename(tmp, path);
  } catch (e) {
    pack.destroy();
    await written.catch(() => {});
    await rm(tmp, { force: true });
    throw e;
  }
}
