/** Weights files of either format on the file system (Node), told apart by their first bytes. */
import { open } from 'node:fs/promises';
import type { Tensor } from '../engine.js';
import { PthError, openPth } from './pth-node.js';
import { openSafetensors } from './safetensors-node.js';
import { tensorsFromSafetensors } from './tensors.js';
import type { WeightsFile } from './weights.js';

// PROTO 2 then the LONG1 magic number torch.save wrote before its zip format (torch < 1.6).
const LEGACY_PTH = [0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
const ZIP = [0x50, 0x4b, 0x03, 0x04];

/**
 * Opens a safetensors file or a PyTorch checkpoint (see `openPth`): a file that starts as a zip does
 * is PyTorch's, as is one named `.pth` or `.pt`; any other is read as safetensors. Close it when done.
 */
export const openWeights = async (path: string): Promise<WeightsFile> => {
  const head = new Uint8Array(LEGACY_PTH.length);
  const fh = await open(path, 'r');
  try {
    await fh.read(head, 0, head.length, 0);
  } finally {
    await fh.close();
  }
  const startsWith = (magic: number[]) => magic.every((b, i) => head[i] === b);
  if (startsWith(LEGACY_PTH))
    throw new PthError(`${path}: PyTorch's format before 1.6 (a bare pickle), which is not read; save it again with torch.save in torch >= 1.6`);
  return startsWith(ZIP) || /\.pth?$/i.test(path) ? openPth(path) : openSafetensors(path);
};

/** Loads every tensor of a safetensors file or a PyTorch checkpoint onto the active backend, in the file's order. */
export const loadWeights = async (path: string): Promise<Map<string, Tensor>> => {
  const file = await openWeights(path);
  try {
    return await tensorsFromSafetensors(file);
  } finally {
    await file.close();
  }
};
