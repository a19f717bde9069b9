import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeBatch, decodeFile, decodeSample, DEFAULT_PIXEL_LIMIT, jpegHeader, loadImage, readPpm, writePpm, type DecodeOptions, type Decoded } from './decode.js';
import { keyedRandom } from './random.js';
import { centerCropEval, plan, type Transform } from './transforms.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'residual-decode-'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

const plain: DecodeOptions = { transform: { steps: [] }, seed: 0, limitInputPixels: DEFAULT_PIXEL_LIMIT };
const raw = (width: number, height: number) => ({ raw: { width, height, channels: 3 as const } });

/** 16x8 pixels, red on the left half and blue on the right. */
function redBlue(): Uint8Array {
  const px = new Uint8Array(16 * 8 * 3);
  for (let i = 0; i < 16 * 8; i++) px[3 * i + (i % 16 < 8 ? 0 : 2)] = 255;
  return px;
}

async function file(name: string, bytes: Uint8Array): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, bytes);
  return path;
}

const rgb = (d: Decoded, x: number, y: number) => [0, 1, 2].map((c) => d.data[c * d.width * d.height + y * d.width + x]);
const close = (got: number[], want: number[], tol = 0.06) => got.every((v, c) => Math.abs(v - want[c]) <= tol);

/**
 * PIL's resampling with its bilinear (triangle) filter, in float64, one axis at a time: each output
 * pixel is the weighted mean of the source pixels within the filter's support around its centre,
 * weights normalised over the pixels inside the image. A reference written as a convolution, not as
 * interpolation between two neighbours, which is how the package computes it.
 */
function triangleResize(img: number[][], w: number, h: number): number[][] {
  const axis = (line: number[], size: number) => {
    const scale = line.length / size;
    const support = Math.max(1, scale);
    return Array.from({ length: size }, (_, i) => {
      const centre = (i + 0.5) * scale;
      let [sum, norm] = [0, 0];
      for (let j = Math.max(0, Math.floor(centre - support)); j < Math.min(line.length, Math.ceil(centre + support)); j++) {
        const weight = Math.max(0, 1 - Math.abs((j + 0.5 - centre) / support));
        sum += weight * line[j];
        norm += weight;
      }
      return sum / norm;
    });
  };
  const rows = img.map((row) => axis(row, w));
  const cols = Array.from({ length: w }, (_, x) => axis(rows.map((r) => r[x]), h));
  return Array.from({ length: h }, (_, y) => cols.map((col) => col[y]));
}

