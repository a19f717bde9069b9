import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { setBackend } from '../engine.js';
import { BatchNorm2d, Conv2d, Sequential } from '../nn.js';
import { createReferenceBackend } from '../testing/reference-backend.js';
import { loadTensors, saveTensors } from './safetensors-node.js';
import { parseSafetensorsHeader } from './safetensors.js';

beforeEach(() => {
  setBackend(createReferenceBackend());
});

describe('state dicts as safetensors', () => {
  it('round-trip a module with torchvision dtypes (F32 weights, I64 num_batches_tracked)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'residual-st-'));
    const path = join(dir, 'model.safetensors');
    const a = new Sequential(new Conv2d(2, 3, 3), new BatchNorm2d(3));
    a.namedBuffers().find(([n]) => n === '1.num_batches_tracked')![1].assign(await import('../api.js').then((m) => m.tensor([41], [], 'i32')));
    await saveTensors(path, a.stateDict(), { format: 'pt' });
    const header = parseSafetensorsHeader(new Uint8Array(await readFile(path)), path);
    expect(header.tensors.get('1.num_batches_tracked')?.dtype).toBe('I64');
    expect(header.tensors.get('0.weight')?.dtype).toBe('F32');
    expect(header.metadata).toEqual({ format: 'pt' });
    const b = new Sequential(new Conv2d(2, 3, 3), new BatchNorm2d(3));
    b.loadStateDict(await loadTensors(path));
    for (const [k, t] of a.stateDict()) expect(Array.from(b.stateDict().get(k)!.dataSync()), k).toEqual(Array.from(t.dataSync()));
  });
});
