/** Choosing a backend by name at run time: `useBackend('cpu' | 'webgpu' | 'auto')`. */
import type { Backend } from './backend.js';
import { setBackend } from './engine.js';

/** Names `useBackend` accepts. */
export type BackendName = 'cpu' | 'webgpu' | 'auto';

/** The package that provides each named backend; each exports `createBackend(): Promise<Backend>`. */
export const BACKEND_PACKAGES = { cpu: '@residual/backend-cpu', webgpu: '@residual/backend-webgpu' } as const;

interface BackendModule {
  createBackend(): Promise<Backend> | Backend;
  /** Whether the backend could run here, and on what, without creating it (WebGPU answers this). */
  probeBackend?(): Promise<{ available: true; device: string; software: boolean } | { available: false; reason: string }>;
}

const isMissing = (e: unknown, pkg: string) => {
  const err = e as { code?: string; message?: string };
  return (err.code === 'ERR_MODULE_NOT_FOUND' || err.code === 'MODULE_NOT_FOUND') && !!err.message?.includes(pkg);
};

/** Imports a backend package, from core's own location or else from the application's (the working directory). */
const importBackend = async (pkg: string): Promise<BackendModule> => {
  try {
    return (await import(/* @vite-ignore */ pkg)) as BackendModule;
  } catch (e) {
    if (!isMissing(e, pkg) || typeof process === 'undefined') throw e;
  }
  try {
    const { createRequire } = await import('node:module');
    const { pathToFileURL } = await import('node:url');
    const resolved = createRequire(`${process.cwd()}/`).resolve(pkg);
    return (await import(/* @vite-ignore */ pathToFileURL(resolved).href)) as BackendModule;
  } catch (e) {
    if (isMissing(e, pkg) || (e as { code?: string }).code === 'MODULE_NOT_FOUND')
      throw new Error(`the '${pkg.split('-').pop()}' backend needs the package ${pkg}: install it with \`npm install ${pkg}\``);
    throw e;
  }
};

const parseName = (name: string, source: string): BackendName => {
  if (name === 'cpu' || name === 'webgpu' || name === 'auto') return name;
  throw new Error(`${source}: unknown backend '${name}' (expected cpu, webgpu or auto)`);
};

/**
 * Selects the backend every op runs on and returns it. `name` defaults to the `RESIDUAL_BACKEND`
 * environment variable, else 'auto': WebGPU when an adapter exists, else the CPU, saying so on stderr.
 * A Backend object is used as given. `load` imports a backend package from the caller's location
 * (applications pass \`(p) => import(p)\`), since core itself does not depend on any backend.
 */
export const useBackend = async (
  name?: BackendName | Backend,
  { quiet = false, load }: { quiet?: boolean; load?: (pkg: string) => Promise<unknown> } = {},
): Promise<Backend> => {
  const importer = async (pkg: string) => {
    if (!load) return importBackend(pkg);
    try {
      return (await load(pkg)) as BackendModule;
    } catch (e) {
      if (isMissing(e, pkg)) throw new Error(`the '${pkg.split('-').pop()}' backend needs the package ${pkg}: install it with \`npm install ${pkg}\``);
      throw e;
    }
  };
  if (name && typeof name === 'object') return setBackend(name as Backend);
  const env = typeof process !== 'undefined' ? process.env.RESIDUAL_BACKEND : undefined;
  const chosen = name ? parseName(name, 'useBackend') : env ? parseName(env, 'RESIDUAL_BACKEND') : 'auto';
  if (chosen !== 'auto') return setBackend(await (await importer(BACKEND_PACKAGES[chosen])).createBackend());
  let reason: string;
  try {
    const webgpu = await importer(BACKEND_PACKAGES.webgpu);
    // Probing first spares creating a device (and, in Node, Dawn's notes on stderr) where the CPU wins anyway.
    const probe = await webgpu.probeBackend?.();
    if (probe && !probe.available) throw new Error(probe.reason);
    if (probe?.software) reason = `the WebGPU adapter is a software renderer (${probe.device})`;
    else {
      const gpu = await webgpu.createBackend();
      if (!gpu.software) return setBackend(gpu);
      reason = `the WebGPU adapter is a software renderer (${gpu.device})`;
      gpu.dispose();
    }
  } catch (e) {
    reason = `WebGPU unavailable (${(e as Error).message.split('\n')[0]})`;
  }
  if (!quiet) console.error(`residual: ${reason}; using the CPU backend`);
  return setBackend(await (await importer(BACKEND_PACKAGES.cpu)).createBackend());
};
