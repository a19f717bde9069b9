/** Backend selection for every command: `--backend` (or the config's `backend`), else RESIDUAL_BACKEND, else auto. */
import { useBackend, type Backend, type BackendName } from '@residual/core';

/** Selects and returns the backend; `auto` says on stderr when it falls back to the CPU. */
export const selectBackend = async (name?: BackendName): Promise<Backend> => useBackend(name, { load: (pkg) => import(pkg) });
