/** Safetensors on the file system (Node): a reader that reads only what it needs, an atomic writer. */
import { randomUUID } from 'node:crypto';
import { open, rename, rm, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Tensor } from '../engine.js';
import { tensorsFromSafetensors, tensorsToSafetensors } from './tensors.js';
import {
  openSafetensorsSource,
  serializeSafetensors,
  type SafetensorsFile,
  type SafetensorsInput,
} from './safetensors.js';

/** Node caps one read at 2 GiB, so large tensors come in chunks. */
const READ_CHUNK = 2 ** 30;

const readAt = async (fh: FileHandle, position: number, length: number): Promise<Uint8Array> => {
  const buf = new Uint8Array(length);
  for (let off = 0; off < length; ) {
    const { bytesRead } = await fh.read(buf, off, Math.min(length - off, READ_CHUNK), position + off);
    if (bytesRead === 0) throw new Error(`file ended at byte ${position + off}, expected ${length} bytes from ${position} (truncated since it was opened?)`);
    off += bytesRead;
  }
  return buf;
};

/**
 * Opens a safetensors file: reads and validates only the header (bounded by the file's size), then
 * reads each tensor on demand into one buffer of exactly its size. Close the file when done.
 */
export const openSafetensors = async (path: string): Promise<SafetensorsFile> => {
  const fh = await open(path, 'r');
  try {
    const { size } = await fh.stat();
    return await openSafetensorsSource({ name: path, size, read: (p, l) => readAt(fh, p, l), close: () => fh.close() });
  } catch (e) {
    await fh.close();
    throw e;
  }
};

/**
 * Writes `bytes` to `path` atomically: a temporary file in the same directory is written, flushed to
 * disk, then renamed over `path` and the directory flushed, so a crash at any moment leaves the old
 * file or the new one, never a mix. Checkpoints use it too.
 */
export const writeFileAtomic = async (path: string, bytes: Uint8Array | string): Promise<void> => {
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${randomUUID()}.tmp`);
  try {
    const fh = await open(tmp, 'wx');
    try {
      await fh.writeFile(bytes);
      await fh.sync();
    } finally {
      await fh.close();
    }
    // Fault injection for tests that kill the process between the write and the rename.
    const delay = Number(process.env.RESIDUAL_FAULT_RENAME_DELAY_MS ?? 0);
    if (delay > 0) await new Promise((r) => setTimeout(r, delay));
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
  // The rename is durable only once the directory entry is flushed; Windows cannot open a directory to do so.
  if (process.platform === 'win32') return;
  const d = await open(dir, 'r');
  try {
    await d.sync();
  } finally {
    await d.close();
  }
};

/** Writes tensors as a safetensors file atomically (see `writeFileAtomic`, and `serializeSafetensors` for dtypes and layout). */
export const writeSafetensors = async (
  path: string,
  tensors: Readonly<Record<string, SafetensorsInput>>,
  metadata?: Readonly<Record<string, string>>,
): Promise<void> => writeFileAtomic(path, serializeSafetensors(tensors, metadata, path));

/** Saves tensors (a state dict) to a safetensors file, atomically. */
export const saveTensors = async (
  path: string, tensors: ReadonlyMap<string, Tensor> | Readonly<Record<string, Tensor>>, metadata?: Readonly<Record<string, string>>,
): Promise<void> => writeSafetensors(path, await tensorsToSafetensors(tensors), metadata);

/** Loads every tensor of a safetensors file onto the active backend. */
export const loadTensors = async (path: string): Promise<Map<string, Tensor>> => {
  const file = await openSafetensors(path);
  try {
    return await tensorsFromSafetensors(file);
  } finally {
    await file.close();
  }
};