describe('decodeFile', () => {
  it('decodes a JPEG to CHW floats of pixel / 255', async () => {
    const path = await file('rb.jpg', await sharp(redBlue(), raw(16, 8)).jpeg({ quality: 100, chromaSubsampling: '4:4:4' }).toBuffer());
    const d = await decodeFile(path, 0, 0, plain);
    expect([d.width, d.height, d.data.length]).toEqual([16, 8, 3 * 16 * 8]);
    expect(close(rgb(d, 2, 4), [1, 0, 0])).toBe(true);
    expect(close(rgb(d, 13, 4), [0, 0, 1])).toBe(true);
  });

  it('applies EXIF orientation before any geometry', async () => {
    // Orientation 6: the stored image is shown turned 90 degrees clockwise, so its left half (red) ends on top.
    const jpeg = await sharp(redBlue(), raw(16, 8)).jpeg({ quality: 100, chromaSubsampling: '4:4:4' }).withMetadata({ orientation: 6 }).toBuffer();
    const path = await file('rotated.jpg', jpeg);
    const d = await decodeFile(path, 0, 0, plain);
    expect([d.width, d.height]).toEqual([8, 16]);
    expect(close(rgb(d, 4, 2), [1, 0, 0])).toBe(true);
    expect(close(rgb(d, 4, 13), [0, 0, 1])).toBe(true);
    // Resized (shrink-on-load path), the shorter side is the displayed width.
    const small = await decodeFile(path, 0, 0, { ...plain, transform: { steps: [{ op: 'resize', size: 4 }] } });
    expect([small.width, small.height]).toEqual([4, 8]);
    expect(close(rgb(small, 1, 1), [1, 0, 0], 0.1)).toBe(true);
    expect(close(rgb(small, 1, 6), [0, 0, 1], 0.1)).toBe(true);
  });

  it('turns grayscale, CMYK, alpha and 16-bit images into 8-bit RGB', async () => {
    const gray = await decodeFile(await file('gray.jpg', await sharp(redBlue(), raw(16, 8)).toColourspace('b-w').jpeg().toBuffer()), 0, 0, plain);
    const [r, g, b] = rgb(gray, 2, 4);
    expect([g, b]).toEqual([r, r]);
    expect(r).toBeGreaterThan(rgb(gray, 13, 4)[0] + 0.1); // red is lighter than blue

    const cmyk = await decodeFile(await file('cmyk.jpg', await sharp(redBlue(), raw(16, 8)).toColourspace('cmyk').jpeg().toBuffer()), 0, 0, plain);
    const red = rgb(cmyk, 2, 4);
    const blue = rgb(cmyk, 13, 4);
    expect(red[0]).toBeGreaterThan(0.8);
    expect(Math.max(red[1], red[2])).toBeLessThan(0.2);
    expect(blue[2]).toBeGreaterThan(Math.max(blue[0], blue[1]) + 0.2);
    // As PIL converts CMYK (what torchvision trains on): R = (255 - C)(255 - K) / 255, no ICC profile.
    const cmykJpeg = await sharp(redBlue(), raw(16, 8)).toColourspace('cmyk').jpeg().toBuffer();
    const bands = await sharp(cmykJpeg).pipelineColourspace('cmyk').toColourspace('cmyk').raw().toBuffer();
    for (const [x, y] of [[2, 4], [13, 4], [7, 0]]) {
      const at = 4 * (16 * y + x);
      const want = [0, 1, 2].map((c) => Math.round(((255 - bands[at + c]) * (255 - bands[at + 3])) / 255) / 255);
      expect(rgb(cmyk, x, y)).toEqual(want.map((v) => expect.closeTo(v, 6)));
    }

    const alpha = await decodeFile(await file('alpha.png', await sharp(redBlue(), raw(16, 8)).ensureAlpha(0.5).png().toBuffer()), 0, 0, plain);
    expect(rgb(alpha, 2, 4)).toEqual([1, 0, 0]);
    const deep = await decodeFile(await file('deep.png', await sharp(redBlue(), raw(16, 8)).toColourspace('rgb16').png().toBuffer()), 0, 0, plain);
    expect(rgb(deep, 13, 4)).toEqual([0, 0, 1]);
  });

  it('ignores an embedded ICC profile, as PIL does: the same pixels as the file without it', async () => {
    const tagged = await sharp(redBlue(), raw(16, 8)).resize(40, 20).withIccProfile('p3').jpeg().toBuffer();
    // Cut the profile's APP2 segment out of the file; the coded image is untouched.
    const app2 = tagged.indexOf(Buffer.from('ICC_PROFILE')) - 4;
    expect(tagged.subarray(app2, app2 + 2)).toEqual(Buffer.from([0xff, 0xe2]));
    const stripped = Buffer.concat([tagged.subarray(0, app2), tagged.subarray(app2 + 2 + tagged.readUInt16BE(app2 + 2))]);
    expect((await sharp(stripped).metadata()).icc).toBeUndefined();
    const t = { ...plain, transform: { steps: [{ op: 'centerCrop', size: 12 }] } } as const;
    expect((await decodeFile(tagged, 0, 0, t)).data).toEqual((await decodeFile(stripped, 0, 0, t)).data);
  });

  it('decodes by content, not by name: a PNG named .JPEG', async () => {
    const d = await decodeFile(await file('png.JPEG', await sharp(redBlue(), raw(16, 8)).png().toBuffer()), 0, 0, plain);
    expect(rgb(d, 2, 4)).toEqual([1, 0, 0]);
  });

  it('decodes a 3x2 image and upsamples it through the transform', async () => {
    const tiny = Uint8Array.from({ length: 18 }, (_, i) => 40 * (i % 3));
    const path = await file('tiny.png', await sharp(tiny, raw(3, 2)).png().toBuffer());
    const d = await decodeFile(path, 0, 0, plain);
    expect([d.width, d.height]).toEqual([3, 2]);
    expect(rgb(d, 1, 1).map((v) => v * 255)).toEqual([0, 40, 80].map((v) => expect.closeTo(v, 4)));
    const up = await decodeFile(path, 0, 0, { ...plain, transform: { steps: [{ op: 'resize', size: 32 }, { op: 'centerCrop', size: 32 }] } });
    expect([up.width, up.height]).toEqual([32, 32]);
    expect(rgb(up, 16, 16).map((v) => v * 255)).toEqual([0, 40, 80].map((v) => expect.closeTo(v, 4)));
  });

  it('throws, naming the problem, for bad data', async () => {
    const jpeg = await sharp(redBlue(), raw(16, 8)).resize(64, 64).jpeg().toBuffer();
    await expect(decodeFile(await file('empty.jpg', new Uint8Array(0)), 0, 0, plain)).rejects.toThrow(/empty/);
    await expect(decodeFile(await file('noise.jpg', randomBytes(2000)), 0, 0, plain)).rejects.toThrow(/unsupported image format/);
    await expect(decodeFile(await file('cut.jpg', jpeg.subarray(0, 300)), 0, 0, plain)).rejects.toThrow(/premature end/i);
    await expect(decodeFile(await file('big.jpg', jpeg), 0, 0, { ...plain, limitInputPixels: 64 * 64 - 1 })).rejects.toThrow(/exceeds pixel limit/);
    await expect(decodeFile(join(dir, 'absent.jpg'), 0, 0, plain)).rejects.toThrow(/ENOENT/);
  });
});

