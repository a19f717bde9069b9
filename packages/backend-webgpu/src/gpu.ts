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

/** Whether a WebGPU adapter can be had here (no device is created). */
export const isWebGpuAvailable = async (): Promise<boolean> => {
  try {
    return (await (await findGpu()).requestAdapter()) !== null;
  } catch {
    return false;
  }
};
