import { createWriteStream } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { decodeRgb, jpegHeader, sharp, writePpm } from './decode.js';
import { keyedRandom, permutation } from './random.js';
import { MANIFEST, type Shard, type ShardManifest } from './shards.js';
import type { Samples, Source, SplitName } from './sources.js';

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
  /**
   * Re-encode images, for epochs that decode less: decoded as the loader decodes them (upright, PIL's
   * colours), shrunk so the shorter side is at most `maxSide` (never enlarged), stored as baseline
   * RGB JPEG at `quality` (default 90). Upright baseline colour JPEGs already that small are stored as
   * they are. Without it, and without `raw`, the original bytes are stored.
   */
  readonly maxSide?: number;
  readonly quality?: number;
  /**
   * How `maxSide` stores images: `jpeg` (default), or `ppm`: the decoded 8-bit RGB pixels as a binary
   * PPM, which no epoch decodes again (FFCV's raw mode), at about five times the disk of JPEG, and
   * without a JPEG generation: an image already that small is stored exactly as the loader decodes it.
   */
  readonly format?: 'jpeg' | 'ppm';
  /**
   * Store raw 8-bit pixels instead, `raw` x `raw` CHW planes per sample (member `.chw`), which need
   * no decoding at all: CIFAR-sized data. Images are resized (shorter side `raw`) and centre-cropped;
   * raw-record sources (CIFAR) must already be that size.
   */
  readonly raw?: number;
}

const ID_DIGITS = 9;
const SHARD_DIGITS = 6;
const READ_AHEAD = 8;

/**
 * Writes each split of a source as tar shards in the WebDataset convention (`<split>-000000.tar`:
 * `000000042.jpg` + `000000042.cls` per sample; the original bytes unless `maxSide` or `raw` asks
 * for preprocessed ones), in an order shuffled from (seed, split) so every shard holds a mix of
 * classes, then `shards.json` with the classes, each shard's sample count and the preprocessing. Each shard is written to a temporary
 * file and renamed into place, and shards.json comes last, so a folder with one is complete.
 */
export async function makeShards(o: MakeShardsOptions): Promise<ShardManifest> {
  const { source, out, perShard, seed = 0, maxSide, quality = 90, raw, format = 'jpeg' } = o;
  const int = (name: string, v: number | undefined, min: number, max = Number.MAX_SAFE_INTEGER) => {
    if (v !== undefined && !(Number.isSafeInteger(v) && v >= min && v <= max)) throw new Error(`makeShards: ${name} ${v} is not an integer in [${min}, ${max}]`);
  };
  int('perShard', perShard, 1);
  int('seed', seed, 0);
  int('maxSide', maxSide, 1);
  int('quality', quality, 1, 100);
  int('raw', raw, 1);
  if (raw !== undefined && maxSide !== undefined) throw new Error('makeShards: give maxSide (JPEG) or raw (pixels), not both');
  if (format !== 'jpeg' && format !== 'ppm') throw new Error(`makeShards: format ${JSON.stringify(format)} is neither "jpeg" nor "ppm"`);
  if (format === 'ppm' && maxSide === undefined) throw new Error('makeShards: format "ppm" needs maxSide');
  if (o.quality !== undefined && format === 'ppm') throw new Error('makeShards: quality applies to JPEG, not format "ppm"');
  await mkdir(out, { recursive: true });
  if ((await readdir(out)).length > 0) throw new Error(`makeShards: ${out} is not empty`);
  const splits: Partial<Record<SplitName, Shard[]>> = {};
  for (const [s, split] of source.splits.entries()) {
    const samples = await source.split(split);
    if (samples.kind !== 'files' && !(raw === samples.width && raw === samples.height)) {
      throw new Error(`makeShards: ${source.spec} holds raw ${samples.width}x${samples.height} records, not image files; shard them with raw ${samples.width}`);
    }
    const order = permutation(samples.labels.length, keyedRandom(seed, s));
    const list: Shard[] = (splits[split] = []);
    for (let start = 0, k = 0; start < order.length; start += perShard, k++) {
      const url = `${split}-${String(k).padStart(SHARD_DIGITS, '0')}.tar`;
      const ids = order.subarray(start, start + perShard);
      await writeShard(join(out, url), ids, samples.labels, (id) => member(samples, id, o));
      list.push({ url, samples: ids.length });
      o.onShard?.(split, { url: join(out, url), samples: ids.length });
    }
  }
  const stored = raw !== undefined ? { raw: { width: raw, height: raw } } : maxSide === undefined ? {} : format === 'ppm' ? { ppm: { maxSide } } : { jpeg: { maxSide, quality } };
  const manifest: ShardManifest = { classes: source.classes, splits, ...stored };
  const tmp = join(out, `.${MANIFEST}.tmp`);
  await writeFile(tmp, `${JSON.stringify(manifest, null, 1)}\n`);
  await rename(tmp, join(out, MANIFEST));
  return manifest;
}

