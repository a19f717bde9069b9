import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { gzipSync } from 'node:zlib';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLoader, type Batch, type LoaderOptions } from './loader.js';
import { serveLoopback, take, type Loopback } from './loopback.test-support.js';
import { expandBraces, planStream, shardSamples, tarFiles } from './shards.js';
import { openSource } from './sources.js';

let root: string;
let server: Loopback | undefined;
let base: string;
/** Bytes the test server has written, per path. */
const served = new Map<string, number>();

/** A tar made by GNU tar (not the library under test) with the members in the given order. */
async function makeTar(path: string, members: readonly (readonly [string, Uint8Array | string])[]): Promise<void> {
  const staging = await mkdtemp(join(root, 'staging-'));
  for (const [name, bytes] of members) {
    await mkdir(dirname(join(staging, name)), { recursive: true });
    await writeFile(join(staging, name), bytes);
  }
  await mkdir(dirname(path), { recursive: true });
  const r = spawnSync('tar', ['-cf', path, '-C', staging, ...members.map(([name]) => name)]);
  if (r.status !== 0) throw new Error(`tar failed: ${r.stderr}`);
}

/** A 4x4 PNG whose every pixel is (v, 255 - v, 7v mod 256): lossless, so a decoded sample names itself. */
const png = (v: number) =>
  sharp(new Uint8Array(48).map((_, i) => [v, 255 - v, (7 * v) & 255][i % 3]), { raw: { width: 4, height: 4, channels: 3 } })
    .png()
    .toBuffer();

const COUNTS = [5, 4, 3];
const N = 12;
/** Shards `set-00000{0,1,2}.tar` of COUNTS samples; sample i (in shard order) has label i % 3 and pixel value 10 i. */
async function makeSet(dir: string): Promise<void> {
  let i = 0;
  for (const [s, count] of COUNTS.entries()) {
    const members: [string, Uint8Array | string][] = [];
    for (let k = 0; k < count; k++, i++) members.push([`${String(i).padStart(4, '0')}.png`, await png(10 * i)], [`${String(i).padStart(4, '0')}.cls`, `${i % 3}\n`]);
    await makeTar(join(dir, `set-00000${s}.tar`), members);
  }
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'residual-shards-'));
  await makeSet(join(root, 'local'));
  server = await serveLoopback(async (req, res) => {
    const path = join(root, decodeURIComponent(new URL(req.url!, 'http://x').pathname));
    const bytes = await readFile(path).catch(() => undefined);
    if (!bytes) return void res.writeHead(404).end();
    res.writeHead(200, { 'content-length': bytes.length });
    let at = 0;
    // Written in pieces with backpressure, so a client that stops reading stops the sending.
    const pump = () => {
      while (at < bytes.length) {
        const piece = bytes.subarray(at, at + 65536);
        at += piece.length;
        served.set(req.url!, at);
        if (!res.write(piece)) return void res.once('drain', pump);
      }
      res.end();
    };
    res.on('close', () => (at = bytes.length));
    pump();
  });
  base = server.base;
});
afterAll(async () => {
  await server?.close();
  await rm(root, { recursive: true, force: true });
});

describe('expandBraces', () => {
  it('expands zero-padded ranges, lists, nesting and several braces, in order', () => {
    expect(expandBraces('train-{000000..000002}.tar')).toEqual(['train-000000.tar', 'train-000001.tar', 'train-000002.tar']);
    expect(expandBraces('{8..11}')).toEqual(['8', '9', '10', '11']);
    expect(expandBraces('{08..10}')).toEqual(['08', '09', '10']);
    expect(expandBraces('{a,b{1..2}}-{x,y}')).toEqual(['a-x', 'a-y', 'b1-x', 'b1-y', 'b2-x', 'b2-y']);
    expect(expandBraces('https://h/p/s.tar')).toEqual(['https://h/p/s.tar']);
  });

  it('names the pattern in every error', () => {
    expect(() => expandBraces('a{1..3')).toThrow('pattern "a{1..3": a { without its }');
    expect(() => expandBraces('a}')).toThrow('pattern "a}": a } without its {');
    expect(() => expandBraces('{3..1}')).toThrow('the range {3..1} runs backwards');
    expect(() => expandBraces('{x}')).toThrow('{x} is neither a range {a..b} nor a list {a,b}');
  });
});

