import { mkdir, mkdtemp, readdir, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  loadSafetensors,
  parseSafetensorsHeader,
  SafetensorsError,
  serializeSafetensors,
  type SafetensorsWriteDtype,
} from './safetensors.js';
import { openSafetensors, writeSafetensors } from './safetensors-node.js';

// The file system is wrapped so tests can see every read buffer's size and make the writer's rename fail.
const spy = vi.hoisted(() => ({
  reads: [] as number[],
  failRename: false,
  atRename: undefined as { from: string; to: string; tmp: Uint8Array; target: Uint8Array } | undefined,
}));
vi.mock('node:fs/promises', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs/promises')>();
  return {
    ...real,
    open: async (...args: Parameters<typeof real.open>) => {
      const fh = await real.open(...args);
      const read = fh.read.bind(fh) as (...a: unknown[]) => unknown;
      Object.assign(fh, {
        read: (buf: Uint8Array, ...rest: unknown[]) => {
          spy.reads.push(buf.byteLength);
          return read(buf, ...rest);
        },
      });
      return fh;
    },
    rename: async (from: string, to: string) => {
      if (!spy.failRename) return real.rename(from, to);
      spy.atRename = { from, to, tmp: await real.readFile(from), target: await real.readFile(to) };
      throw new Error('simulated crash before rename');
    },
  };
});

let dir = '';
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'safetensors-test-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const bytesOf = (...parts: (ArrayLike<number> | ArrayBufferView)[]): Uint8Array => {
  const arrays = parts.map((p) => (ArrayBuffer.isView(p) ? new Uint8Array(p.buffer, p.byteOffset, p.byteLength) : Uint8Array.from(p)));
  const out = new Uint8Array(arrays.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of arrays) {
    out.set(p, at);
    at += p.length;
  }
  return out;
};
/** A file built by hand: u64 little-endian header length, the header as given, then the buffer. */
const handBuilt = (header: string | Uint8Array, buffer: ArrayLike<number> | ArrayBufferView = []): Uint8Array => {
  const h = typeof header === 'string' ? new TextEncoder().encode(header) : header;
  const n = h.length;
  return bytesOf([n & 0xff, (n >> 8) & 0xff, (n >> 16) & 0xff, n >>> 24, 0, 0, 0, 0], h, buffer);
};
const fixture = async (name: string, bytes: Uint8Array): Promise<string> => {
  const path = join(dir, name);
  await writeFile(path, bytes);
  return path;
};
const entry = (dtype: string, shape: number[], begin: number, end: number) => ({ dtype, shape, data_offsets: [begin, end] });
const readAll = async (path: string) => {
  const file = await openSafetensors(path);
  try {
    const out: Record<string, Awaited<ReturnType<typeof file.get>>> = {};
    for await (const [name, t] of file.entries()) out[name] = t;
    return { metadata: file.header.metadata, tensors: out };
  } finally {
    await file.close();
  }
};

/** The value of a half-precision bit pattern, from the IEEE 754 definition in float64. */
const halfValue = (h: number): number => {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 31) return m ? NaN : sign * Infinity;
  return e === 0 ? sign * m * 2 ** -24 : sign * (1 + m / 1024) * 2 ** (e - 15);
};
/** F16 bits the writer produces for each value. */
const encodeF16 = (values: number[]): number[] => {
  const out = serializeSafetensors({ x: { data: Float32Array.from(values), shape: [values.length], dtype: 'F16' } });
  const start = 8 + new DataView(out.buffer).getUint32(0, true);
  return [...new Uint16Array(out.slice(start).buffer)];
};
const f32Step = (x: number, d: 1 | -1): number => {
  const f = new Float32Array([x]);
  new Uint32Array(f.buffer)[0] += d;
  return f[0];
};