describe('decodeBatch', () => {
  it("names each bad sample's own problem, though libvips shares one error buffer between decodes at once", async () => {
    const good = await sharp(redBlue(), raw(16, 8)).resize(40, 30).jpeg().toBuffer();
    const bad = [good.subarray(0, good.length / 4), good.subarray(0, good.length / 2), randomBytes(300)];
    // Each alone, one after another: the reference reasons.
    const alone: string[] = [];
    for (const b of bad) alone.push(await decodeFile(b, 0, 0, plain).then(() => 'decoded', (e: Error) => e.message));
    expect(new Set(alone).size).toBe(3); // three different problems
    expect(alone).not.toContain('decoded');
    // Many at once, so that without the retry messages are all but sure to mix.
    const round = [...bad, good];
    const items = Array.from({ length: 8 }, () => round).flat().map((bytes, index) => ({ image: { kind: 'encoded', bytes } as const, epoch: 0, index }));
    const batch = await decodeBatch(items, plain);
    expect(batch.skipped).toEqual(Array.from({ length: 8 }, () => [...alone, undefined]).flat());
    expect(batch.images).toHaveLength(8 * 3 * 40 * 30);
  });
});

describe('jpegHeader', () => {
  it("reads what sharp's metadata() says: displayed size, orientation, and whether the pixels need converting", async () => {
    const base = () => sharp(redBlue(), raw(16, 8)).resize(48, 20);
    const cases = [
      ...[1, 2, 3, 4, 5, 6, 7, 8].map((orientation) => base().jpeg().withMetadata({ orientation })),
      base().jpeg({ progressive: true }),
      base().toColourspace('b-w').jpeg(),
      base().toColourspace('cmyk').jpeg(),
    ];
    for (const image of cases) {
      const bytes = await image.toBuffer();
      const meta = await sharp(bytes, { autoOrient: true }).metadata();
      const baseline = !meta.isProgressive;
      expect(jpegHeader(bytes)).toEqual({ ...meta.autoOrient, orientation: meta.orientation ?? 1, plain: meta.channels === 3, cmyk: meta.channels === 4, baseline });
    }
    const jpeg = await base().jpeg().toBuffer();
    expect(jpegHeader(await base().png().toBuffer())).toBeUndefined();
    expect(jpegHeader(jpeg.subarray(0, 20))).toBeUndefined(); // cut before the frame header: sharp decides
  });
});