describe('planStream', () => {
  const o = { epoch: 0, seed: 1, shuffle: false, buffer: 4, rank: 0, worldSize: 1 };

  it('reads the shards in order, unshuffled, and deals every worldSize-th shard to a rank', () => {
    expect(planStream(COUNTS, o)).toEqual({ reads: [{ shard: 0, take: 5 }, { shard: 1, take: 4 }, { shard: 2, take: 3 }], order: Uint32Array.from({ length: 12 }, (_, i) => i) });
    // 12 samples over 2 ranks: 6 each. Rank 0 has shards 0 and 2 (8 samples) and stops early; rank 1 has shard 1 (4) and wraps around.
    expect(planStream(COUNTS, { ...o, worldSize: 2 }).reads).toEqual([{ shard: 0, take: 5 }, { shard: 2, take: 1 }]);
    expect(planStream(COUNTS, { ...o, worldSize: 2, rank: 1 }).reads).toEqual([{ shard: 1, take: 4 }, { shard: 1, take: 2 }]);
    expect(() => planStream([3, 0], { ...o, worldSize: 2, rank: 1 })).toThrow('rank 1 of 2 was dealt shards that hold no samples');
  });

  it('shuffles shards and samples from (seed, epoch), never handing out a sample the buffer has not read yet', () => {
    const counts = [7, 7, 7, 7, 7, 3];
    const a = planStream(counts, { ...o, shuffle: true });
    expect([...a.order].sort((x, y) => x - y)).toEqual(Array.from({ length: 38 }, (_, i) => i));
    a.order.forEach((slot, i) => expect(slot).toBeLessThan(i + o.buffer));
    expect(planStream(counts, { ...o, shuffle: true })).toEqual(a);
    const next = planStream(counts, { ...o, shuffle: true, epoch: 1 });
    expect(next.order).not.toEqual(a.order);
    expect(next.reads).not.toEqual(a.reads);
    expect(new Set(next.reads.map((r) => r.shard)).size).toBe(6);
    expect(planStream(counts, { ...o, shuffle: true, buffer: 1 }).order).toEqual(Uint32Array.from({ length: 38 }, (_, i) => i));
  });

  it('starts drawing after `initial` samples and grows the buffer by one a draw up to its size', () => {
    const counts = [400, 400, 200];
    const draws = (buffer: number, initial?: number) => planStream(counts, { ...o, shuffle: true, buffer, initial }).order;
    for (const [buffer, initial] of [[1000, 100], [1000, undefined], [50, 10], [300, 300]] as const) {
      const order = draws(buffer, initial);
      const start = Math.min(buffer, initial ?? 100);
      expect([...order].sort((x, y) => x - y)).toEqual(Array.from({ length: 1000 }, (_, i) => i));
      // Draw i comes from the samples read by then: the buffer's min(buffer, start + i) and the i drawn.
      order.forEach((slot, i) => expect(slot).toBeLessThan(Math.min(buffer, start + i) + i));
    }
    // Without the growth the first draws would reach past the first 100 samples.
    expect(Math.max(...draws(1000).subarray(0, 20))).toBeLessThan(120);
  });
});

