import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CIFAR_ARCHIVES, downloadCifar } from './download.js';
import { serveLoopback, type Loopback } from './loopback.test-support.js';
import { openSource } from './sources.js';

let root: string;
let server: Loopback | undefined;
let base: string;
let archive: Buffer;
let md5: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'residual-download-'));
  // A CIFAR-10 archive laid out as the official one: one folder holding the batch files.
  const inner = join(root, 'src', 'cifar-10-batches-bin');
  await mkdir(inner, { recursive: true });
  for (const [k, name] of CIFAR_ARCHIVES.cifar10.files.entries()) {
    const record = new Uint8Array(3073).fill(k);
    record[0] = k % 10;
    await writeFile(join(inner, name), record);
  }
  await writeFile(join(inner, 'batches.meta.txt'), 'airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n');
  const tgz = join(root, 'cifar-10-binary.tar.gz');
  spawnSync('tar', ['-czf', tgz, '-C', join(root, 'src'), 'cifar-10-batches-bin']);
  archive = await readFile(tgz);
  md5 = spawnSync('md5sum', [tgz], { encoding: 'utf8' }).stdout.split(' ')[0];

  server = await serveLoopback((req, res) => {
    if (req.url === '/cifar.tar.gz') return void res.writeHead(200, { 'content-length': archive.length }).end(archive);
    if (req.url === '/cut.tar.gz') {
      // Announces the whole archive, sends half, then drops the connection.
      res.writeHead(200, { 'content-length': archive.length });
      res.write(archive.subarray(0, archive.length >> 1), () => res.destroy());
      return;
    }
    res.writeHead(404).end();
  });
  base = server.base;
});
afterAll(async () => {
  await server?.close();
  await rm(root, { recursive: true, force: true });
});

describe('downloadCifar', () => {
  it('asks for the address when none is given (the project names no download host)', async () => {
    const saved = process.env.RESIDUAL_CIFAR10_URL;
    delete process.env.RESIDUAL_CIFAR10_URL;
    try {
      const dir = join(await mkdtemp(join(tmpdir(), 'residual-nourl-')), 'cifar');
      await expect(downloadCifar('cifar10', dir)).rejects.toThrow(/--url .*cifar-10-binary\.tar\.gz.*RESIDUAL_CIFAR10_URL/);
    } finally {
      if (saved !== undefined) process.env.RESIDUAL_CIFAR10_URL = saved;
    }
  });

  it('downloads, checks the MD5 and extracts into the folder, which then opens as cifar10', async () => {
    const dir = join(root, 'data', 'c10');
    const seen: number[] = [];
    const r = await downloadCifar('cifar10', dir, { url: `${base}/cifar.tar.gz`, md5, onProgress: (n) => seen.push(n) });
    expect(r).toEqual({ dir, bytes: archive.length, md5, files: CIFAR_ARCHIVES.cifar10.files });
    expect(seen.at(-1)).toBe(archive.length);
    expect((await readdir(dir)).sort()).toEqual([...CIFAR_ARCHIVES.cifar10.files, 'batches.meta.txt'].sort());
    expect(await readdir(join(root, 'data'))).toEqual(['c10']); // no temporary folder left
    const source = await openSource(`cifar10:${dir}`);
    expect(source.classes[9]).toBe('truck');
    expect([...(await source.split('test')).labels]).toEqual([5]);
    // A complete folder is left as it is.
    expect((await downloadCifar('cifar10', dir, { url: `${base}/absent`, md5 })).bytes).toBe(0);
  });

  it('refuses an archive whose MD5 is not the expected one, leaving nothing behind', async () => {
    const dir = join(root, 'bad-md5', 'c10');
    await expect(downloadCifar('cifar10', dir, { url: `${base}/cifar.tar.gz` })).rejects.toThrow(
      `download: ${base}/cifar.tar.gz: MD5 ${md5} is not the expected ${CIFAR_ARCHIVES.cifar10.md5}`,
    );
    expect(await readdir(join(root, 'bad-md5'))).toEqual([]);
  });

  it('leaves nothing behind when the download is cut off or refused', async () => {
    const dir = join(root, 'cut', 'c10');
    await expect(downloadCifar('cifar10', dir, { url: `${base}/cut.tar.gz`, md5 })).rejects.toThrow(
      new RegExp(`download: ${base}/cut.tar.gz stopped after \\d+ of ${archive.length} bytes`),
    );
    expect(await readdir(join(root, 'cut'))).toEqual([]);
    await expect(downloadCifar('cifar10', dir, { url: `${base}/missing.tar.gz`, md5 })).rejects.toThrow(`download: ${base}/missing.tar.gz: HTTP 404`);
    expect(await readdir(join(root, 'cut'))).toEqual([]);
  });

  it('refuses to overwrite a folder that holds something else, and an archive without the batch files', async () => {
    const dir = join(root, 'busy');
    await mkdir(dir);
    await writeFile(join(dir, 'notes.txt'), 'mine');
    await expect(downloadCifar('cifar10', dir, { url: `${base}/cifar.tar.gz`, md5 })).rejects.toThrow(`download: ${dir} exists and does not hold the cifar10 files`);
    expect(await readdir(dir)).toEqual(['notes.txt']);
    await expect(downloadCifar('cifar100', join(root, 'c100'), { url: `${base}/cifar.tar.gz`, md5 })).rejects.toThrow('the archive lacks train.bin, test.bin');
  });
});