describe('reading only the window a crop needs', () => {
  it('gives the pixels of resampling the whole image, then cropping', async () => {
    const px = Uint8Array.from({ length: 60 * 45 * 3 }, (_, i) => (i * 31 + (i >> 7) * 7) & 255);
    const path = await file('window.png', await sharp(px, raw(60, 45)).png().toBuffer());
    const whole = await decodeFile(path, 0, 0, { ...plain, transform: { steps: [{ op: 'resize', size: 70 }] } });
    const steps = [{ op: 'resize', size: 70 }, { op: 'randomCrop', size: 24, padding: 3 }, { op: 'hflip' }] as const;
    for (let index = 0; index < 6; index++) {
      const crop = await decodeFile(path, 0, index, { ...plain, transform: { steps } });
      // The same draws place the window in the whole image.
      const [p] = plan(steps, 60, 45, keyedRandom(0, 0, index));
      for (const [x, y] of [[0, 0], [5, 17], [23, 23], [12, 4]]) {
        const sx = p.left + (p.flip ? 23 - x : x);
        const sy = p.top + y;
        const inside = sx >= 0 && sx < whole.width && sy >= 0 && sy < whole.height;
        expect(rgb(crop, x, y)).toEqual(inside ? rgb(whole, sx, sy) : [0, 0, 0]);
      }
    }
  });
});

describe('loadImage', () => {
  it('decodes a path or bytes alike, through the evaluation transform', async () => {
    const jpeg = await sharp(redBlue(), raw(16, 8)).resize(300, 150).jpeg().toBuffer();
    const fromBytes = await loadImage(jpeg, centerCropEval());
    expect([fromBytes.width, fromBytes.height]).toEqual([224, 224]);
    expect((await loadImage(await file('eval.jpg', jpeg), centerCropEval())).data).toEqual(fromBytes.data);
    await expect(loadImage(jpeg, { steps: [{ op: 'centerCrop', size: -1 }] })).rejects.toThrow('size -1');
  });
});

describe('decodeSample on raw planes', () => {
  const planes = Uint8Array.from({ length: 3 * 32 * 32 }, (_, i) => (i * 7) & 255);
  const input = { kind: 'planes', pixels: planes, width: 32, height: 32 } as const;
  const t: Transform = { steps: [{ op: 'randomCrop', size: 32, padding: 4 }, { op: 'hflip' }], mean: [0.4, 0.5, 0.6], std: [0.2, 0.25, 0.3] };

  it('is a pure function of (seed, epoch, index)', async () => {
    const o = { ...plain, transform: t, seed: 11 };
    const a = await decodeSample(input, 2, 5, o);
    expect((await decodeSample(input, 2, 5, o)).data).toEqual(a.data);
    const others = await Promise.all([decodeSample(input, 3, 5, o), decodeSample(input, 2, 6, o), decodeSample(input, 2, 5, { ...o, seed: 12 })]);
    // 81 crop offsets x 2 flips: a repeat is possible but these keys are checked not to collide.
    for (const d of others) expect(d.data).not.toEqual(a.data);
  });

  it("enlarges as PIL's bilinear filter does (torchvision's Resize), computing only the crop", async () => {
    const d = await decodeSample(input, 0, 0, { ...plain, transform: { steps: [{ op: 'resize', size: 48 }, { op: 'centerCrop', size: 40 }] } });
    expect([d.width, d.height]).toEqual([40, 40]);
    const plane = (c: number) => Array.from({ length: 32 }, (_, y) => Array.from(planes.subarray(c * 1024 + 32 * y, c * 1024 + 32 * y + 32)));
    const want = [0, 1, 2].map((c) => triangleResize(plane(c), 48, 48));
    for (const [x, y] of [[0, 0], [17, 3], [39, 39], [5, 31]]) {
      expect(rgb(d, x, y)).toEqual([0, 1, 2].map((c) => expect.closeTo(want[c][y + 4][x + 4] / 255, 5)));
    }
  });
});