describe('reading tar shards', () => {
  it('groups members by key and reads labels from .cls, naming what a sample lacks', async () => {
    const path = join(root, 'odd.tar');
    await makeTar(path, [
      ['a/x.JPG', 'not really an image'],
      ['a/x.cls', ' 4 '],
      ['b.seg.png', 'a mask: its field is seg.png, as the key ends at the first dot'],
      ['b.cls', '2'],
      ['c.png', 'img'],
      ['c.cls', 'cat'],
      ['d.png', 'img'],
    ]);
    const got = [];
    for await (const s of shardSamples(path)) got.push({ key: s.key, label: s.label, image: s.image && Buffer.from(s.image).toString(), reason: s.reason });
    expect(got).toEqual([
      { key: 'a/x', label: 4, image: 'not really an image', reason: undefined },
      { key: 'b', label: undefined, image: undefined, reason: expect.stringMatching(/^no image member/) },
      { key: 'c', label: undefined, image: 'img', reason: 'c.cls holds "cat", not an integer label' },
      { key: 'd', label: undefined, image: 'img', reason: 'no .cls label member' },
    ]);
  });

  it('fails on a truncated shard, naming it, the byte offset and the member', async () => {
    const whole = await readFile(join(root, 'local', 'set-000000.tar'));
    const names: string[] = [];
    for await (const f of tarFiles(join(root, 'local', 'set-000000.tar'))) names.push(f.name);
    expect(names).toHaveLength(10);
    const cut = join(root, 'cut.tar');
    // Inside the third member's data; then exactly at a member's end, where only the missing end-of-archive blocks tell.
    for (const [at, member] of [[2 * 1024 + 512 + 30, ' (in 0001.png)'], [3 * 1024, '']] as const) {
      await writeFile(cut, whole.subarray(0, at));
      const read = async () => {
        for await (const f of tarFiles(cut)) void f;
      };
      await expect(read()).rejects.toThrow(`shard ${cut} is truncated at byte offset ${at}${member}: Unexpected end of data`);
    }
    await expect(tarFiles(join(root, 'absent.tar')).next()).rejects.toThrow(/shard .*absent.tar could not be read at byte offset 0: ENOENT/);
  });

  it('reads local files as tar-stream reads the same bytes gzipped: ustar prefixes, GNU long names, pax headers', async () => {
    const deep = `${'d'.repeat(90)}/${'e'.repeat(60)}`;
    const members: [string, Uint8Array][] = [
      ['a.bin', randomBytes(700)],
      [`${deep}/short.bin`, randomBytes(512)],
      [`${deep}/${'n'.repeat(120)}.bin`, randomBytes(3)],
      ['empty.bin', new Uint8Array(0)],
    ];
    for (const format of ['gnu', 'pax', 'ustar']) {
      const staging = await mkdtemp(join(root, 'formats-'));
      const names = format === 'ustar' ? members.filter(([n]) => !n.includes('n'.repeat(120))) : members; // ustar cannot hold a 120-character file name
      for (const [name, bytes] of names) {
        await mkdir(dirname(join(staging, name)), { recursive: true });
        await writeFile(join(staging, name), bytes);
      }
      const path = join(root, `formats-${format}.tar`);
      // A directory member too, which is not a file and is left out.
      const r = spawnSync('tar', ['-cf', path, `--format=${format}`, '-C', staging, deep.split('/')[0], ...names.filter(([n]) => !n.startsWith('d')).map(([n]) => n)]);
      expect(r.status, String(r.stderr)).toBe(0);
      await writeFile(`${path}.gz`, gzipSync(await readFile(path)));
      const read = async (url: string) => {
        const out: [string, string][] = [];
        for await (const f of tarFiles(url)) out.push([f.name, Buffer.from(f.data).toString('hex')]);
        return out.sort();
      };
      const local = await read(path);
      expect(local).toEqual(await read(`${path}.gz`));
      expect(local).toEqual(names.map(([n, b]) => [n, Buffer.from(b).toString('hex')]).sort());
    }
    const bad = Buffer.from(await readFile(join(root, 'formats-gnu.tar')));
    bad[10] ^= 1; // in the first header's name: its checksum no longer adds up
    await writeFile(join(root, 'bad-sum.tar'), bad);
    await expect(tarFiles(join(root, 'bad-sum.tar')).next()).rejects.toThrow(/bad-sum.tar could not be read at byte offset 512.*Invalid tar header/);
  });

  it('streams a shard over HTTP without fetching the rest once the reader stops', async () => {
    const members: [string, Uint8Array][] = Array.from({ length: 40 }, (_, i) => [`${i}.bin`, randomBytes(1 << 20)]);
    await makeTar(join(root, 'big', 'big.tar'), members);
    const stream = tarFiles(`${base}/big/big.tar`);
    const first = await stream.next();
    expect(Buffer.from(first.value!.data).equals(members[0][1])).toBe(true);
    await stream.return(undefined);
    await new Promise((r) => setTimeout(r, 200));
    expect(served.get('/big/big.tar')).toBeLessThan(0.75 * 40 * (1 << 20));
    await expect(tarFiles(`${base}/big/none.tar`).next()).rejects.toThrow(`shard ${base}/big/none.tar could not be read at byte offset 0: HTTP 404`);
  });
});

