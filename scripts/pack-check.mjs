// Packs every publishable package, installs the tarballs into a blank project with npm, and imports
// each one there, so a package that only works inside the workspace fails the test suite.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const dirs = ['packages/core', 'packages/backend-cpu', 'packages/resnet', 'packages/data', 'packages/backend-webgpu', 'packages/distributed'];
const work = mkdtempSync(join(tmpdir(), 'residual-pack-'));
const run = (cmd, args, cwd) => execFileSync(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' });
try {
  const tarballs = {};
  for (const dir of dirs) {
    const { name } = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
    run('pnpm', ['pack', '--pack-destination', work], resolve(dir));
    const file = readdirSync(work).find((f) => f.startsWith(name.replace('@', '').replace('/', '-')) && f.endsWith('.tgz'));
    if (!file) throw new Error(`pnpm pack of ${name} produced no tarball`);
    tarballs[name] = `file:${join(work, file)}`;
  }
  const app = join(work, 'app');
  execFileSync('mkdir', ['-p', app]);
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'blank', private: true, type: 'module', dependencies: tarballs, overrides: tarballs }, null, 2));
  run('npm', ['install', '--no-audit', '--no-fund', '--loglevel=error', '--prefer-offline'], app);
  const probe = `
    const core = await import('@residual/core');
    const cpu = await import('@residual/backend-cpu');
    const resnet = await import('@residual/resnet');
    await import('@residual/data');
    await import('@residual/core/node');
    core.setBackend(cpu.createCpuBackend());
    const y = core.matmul(core.tensor([[1, 2]]), core.tensor([[3], [4]]));
    if ((await y.data())[0] !== 11) throw new Error('wrong matmul result');
    const p = resnet.profile(() => resnet.resnet20(), [1, 3, 32, 32]);
    if (p.parameters !== 269722) throw new Error('resnet20 has ' + p.parameters + ' parameters');
    await import('@residual/backend-webgpu');
    // Loads with or without its MPI binding (npm may not run install scripts); says which.
    const mpi = (await import('@residual/distributed')).mpiStatus();
    if (!mpi.available && !/apt-get install openmpi-bin libopenmpi-dev/.test(mpi.reason)) throw new Error('no install hint: ' + mpi.reason);
    console.log('pack-check: every package installs from its tarball and imports');
  `;
  writeFileSync(join(app, 'probe.mjs'), probe);
  process.stdout.write(run('node', ['probe.mjs'], app));
} finally {
  rmSync(work, { recursive: true, force: true });
}