/** A sample's image member: its extension and bytes (see MakeShardsOptions for the three kinds). */
async function member(samples: Samples, id: number, o: MakeShardsOptions): Promise<[string, Uint8Array]> {
  if (samples.kind === 'planes') {
    const size = 3 * samples.width * samples.height;
    return ['.chw', samples.pixels.subarray(id * size, (id + 1) * size)];
  }
  const file = samples.files[id];
  const bytes = await readFile(file);
  if (o.raw === undefined && o.maxSide === undefined) return [extname(file).toLowerCase(), bytes];
  try {
    const side = o.raw ?? o.maxSide!;
    if (o.raw === undefined && o.format !== 'ppm') {
      // Already what re-encoding would give, less a generation of JPEG loss: stored as it is.
      const h = jpegHeader(bytes);
      if (h?.plain && h.baseline && h.orientation === 1 && Math.min(h.width, h.height) <= side) return ['.jpg', bytes];
    }
    // Decoded as the loader decodes (upright, PIL's colours), so shards hold the pixels the tree gives.
    const { data, width, height } = await decodeRgb(bytes);
    const upright = sharp()(data, { raw: { width, height, channels: 3 } });
    if (o.format === 'ppm') {
      if (Math.min(width, height) <= side) return ['.ppm', writePpm({ data, width, height })];
      const { data: small, info } = await upright.resize(side, side, { fit: 'outside' }).raw().toBuffer({ resolveWithObject: true });
      return ['.ppm', writePpm({ data: small, width: info.width, height: info.height })];
    }
    if (o.raw === undefined) {
      return ['.jpg', await upright.resize(side, side, { fit: 'outside', withoutEnlargement: true }).jpeg({ quality: o.quality ?? 90 }).toBuffer()];
    }
    const hwc = await upright.resize(side, side, { fit: 'cover' }).raw().toBuffer();
    const chw = new Uint8Array(hwc.length);
    for (let i = 0; i < side * side; i++) for (let c = 0; c < 3; c++) chw[c * side * side + i] = hwc[3 * i + c];
    return ['.chw', chw];
  } catch {
    // Stored as it is: the loader skips it and names it, as it would have in the tree.
    return [extname(file).toLowerCase(), bytes];
  }
}

async function writeShard(path: string, ids: Uint32Array, labels: Int32Array, image: (id: number) => Promise<[string, Uint8Array]>): Promise<void> {
  const tmp = `${path}.tmp`;
  const pack = tar.pack();
  const written = pipeline(pack, createWriteStream(tmp));
  const add = (name: string, data: Uint8Array) =>
    new Promise<void>((resolve, reject) =>
      // A fixed time and mode make a shard a pure function of its samples.
      pack.entry({ name, size: data.length, mtime: new Date(0), mode: 0o644 }, Buffer.from(data.buffer, data.byteOffset, data.length), (e) => (e ? reject(e) : resolve())),
    );
  try {
    // Images are read (and re-encoded) a few ahead of the writer; a read abandoned by an error must not go unhandled.
    const read = (k: number) => {
      const p = image(ids[k]);
      p.catch(() => {});
      return p;
    };
    const ahead = Array.from(ids.subarray(0, READ_AHEAD), (_, k) => read(k));
    for (let k = 0; k < ids.length; k++) {
      const id = ids[k];
      const [ext, bytes] = await ahead.shift()!;
      if (k + READ_AHEAD < ids.length) ahead.push(read(k + READ_AHEAD));
      const key = String(id).padStart(ID_DIGITS, '0');
      await add(`${key}${ext}`, bytes);
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
