import { closeSync, createReadStream, openSync, readSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, join } from 'node:path';
import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { createGunzip } from 'node:zlib';
import tar from 'tar-stream';
import { IMAGE_EXTENSIONS } from './decode.js';
import { keyedRandom, permutation, randInt } from './random.js';
import type { Source, SplitName } from './sources.js';

/** One tar shard: a path or an http(s) URL, and how many samples it holds. */
export interface Shard {
  readonly url: string;
  readonly samples: number;
}

/**
 * What `makeShards` writes beside the shards as `shards.json`: the class names in label order, and
 * each split's shards in order (URLs relative to the folder) with their sample counts.
 */
export interface ShardManifest {
  readonly classes: readonly string[];
  readonly splits: Partial<Record<SplitName, readonly Shard[]>>;
  /** Images re-encoded by `makeShards({ maxSide, quality })`; informative, they read as any JPEG. */
  readonly jpeg?: { readonly maxSide: number; readonly quality: number };
  /** Images stored as decoded pixels (binary PPM, shorter side at most maxSide) by `makeShards({ maxSide, format: 'ppm' })`; informative. */
  readonly ppm?: { readonly maxSide: number };
  /** Samples stored as raw CHW planes (`.chw` members) of this size, by `makeShards({ raw })`. */
  readonly raw?: { readonly width: number; readonly height: number };
}

/** The manifest's file name. */
export const MANIFEST = 'shards.json';
const SPLITS: readonly SplitName[] = ['train', 'val', 'test'];
const MAX_EXPANSION = 1_000_000;
const TAR_NAME = /\.(tar|tar\.gz|tgz)$/i;

/**
 * Expands shell-style braces: `{000000..000127}` (zero-padded to the wider end when either is
 * written with a leading zero, as bash does) and `{a,b}` lists, several and nested.
 */
export function expandBraces(pattern: string): string[] {
  const open = pattern.indexOf('{');
  if (open < 0) {
    if (pattern.includes('}')) throw new Error(`pattern "${pattern}": a } without its {`);
    return [pattern];
  }
  let depth = 0;
  let close = -1;
  const commas: number[] = [];
  for (let i = open; i < pattern.length && close < 0; i++) {
    if (pattern[i] === '{') depth++;
    else if (pattern[i] === '}' && --depth === 0) close = i;
    else if (pattern[i] === ',' && depth === 1) commas.push(i);
  }
  if (close < 0) throw new Error(`pattern "${pattern}": a { without its }`);
  const body = pattern.slice(open + 1, close);
  let options: string[];
  const range = /^(\d+)\.\.(\d+)$/.exec(body);
  if (commas.length > 0) {
    options = [open, ...commas].map((at, k) => pattern.slice(at + 1, k < commas.length ? commas[k] : close));
  } else if (range) {
    const [lo, hi] = [Number(range[1]), Number(range[2])];
    if (lo > hi) throw new Error(`pattern "${pattern}": the range {${body}} runs backwards`);
    if (hi - lo >= MAX_EXPANSION) throw new Error(`pattern "${pattern}": the range {${body}} names more than ${MAX_EXPANSION} shards`);
    const padded = /^0\d/.test(range[1]) || /^0\d/.test(range[2]);
    const width = padded ? Math.max(range[1].length, range[2].length) : 0;
    options = Array.from({ length: hi - lo + 1 }, (_, k) => String(lo + k).padStart(width, '0'));
  } else {
    throw new Error(`pattern "${pattern}": {${body}} is neither a range {a..b} nor a list {a,b}`);
  }
  const head = pattern.slice(0, open);
  const tail = pattern.slice(close + 1);
  return options.flatMap((o) => expandBraces(head + o + tail));
}

const isUrl = (s: string) => /^https?:\/\//i.test(s);

/** `name` taken relative to the folder `base` (a path or a URL), unless it is absolute. */
function resolveIn(base: string, name: string): string {
  if (isUrl(name) || isAbsolute(name)) return name;
  return isUrl(base) ? new URL(name, base.endsWith('/') ? base : `${base}/`).href : join(base, name);
}