describe('layout', () => {
  // Four dtypes: the I64 goes first (largest element), then I32/F32 by name, then F16.
  const json =
    '{"__metadata__":{"format":"pt","step":"9"},' +
    '"n":{"dtype":"I64","shape":[],"data_offsets":[0,8]},' +
    '"a":{"dtype":"I32","shape":[1],"data_offsets":[8,12]},' +
    '"b":{"dtype":"F32","shape":[2],"data_offsets":[12,20]},' +
    '"h":{"dtype":"F16","shape":[2],"data_offsets":[20,24]}}';
  const padded = json + ' '.repeat(5); // json is 259 bytes; 264 is the next multiple of 8
  const expected = handBuilt(padded, [
    3, 0, 0, 0, 0, 0, 0, 0, // n = 3 (I64)
    7, 0, 0, 0, // a = 7 (I32)
    0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0, // b = 1, -2 (F32)
    0, 0x3c, 0, 0xb8, // h = 1, -0.5 (F16)
  ]);
  const tensors = {
    h: { data: new Float32Array([1, -0.5]), shape: [2], dtype: 'F16' as const },
    b: { data: new Float32Array([1, -2]), shape: [2] },
    a: { data: new Int32Array([7]), shape: [1] },
    n: { data: new Int32Array([3]), shape: [], dtype: 'I64' as const },
  };

  it('writes byte for byte the file built by hand', async () => {
    expect(json.length).toBe(259);
    expect(serializeSafetensors(tensors, { format: 'pt', step: '9' })).toEqual(expected);
    const path = join(dir, 'layout.safetensors');
    await writeSafetensors(path, tensors, { format: 'pt', step: '9' });
    expect(new Uint8Array(await readFile(path))).toEqual(expected);
  });

  it('reads the file built by hand, from memory and from disk', async () => {
    const file = await loadSafetensors(expected.buffer as ArrayBuffer, 'layout.safetensors');
    expect(file.header.metadata).toEqual({ format: 'pt', step: '9' });
    expect(file.header.bufferStart).toBe(8 + 264);
    expect([...file.header.tensors.keys()]).toEqual(['n', 'a', 'b', 'h']);
    expect(await file.get('n')).toEqual({ dtype: 'i32', shape: [], data: new Int32Array([3]), sourceDtype: 'I64' });
    expect(await file.get('b')).toEqual({ dtype: 'f32', shape: [2], data: new Float32Array([1, -2]), sourceDtype: 'F32' });
    const { tensors: all } = await readAll(await fixture('layout-read.safetensors', expected));
    expect(all.a).toEqual({ dtype: 'i32', shape: [1], data: new Int32Array([7]), sourceDtype: 'I32' });
    expect(all.h).toEqual({ dtype: 'f32', shape: [2], data: new Float32Array([1, -0.5]), sourceDtype: 'F16' });
  });

  it('reads from a Node Buffer that views a larger pool, as readFile returns', async () => {
    const pooled = Buffer.concat([Buffer.alloc(3), Buffer.from(expected)]).subarray(3);
    expect(pooled.byteOffset).toBeGreaterThan(0);
    const file = await loadSafetensors(pooled, 'pooled.safetensors');
    expect(await file.get('b')).toEqual({ dtype: 'f32', shape: [2], data: new Float32Array([1, -2]), sourceDtype: 'F32' });
  });

  it('accepts zero-size tensors sharing an offset and an unpadded header', async () => {
    const file = await loadSafetensors(
      handBuilt(`{"b":${JSON.stringify(entry('F32', [1], 0, 4))},"a":${JSON.stringify(entry('F32', [0, 3], 0, 0))}}`, new Float32Array([5])),
      'empty.safetensors',
    );
    expect(await file.get('a')).toEqual({ dtype: 'f32', shape: [0, 3], data: new Float32Array(0), sourceDtype: 'F32' });
    expect((await file.get('b')).data).toEqual(new Float32Array([5]));
  });
});

