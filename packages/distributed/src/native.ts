/** Loading the MPI binding, which is optional: without it the package loads and says what to install. */
import { existsSync } from 'node:fs';
import { constants } from 'node:os';
import { fileURLToPath } from 'node:url';

/** The binding's functions (native/mpi.cc). */
export interface MpiBinding {
  init(): { rank: number; worldSize: number; localRank: number; localSize: number; processor: string; library: string };
  /** (kind, buffer, op, root, sync, timeoutMs): a promise for async jobs; sync ones return when done or throw on timeout. */
  submit(kind: number, buffer: ArrayBufferView | null, op: number, root: number, sync: boolean, timeoutMs: number): Promise<unknown> | undefined;
}

/** What to do when the binding is missing. */
export const INSTALL_HINT =
  'install Open MPI (Debian/Ubuntu: apt-get install openmpi-bin libopenmpi-dev), then rebuild the binding with `pnpm rebuild @residual/distributed` (or reinstall the package)';

const PATH = fileURLToPath(new URL('../build/Release/residual_mpi.node', import.meta.url));

let loaded: { binding: MpiBinding } | { error: string } | null = null;

/** The binding, or the reason it is not there. */
export const loadBinding = (): { binding: MpiBinding } | { error: string } => {
  if (loaded) return loaded;
  if (!existsSync(PATH)) return (loaded = { error: `the MPI binding is not built (no ${PATH}): ${INSTALL_HINT}` });
  try {
    const module = { exports: {} as MpiBinding };
    // RTLD_GLOBAL: Open MPI loads its components as plugins that resolve libmpi's symbols globally.
    process.dlopen(module, PATH, constants.dlopen.RTLD_NOW | constants.dlopen.RTLD_GLOBAL);
    loaded = { binding: module.exports };
  } catch (e) {
    loaded = { error: `the MPI binding failed to load (${(e as Error).message.split('\n')[0]}): ${INSTALL_HINT}` };
  }
  return loaded;
};