const parentOf = (location: string) => (isUrl(location) ? new URL('.', location).href : dirname(location));

/** A path or an http(s) URL as a byte stream, read as it is consumed (never whole); gunzipped when named .gz or .tgz. */
async function openBytes(url: string): Promise<Readable> {
  let bytes: Readable;
  if (!isUrl(url)) bytes = createReadStream(url);
  else {
    const res = await fetch(url);
    if (!res.ok || !res.body) {
      await res.body?.cancel();
      throw new Error(`HTTP ${res.status} ${res.statusText}`);
    }
    bytes = Readable.fromWeb(res.body as WebReadableStream<Uint8Array>);
  }
  if (!/\.(gz|tgz)$/i.test(url)) return bytes;
  const gunzip = createGunzip();
  bytes.on('error', (e) => gunzip.destroy(e));
  gunzip.on('close', () => bytes.destroy());
  return bytes.pipe(gunzip);
}

/** A small text file from a path or URL, or undefined when there is none. */
async function readText(url: string): Promise<string | undefined> {
  if (!isUrl(url)) {
    return readFile(url, 'utf8').catch((e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') return undefined;
      throw e;
    });
  }
  const res = await fetch(url);
  if (res.status === 404) {
    await res.body?.cancel();
    return undefined;
  }
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status} ${res.statusText}`);
  return res.text();
}

/** One member of a tar file. */
export interface TarFile {
  readonly name: string;
  readonly data: Uint8Array<ArrayBuffer>;
}

/** Where reading a tar stands, for the error that names it: bytes read, and the member being read. */
interface TarProgress {
  offset: number;
  current?: string;
}

/**
 * The regular files of a tar (a path or an http(s) URL; gzipped when named .gz or .tgz), in order,
 * each read whole into a buffer of its own. A stream that ends
 * inside a member, or without the archive's closing zero blocks, is truncated: the error names the
 * shard, the byte offset reached and the member being read.
 */
export async function* tarFiles(url: string): AsyncGenerator<TarFile> {
  const at: TarProgress = { offset: 0 };
  try {
    yield* isUrl(url) || /\.(gz|tgz)$/i.test(url) ? streamedTar(url, at) : localTar(url, at);
  } catch (e) {
    const message = (e as Error).message;
    const what = /unexpected end of/i.test(message) ? 'is truncated' : 'could not be read';
    throw new Error(`shard ${url} ${what} at byte offset ${at.offset}${at.current ? ` (in ${at.current})` : ''}: ${message}`);
  }
}

/** tarFiles of a stream (HTTP, gzip), through tar-stream, which handles the format's variants. */
async function* streamedTar(url: string, at: TarProgress): AsyncGenerator<TarFile> {
  let input: Readable | undefined;
  const tail = new Uint8Array(1024); // the last bytes seen: a whole tar ends in two zero blocks
  try {
    input = await openBytes(url);
    const extract = tar.extract();
    input.on('data', (chunk: Uint8Array) => {
      at.offset += chunk.length;
      if (chunk.length >= tail.length) tail.set(chunk.subarray(chunk.length - tail.length));
      else {
        tail.copyWithin(0, chunk.length);
        tail.set(chunk, tail.length - chunk.length);
      }
    });
    input.on('error', (e) => extract.destroy(e));
    input.pipe(extract);
    for await (const entry of extract) {
      at.current = entry.header.name;
      const data = new Uint8Array(entry.header.size ?? 0);
      let filled = 0;
      for await (const chunk of entry as AsyncIterable<Uint8Array>) {
        data.set(chunk, filled);
        filled += chunk.length;
      }
      if (entry.header.type === 'file' || entry.header.type === 'contiguous-file') yield { name: at.current, data };
      at.current = undefined;
    }
    if (at.offset < tail.length || tail.some((b) => b !== 0)) throw new Error('Unexpected end of data: no end-of-archive blocks');
  } finally {
    input?.destroy();
  }
}

const BLOCK = 512;
const text = (b: Uint8Array, from: number, length: number) => {
  const field = b.subarray(from, from + length);
  const nul = field.indexOf(0);
  return new TextDecoder().decode(nul < 0 ? field : field.subarray(0, nul));
};

/** A header's numeric field: octal digits, or base-256 when its first byte has the high bit set (GNU, for sizes of 8 GB and more). */
function number(b: Uint8Array, from: number, length: number): number {
  if (b[from] & 0x80) {
    let v = b[from] & 0x3f;
    for (let i = 1; i < length; i++) v = v * 256 + b[from + i];
    return v;
  }
  const digits = text(b, from, length).trim();
  if (!/^[0-7]*$/.test(digits)) throw new Error(`Invalid tar header: field "${digits}" is not octal`);
  return digits === '' ? 0 : Number.parseInt(digits, 8);
}

/** The records of a pax extended header ("<length> <key>=<value>\n"...). */
function paxRecords(data: Uint8Array): Map<string, string> {
  const records = new Map<string, string>();
  const all = new TextDecoder().decode(data);
  for (let i = 0; i < all.length; ) {
    const space = all.indexOf(' ', i);
    const length = Number.parseInt(all.slice(i, space), 10);
    if (space < 0 || !(length > 0)) break;
    const record = all.slice(space + 1, i + length - 1);
    const eq = record.indexOf('=');
    if (eq > 0) records.set(record.slice(0, eq), record.slice(eq + 1));
    i += length;
  }
  return records;
}

/**
 * tarFiles of a local, uncompressed file: each member's data read by one positioned read straight
 * into its own buffer, where tar-stream copies every chunk of a stream (a shard of decoded pixels,
 * 75 MB, read in about 50 ms against 330). The reads are synchronous, as decodeBatch's: a member is
 * read in well under a millisecond, and a promise per read cost as much as the reading. Reads ustar,
 * GNU long names and pax headers (path, size); checks each header's checksum.
 */
async function* localTar(path: string, at: TarProgress): AsyncGenerator<TarFile> {
  const file = openSync(path, 'r');
  try {
    const header = new Uint8Array(BLOCK);
    /** Reads `into` from `position` on; the bytes there were, fewer only at the end of the file. */
    const fill = (into: Uint8Array, position: number): number => {
      let filled = 0;
      for (let n = -1; filled < into.length && n !== 0; filled += n) n = readSync(file, into, filled, into.length - filled, position + filled);
      at.offset = Math.max(at.offset, position + filled);
      return filled;
    };
    let position = 0;
    let longName: string | undefined;
    let pax = new Map<string, string>();
    for (;;) {
      const got = fill(header, position);
      if (got < BLOCK) throw new Error(got === 0 ? 'Unexpected end of data: no end-of-archive blocks' : 'Unexpected end of data');
      if (header.every((b) => b === 0)) {
        if (fill(header, position + BLOCK) < BLOCK) throw new Error('Unexpected end of data: one end-of-archive block of two');
        return;
      }
      let sum = 0;
      for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 32 : header[i];
      if (sum !== number(header, 148, 8)) throw new Error('Invalid tar header. Maybe the tar is corrupted or it needs to be gunzipped?');
      const type = String.fromCharCode(header[156] || 0x30);
      const posix = text(header, 257, 6) === 'ustar';
      const prefix = posix ? text(header, 345, 155) : '';
      const name = pax.get('path') ?? longName ?? (prefix ? `${prefix}/${text(header, 0, 100)}` : text(header, 0, 100));
      const size = pax.has('size') && type !== 'x' && type !== 'g' ? Number(pax.get('size')) : number(header, 124, 12);
      const regular = type === '0' || type === '7';
      at.current = name;
      // Only regular files and the headers naming the next member are read; the rest is stepped over.
      const data = regular || type === 'L' || type === 'x' ? new Uint8Array(size) : undefined;
      if (data && fill(data, position + BLOCK) < size) throw new Error('Unexpected end of data');
      position += BLOCK + Math.ceil(size / BLOCK) * BLOCK;
      if (type === 'L') longName = text(data!, 0, size);
      else if (type === 'x') pax = paxRecords(data!);
      else if (type !== 'g' && type !== 'K') {
        if (regular) yield { name, data: data! };
        longName = undefined;
        pax = new Map();
      }
      at.current = undefined;
    }
  } finally {
    closeSync(file);
  }
}

/** A WebDataset sample: the consecutive tar members sharing a key (`dir/key.jpg`, `dir/key.cls`). */
export interface ShardSample {
  readonly key: string;
  readonly image?: Uint8Array<ArrayBuffer>;
  /** Raw 8-bit CHW planes (a `.chw` member), in place of an encoded image. */
  readonly pixels?: Uint8Array<ArrayBuffer>;
  readonly label?: number;
  /** Why the sample cannot be used, when it cannot. */
  readonly reason?: string;
}

function toSample(key: string, files: Map<string, Uint8Array<ArrayBuffer>>): ShardSample {
  const image = [...files].find(([ext]) => IMAGE_EXTENSIONS.has(`.${ext}`))?.[1];
  const pixels = files.get('chw');
  const content = image ? { image } : pixels ? { pixels } : undefined;
  const cls = files.get('cls');
  const text = cls && new TextDecoder().decode(cls).trim();
  if (!content) return { key, reason: `no image member (${[...IMAGE_EXTENSIONS].join(', ')}, .chw)` };
  if (text === undefined) return { key, ...content, reason: 'no .cls label member' };
  if (!/^\d+$/.test(text)) return { key, ...content, reason: `${key}.cls holds ${JSON.stringify(text.slice(0, 40))}, not an integer label` };
  return { key, ...content, label: Number(text) };
}

/**
 * The samples of a shard in the WebDataset convention: members are grouped by key (the path up to the
 * first dot of the file name) while consecutive; the image is the member with an image extension and
 * the label the integer text of the `.cls` member.
 */
export async function* shardSamples(url: string): AsyncGenerator<ShardSample> {
  let key: string | undefined;
  let files = new Map<string, Uint8Array<ArrayBuffer>>();
  for await (const f of tarFiles(url)) {
    const dot = f.name.indexOf('.', f.name.lastIndexOf('/') + 1);
    const k = dot < 0 ? f.name : f.name.slice(0, dot);
    if (key !== undefined && k !== key) {
      yield toSample(key, files);
      files = new Map();
    }
    key = k;
    files.set(dot < 0 ? '' : f.name.slice(dot + 1).toLowerCase(), f.data);
  }
  if (key !== undefined) yield toSample(key, files);
}

/** Reads and checks a shards.json, or undefined when there is none. */
async function readManifest(url: string): Promise<ShardManifest | undefined> {
  const text = await readText(url);
  if (text === undefined) return undefined;
  const fail = (what: string): never => {
    throw new Error(`${url}: ${what}`);
  };
  let m: { classes?: unknown; splits?: Record<string, unknown> };
  try {
    m = JSON.parse(text);
  } catch (e) {
    return fail(`not valid JSON (${(e as Error).message})`);
  }
  if (!Array.isArray(m.classes) || !m.classes.every((c) => typeof c === 'string')) fail('"classes" must be a list of names');
  if (!m.splits || typeof m.splits !== 'object') fail('"splits" must map split names to lists of shards');
  for (const [name, list] of Object.entries(m.splits!)) {
    if (!SPLITS.includes(name as SplitName)) fail(`unknown split "${name}" (expected ${SPLITS.join(', ')})`);
    const ok = (s: { url?: unknown; samples?: unknown }) => typeof s?.url === 'string' && Number.isSafeInteger(s.samples) && (s.samples as number) >= 0;
    if (!Array.isArray(list) || !list.every(ok)) fail(`split "${name}" must be a list of { "url": string, "samples": integer >= 0 }`);
  }
  const raw = (m as { raw?: { width?: unknown; height?: unknown } }).raw;
  const side = (v: unknown) => Number.isSafeInteger(v) && (v as number) > 0;
  if (raw !== undefined && !(side(raw?.width) && side(raw?.height))) fail('"raw" must be { "width": integer > 0, "height": integer > 0 }');
  return m as ShardManifest;
}

/** Counts a local shard's samples and finds its largest label, reading it once. */
async function scanShard(url: string): Promise<{ samples: number; maxLabel: number }> {
  let samples = 0;
  let maxLabel = -1;
  for await (const s of shardSamples(url)) {
    samples++;
    if (s.label !== undefined) maxLabel = Math.max(maxLabel, s.label);
  }
  return { samples, maxLabel };
}

/**
 * Opens tar shards (see `shards:` in the README). A folder or URL holding a shards.json gives every
 * split it lists; a brace pattern of `.tar` files gives one split: the one shards.json beside it files
 * its first shard under, else `train`. Sample counts come from shards.json; local shards it does not
 * list are read once to count them. Class names come from shards.json, else classes.txt beside the
 * shards, else they are the numbers up to the largest label seen (an issue says so).
 */
export async function openShards(spec: string, location: string): Promise<Source> {
  const names = expandBraces(location);
  const isPattern = names.every((n) => TAR_NAME.test(n));
  if (!isPattern && names.length > 1) throw new Error(`${spec}: a pattern must name .tar files only`);
  const folder = isPattern ? parentOf(names[0]) : names[0];
  const manifestUrl = resolveIn(folder, MANIFEST);
  const manifest = await readManifest(manifestUrl);
  const issues: string[] = [];
  const lists = new Map<SplitName, readonly Shard[]>();
  let maxLabel = -1;
  if (!isPattern) {
    if (!manifest) throw new Error(`${spec}: ${manifestUrl} is missing; name the shards with a pattern (shards:DIR/train-{000000..000009}.tar) or write the shards.json that shards make writes`);
    for (const split of SPLITS) {
      const list = manifest.splits[split];
      if (list) lists.set(split, list.map((s) => ({ url: resolveIn(folder, s.url), samples: s.samples })));
    }
  } else {
    const listed = new Map<string, { split: SplitName; samples: number }>();
    for (const split of SPLITS) for (const s of manifest?.splits[split] ?? []) listed.set(resolveIn(folder, s.url), { split, samples: s.samples });
    const shards: Shard[] = [];
    for (const url of names) {
      const known = listed.get(url);
      if (known) shards.push({ url, samples: known.samples });
      else if (isUrl(url)) {
        throw new Error(`${spec}: no sample count for ${url}; streamed shards need a shards.json beside them that lists each shard's samples (shards make writes one)`);
      } else {
        const scan = await scanShard(url);
        maxLabel = Math.max(maxLabel, scan.maxLabel);
        shards.push({ url, samples: scan.samples });
      }
    }
    lists.set(listed.get(names[0])?.split ?? 'train', shards);
  }
  let classes = manifest?.classes ?? (await readText(resolveIn(folder, 'classes.txt')))?.split('\n').map((s) => s.trim()).filter(Boolean);
  if (!classes) {
    if (maxLabel < 0) throw new Error(`${spec}: no class names (no shards.json or classes.txt beside the shards) and no labels in the shards`);
    classes = Array.from({ length: maxLabel + 1 }, (_, i) => String(i));
    issues.push(`${spec}: no shards.json or classes.txt; ${classes.length} classes, up to the largest label seen`);
  }
  const splits = [...lists.keys()];
  return {
    spec,
    classes,
    issues,
    splits,
    ...(manifest?.raw && { rawSize: { width: manifest.raw.width, height: manifest.raw.height } }),
    split: () => Promise.reject(new Error(`${spec}: tar shards are streamed, not listed; read them with createLoader`)),
    shards: async (name) => {
      const list = lists.get(name);
      if (!list) throw new Error(`${spec} has no ${name} split (it has ${splits.join(', ')})`);
      return list;
    },
  };
}

