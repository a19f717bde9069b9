import { mkdir, mkdtemp, rename, rm, stat, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { sharp } from './decode.js';
import { keyedRandom, randInt, type Rand } from './random.js';

/** The classes of builtin:shapes, in label order (sorted, so an ImageFolder reading numbers them alike). */
export const SHAPE_CLASSES = [
  'checker',
  'circle',
  'cross',
  'diamond',
  'hstripes',
  'ring',
  'square',
  'star',
  'triangle',
  'vstripes',
] as const;

/** Side of every builtin:shapes image, in pixels. */
export const SHAPE_SIZE = 32;
const SUB = 3; // sub-samples per pixel side, for anti-aliased edges

/** How large a builtin:shapes set to make, where, and from which seed. */
export interface ShapesOptions {
  /** Where generated data sets live; default `$RESIDUAL_CACHE`, else `~/.cache/residual`. */
  readonly cacheDir?: string;
  readonly train?: number;
  readonly val?: number;
  readonly seed?: number;
}

/** The folder data sets are cached in. */
export function defaultCacheDir(): string {
  return process.env.RESIDUAL_CACHE || join(homedir(), '.cache', 'residual');
}

type Inside = (x: number, y: number) => boolean;

function polygon(points: readonly (readonly [number, number])[]): Inside {
  return (x, y) => {
    let inside = false;
    for (let i = 0, j = points.length - 1; i < points.length; j = i++) {
      const [xi, yi] = points[i];
      const [xj, yj] = points[j];
      if (yi > y !== yj > y && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) inside = !inside;
    }
    return inside;
  };
}

/** The region the foreground colour covers, for a class; sizes are drawn so every class fills a similar area. */
function region(cls: number, rand: Rand): Inside {
  const name = SHAPE_CLASSES[cls];
  if (name === 'checker' || name === 'hstripes' || name === 'vstripes') {
    const w = randInt(rand, 18, SHAPE_SIZE);
    const h = randInt(rand, 18, SHAPE_SIZE);
    const x0 = randInt(rand, 0, SHAPE_SIZE - w);
    const y0 = randInt(rand, 0, SHAPE_SIZE - h);
    const band = randInt(rand, 2, 4);
    const phase = randInt(rand, 0, 2 * band - 1);
    const on = (v: number) => Math.floor((v + phase) / band) % 2 === 0;
    return (x, y) => {
      if (x < x0 || x >= x0 + w || y < y0 || y >= y0 + h) return false;
      if (name === 'hstripes') return on(y - y0);
      if (name === 'vstripes') return on(x - x0);
      return on(x - x0) === on(y - y0);
    };
  }
  const r = 7 + rand() * 6;
  const cx = r + rand() * (SHAPE_SIZE - 2 * r);
  const cy = r + rand() * (SHAPE_SIZE - 2 * r);
  switch (name) {
    case 'circle':
      return (x, y) => (x - cx) ** 2 + (y - cy) ** 2 <= r * r;
    case 'ring': {
      const inner = r * (0.45 + rand() * 0.15);
      return (x, y) => {
        const d = (x - cx) ** 2 + (y - cy) ** 2;
        return d <= r * r && d >= inner * inner;
      };
    }
    case 'square': {
      const s = 0.85 * r;
      return (x, y) => Math.abs(x - cx) <= s && Math.abs(y - cy) <= s;
    }
    case 'diamond':
      return (x, y) => Math.abs(x - cx) + Math.abs(y - cy) <= r;
    case 'cross': {
      const arm = r * (0.28 + rand() * 0.1);
      return (x, y) => {
        const dx = Math.abs(x - cx);
        const dy = Math.abs(y - cy);
        return (dx <= arm && dy <= r) || (dy <= arm && dx <= r);
      };
    }
    case 'triangle':
      return polygon([
        [cx, cy - r],
        [cx + r, cy + 0.8 * r],
        [cx - r, cy + 0.8 * r],
      ]);
    case 'star': {
      const points: [number, number][] = [];
      for (let k = 0; k < 10; k++) {
        const radius = k % 2 === 0 ? r : 0.42 * r;
        const angle = -Math.PI / 2 + (k * Math.PI) / 5;
        points.push([cx + radius * Math.cos(angle), cy + radius * Math.sin(angle)]);
      }
      return polygon(points);
    }
  }
}

const luma = (c: readonly number[]) => 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2];

