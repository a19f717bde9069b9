import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, readdir, rename, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join, normalize, sep } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { tarFiles } from './shards.js';

/**
 * The official python-free binary archives of CIFAR: file name, MD5 and the files each must hold. The
 * address is the user's to give (`--url`, or RESIDUAL_CIFAR10_URL / RESIDUAL_CIFAR100_URL): the project
 * names no download host, and the MD5 check makes any mirror as good as the original.
 */
export const CIFAR_ARCHIVES = {
  cifar10: {
    archive: 'cifar-10-binary.tar.gz',
    env: 'RESIDUAL_CIFAR10_URL',
    md5: 'c32a1d4ab5d03f1284b67883e8d87530',
    files: ['data_batch_1.bin', 'data_batch_2.bin', 'data_batch_3.bin', 'data_batch_4.bin', 'data_batch_5.bin', 'test_batch.bin'],
  },
  cifar100: {
    archive: 'cifar-100-binary.tar.gz',
    env: 'RESIDUAL_CIFAR100_URL',
    md5: '03b5dce01913d631647c71ecec9e9cb8',
    files: ['train.bin', 'test.bin'],
  },
} as const;

/** Options of downloadCifar. */
export interface DownloadOptions {
  /** Where the archive is (the official page's link, or a mirror); default the environment variable named in CIFAR_ARCHIVES. */
  readonly url?: string;
  /** The MD5 the archive must have; default the official archive's. */
  readonly md5?: string;
  /** Told of the bytes received so far, and the total when the server says it. */
  readonly onProgress?: (received: number, total: number | undefined) => void;
}

/** What downloadCifar did. */
export interface DownloadResult {
  readonly dir: string;
  /** The archive's size in bytes; 0 when `dir` was already complete. */
  readonly bytes: number;
  readonly md5: string;
  readonly files: readonly string[];
}

const exists = (path: string) => stat(path).then(() => true, () => false);

/**
 * Downloads CIFAR-10 or CIFAR-100's binary archive into `dir`, streaming it to disk while its MD5 is
 * computed, checks the MD5, and extracts it. Everything happens in a temporary folder beside `dir`,
 * renamed to `dir` only when complete, so a failed or interrupted download leaves nothing behind. A
 * `dir` that already holds every file is left as it is.
 */
export async function downloadCifar(kind: keyof typeof CIFAR_ARCHIVES, dir: string, o: DownloadOptions = {}): Promise<DownloadResult> {
  const archive = CIFAR_ARCHIVES[kind];
  if (!archive) throw new Error(`download: unknown data set "${kind}" (expected ${Object.keys(CIFAR_ARCHIVES).join(' or ')})`);
  const { md5 = archive.md5 } = o;
  const url = o.url ?? process.env[archive.env];
  if (!url)
    throw new Error(`download ${kind}: give --url with the address of ${archive.archive} (the binary version on the official CIFAR page), or set ${archive.env}; its MD5 ${archive.md5} is checked`);
  const files: readonly string[] = archive.files;
  if ((await Promise.all(files.map((f) => exists(join(dir, f))))).every(Boolean)) return { dir, bytes: 0, md5, files };
  if (await exists(dir)) {
    if ((await readdir(dir)).length > 0) throw new Error(`download: ${dir} exists and does not hold the ${kind} files; remove it or pick another folder`);
    await rmdir(dir);
  }
  await mkdir(dirname(dir), { recursive: true });
  const tmp = await mkdtemp(join(dirname(dir), `.${basename(dir)}.download-`));
  try {
    const res = await fetch(url);
    if (!res.ok || !res.body) throw new Error(`download: ${url}: HTTP ${res.status} ${res.statusText}`);
    const total = Number(res.headers.get('content-length')) || undefined;
    const hash = createHash('md5');
    let received = 0;
    const count = new Transform({
      transform(chunk: Buffer, _, done) {
        received += chunk.length;
        hash.update(chunk);
        o.onProgress?.(received, total);
        done(null, chunk);
      },
    });
    const path = join(tmp, basename(new URL(url).pathname) || 'archive.tar.gz');
    try {
      await pipeline(Readable.fromWeb(res.body as WebReadableStream<Uint8Array>), count, createWriteStream(path));
    } catch (e) {
      throw new Error(`download: ${url} stopped after ${received}${total ? ` of ${total}` : ''} bytes: ${(e as Error).message}`);
    }
    const got = hash.digest('hex');
    if (got !== md5.toLowerCase()) throw new Error(`download: ${url}: MD5 ${got} is not the expected ${md5}; the archive is damaged or not the one expected`);

    const out = join(tmp, 'extract');
    for await (const f of tarFiles(path)) {
      const name = normalize(f.name);
      if (name.startsWith('..') || name.startsWith(sep)) throw new Error(`download: ${url}: the archive member ${f.name} points outside its folder`);
      await mkdir(dirname(join(out, name)), { recursive: true });
      await writeFile(join(out, name), f.data);
    }
    // The archives hold one folder (cifar-10-batches-bin, cifar-100-binary) with the files in it.
    const top = await readdir(out).catch(() => []);
    const folder = top.length === 1 && !files.includes(top[0]) ? join(out, top[0]) : out;
    const missing = [];
    for (const f of files) if (!(await exists(join(folder, f)))) missing.push(f);
    if (missing.length > 0) throw new Error(`download: ${url}: the archive lacks ${missing.join(', ')}`);
    await rename(folder, dir);
    return { dir, bytes: received, md5: got, files };
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}
