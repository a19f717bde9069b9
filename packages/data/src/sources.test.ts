import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SHAPE_CLASSES } from './shapes.js';
import { openSource } from './sources.js';

const roots: string[] = [];
async function tmp(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'residual-sources-'));
  roots.push(d);
  return d;
}
afterAll(() => Promise.all(roots.map((d) => rm(d, { recursive: true, force: true }))));

async function put(path: string, bytes: Uint8Array | string = 'x'): Promise<void> {
  await mkdir(join(path, '..'), { recursive: true });
  await writeFile(path, bytes);
}

/** CIFAR records: label byte(s), then R, G, B planes whose every byte is (record number + channel). */
function records(labels: number[][], first = 0): Uint8Array {
  const size = labels[0].length + 3072;
  const out = new Uint8Array(labels.length * size);
  labels.forEach((l, r) => {
    out.set(l, r * size);
    for (let c = 0; c < 3; c++) out.fill((first + r + c) & 255, r * size + l.length + c * 1024, r * size + l.length + (c + 1) * 1024);
  });
  return out;
}

describe('ImageFolder', () => {
  it('numbers classes in sorted folder order and reports empty classes and stray files', async () => {
    const root = await tmp();
    await put(join(root, 'train', 'zebra', 'b.JPEG'));
    await put(join(root, 'train', 'zebra', 'a.jpg'));
    await put(join(root, 'train', 'zebra', 'notes.txt'));
    await put(join(root, 'train', 'ant', 'deep', 'x.png'));
    await mkdir(join(root, 'train', 'moth'), { recursive: true });
    await put(join(root, 'train', 'README'));
    await put(join(root, 'val', 'zebra', 'v.jpeg'));
    await put(join(root, 'val', 'whale', 'w.jpeg'));
    await put(join(root, 'elsewhere', 'c.webp'));
    await symlink(join(root, 'elsewhere'), join(root, 'train', 'cow'));

    const source = await openSource(`imagenet:${root}`);
    expect(source.classes).toEqual(['ant', 'cow', 'moth', 'zebra']);
    expect(source.splits).toEqual(['train', 'val']);
    const train = await source.split('train');
    if (train.kind !== 'files') throw new Error('expected files');
    expect(train.files).toEqual(['ant/deep/x.png', 'cow/c.webp', 'zebra/a.jpg', 'zebra/b.JPEG'].map((f) => join(root, 'train', f)));
    expect([...train.labels]).toEqual([0, 1, 3, 3]);
    expect(source.issues).toEqual([
      `${join(root, 'train/README')}: a file outside any class folder; ignored`,
      `${join(root, 'train/moth')}: empty class folder`,
      `${join(root, 'train/zebra/notes.txt')}: not an image file name; ignored`,
    ]);
    const val = await source.split('val');
    expect(val.kind === 'files' && [...val.labels]).toEqual([3]);
    expect(source.issues.at(-1)).toBe(`${join(root, 'val/whale')}: not one of the 4 classes; ignored`);
    await expect(source.split('test')).rejects.toThrow(`imagenet:${root}: ${root} has no test/ folder`);
  });

  it('fails clearly on a tree with no split folder', async () => {
    const root = await tmp();
    await expect(openSource(`imagenet:${root}`)).rejects.toThrow(`imagenet:${root}: ${root} has no train/, val/ or test/ folder`);
    await expect(openSource(`imagenet:${root}`, { valSplit: 5 })).rejects.toThrow(/valSplit applies to cifar10\/cifar100 only/);
  });
});

describe('builtin:shapes', () => {
  it('opens the generated set as an ImageFolder', async () => {
    const cacheDir = await tmp();
    const source = await openSource('builtin:shapes', { shapes: { cacheDir, train: 20, val: 10 } });
    expect(source.spec).toBe('builtin:shapes');
    expect(source.classes).toEqual(SHAPE_CLASSES);
    const val = await source.split('val');
    if (val.kind !== 'files') throw new Error('expected files');
    // File i holds class i % 10, and the folder order numbers the classes alike.
    val.files.forEach((f, k) => expect(val.labels[k]).toBe(Number.parseInt(f.split('/').pop()!, 10) % 10));
    expect(source.issues).toEqual([]);
  });
});