/**
 * Draws one 32x32 RGB image (interleaved bytes) of class `cls`: a shape or texture in one colour over a
 * background of another, with a gradient and per-pixel noise. The two colours differ in brightness by
 * at least 80/255, so the pattern survives JPEG's colour subsampling.
 */
export function drawShape(cls: number, rand: Rand): Uint8Array {
  const colour = () => [randInt(rand, 0, 255), randInt(rand, 0, 255), randInt(rand, 0, 255)];
  const bg = colour();
  let fg = colour();
  while (Math.abs(luma(fg) - luma(bg)) < 80) fg = colour();
  const gx = (rand() - 0.5) * 2;
  const gy = (rand() - 0.5) * 2;
  const noise = rand() * 24;
  const inside = region(cls, rand);
  const out = new Uint8Array(SHAPE_SIZE * SHAPE_SIZE * 3);
  for (let y = 0; y < SHAPE_SIZE; y++) {
    for (let x = 0; x < SHAPE_SIZE; x++) {
      let hits = 0;
      for (let sy = 0; sy < SUB; sy++) {
        for (let sx = 0; sx < SUB; sx++) if (inside(x + (sx + 0.5) / SUB, y + (sy + 0.5) / SUB)) hits++;
      }
      const a = hits / (SUB * SUB);
      const shade = gx * (x - SHAPE_SIZE / 2) + gy * (y - SHAPE_SIZE / 2);
      for (let c = 0; c < 3; c++) {
        const v = a * fg[c] + (1 - a) * (bg[c] + shade) + (rand() * 2 - 1) * noise;
        out[3 * (y * SHAPE_SIZE + x) + c] = Math.max(0, Math.min(255, Math.round(v)));
      }
    }
  }
  return out;
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/**
 * Makes builtin:shapes once and returns its folder: `{train,val}/<class>/<i>.jpg`, image i of class
 * i % 10, drawn from (seed, split, i). It is built in a temporary folder and renamed into place, so a
 * folder that exists is complete and is reused as it is.
 */
export async function ensureShapes(options: ShapesOptions = {}): Promise<string> {
  const { train = 5000, val = 1000, seed = 0 } = options;
  for (const [key, n] of [['train', train], ['val', val], ['seed', seed]] as const) {
    if (!Number.isSafeInteger(n) || n < 0) throw new Error(`builtin:shapes: ${key} ${n} is not a non-negative integer`);
  }
  const cache = options.cacheDir ?? defaultCacheDir();
  const isDefault = train === 5000 && val === 1000 && seed === 0;
  const dir = join(cache, isDefault ? 'builtin-shapes-v1' : `builtin-shapes-v1-${train}-${val}-${seed}`);
  if (await exists(dir)) return dir;
  await mkdir(cache, { recursive: true });
  const tmp = await mkdtemp(`${dir}.tmp-`);
  try {
    for (const [splitId, split, count] of [[0, 'train', train], [1, 'val', val]] as const) {
      for (const cls of SHAPE_CLASSES) await mkdir(join(tmp, split, cls), { recursive: true });
      const write = async (i: number) => {
        const cls = i % SHAPE_CLASSES.length;
        const pixels = drawShape(cls, keyedRandom(seed, splitId, i));
        const raw = { width: SHAPE_SIZE, height: SHAPE_SIZE, channels: 3 as const };
        const jpeg = await sharp()(pixels, { raw }).jpeg({ quality: 90 }).toBuffer();
        await writeFile(join(tmp, split, SHAPE_CLASSES[cls], `${i}.jpg`), jpeg);
      };
      // A few encodes in flight keep sharp's thread pool busy without queueing thousands of buffers.
      for (let start = 0; start < count; start += 16) {
        await Promise.all(Array.from({ length: Math.min(16, count - start) }, (_, k) => write(start + k)));
      }
    }
    await rename(tmp, dir).catch(async (e: NodeJS.ErrnoException) => {
      // Another process finished first: its copy is as good as ours.
      if (!(await exists(dir))) throw e;
    });
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  return dir;
}
