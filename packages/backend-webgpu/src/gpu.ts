/// <reference types="@webgpu/types" />
/**
 * Finding a WebGPU implementation: the browser's `navigator.gpu`, else Dawn's `webgpu` package in
 * Node. Dawn's GPU object must stay reachable while its devices live (if it is collected, Dawn
 * crashes the process), so it is returned to the caller to hold.
 */

/** A device with the objects that must outlive it. */
export interface GpuHandle {
  readonly gpu: GPU;
  readonly adapter: GPUAdapter;
  readonly device: GPUDevice;
}

/** What to install when no adapter is found. */
export const NO_ADAPTER_HELP =
  'no WebGPU adapter found. In Node this backend runs on Vulkan (Linux, Windows) or Metal (macOS): install a GPU driver ' +
  "with Vulkan support, or Mesa's software Vulkan driver (lavapipe; the mesa-vulkan-drivers package on Debian/Ubuntu) " +
  'for a CPU fallback, and check `vulkaninfo`. In a browser, use one with WebGPU enabled.';

const navigatorGpu = (): GPU | undefined => (globalThis as { navigator?: { gpu?: GPU } }).navigator?.gpu;

/** Dawn instances by flags, held for the life of the process: one is enough, and none may be collected early. */
const dawnInstances = new Map<string, GPU>();

/** The GPU entry point: `navigator.gpu`, else Dawn's, created with `flags` (e.g. `backend=vulkan`). */
export const findGpu = async (flags: readonly string[] = []): Promise<GPU> => {
  const fromNavigator = navigatorGpu();
  if (fromNavigator) return fromNavigator;
  const key = flags.join('\n');
  const held = dawnInstances.get(key);
  if (held) return held;
  // A variable specifier keeps browser bundlers from resolving a Node-only package.
  const specifier = 'webgpu';
  let dawn: { create(flags: string[]): GPU };
  try {
    dawn = (await import(/* @vite-ignore */ specifier)) as typeof dawn;
  } catch (e) {
    throw new Error(`webgpu backend: cannot load the 'webgpu' package (Dawn for Node): ${(e as Error).message}`);
  }
  const gpu = dawn.create([...flags]);
  dawnInstances.set(key, gpu);
  return gpu;
};

/**
 * Requests an adapter and a device with the adapter's own limits (not WebGPU's low defaults), and
 * subgroups where the adapter has them (the GEMM kernel for CPU drivers uses them).
 */
export const requestGpu = async (powerPreference: GPUPowerPreference = 'high-performance', flags: readonly string[] = []): Promise<GpuHandle> => {
  const gpu = await findGpu(flags);
  // Dawn throws (listing what it found) where browsers resolve null.
  const adapter = await gpu.requestAdapter({ powerPreference }).catch((e: Error) => {
    throw new Error(`webgpu backend: ${NO_ADAPTER_HELP}\n${e.message}`);
  });
  if (!adapter) throw new Error(`webgpu backend: ${NO_ADAPTER_HELP}`);
  const requiredLimits: Record<string, number> = {};
  for (const key of [
    'maxBufferSize', 'maxStorageBufferBindingSize', 'maxComputeWorkgroupsPerDimension', 'maxComputeInvocationsPerWorkgroup',
    'maxComputeWorkgroupSizeX', 'maxComputeWorkgroupStorageSize', 'maxStorageBuffersPerShaderStage',
  ] as const) requiredLimits[key] = adapter.limits[key];
  const requiredFeatures: GPUFeatureName[] = adapter.features.has('subgroups') ? ['subgroups'] : [];
  const device = await adapter.requestDevice({ requiredLimits, requiredFeatures });
  return { gpu, adapter, device };
};

/** What {@link probeWebGpu} found: an adapter's description and whether it is emulated, or why there is none. */
export type WebGpuProbe =
  | { readonly available: true; readonly device: string; readonly software: boolean }
  | { readonly available: false; readonly reason: string };

/** The fields of `GPUAdapterInfo` the probe and the runtime read. */
type AdapterInfo = Pick<GPUAdapterInfo, 'vendor' | 'architecture' | 'device' | 'description'> & { readonly isFallbackAdapter?: boolean };

/** One line naming an adapter, for `Backend.device`. */
export const describeAdapter = (info: AdapterInfo): string =>
  [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(' ') || 'WebGPU adapter';

/** Whether an adapter emulates a GPU on the CPU (lavapipe, SwiftShader): `useBackend('auto')` prefers the CPU backend then. */
export const isSoftwareAdapter = (info: AdapterInfo): boolean =>
  !!info.isFallbackAdapter || /llvmpipe|lavapipe|swiftshader/i.test(describeAdapter(info));

// Run by a child Node process: opens Dawn, asks for an adapter and prints what it found as JSON.
const PROBE_CHILD = `
const [url, flags, powerPreference] = process.argv.slice(1);
const done = (r) => process.stdout.write(JSON.stringify(r), () => process.exit(0));
try {
  const gpu = (await import(url)).create(JSON.parse(flags));
  const a = await gpu.requestAdapter({ powerPreference });
  if (!a) done({ error: 'no adapter' });
  else {
    const { vendor, architecture, device, description, isFallbackAdapter } = a.info;
    done({ info: { vendor, architecture, device, description, isFallbackAdapter } });
  }
} catch (e) { done({ error: String(e && e.message || e) }); }`;

/**
 * Looks for an adapter without creating a device. In Node the look happens in a short-lived child
 * process: Dawn prints its own notes on stderr while it enumerates adapters (Mesa's lavapipe draws
 * two "artificially reduced" warnings), and only a separate process keeps those off the user's
 * terminal when `auto` ends up on the CPU anyway.
 */
export const probeWebGpu = async (powerPreference: GPUPowerPreference = 'high-performance', flags: readonly string[] = []): Promise<WebGpuProbe> => {
  const toProbe = (info: AdapterInfo): WebGpuProbe => ({ available: true, device: describeAdapter(info), software: isSoftwareAdapter(info) });
  const fromNavigator = navigatorGpu();
  if (fromNavigator) {
    const adapter = await fromNavigator.requestAdapter({ powerPreference }).catch(() => null);
    return adapter ? toProbe(adapter.info) : { available: false, reason: NO_ADAPTER_HELP };
  }
  const [{ spawn }, { createRequire }, { pathToFileURL }] = await Promise.all([import('node:child_process'), import('node:module'), import('node:url')]);
  let url: string;
  try {
    url = pathToFileURL(createRequire(import.meta.url).resolve('webgpu')).href;
  } catch (e) {
    return { available: false, reason: `cannot load the 'webgpu' package (Dawn for Node): ${(e as Error).message.split('\n')[0]}` };
  }
  const child = spawn(process.execPath, ['--input-type=module', '-e', PROBE_CHILD, url, JSON.stringify(flags), powerPreference], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve).on('error', () => resolve(null)));
  try {
    const r = JSON.parse(out) as { info?: AdapterInfo; error?: string };
    if (r.info) return toProbe(r.info);
    return { available: false, reason: r.error === 'no adapter' ? NO_ADAPTER_HELP : `${NO_ADAPTER_HELP}\n${r.error}` };
  } catch {
    return { available: false, reason: `the WebGPU probe exited with ${code}: ${err.trim().split('\n').pop() ?? ''}` };
  }
};

/** Whether a WebGPU adapter can be had here (no device is created). */
export const isWebGpuAvailable = async (): Promise<boolean> => (await probeWebGpu()).available;
