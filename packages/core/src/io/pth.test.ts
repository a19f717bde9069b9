/**
 * The `.pth` reader against files PyTorch wrote (pth-fixtures/, made by scripts/make-pth.py with
 * torch.save) and torch's own reading of them (expected.json), and against damaged and hostile files
 * made by the same script, each of which must fail with a message naming what is at fault.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeEach, describe, expect, it } from 'vitest';
import { setBackend } from '../engine.js';
import { createReferenceBackend } from '../testing/reference-backend.js';
import { PickleError, unpickle } from './pickle.js';
import { openPth, PthError } from './pth-node.js';
import { saveTensors } from './safetensors-node.js';
import { tensor } from '../api.js';
import { loadWeights, openWeights } from './weights-node.js';

const FIXTURES = fileURLToPath(new URL('./pth-fixtures/', import.meta.url));
const fixture = (name: string) => join(FIXTURES, name);
type Expected = Record<string, { keys: string[]; tensors: Record<string, { dtype: string; shape: number[]; values: number[] }> }>;
const expected = JSON.parse(readFileSync(fixture('expected.json'), 'utf8')) as Expected;

beforeEach(() => {
  setBackend(createReferenceBackend());
});

describe('checkpoints torch.save wrote read as torch reads them', () => {
  it.each(Object.keys(expected))('%s', async (name) => {
    const want = expected[name];
    const file = await openPth(fixture(name));
    try {
      expect(file.format).toBe('pth');
      expect([...file.tensors.keys()]).toEqual(want.keys);
      for (const [key, t] of file.tensors) expect({ dtype: t.dtype, shape: t.shape }, key).toEqual({ dtype: want.tensors[key].dtype, shape: want.tensors[key].shape });
      for await (const [key, t] of file.entries()) {
        const w = want.tensors[key];
        expect(t.sourceDtype, key).toBe(w.dtype);
        expect(t.dtype, key).toBe(w.dtype.startsWith('F') || w.dtype === 'BF16' ? 'f32' : 'i32');
        expect(t.shape, key).toEqual(w.shape);
        expect(Array.from(t.data), key).toEqual(w.values);
      }
    } finally {
      await file.close();
    }
  });

  it('covers what the reader must handle: wrappers, DataParallel prefixes, every storage type, strided and shared views', () => {
    expect(expected['wrapped-model.pth'].keys).toContain('1.num_batches_tracked'); // `module.` dropped
    expect(Object.values(expected['dtypes.pth'].tensors).map((t) => t.dtype).sort()).toEqual(['BF16', 'BOOL', 'F16', 'F16', 'F32', 'F64', 'I16', 'I32', 'I64', 'I8', 'U8']);
    expect(expected['views.pth'].tensors.transposed.values).toEqual([0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]);
  });

  it('loadWeights puts them on the backend with the dtypes a module holds (I64 buffers as i32)', async () => {
    const tensors = await loadWeights(fixture('state-dict.pth'));
    expect(tensors.get('1.num_batches_tracked')!.dtype).toBe('i32');
    expect(Array.from(await tensors.get('1.num_batches_tracked')!.data())).toEqual([7]);
    expect(tensors.get('0.weight')!.shape).toEqual([3, 2, 3, 3]);
  });

  it('openWeights tells the formats apart by content, and names the legacy format', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'residual-pth-'));
    await saveTensors(join(dir, 'w.pth.bak'), { w: tensor([1, 2]) });
    expect((await openWeights(join(dir, 'w.pth.bak'))).format).toBe('safetensors');
    expect((await openWeights(fixture('state-dict.pth'))).format).toBe('pth');
    await expect(openWeights(fixture('legacy.pth'))).rejects.toThrow(/legacy\.pth: PyTorch's format before 1\.6 \(a bare pickle\)/);
    await expect(openPth(fixture('legacy.pth'))).rejects.toThrow(/legacy\.pth: not a zip archive/);
  });
});

describe('hostile checkpoints are refused without running anything', () => {
  // The hostile pickles run `touch "$RESIDUAL_PTH_MARKER"` when unpickled.
  const hostile = [
    ['system.pth', /system\.pth: system\/data\.pkl, byte \d+: refused global posix\.system: not one a tensor state dict needs; nothing was run/],
    ['inst.pth', /inst\.pth: inst\/data\.pkl, byte \d+: refused opcode INST \(0x69\)/],
  ] as const;

  it.each(hostile)('%s', async (name, message) => {
    const marker = join(mkdtempSync(join(tmpdir(), 'residual-pth-')), 'ran');
    process.env.RESIDUAL_PTH_MARKER = marker;
    try {
      await expect(openPth(fixture(name))).rejects.toThrow(message);
    } finally {
      delete process.env.RESIDUAL_PTH_MARKER;
    }
    expect(existsSync(marker)).toBe(false);
  });

  // The control: Python's own unpickler does run them, so the test above could fail.
  const python = process.env.RESIDUAL_PYTHON ?? '/usr/bin/python3';
  const hasPython = spawnSync(python, ['-c', 'pass']).status === 0;
  it.skipIf(!hasPython).each(hostile)('%s runs its command under pickle.loads (needs python3)', (name) => {
    const marker = join(mkdtempSync(join(tmpdir(), 'residual-pth-')), 'ran');
    const code = 'import pickle, sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); pickle.loads(z.read(z.namelist()[0]))';
    spawnSync(python, ['-c', code, fixture(name)], { env: { ...process.env, RESIDUAL_PTH_MARKER: marker } });
    expect(existsSync(marker)).toBe(true);
  });
});

describe('damaged checkpoints fail with what is wrong, before any large allocation', () => {
  it.each([
    ['truncated.pth', /truncated\.pth: not a zip archive .*End of central directory record signature not found/],
    ['short-storage.pth', /tensor "0\.weight": storage short-storage\/data\/0 holds 208 bytes, the pickle says 54 F32 elements \(216 bytes\)/],
    ['lying-size.pth', /tensor "0\.weight": storage state-dict\/data\/0 holds 4294967040 bytes, the pickle says 54 F32 elements/],
    ['compressed.pth', /entry compressed\/data\.pkl is compressed \(method 8\); torch\.save stores entries as they are/],
    ['big-endian.pth', /saved with byte order "big"; only little-endian checkpoints are read/],
    ['past-end.pth', /tensor "w": shape \[3\], stride \[1\] from offset 2 reaches element 4 of a 4-element storage/],
    ['expanded.pth', /tensor "w": shape \[100000, 100000\], stride \[0, 0\] from offset 0 has 10000000000 elements, more than its 4-element storage/],
    ['not-only-tensors.pth', /not-only-tensors\.pth: not-only-tensors\/data\.pkl: \["epoch"\] is a number, not a tensor/],
  ])('%s', async (name, message) => {
    const error = await openPth(fixture(name)).then(() => null, (e: Error) => e);
    expect(error).toBeInstanceOf(PthError);
    expect(error!.message).toMatch(message);
  });

  it.each([
    ['crc.pth', '0.weight', /entry state-dict\/data\/0: its data does not match its CRC-32/],
    ['i64-overflow.pth', 'n', /tensor "n": I64 element 0 is 1099511627776, outside the int32 range/],
  ])('%s fails when %s is read', async (name, key, message) => {
    const file = await openPth(fixture(name));
    try {
      await expect(file.get(key)).rejects.toThrow(message);
    } finally {
      await file.close();
    }
  });
});

describe('the pickle machine', () => {
  const hooks = { label: 'test', globals: new Set<string>(), reduce: () => null, persistentLoad: () => null, build: () => {} };
  const run = (...bytes: (number | string)[]) =>
    unpickle(new Uint8Array(bytes.flatMap((b) => (typeof b === 'string' ? [...b].map((c) => c.charCodeAt(0)) : [b]))), hooks);

  it('checks every length against the bytes left, and every memo read', () => {
    expect(() => run(0x80, 2, 'X', 0xff, 0xff, 0xff, 0x7f, 'ab')).toThrow(/byte 2: BINUNICODE \(0x58\) needs 2147483647 bytes, the pickle has 2 left/);
    expect(() => run(0x80, 2, 'h', 5, '.')).toThrow(/memo 5 was never stored/);
    expect(() => run(0x80, 2, 'a', '.')).toThrow(/APPEND \(0x61\) found too few values/);
    expect(() => run(0x80, 2, ')', 'K', 1, 'a', '.')).toThrow(/APPEND \(0x61\) on something that is not a list/);
    expect(() => run(0x80, 2, ']', '(', 'K', 1, 'a', '.')).toThrow(/APPEND \(0x61\) found no value on the stack/);
  });

  it('builds plain values: LONG1 exact past 2^53, tuples frozen, dicts as Maps', () => {
    // {'a': (1, -2**70)} as protocol 2 writes it.
    const v = run(0x80, 2, '}', 'X', 1, 0, 0, 0, 'a', 'K', 1, 0x8a, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0xc0, 0x86, 's', '.');
    expect(v).toEqual(new Map([['a', [1, -(2n ** 70n)]]]));
    expect(Object.isFrozen((v as Map<string, unknown>).get('a'))).toBe(true);
    expect(() => run(0x80, 2, 'K', 1)).toThrow(PickleError);
    expect(() => run(0x80, 2, 'K', 1)).toThrow(/byte 4: the pickle ends before its STOP opcode/);
  });
});
