// Builds the native provider (native/onednn.cc on oneDNN) with node-gyp, at install. Optional by
// construction: where oneDNN's headers or a compiler are missing, it says what to install and exits 0,
// and the backend runs on WebAssembly. RESIDUAL_REQUIRE_NATIVE=1 (set by CI) makes a failed build an error.
//
//   node scripts/build-native.mjs            build if possible
//   node scripts/build-native.mjs --force    rebuild even when the addon is current
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../native/', import.meta.url));
const addon = join(root, 'build', 'Release', 'residual_onednn.node');
const required = process.env.RESIDUAL_REQUIRE_NATIVE === '1';
const INSTALL_HINT = 'install oneDNN\'s headers (Debian/Ubuntu: apt-get install libdnnl-dev) and a C++ compiler, then reinstall';

const stop = (why) => {
  const line = `@residual/backend-cpu: native provider not built (${why}); the CPU backend runs on WebAssembly. To use oneDNN, ${INSTALL_HINT}.`;
  if (required) {
    console.error(`${line}\nRESIDUAL_REQUIRE_NATIVE=1: failing.`);
    process.exit(1);
  }
  console.warn(line);
  process.exit(0);
};

if (process.platform === 'win32') stop('Windows builds are not set up');

// The headers: the usual prefixes, or DNNL_ROOT / CPATH for a library installed elsewhere.
const includeDirs = [process.env.DNNL_ROOT && join(process.env.DNNL_ROOT, 'include'), ...(process.env.CPATH ?? '').split(':'), '/usr/include', '/usr/local/include'];
if (!includeDirs.some((d) => d && existsSync(join(d, 'oneapi', 'dnnl', 'dnnl.hpp')))) stop('oneDNN headers not found');

const source = join(root, 'onednn.cc');
if (!process.argv.includes('--force') && existsSync(addon) && statSync(addon).mtimeMs > statSync(source).mtimeMs) process.exit(0);

// node-gyp: the one npm or pnpm hands to install scripts, else this workspace's pinned copy.
const require = createRequire(import.meta.url);
const gyp = (() => {
  const fromManager = process.env.npm_config_node_gyp;
  if (fromManager && existsSync(fromManager)) return fromManager;
  try {
    return require.resolve('node-gyp/bin/node-gyp.js');
  } catch {
    return null;
  }
})();
if (!gyp) stop('node-gyp not found');

// Node's own headers, so node-gyp never downloads them: <prefix>/include/node beside this node binary.
const prefix = dirname(dirname(process.execPath));
const nodedir = [process.env.npm_config_nodedir, prefix, '/usr', '/usr/local'].find((d) => d && existsSync(join(d, 'include', 'node', 'node_api.h')));
const args = [gyp, 'rebuild', '--silent', ...(nodedir ? [`--nodedir=${nodedir}`] : [])];
const started = Date.now();
const run = spawnSync(process.execPath, args, { cwd: root, encoding: 'utf8', env: { ...process.env, JOBS: 'max' } });
if (run.status !== 0) {
  const log = `${run.stdout ?? ''}${run.stderr ?? ''}`.trim().split('\n').slice(-15).join('\n');
  if (required) console.error(log);
  stop(`node-gyp failed${run.error ? `: ${run.error.message}` : ''}${required ? '' : '; run `node scripts/build-native.mjs --force` in the package to see why'}`);
}
const version = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')).version;
console.log(`@residual/backend-cpu ${version}: native provider built on oneDNN in ${((Date.now() - started) / 1000).toFixed(0)} s`);