describe('round trips', () => {
  it('writes and reads back F32, F16, I32 and I64 with metadata', async () => {
    const f32 = new Float32Array([0, -0, 1.5, -3.25e-41, 3.4028234663852886e38, Infinity, -Infinity, NaN, Math.fround(0.1), -7]);
    const halves = new Float32Array([0, -0, 1, -65504, 2 ** -24, 2 ** -14, 0.333251953125, Infinity, NaN]);
    const int = new Int32Array([0, -1, 1, 2 ** 31 - 1, -(2 ** 31), 123456]);
    const path = join(dir, 'roundtrip.safetensors');
    await writeSafetensors(
      path,
      {
        'layer1.0.conv1.weight': { data: f32, shape: [2, 5] },
        half: { data: halves, shape: [3, 3], dtype: 'F16' },
        'bn1.num_batches_tracked': { data: new Int32Array([42]), shape: [], dtype: 'I64' },
        i64: { data: int, shape: [6], dtype: 'I64' },
        i32: { data: int, shape: [2, 3] },
        nothing: { data: new Float32Array(0), shape: [0] },
      },
      { epoch: '3', note: 'ünïcode' },
    );
    const { metadata, tensors } = await readAll(path);
    expect(metadata).toEqual({ epoch: '3', note: 'ünïcode' });
    expect(tensors['layer1.0.conv1.weight']).toEqual({ dtype: 'f32', shape: [2, 5], data: f32, sourceDtype: 'F32' });
    expect(tensors.half).toEqual({ dtype: 'f32', shape: [3, 3], data: halves, sourceDtype: 'F16' });
    expect(tensors['bn1.num_batches_tracked']).toEqual({ dtype: 'i32', shape: [], data: new Int32Array([42]), sourceDtype: 'I64' });
    expect(tensors.i64).toEqual({ dtype: 'i32', shape: [6], data: int, sourceDtype: 'I64' });
    expect(tensors.i32).toEqual({ dtype: 'i32', shape: [2, 3], data: int, sourceDtype: 'I32' });
    expect(tensors.nothing).toEqual({ dtype: 'f32', shape: [0], data: new Float32Array(0), sourceDtype: 'F32' });
  });

  it('reads F64, BF16, I16, I8, U8 and BOOL built by hand', async () => {
    const header = {
      f64: entry('F64', [4], 0, 32),
      bf16: entry('BF16', [10], 32, 52),
      i16: entry('I16', [3], 52, 58),
      i8: entry('I8', [3], 58, 61),
      u8: entry('U8', [2], 61, 63),
      bool: entry('BOOL', [3], 63, 66),
    };
    const bytes = handBuilt(
      JSON.stringify(header),
      bytesOf(
        new Float64Array([0.1, -1e300, 1e-50, 3]),
        new Uint16Array([0x3f80, 0xbf80, 0x7f80, 0xff80, 0x7fc0, 0x0001, 0x8000, 0x4049, 0x7f7f, 0x0080]),
        new Int16Array([-32768, 32767, -2]),
        new Int8Array([-128, 127, 0]),
        [0, 255],
        [1, 0, 1],
      ),
    );
    const { tensors } = await readAll(await fixture('dtypes.safetensors', bytes));
    expect(tensors.f64).toEqual({ dtype: 'f32', shape: [4], data: new Float32Array([Math.fround(0.1), -Infinity, 0, 3]), sourceDtype: 'F64' });
    // BF16 is the top half of an F32: 1, -1, inf, -inf, NaN, the smallest subnormal 2^-133, -0, pi's
    // BF16 neighbour 3.140625, the largest finite (2 - 2^-7) 2^127, the smallest normal 2^-126.
    const bf16 = [1, -1, Infinity, -Infinity, NaN, 2 ** -133, -0, 3.140625, (2 - 2 ** -7) * 2 ** 127, 2 ** -126];
    expect(tensors.bf16).toEqual({ dtype: 'f32', shape: [10], data: new Float32Array(bf16), sourceDtype: 'BF16' });
    expect(tensors.i16).toEqual({ dtype: 'i32', shape: [3], data: new Int32Array([-32768, 32767, -2]), sourceDtype: 'I16' });
    expect(tensors.i8).toEqual({ dtype: 'i32', shape: [3], data: new Int32Array([-128, 127, 0]), sourceDtype: 'I8' });
    expect(tensors.u8).toEqual({ dtype: 'i32', shape: [2], data: new Int32Array([0, 255]), sourceDtype: 'U8' });
    expect(tensors.bool).toEqual({ dtype: 'i32', shape: [3], data: new Int32Array([1, 0, 1]), sourceDtype: 'BOOL' });
  });
});