describe('opening shards', () => {
  it('counts local shards that no shards.json lists and takes the classes from the largest label, saying so', async () => {
    const source = await openSource(`shards:${root}/local/set-{000000..000002}.tar`);
    expect(source.classes).toEqual(['0', '1', '2']);
    expect(source.splits).toEqual(['train']);
    expect(source.issues).toEqual([`shards:${root}/local/set-{000000..000002}.tar: no shards.json or classes.txt; 3 classes, up to the largest label seen`]);
    expect(await source.shards!('train')).toEqual(COUNTS.map((samples, s) => ({ url: join(root, 'local', `set-00000${s}.tar`), samples })));
    await expect(source.split('train')).rejects.toThrow('tar shards are streamed, not listed');
    await expect(source.shards!('val')).rejects.toThrow('has no val split (it has train)');
  });

  it('reads counts, splits and classes from shards.json, locally and over HTTP', async () => {
    const dir = join(root, 'listed');
    await makeSet(dir);
    const manifest = {
      classes: ['ant', 'bee', 'cow', 'dog'],
      splits: { train: [{ url: 'set-000000.tar', samples: 5 }, { url: 'set-000001.tar', samples: 4 }], val: [{ url: 'set-000002.tar', samples: 3 }] },
    };
    await writeFile(join(dir, 'shards.json'), JSON.stringify(manifest));
    await writeFile(join(dir, 'classes.txt'), 'ignored\n');
    for (const location of [dir, `${base}/listed/`]) {
      const source = await openSource(`shards:${location}`);
      expect(source.classes).toEqual(manifest.classes);
      expect(source.splits).toEqual(['train', 'val']);
      expect((await source.shards!('val')).map((s) => s.samples)).toEqual([3]);
      expect((await source.shards!('train'))[1].url).toBe(location === dir ? join(dir, 'set-000001.tar') : `${base}/listed/set-000001.tar`);
    }
    // A pattern takes the split its shards are listed under.
    const val = await openSource(`shards:${base}/listed/set-{000002..000002}.tar`);
    expect(val.splits).toEqual(['val']);
    await expect(openSource(`shards:${base}/local/set-000000.tar`)).rejects.toThrow(
      `no sample count for ${base}/local/set-000000.tar; streamed shards need a shards.json beside them`,
    );
    await expect(openSource(`shards:${root}/local`)).rejects.toThrow(`${join(root, 'local', 'shards.json')} is missing`);
    await writeFile(join(root, 'local', 'classes.txt'), 'x\ny\nz\nw\n');
    expect((await openSource(`shards:${root}/local/set-000000.tar`)).classes).toEqual(['x', 'y', 'z', 'w']);
    await rm(join(root, 'local', 'classes.txt'));
    await writeFile(join(dir, 'shards.json'), JSON.stringify({ ...manifest, splits: { train: [{ url: 'set-000000.tar', samples: -1 }] } }));
    await expect(openSource(`shards:${dir}`)).rejects.toThrow(`${join(dir, 'shards.json')}: split "train" must be a list of { "url": string, "samples": integer >= 0 }`);
  });
});