describe('CIFAR binary files', () => {
  it('reads CIFAR-10 batches in order, tolerating missing ones, and holds out the last valSplit records', async () => {
    const dir = await tmp();
    await put(join(dir, 'data_batch_1.bin'), records([[3], [9], [0]], 0));
    await put(join(dir, 'data_batch_4.bin'), records([[1], [2]], 3));
    await put(join(dir, 'test_batch.bin'), records([[5]], 100));
    await put(join(dir, 'batches.meta.txt'), 'airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n');

    const source = await openSource(`cifar10:${dir}`, { valSplit: 2 });
    expect(source.classes[3]).toBe('cat');
    expect(source.issues).toEqual(
      [2, 3, 5].map((i) => `${join(dir, `data_batch_${i}.bin`)}: missing; training on the other batch files`),
    );
    const train = await source.split('train');
    const val = await source.split('val');
    const test = await source.split('test');
    if (train.kind !== 'planes' || val.kind !== 'planes' || test.kind !== 'planes') throw new Error('expected planes');
    expect([...train.labels]).toEqual([3, 9, 0]);
    expect([...val.labels]).toEqual([1, 2]);
    expect([...test.labels]).toEqual([5]);
    expect([train.width, train.height, train.pixels.length]).toEqual([32, 32, 3 * 3072]);
    // Record 4 (the second held out) has planes of 4, 5, 6.
    expect([val.pixels[3072], val.pixels[3072 + 1024], val.pixels[3072 + 2047], val.pixels[3072 + 2048]]).toEqual([4, 5, 5, 6]);
    expect(test.pixels[0]).toBe(100);

    expect(source.splits).toEqual(['train', 'val', 'test']);
    const plain = await openSource(`cifar10:${dir}`);
    expect(plain.splits).toEqual(['train', 'test']);
    const plainVal = await plain.split('val');
    expect([...plainVal.labels]).toEqual([5]); // with no valSplit, val is the test file
    expect(plain.classes).toHaveLength(10);
  });

  it('reads CIFAR-100 fine labels from the second label byte', async () => {
    const dir = await tmp();
    await put(join(dir, 'train.bin'), records([[1, 42], [19, 99]]));
    const source = await openSource(`cifar100:${dir}`);
    expect(source.classes.slice(0, 3)).toEqual(['0', '1', '2']);
    expect([...(await source.split('train')).labels]).toEqual([42, 99]);
    await expect(source.split('test')).rejects.toThrow(`cifar100:${dir}: ${join(dir, 'test.bin')} is missing`);
  });

  it('names the file and offset of a malformed record', async () => {
    const dir = await tmp();
    const good = records([[1], [2]]);
    await put(join(dir, 'data_batch_1.bin'), good);
    await put(join(dir, 'data_batch_2.bin'), good.subarray(0, 3073 + 100));
    await expect((await openSource(`cifar10:${dir}`)).split('train')).rejects.toThrow(
      `cifar10:${dir}: ${join(dir, 'data_batch_2.bin')} is 3173 bytes, not a whole number of 3073-byte records; the record at offset 3073 is cut short`,
    );
    await put(join(dir, 'data_batch_2.bin'), records([[4], [10]]));
    await expect((await openSource(`cifar10:${dir}`)).split('train')).rejects.toThrow(
      `${join(dir, 'data_batch_2.bin')}: label 10 at offset 3073 is not below 10`,
    );
  });

  it('fails clearly when no batch file exists or valSplit takes everything', async () => {
    const dir = await tmp();
    await expect(openSource(`cifar10:${dir}`)).rejects.toThrow(`cifar10:${dir}: none of data_batch_1.bin, data_batch_2.bin`);
    await put(join(dir, 'train.bin'), records([[0, 1]]));
    await expect((await openSource(`cifar100:${dir}`, { valSplit: 1 })).split('train')).rejects.toThrow(
      'valSplit 1 leaves none of the 1 training records',
    );
  });
});