describe('half precision', () => {
  it('reads every F16 bit pattern exactly', async () => {
    const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
    const file = await loadSafetensors(handBuilt(JSON.stringify({ x: entry('F16', [65536], 0, 131072) }), all), 'all.safetensors');
    const { data } = await file.get('x');
    for (let h = 0; h < 65536; h++) if (!Object.is(data[h], halfValue(h))) expect([h, data[h]]).toEqual([h, halfValue(h)]);
  });

  it('reads special values to hand-computed numbers', async () => {
    const bits = [0x0001, 0x03ff, 0x0400, 0x3c00, 0xc000, 0x7bff, 0x7c00, 0xfc00, 0x7e00, 0x8000, 0x3555, 0x8001];
    const expected = [5.960464477539063e-8, 6.097555160522461e-5, 6.103515625e-5, 1, -2, 65504, Infinity, -Infinity, NaN, -0, 0.333251953125, -5.960464477539063e-8];
    const file = await loadSafetensors(handBuilt(JSON.stringify({ x: entry('F16', [12], 0, 24) }), new Uint16Array(bits)), 'special.safetensors');
    expect((await file.get('x')).data).toEqual(new Float32Array(expected));
  });

  it('writes special values to hand-computed bit patterns', () => {
    const cases: [number, number][] = [
      [1, 0x3c00], [-2, 0xc000], [65504, 0x7bff], [65519, 0x7bff], [65520, 0x7c00], [1e10, 0x7c00],
      [-Infinity, 0xfc00], [NaN, 0x7e00], [0, 0x0000], [-0, 0x8000], [2 ** -24, 0x0001], [2 ** -14, 0x0400],
      [2 ** -25, 0x0000], [1.5 * 2 ** -25, 0x0001], [3 * 2 ** -25, 0x0002], [2 ** -14 - 2 ** -25, 0x0400],
      [1 + 2 ** -11, 0x3c00], [1 + 3 * 2 ** -11, 0x3c02], [0.1, 0x2e66], [1 / 3, 0x3555], [1e-45, 0x0000], [-1e-45, 0x8000],
    ];
    expect(encodeF16(cases.map(([v]) => v))).toEqual(cases.map(([, h]) => h));
  });

  it('rounds every midpoint between neighbouring halves to the even one', () => {
    const values: number[] = [];
    const expected: number[] = [];
    for (let h = 0; h < 0x7c00; h++) {
      values.push(halfValue(h));
      expected.push(h);
      const lo = halfValue(h);
      const hi = h === 0x7bff ? 65536 : halfValue(h + 1); // past the largest half lies infinity
      const mid = (lo + hi) / 2;
      expect(Math.fround(mid)).toBe(mid);
      values.push(mid, f32Step(mid, -1), f32Step(mid, 1));
      expected.push(h & 1 ? h + 1 : h, h, h + 1);
    }
    const negated = encodeF16(values.map((v) => -v));
    expect(encodeF16(values)).toEqual(expected);
    expect(negated).toEqual(expected.map((h) => h | 0x8000));
  });
});

