/** `residual devices`: the backends available here, each device's name and limits, and a self-check. */
import type { Command } from 'commander';
import { matmul, tensor, type Backend } from '@residual/core';
import { setBackend } from '@residual/core';
import { distributed } from '../distributed.js';
import { emit } from '../output.js';

interface DeviceInfo {
  backend: string;
  available: boolean;
  device?: string;
  /** The CPU backend's provider ('native' on oneDNN, or 'wasm'), and the native one's state. */
  provider?: string;
  native?: unknown;
  selfCheck?: 'ok' | string;
  error?: string;
}

/** A 2x2 matmul against its known result. */
const selfCheck = async (b: Backend): Promise<string> => {
  setBackend(b);
  const y = matmul(tensor([[1, 2], [3, 4]]), tensor([[5, 6], [7, 8]]));
  const got = Array.from(await y.data());
  y.dispose();
  return got.join() === '19,22,43,50' ? 'ok' : `wrong result ${got.join(', ')}`;
};

/** Registers `devices`. */
export const registerDevices = (program: Command): void => {
  program
    .command('devices')
    .description('List the backends available here, their devices, and check each one')
    .option('--json', 'print the result as JSON on stdout')
    .action(async (flags: { json?: boolean }) => {
      const out: DeviceInfo[] = [];
      for (const [name, pkg] of [['cpu', '@residual/backend-cpu'], ['webgpu', '@residual/backend-webgpu']] as const) {
        try {
          const mod = (await import(pkg)) as { createBackend(): Promise<Backend> | Backend; nativeProvider?: () => unknown };
          const b = (await mod.createBackend()) as Backend & { provider?: string };
          const native = mod.nativeProvider?.();
          out.push({ backend: name, available: true, device: b.device, provider: b.provider, native, selfCheck: await selfCheck(b) });
        } catch (e) {
          out.push({ backend: name, available: false, error: (e as Error).message.split('\n')[0] });
        }
      }
      // Training across processes: whether the MPI binding loads and mpirun is there, and the library's version.
      const dist = await distributed();
      const mpi = dist.mpiStatus();
      if (!mpi.available) out.push({ backend: 'mpi', available: false, error: mpi.reason });
      else if (!dist.hasMpirun()) out.push({ backend: 'mpi', available: false, error: `mpirun is not on the PATH: ${dist.INSTALL_HINT}` });
      else {
        const group = dist.init();
        const peers = await group.allReduce(Int32Array.of(1));
        out.push({ backend: 'mpi', available: true, device: `${group.engine}, ${group.worldSize} process${group.worldSize === 1 ? '' : 'es'} (multi-process training)`, selfCheck: peers[0] === group.worldSize ? 'ok' : `allReduce gave ${peers[0]}` });
        group.finalize();
      }
      emit(!!flags.json, out, (ds) =>
        ds.map((d) => (d.available ? `${d.backend}: ${d.device} (self-check ${d.selfCheck})` : `${d.backend}: unavailable (${d.error})`)).join('\n'));
    });
};