/** How one rank streams an epoch of shards. */
export interface StreamPlan {
  /** Shards to read, in order (positions in the split's list), and how many samples of each to take. */
  readonly reads: readonly { readonly shard: number; readonly take: number }[];
  /** Slots (positions in the stream that `reads` makes) in the order they are handed out. */
  readonly order: Uint32Array;
}

/** Options of planStream. */
export interface StreamOptions {
  readonly epoch: number;
  readonly seed: number;
  readonly shuffle: boolean;
  readonly buffer: number;
  /** Samples read before the first draw; the buffer then grows by one a draw up to `buffer`. Default min(buffer, 100). */
  readonly initial?: number;
  readonly rank: number;
  readonly worldSize: number;
}

// Keys the shuffle buffer's draws apart from the (seed, epoch, index) keys of augmentation.
const BUFFER_KEY = 0x5eed;

/**
 * One rank's epoch over shards holding `counts` samples. With `shuffle`, the shards are put in an
 * order drawn from (seed, epoch), and samples pass through a shuffle buffer of `buffer` whose draws
 * also come from (seed, epoch): as WebDataset's, it starts drawing once `initial` samples are in and
 * reads two a draw until it holds `buffer`, so an epoch's first batch waits for `initial` samples,
 * not `buffer` (1,000 decoded photos are half a gigabyte). The rank takes every worldSize-th shard of
 * that order. Every rank
 * streams ceil(total / worldSize) samples: a rank with fewer wraps around to its first shards, a rank
 * with more stops early. Depends on nothing but its arguments, so an epoch replays exactly.
 */