describe('malformed files', () => {
  const f32Entry = (begin: number, end: number, shape = [5, 5]) => ({ 'fc.weight': entry('F32', shape, begin, end) });
  const cases: [string, Uint8Array, string][] = [
    ['short', Uint8Array.from([1, 2, 3]), 'file is 3 bytes, too short for the 8-byte header length'],
    ['header-past-end', bytesOf([0xe8, 3, 0, 0, 0, 0, 0, 0], new Uint8Array(12)), 'header length 1000 runs past the end of the file (20 bytes)'],
    ['bad-json', handBuilt('{"fc.weight": {', new Uint8Array(4)), 'header is not valid JSON ('],
    ['not-utf8', handBuilt(Uint8Array.from([0x7b, 0x22, 0xff, 0x22, 0x7d])), 'header is not valid UTF-8 ('],
    ['not-object', handBuilt('[1, 2]'), 'header must be a JSON object, got [1,2]'],
    ['unknown-dtype', handBuilt(JSON.stringify({ 'fc.weight': entry('F8_E4M3', [2], 0, 2) }), new Uint8Array(2)),
      'tensor "fc.weight": unknown dtype "F8_E4M3" (known: F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL)'],
    ['bad-shape', handBuilt(JSON.stringify(f32Entry(0, 4, [2, -1]))), 'tensor "fc.weight": shape must be a list of non-negative integers, got [2,-1]'],
    ['fractional-shape', handBuilt(JSON.stringify(f32Entry(0, 4, [1.5]))), 'tensor "fc.weight": shape must be a list of non-negative integers, got [1.5]'],
    ['bad-offsets', handBuilt(JSON.stringify(f32Entry(100, 0))), 'tensor "fc.weight": data_offsets must be [begin, end] with 0 <= begin <= end, got [100,0]'],
    ['wrong-length', handBuilt(JSON.stringify(f32Entry(0, 64)), new Uint8Array(64)),
      'tensor "fc.weight": shape [5, 5] of F32 needs 100 bytes, data_offsets [0, 64] hold 64'],
    ['weights', handBuilt(JSON.stringify(f32Entry(0, 100)), new Uint8Array(64)),
      'weights.safetensors: tensor "fc.weight": data_offsets [0, 100] end past the buffer (64 bytes)'],
    ['overlap', handBuilt(JSON.stringify({ a: entry('F32', [2], 0, 8), b: entry('F32', [2], 4, 12) }), new Uint8Array(12)),
      'tensor "b": data_offsets [4, 12] overlap tensor "a" [0, 8]'],
    ['gap', handBuilt(JSON.stringify({ b: entry('F32', [1], 8, 12), a: entry('F32', [1], 0, 4) }), new Uint8Array(12)),
      'tensor "b": data_offsets [8, 12] leave bytes [4, 8) of the buffer unused'],
    ['leading-gap', handBuilt(JSON.stringify({ a: entry('F32', [1], 4, 8) }), new Uint8Array(8)), 'tensor "a": data_offsets [4, 8] leave bytes [0, 4) of the buffer unused'],
    ['trailing', handBuilt(JSON.stringify({ a: entry('F32', [1], 0, 4) }), new Uint8Array(8)),
      'tensor "a" ends at byte 4 of the 8-byte buffer, leaving its tail unused'],
    ['no-tensors', handBuilt('{}', new Uint8Array(4)), 'the buffer holds 4 bytes but the header lists no tensors'],
    ['duplicate', handBuilt(`{"a":${JSON.stringify(entry('F32', [1], 0, 4))}, "a" :${JSON.stringify(entry('F32', [1], 0, 4))}}`, new Uint8Array(4)),
      'tensor "a" appears twice in the header'],
    ['duplicate-escaped', handBuilt(`{"fc.weight":${JSON.stringify(entry('F32', [1], 0, 4))},"fc\\u002eweight":${JSON.stringify(entry('F32', [1], 0, 4))}}`, new Uint8Array(4)),
      'tensor "fc.weight" appears twice in the header'],
    ['entry-not-object', handBuilt('{"fc.weight": "F32"}'), 'tensor "fc.weight": expected {dtype, shape, data_offsets}, got "F32"'],
    ['metadata-number', handBuilt('{"__metadata__": {"epoch": 3}}'), '__metadata__ "epoch" must be a string, got 3'],
  ];
  it.each(cases)('%s', async (name, bytes, message) => {
    const path = await fixture(`${name}.safetensors`, bytes);
    const fromFile = openSafetensors(path);
    await expect(fromFile).rejects.toThrow(SafetensorsError);
    await expect(fromFile).rejects.toThrow(`${path}: `);
    await expect(fromFile).rejects.toThrow(message);
    await expect(loadSafetensors(bytes, `${name}.safetensors`)).rejects.toThrow(`${name}.safetensors: ${message.replace(/^weights.safetensors: /, '')}`);
  });

  it('rejects a header over the cap even when the file is that large', async () => {
    const n = 101 * 2 ** 20;
    const path = await fixture('over-cap.safetensors', Uint8Array.from([0, 0, 0x50, 0x06, 0, 0, 0, 0])); // 0x06500000 = 101 MiB
    await truncate(path, 8 + n + 16); // sparse: takes no disk space
    spy.reads.length = 0;
    await expect(openSafetensors(path)).rejects.toThrow(`over-cap.safetensors: header length ${n} is over the 100 MiB cap`);
    expect(spy.reads).toEqual([8]);
    expect(() => parseSafetensorsHeader(Uint8Array.from([0, 0, 0x50, 0x06, 0, 0, 0, 0]), 'mem.safetensors', 2 ** 40)).toThrow(
      `mem.safetensors: header length ${n} is over the 100 MiB cap`,
    );
  });

  it('rejects I64 values outside the int32 range, naming the element', async () => {
    for (const [value, i] of [[2n ** 31n, 1], [-(2n ** 31n) - 1n, 0]] as const) {
      const data = new BigInt64Array([0n, 0n]);
      data[i] = value;
      const path = await fixture('steps.safetensors', handBuilt(JSON.stringify({ steps: entry('I64', [2], 0, 16) }), data));
      const file = await openSafetensors(path);
      await expect(file.get('steps')).rejects.toThrow(`steps.safetensors: tensor "steps": I64 element ${i} is ${value}, outside the int32 range`);
      await file.close();
    }
  });

  it('names the missing tensor and the file truncated after opening', async () => {
    const path = await fixture('cut.safetensors', serializeSafetensors({ a: { data: new Float32Array(4), shape: [4] }, b: { data: new Float32Array(4), shape: [4] } }));
    const file = await openSafetensors(path);
    await expect(file.get('c')).rejects.toThrow(`${path}: no tensor "c" among its 2 tensors ("a", "b")`);
    await truncate(path, file.header.bufferStart + 20);
    expect((await file.get('a')).data).toEqual(new Float32Array(4));
    await expect(file.get('b')).rejects.toThrow(`${path}: tensor "b": file ended at byte ${file.header.bufferStart + 20}`);
    await file.close();
  });
});

