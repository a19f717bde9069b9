// Soak test of the CPU backend's worker threads: ResNet-20 training steps for a fixed time, in rounds
// that each train a freshly seeded model on the same batch. With a fixed thread count every round must
// end with bitwise the same weights, and no step may stall (long runs once deadlocked in the pool).
//
//   node bench/cpu/soak.mjs [--minutes 10] [--threads 2] [--batch 32] [--steps 4] [--stall 120]
//
// The steps run in a child process, so that a hung one can be told and stopped: this process prints a
// JSON line per round and exits 1 when weights differ or no step finished for --stall seconds.
// Needs the built packages, as bench/cpu/run.mjs does.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';

const { values: opts } = parseArgs({
  options: {
    minutes: { type: 'string', default: '10' },
    threads: { type: 'string', default: '2' },
    batch: { type: 'string', default: '32' },
    steps: { type: 'string', default: '4' },
    stall: { type: 'string', default: '120' },
    child: { type: 'boolean', default: false },
  },
});
const count = (flag) => {
  const n = Number(opts[flag]);
  if (!(n > 0)) throw new Error(`--${flag} must be a positive number, got '${opts[flag]}'`);
  return n;
};

/** The child: rounds of `steps` training steps, printing `step` after each and the weights' hash after each round. */
const child = async () => {
  const { manualSeed, setBackend } = await import('@residual/core');
  const { createCpuBackend } = await import('@residual/backend-cpu');
  const resnet = await import('@residual/resnet').catch(() => import('../../packages/resnet/dist/index.js'));
  const batch = count('batch');
  setBackend(createCpuBackend({ threads: count('threads') }));
  const images = Float32Array.from({ length: batch * 3 * 32 * 32 }, (_, i) => Math.sin(i) * 2);
  const labels = Int32Array.from({ length: batch }, (_, i) => i % 10);
  const data = { images, labels, shape: [batch, 3, 32, 32] };
  for (;;) {
    manualSeed(1);
    const model = resnet.createModel('resnet20');
    const trainer = new resnet.Trainer({ model, recipe: resnet.paperCifar, itersPerEpoch: 100, totalIterations: 1000 });
    for (let s = 0; s < count('steps'); s++) {
      await trainer.trainStep(data);
      console.log('step');
    }
    const hash = createHash('sha256');
    for (const t of model.stateDict().values()) hash.update(new Uint8Array((await t.data()).buffer));
    console.log(`round ${hash.digest('hex').slice(0, 16)}`);
    model.dispose();
  }
};

/** The parent: runs the child for --minutes, checking its rounds agree and its steps keep coming. */
const parent = async () => {
  const [minutes, stall] = [count('minutes'), count('stall')];
  const args = ['--threads', opts.threads, '--batch', opts.batch, '--steps', opts.steps];
  const proc = spawn(process.execPath, [process.argv[1], '--child', ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  const start = Date.now();
  let [steps, rounds, first, lastStep, failure, identical] = [0, 0, null, Date.now(), null, true];
  const watch = setInterval(() => {
    if (Date.now() - lastStep > stall * 1000) failure = `no step finished for ${stall} s: hung after ${steps} steps`;
    if (failure || Date.now() - start > minutes * 60e3) proc.kill();
  }, 1000);
  for await (const line of createInterface({ input: proc.stdout })) {
    if (line === 'step') {
      steps++;
      lastStep = Date.now();
    } else if (line.startsWith('round ')) {
      const hash = line.slice(6);
      first ??= hash;
      rounds++;
      if (hash !== first) {
        identical = false;
        failure = `round ${rounds} ended with weights ${hash}, round 1 with ${first}`;
      }
      console.log(JSON.stringify({ round: rounds, steps, seconds: Math.round((Date.now() - start) / 1000), weights: hash }));
    }
  }
  clearInterval(watch);
  const seconds = Math.round((Date.now() - start) / 1000);
  if (!failure && seconds < minutes * 60) failure = `the child stopped after ${seconds} s (exit ${proc.exitCode ?? proc.signalCode})`;
  console.log(JSON.stringify({ threads: Number(opts.threads), seconds, steps, rounds, identical, failure }));
  process.exitCode = failure ? 1 : 0;
};

await (opts.child ? child() : parent());