export function planStream(counts: readonly number[], o: StreamOptions): StreamPlan {
  const total = counts.reduce((a, b) => a + b, 0);
  const perRank = Math.ceil(total / o.worldSize);
  if (perRank === 0) return { reads: [], order: new Uint32Array(0) };
  const shardOrder = o.shuffle ? permutation(counts.length, keyedRandom(o.seed, o.epoch)) : Uint32Array.from(counts.keys());
  const mine = shardOrder.filter((_, k) => k % o.worldSize === o.rank);
  if (mine.reduce((a, s) => a + counts[s], 0) === 0) throw new Error(`rank ${o.rank} of ${o.worldSize} was dealt shards that hold no samples`);
  const reads: { shard: number; take: number }[] = [];
  for (let k = 0, read = 0; read < perRank; k++) {
    const shard = mine[k % mine.length];
    const take = Math.min(counts[shard], perRank - read);
    if (take > 0) reads.push({ shard, take });
    read += take;
  }
  const order = Uint32Array.from({ length: perRank }, (_, i) => i);
  if (!o.shuffle) return { reads, order };
  const rand = keyedRandom(o.seed, o.epoch, BUFFER_KEY, BUFFER_KEY);
  const initial = Math.min(o.buffer, o.initial ?? 100);
  const held: number[] = [];
  for (let next = 0, out = 0; out < perRank; out++) {
    while (held.length < Math.min(o.buffer, initial + out) && next < perRank) held.push(next++);
    const j = randInt(rand, 0, held.length - 1);
    order[out] = held[j];
    held[j] = held[held.length - 1];
    held.pop();
  }
  return { reads, order };
}

/** A sample read from a stream, with where it sits: its slot in the stream, and its shard and position there. */
export interface StreamedSample {
  readonly slot: number;
  readonly shard: number;
  readonly position: number;
  readonly sample: ShardSample;
}

/**
 * The samples of a plan's reads, from read `from` on, in stream order. A shard that holds more or
 * fewer samples than its count says is an error naming it.
 */
export async function* streamReads(shards: readonly Shard[], reads: StreamPlan['reads'], from: number): AsyncGenerator<StreamedSample> {
  let slot = reads.slice(0, from).reduce((a, r) => a + r.take, 0);
  for (const { shard, take } of reads.slice(from)) {
    const { url, samples } = shards[shard];
    let position = 0;
    for await (const sample of shardSamples(url)) {
      if (position === take) {
        if (take < samples) break;
        throw new Error(`shard ${url} holds more than the ${samples} samples its count says`);
      }
      yield { slot: slot + position, shard, position, sample };
      position++;
    }
    if (position < take) throw new Error(`shard ${url} holds ${position} samples, but its count says ${samples}`);
    slot += take;
  }
}