describe('bounded memory', () => {
  it('reads only the header on open, then each tensor into a buffer of exactly its size', async () => {
    const path = await fixture('lazy.safetensors', serializeSafetensors({ a: { data: new Float32Array(3), shape: [3] }, b: { data: new Int32Array(5), shape: [5] } }));
    spy.reads.length = 0;
    const file = await openSafetensors(path);
    expect(spy.reads).toEqual([8, file.header.bufferStart]);
    await file.get('b');
    expect(spy.reads).toEqual([8, file.header.bufferStart, 20]);
    await file.close();
  });

  it('rejects a header claiming a 4 GiB tensor in a tiny file before reading or allocating it', async () => {
    const path = await fixture('huge.safetensors', handBuilt(JSON.stringify({ 'fc.weight': entry('F32', [2 ** 30], 0, 2 ** 32) }), new Uint8Array(16)));
    const claimsHeader = await fixture('huge-header.safetensors', Uint8Array.from([0, 0, 0, 0, 0, 0, 0, 0x40, 1, 2, 3, 4]));
    spy.reads.length = 0;
    const before = process.memoryUsage().arrayBuffers;
    await expect(openSafetensors(path)).rejects.toThrow('huge.safetensors: tensor "fc.weight": data_offsets [0, 4294967296] end past the buffer (16 bytes)');
    await expect(openSafetensors(claimsHeader)).rejects.toThrow(`huge-header.safetensors: header length ${2n ** 62n} runs past the end of the file (12 bytes)`);
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(2 ** 20);
    expect(Math.max(...spy.reads)).toBeLessThanOrEqual(100);
  });
});