describe('createLoader over shards', () => {
  const options = async (o: Partial<LoaderOptions> = {}): Promise<LoaderOptions> => ({
    source: await openSource(`shards:${root}/local/set-{000000..000002}.tar`),
    split: 'train',
    batchSize: 5,
    workers: 0,
    ...o,
  });
  /** Checks every sample against its index (label and pixels) and returns the indices in order. */
  const indicesOf = (batches: Batch[]) =>
    batches.flatMap((b) =>
      b.indices.map((index, j) => {
        expect(b.labels[j]).toBe(index % 3);
        expect(b.images[j * 48] * 255).toBeCloseTo(10 * index, 3);
        expect(b.images[j * 48 + 16] * 255).toBeCloseTo(255 - 10 * index, 3);
        return index;
      }),
    );

  it('streams every sample once, in shard order, or shuffled by (seed, epoch)', async () => {
    const plain = await createLoader(await options());
    expect([plain.samples, plain.batches]).toEqual([N, 3]);
    expect(indicesOf(await take(plain))).toEqual(Array.from({ length: N }, (_, i) => i));

    const shuffled = await createLoader(await options({ shuffle: true, seed: 3, shuffleBuffer: 4 }));
    const epoch0 = indicesOf(await take(shuffled));
    const epoch1 = indicesOf(await take(shuffled));
    expect([...epoch0].sort((a, b) => a - b)).toEqual(Array.from({ length: N }, (_, i) => i));
    expect(epoch0).not.toEqual(epoch1);
    expect(shuffled.state()).toEqual({ epoch: 2, position: 0 });
    expect(indicesOf(await take(await createLoader(await options({ shuffle: true, seed: 3, shuffleBuffer: 4 }))))).toEqual(epoch0);
  });

  it('decodes in workers as on the main thread, over HTTP as from files', async () => {
    const o = await options({ shuffle: true, seed: 9, shuffleBuffer: 3, transform: { steps: [{ op: 'randomCrop', size: 3 }, { op: 'hflip' }] } });
    const local = await take(await createLoader(o));
    const dir = join(root, 'local');
    await writeFile(join(dir, 'shards.json'), JSON.stringify({ classes: ['0', '1', '2'], splits: { train: COUNTS.map((samples, s) => ({ url: `set-00000${s}.tar`, samples })) } }));
    const remote = await createLoader({ ...o, source: await openSource(`shards:${base}/local/`), workers: 2 });
    try {
      const got = await take(remote);
      expect(got.map((b) => ({ ...b, images: Array.from(b.images) }))).toEqual(local.map((b) => ({ ...b, images: Array.from(b.images) })));
    } finally {
      await remote.close();
      await rm(join(dir, 'shards.json'));
    }
  });

  it('resumes mid-epoch from state() with exactly the remaining samples', async () => {
    const o = await options({ shuffle: true, seed: 4, shuffleBuffer: 5, batchSize: 2 });
    const full = await take(await createLoader({ ...o, state: { epoch: 2, position: 0 } }));
    for (const batches of [1, 3, 5]) {
      const first = await createLoader({ ...o, state: { epoch: 2, position: 0 } });
      const head = await take(first, batches);
      const resumed = await take(await createLoader({ ...o, state: first.state() }));
      expect([...head, ...resumed]).toEqual(full);
    }
  });

  it('deals shards to ranks, each streaming the same number of samples', async () => {
    const shares = await Promise.all([0, 1].map(async (rank) => indicesOf(await take(await createLoader(await options({ rank, worldSize: 2 }))))));
    expect(shares).toEqual([
      [0, 1, 2, 3, 4, 9],
      [5, 6, 7, 8, 5, 6],
    ]);
    await expect(createLoader(await options({ rank: 0, worldSize: 4 }))).rejects.toThrow('worldSize 4 is more than its 3 shards');
  });

  it('skips bad samples, naming shard and key, and fails on a truncated shard', async () => {
    const dir = join(root, 'bad');
    await makeTar(join(dir, 'b-0.tar'), [
      ['a.png', await png(1)], ['a.cls', '0'],
      ['b.png', 'garbage'], ['b.cls', '1'],
      ['c.png', await png(3)], ['c.cls', '7'],
      ['d.png', await png(4)],
      ['e.png', await png(5)], ['e.cls', '1'],
    ]);
    await writeFile(join(dir, 'classes.txt'), 'p\nq\n');
    const loader = await createLoader({ source: await openSource(`shards:${dir}/b-0.tar`), split: 'train', batchSize: 8, workers: 1 });
    try {
      const [batch] = await take(loader);
      expect([...batch.labels]).toEqual([0, 1]);
      expect(batch.indices).toEqual([0, 4]);
      const reasons = Object.fromEntries(loader.report().failures.map((f) => [f.file!.split('#')[1], f.reason]));
      expect(Object.keys(reasons).sort()).toEqual(['b', 'c', 'd']);
      expect(reasons.b).toMatch(/unsupported image format/);
      expect(reasons.c).toBe('label 7 is not below the 2 classes');
      expect(reasons.d).toBe('no .cls label member');
      expect(loader.report().failures[0].file).toBe(`${join(dir, 'b-0.tar')}#b`);
    } finally {
      await loader.close();
    }

    const whole = await readFile(join(root, 'local', 'set-000001.tar'));
    const cut = join(root, 'cutset');
    await makeSet(cut);
    await writeFile(join(cut, 'set-000001.tar'), whole.subarray(0, 2600));
    await writeFile(join(cut, 'shards.json'), JSON.stringify({ classes: ['0', '1', '2'], splits: { train: COUNTS.map((samples, s) => ({ url: `set-00000${s}.tar`, samples })) } }));
    const broken = await createLoader(await options({ source: await openSource(`shards:${cut}`) }));
    await expect(take(broken)).rejects.toThrow(`shard ${join(cut, 'set-000001.tar')} is truncated at byte offset 2600 (in 0006.png)`);
  });
});
