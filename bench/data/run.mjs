// The data pipeline side by side with PyTorch's DataLoader + torchvision (PIL), same files, same
// machine, same run: JPEG decode + the paper's ImageNet augmentation (shorter side uniform in
// [256, 480], random 224 crop, flip, normalise) into batches, one pass.
//
//   node bench/data/run.mjs [--dir DIR] [--count 500] [--batch-size 32] [--epochs 1] [--repeat 3]
//                           [--peer-workers 2] [--max-side 480] [--quality 90] [--no-shards] [--no-peer]
//                           [--baseline-cli PATH]
//
// DIR is a folder of photos in the ImageFolder layout (DIR/train/<class>/*.jpg); without it, --count
// ImageNet-sized JPEGs are drawn by peer.py into a temporary folder. Each side runs as a whole
// process, as a user would run it: ours is `residual data bench imagenet:DIR --split train --augment
// paper ...` (the CLI, built), the peer `peer.py bench DIR` with --peer-workers worker processes. Both
// are timed from outside, start-up included, and each says when its first batch arrived, so start-up
// (everything until the first batch) and the steady rate after it are printed apart. The two shards
// lines run ours on the same photos made into shards with --max-side (made once, untimed): as JPEG at
// --quality, and as decoded pixels (--format ppm), which no epoch decodes again.
// --baseline-cli runs another build of the CLI (its entry, say main.js of the main branch) in the same
// turns, timed from outside only, for a before/after in one run. Runs take turns, R times; the figure of each side is its best run, the one least disturbed by
// other work on a shared machine. Images per CPU-second (all threads and worker processes) is
// printed too: unlike wall time, it does not depend on how much of a busy machine a side got.
//
// The peer runs with `python3` or the interpreter $PYTHON names, with torch and torchvision; without
// them its figures are null.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { positiveInts } from '../args.mjs';

const { values: opts } = parseArgs({
  options: {
    dir: { type: 'string' },
    count: { type: 'string', default: '500' },
    'batch-size': { type: 'string', default: '32' },
    epochs: { type: 'string', default: '1' },
    repeat: { type: 'string', default: '3' },
    'peer-workers': { type: 'string', default: '2' },
    'max-side': { type: 'string', default: '480' },
    quality: { type: 'string', default: '90' },
    'no-shards': { type: 'boolean', default: false },
    'no-peer': { type: 'boolean', default: false },
    'baseline-cli': { type: 'string' },
  },
});
const count = positiveInts(opts);
const [images, batchSize, epochs, repeat, peerWorkers, maxSide, quality] = ['count', 'batch-size', 'epochs', 'repeat', 'peer-workers', 'max-side', 'quality'].map(count);

const python = process.env.PYTHON ?? 'python3';
const peerScript = fileURLToPath(new URL('peer.py', import.meta.url));
// The installed command's entry, which sizes libuv's pool (libvips' threads) to the cores.
const cliScript = fileURLToPath(new URL('../../apps/cli/bin/residual.cjs', import.meta.url));
if (!existsSync(fileURLToPath(new URL('../../apps/cli/dist/main.js', import.meta.url)))) throw new Error('bench/data: build the CLI first (npx turbo run build --filter=@residual/cli...)');
const scratch = await mkdtemp(join(tmpdir(), 'residual-bench-data-'));
const dir = opts.dir ?? join(scratch, 'photos');

/** Runs a command to its end; its wall seconds, and its last stdout line as JSON (or null, with the reason on stderr). */
const timed = (command, args) => {
  const start = performance.now();
  const run = spawnSync(command, args, { encoding: 'utf8', maxBuffer: 1 << 26 });
  const wall = (performance.now() - start) / 1000;
  const last = (run.stdout ?? '').trim().split('\n').pop();
  try {
    const result = JSON.parse(last);
    if (run.status === 0 && !result.error) return { wall, result };
  } catch {}
  console.error(`bench/data: ${command} ${args.join(' ')} gave no figure: ${run.error?.message ?? last ?? ''} ${(run.stderr ?? '').trim().split('\n').pop()}`);
  return null;
};