describe('writer', () => {
  it('replaces a file atomically: a crash before the rename leaves the old file and no temporary', async () => {
    const sub = join(dir, 'atomic');
    await mkdir(sub);
    const path = join(sub, 'model.safetensors');
    await writeSafetensors(path, { w: { data: new Float32Array([1]), shape: [1] } });
    const old = await readFile(path);
    const next = { w: { data: new Float32Array([2, 3]), shape: [2] } };
    spy.failRename = true;
    try {
      await expect(writeSafetensors(path, next)).rejects.toThrow('simulated crash before rename');
    } finally {
      spy.failRename = false;
    }
    // At the rename the new bytes were complete in a sibling file and the target still held the old ones.
    expect(dirname(spy.atRename!.from)).toBe(sub);
    expect(spy.atRename!.to).toBe(path);
    expect(new Uint8Array(spy.atRename!.tmp)).toEqual(serializeSafetensors(next));
    expect(spy.atRename!.target).toEqual(old);
    expect(await readFile(path)).toEqual(old);
    expect(await readdir(sub)).toEqual(['model.safetensors']);

    await writeSafetensors(path, next);
    expect(new Uint8Array(await readFile(path))).toEqual(serializeSafetensors(next));
    expect(await readdir(sub)).toEqual(['model.safetensors']);
  });

  it('rejects bad input, naming the output and the tensor, before touching the disk', async () => {
    const path = join(dir, 'bad-input.safetensors');
    await expect(writeSafetensors(path, { w: { data: new Float32Array(5), shape: [2, 3] } })).rejects.toThrow(
      `${path}: tensor "w": shape [2, 3] has 6 elements, data has 5`,
    );
    await expect(readFile(path)).rejects.toThrow('ENOENT');
    const write = (t: Parameters<typeof serializeSafetensors>[0], m?: Record<string, string>) => () => serializeSafetensors(t, m, 'out.safetensors');
    expect(write({ w: { data: new Float32Array(1), shape: [1], dtype: 'I64' } })).toThrow('out.safetensors: tensor "w": cannot write a Float32Array as "I64"');
    expect(write({ w: { data: new Int32Array(1), shape: [1], dtype: 'BF16' as SafetensorsWriteDtype } })).toThrow('out.safetensors: tensor "w": cannot write an Int32Array as "BF16"');
    expect(write({ w: { data: [1] as unknown as Float32Array, shape: [1] } })).toThrow('out.safetensors: tensor "w": data must be a Float32Array or an Int32Array');
    expect(write({ w: { data: new Float32Array(1), shape: [-1] } })).toThrow('out.safetensors: tensor "w": shape must be a list of non-negative integers');
    expect(write({ __metadata__: { data: new Float32Array(1), shape: [1] } })).toThrow('out.safetensors: tensor "__metadata__": the name is reserved');
    expect(write({}, { epoch: 3 as unknown as string })).toThrow('out.safetensors: __metadata__ "epoch" must be a string, got 3');
  });

  it('keeps integer-like names and odd characters as given', async () => {
    const tensors = { '10': { data: new Float32Array([1]), shape: [1] }, '9': { data: new Float32Array([2]), shape: [1] }, 'a"\\é': { data: new Float32Array([3]), shape: [1] } };
    const file = await loadSafetensors(serializeSafetensors(tensors), 'names.safetensors');
    expect([...file.header.tensors.keys()]).toEqual(['10', '9', 'a"\\é']);
    expect((await file.get('a"\\é')).data).toEqual(new Float32Array([3]));
  });
});