describe('decodePixels reducing', () => {
  const [W, H] = [37, 29];
  const planes = Uint8Array.from({ length: 3 * W * H }, (_, i) => (i * 97 + (i >> 5) * 13) & 255);
  const input = { kind: 'planes', pixels: planes, width: W, height: H } as const;
  const plane = (c: number) => Array.from({ length: H }, (_, y) => Array.from(planes.subarray(c * W * H + W * y, c * W * H + W * y + W)));

  it("reduces (and mixes reducing with enlarging) as PIL's bilinear filter does, computing only the crop", async () => {
    const transforms: Transform[] = [
      { steps: [{ op: 'resize', size: 20 }, { op: 'centerCrop', size: 16 }] },
      { steps: [{ op: 'randomResize', min: 12, max: 40 }, { op: 'randomCrop', size: 14, padding: 2 }, { op: 'hflip' }] },
      { steps: [{ op: 'randomResizedCrop', size: 18 }, { op: 'hflip' }] },
    ];
    let reduced = 0;
    for (const transform of transforms) {
      for (let index = 0; index < 6; index++) {
        const d = await decodeSample(input, 1, index, { ...plain, transform, seed: 3 });
        const [p] = plan(transform.steps, W, H, keyedRandom(3, 1, index));
        if (p.sourceWidth < W || p.sourceHeight < H) reduced++;
        const want = [0, 1, 2].map((c) => triangleResize(plane(c), p.sourceWidth, p.sourceHeight));
        for (let y = 0; y < p.height; y++) {
          for (let x = 0; x < p.width; x++) {
            const [sx, sy] = [p.left + (p.flip ? p.width - 1 - x : x), p.top + y];
            const inside = sx >= p.clip[0] && sx < p.clip[2] && sy >= p.clip[1] && sy < p.clip[3];
            expect(rgb(d, x, y)).toEqual([0, 1, 2].map((c) => expect.closeTo(inside ? want[c][sy][sx] / 255 : 0, 5)));
          }
        }
      }
    }
    expect(reduced).toBeGreaterThan(6);
  });
});

describe('PPM', () => {
  const pixels = Uint8Array.from({ length: 3 * 7 * 5 }, (_, i) => (i * 37) & 255);
  const ascii = (text: string) => new TextEncoder().encode(text);
  const withHead = (head: string, body: Uint8Array = pixels) => Uint8Array.from([...ascii(head), ...body]);

  it('reads the netpbm header (comments and any whitespace) and hands back a view of the pixels', () => {
    const bytes = withHead('P6 # made by hand\n7\t5\r\n# a comment line\n255\n');
    const img = readPpm(bytes)!;
    expect([img.width, img.height]).toEqual([7, 5]);
    expect(img.data).toEqual(pixels);
    expect(img.data.buffer).toBe(bytes.buffer);
    expect(readPpm(writePpm({ data: pixels, width: 7, height: 5 }))!.data).toEqual(pixels);
    expect(readPpm(ascii('P5\n1 1\n255\n\0'))).toBeUndefined(); // graymap: not ours, left to libvips
  });

  it('refuses what it cannot read, saying what', () => {
    expect(() => readPpm(withHead('P6\n7 5\n65535\n'))).toThrow('PPM maxval 65535: only 8-bit (255) is read');
    expect(() => readPpm(withHead('P6\n7 5\n255\n', pixels.subarray(1)))).toThrow('PPM of 7x5 holds 104 bytes of pixels, not 105: truncated');
    expect(() => readPpm(withHead('P6\n7 x\n255\n'))).toThrow('field 2 (width, height, maxval) is not a number');
    expect(() => readPpm(withHead('P6\n0 5\n255\n'))).toThrow('PPM of 0x5 pixels');
  });

  it('transforms as the same pixels given as planes do, enlarged or reduced, and a bad one fails naming the problem', async () => {
    const planes = new Uint8Array(pixels.length);
    for (let i = 0; i < 35; i++) for (let c = 0; c < 3; c++) planes[c * 35 + i] = pixels[3 * i + c];
    const ppm = { kind: 'encoded', bytes: writePpm({ data: pixels, width: 7, height: 5 }) } as const;
    for (const size of [3, 5, 9]) {
      const o = { ...plain, transform: { steps: [{ op: 'resize', size }, { op: 'randomCrop', size: 3 }, { op: 'hflip' }] } as Transform, seed: size };
      const a = await decodeSample(ppm, 0, 1, o);
      expect(a.data).toEqual((await decodeSample({ kind: 'planes', pixels: planes, width: 7, height: 5 }, 0, 1, o)).data);
    }
    const path = await file('x.ppm', writePpm({ data: pixels, width: 7, height: 5 }));
    expect(rgb(await decodeFile(path, 0, 0, plain), 2, 1)).toEqual(Array.from(pixels.subarray(3 * 9, 3 * 9 + 3), (v) => expect.closeTo(v / 255, 6)));
    const bad = await file('bad.ppm', withHead('P6\n7 5\n255\n', pixels.subarray(0, 50)));
    await expect(decodeFile(bad, 0, 0, plain)).rejects.toThrow('truncated');
    await expect(decodeFile(path, 0, 0, { ...plain, limitInputPixels: 34 })).rejects.toThrow('PPM of 7x5 exceeds the pixel limit 34');
  });
});