/** One process's figures: images/s over the whole process, start-up (until its first batch), the rate after it, images per CPU-second. */
const figures = ({ wall, result }, after, steady, cpu) => ({
  imagesPerSecond: result.images / wall,
  startupSeconds: wall - after,
  steadyImagesPerSecond: steady,
  imagesPerCpuSecond: result.images / cpu,
  wallSeconds: wall,
  images: result.images,
});
const ours = (spec, cli = cliScript) => {
  const args = [cli, 'data', 'bench', spec, '--split', 'train', '--augment', 'paper', '--batch-size', String(batchSize), '--epochs', String(epochs), '--json'];
  const run = timed(process.execPath, args);
  const r = run?.result;
  // A build from before start-up was reported gives only its whole-process figure.
  if (run && r.startupSeconds === undefined) return { imagesPerSecond: r.images / run.wall, wallSeconds: run.wall, images: r.images };
  return run && figures(run, r.seconds - r.startupSeconds, r.steadyImagesPerSecond, r.cpuSeconds);
};
const peer = () => {
  const run = timed(python, [peerScript, 'bench', dir, '--workers', String(peerWorkers), '--batch-size', String(batchSize), '--epochs', String(epochs)]);
  const r = run?.result;
  return run && figures(run, r.afterFirstBatchSeconds, (r.images - r.firstBatchImages) / r.afterFirstBatchSeconds, r.cpuSeconds);
};

try {
  if (!existsSync(join(dir, 'train'))) {
    const made = spawnSync(python, [peerScript, 'make', dir, '--count', String(images)], { encoding: 'utf8' });
    if (made.status !== 0) throw new Error(`bench/data: ${python} ${peerScript} make failed (it needs numpy and Pillow): ${made.stderr || made.error?.message}`);
  }
  const formats = opts['no-shards'] ? [] : [['jpeg', '--quality', String(quality)], ['ppm']];
  const shards = (format) => join(scratch, `shards-${format}`);
  for (const [format, ...flags] of formats) {
    const made = spawnSync(process.execPath, [cliScript, 'data', 'shards', 'make', `imagenet:${dir}`, shards(format), '--max-side', String(maxSide), '--format', format, ...flags, '--json'], { encoding: 'utf8' });
    if (made.status !== 0) throw new Error(`bench/data: shards make --format ${format} failed: ${made.stderr}`);
  }
  const runs = { ours: [], peer: [], baseline: [], 'shards-jpeg': [], 'shards-ppm': [] };
  let peerMissing = opts['no-peer'];
  for (let r = 0; r < repeat; r++) {
    runs.ours.push(ours(`imagenet:${dir}`));
    if (opts['baseline-cli']) runs.baseline.push(ours(`imagenet:${dir}`, opts['baseline-cli']));
    if (!peerMissing) {
      const p = peer();
      if (p) runs.peer.push(p);
      else peerMissing = true;
    }
    for (const [format] of formats) runs[`shards-${format}`].push(ours(`shards:${shards(format)}`));
  }
  const best = (list) => {
    const ok = list.filter(Boolean);
    return ok.length ? ok.reduce((a, b) => (b.imagesPerSecond > a.imagesPerSecond ? b : a)) : null;
  };
  const round = (o) => o && Object.fromEntries(Object.entries(o).map(([k, v]) => [k, Math.round(v * 1000) / 1000]));
  const thePeer = best(runs.peer);
  const line = (bench, side, list) =>
    console.log(
      JSON.stringify({
        bench,
        data: opts.dir ?? `${images} generated JPEGs`,
        ours: side?.imagesPerSecond ?? null,
        peer: thePeer?.imagesPerSecond ?? null,
        unit: 'images/s, whole process, start-up included',
        ratio: side && thePeer ? side.imagesPerSecond / thePeer.imagesPerSecond : null,
        steadyRatio: side && thePeer ? side.steadyImagesPerSecond / thePeer.steadyImagesPerSecond : null,
        cpuRatio: side && thePeer ? side.imagesPerCpuSecond / thePeer.imagesPerCpuSecond : null,
        oursDetail: round(side),
        peerDetail: round(thePeer),
        runsOurs: list.map((x) => x && Math.round(x.imagesPerSecond)),
        runsPeer: runs.peer.map((x) => Math.round(x.imagesPerSecond)),
        batchSize,
        epochs,
        peerWorkers,
      }),
    );
  line('data-paper-augment', best(runs.ours), runs.ours);
  for (const [format] of formats) line(`data-paper-augment-shards-${maxSide}${format === 'ppm' ? '-ppm' : ''}`, best(runs[`shards-${format}`]), runs[`shards-${format}`]);
  if (opts['baseline-cli']) line('data-paper-augment-baseline', best(runs.baseline), runs.baseline);
} finally {
  await rm(scratch, { recursive: true, force: true });
}
