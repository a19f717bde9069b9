// Builds the MPI binding at install time with node-gyp, where Open MPI's headers are installed. It
// never fails an install: without MPI (or a compiler), it says what to install and exits 0, and the
// package still loads (single-process training needs no MPI). RESIDUAL_REQUIRE_MPI=1 makes the
// tests, not this script, fail when the binding is missing.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const say = (line) => process.stderr.write(`@residual/distributed: ${line}\n`);
const HOW = 'install Open MPI (Debian/Ubuntu: apt-get install openmpi-bin libopenmpi-dev), then run `pnpm rebuild @residual/distributed`';

const skip = (why) => {
  say(`${why}; the MPI binding was not built. Single-process training works as is; for several processes, ${HOW}.`);
  process.exit(0);
};

try {
  execFileSync('mpicc', ['--showme:compile'], { stdio: 'ignore' });
} catch {
  skip("Open MPI's compiler wrapper (mpicc) was not found");
}

// Node's headers: beside this Node (official tarballs, nvm), or where a distribution put them.
// Given to node-gyp as --nodedir, so it never downloads them.
const nodedir = [process.env.npm_config_nodedir, join(dirname(process.execPath), '..'), '/usr', '/usr/local']
  .filter(Boolean)
  .find((d) => existsSync(join(d, 'include', 'node', 'node_api.h')));
if (!nodedir) skip(`Node's headers (include/node/node_api.h) were not found beside ${process.execPath} or in /usr`);

let gyp;
try {
  gyp = createRequire(join(root, 'package.json')).resolve('node-gyp/bin/node-gyp.js');
} catch {
  skip('node-gyp is not installed');
}
const r = spawnSync(process.execPath, [gyp, 'rebuild', `--nodedir=${nodedir}`], { cwd: root, encoding: 'utf8' });
if (r.status !== 0) {
  process.stderr.write(`${r.stdout ?? ''}${r.stderr ?? ''}`.split('\n').slice(-25).join('\n'));
  skip('node-gyp failed (output above)');
}
say('MPI binding built (build/Release/residual_mpi.node)');
