/** Support shared by this package's tests (never built or shipped: see tsconfig.build.json). */
import { createServer, type RequestListener } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Batch } from './loader.js';

/** An HTTP server on a free loopback port: its base address, and `close()`, which drops open connections first. */
export interface Loopback {
  readonly base: string;
  close(): Promise<void>;
}

/** Serves `handler` on 127.0.0.1 at a free port. */
export const serveLoopback = async (handler: RequestListener): Promise<Loopback> => {
  const server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
};

/** The first `count` batches of a loader (all of an epoch by default). */
export async function take(loader: AsyncIterable<Batch>, count = Infinity): Promise<Batch[]> {
  const out: Batch[] = [];
  if (count === 0) return out;
  for await (const b of loader) {
    out.push(b);
    if (out.length >= count) break;
  }
  return out;
}
