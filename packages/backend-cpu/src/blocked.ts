/**
 * Layouts under the native provider. oneDNN's AVX kernels run on nChw16c (16 channels interleaved),
 * 2-4x faster than on plain NCHW, and reordering every operand in and out of each convolution cost a
 * third of a ResNet-20 step. So an activation [N, C, H, W] with C a multiple of 16 that a native op
 * touches stays in nChw16c (`CpuStorage.blocked`), and passes between convolutions and batch-norm
 * as it is. Everything else sees row-major data: an op that is not layout-aware gets its blocked
 * inputs turned back first, in place (same storage, same contents, another order), and reading a
 * tensor back does the same. Elementwise ops whose operands share one layout run on it unchanged.
 */
import type { Kernels, OpName, Shape, TensorView } from '@residual/core';
import type { CpuMemory, CpuStorage } from './memory.js';
import type { OneDnn } from './native.js';

/** Whether a tensor of `shape` lives in nChw16c when a native op touches it. */
export const blockable = (shape: Shape): boolean => shape.length === 4 && shape[1] % 16 === 0 && shape[1] > 0 && shape[0] * shape[2] * shape[3] > 0;

const sameDims = (a: readonly number[] | undefined, b: readonly number[] | undefined) =>
  a === b || (!!a && !!b && a.length === b.length && a.every((d, i) => d === b[i]));

/** Turns storages between layouts, in place. */
export class Layouts {
  constructor(
    readonly addon: OneDnn,
    readonly memory: CpuMemory,
  ) {}

  /** Makes `s` row-major. */
  plain(s: CpuStorage): void {
    const d = s.blocked;
    if (!d) return;
    this.memory.replaceData(s, (fresh, old) => this.addon.reorderActivation(old as Float32Array, fresh as Float32Array, d[0], d[1], d[2], d[3], false));
    s.blocked = undefined;
  }

  /**
   * Puts the view's storage in the layout native ops take for its shape: nChw16c for a blockable
   * [N, C, H, W], row-major otherwise (also when it is blocked under other dims: a reshape).
   */
  native(v: TensorView<CpuStorage>): void {
    const s = v.storage;
    if (!blockable(v.shape)) return this.plain(s);
    if (sameDims(s.blocked, v.shape)) return;
    this.plain(s);
    const [n, c, h, w] = v.shape;
    this.memory.replaceData(s, (fresh, old) => this.addon.reorderActivation(old as Float32Array, fresh as Float32Array, n, c, h, w, true));
    s.blocked = [n, c, h, w];
  }

  /** Marks a native op's new output with the layout native ops give its shape. */
  mark(s: CpuStorage, shape: Shape): CpuStorage {
    if (blockable(shape)) s.blocked = [shape[0], shape[1], shape[2], shape[3]];
    return s;
  }
}

/** Ops that handle layouts themselves: the native kernels (see onednn.ts). */
const NATIVE: ReadonlySet<OpName> = new Set(['conv2d', 'conv2dBackwardData', 'conv2dBackwardFilter', 'batchNormTrain', 'batchNormBackward', 'maxPool2d']);
/** Ops that compute element by element, so operands in one shared layout can stay in it. */
const ELEMENTWISE: ReadonlySet<OpName> = new Set(['unary', 'binary', 'reluBackward', 'copy']);

type AnyKernel = (inputs: Record<string, unknown>, attrs: unknown, outs: readonly { shape: Shape }[]) => CpuStorage[];

/**
 * The kernel table with layouts handled: native kernels as they are; elementwise ops on same-shape
 * operands in one layout run on it and give their outputs that layout; every other op gets row-major
 * inputs.
 */
export const withLayouts = (kernels: Kernels<CpuStorage>, layouts: Layouts): Kernels<CpuStorage> => {
  const wrapped: Record<string, AnyKernel> = {};
  for (const [name, kernel] of Object.entries(kernels) as [OpName, AnyKernel][]) {
    if (NATIVE.has(name)) {
      wrapped[name] = kernel;
      continue;
    }
    wrapped[name] = (inputs, attrs, outs) => {
      const views = Object.values(inputs).flatMap((v) => (Array.isArray(v) ? v : [v])) as TensorView<CpuStorage>[];
      // A single element (a scalar operand) reads the same in any layout.
      const sized = views.filter((v) => v.size > 1);
      const first = sized[0]?.storage.blocked;
      const shared = ELEMENTWISE.has(name) && first && sized.every((v) => sameDims(v.storage.blocked, first) && sameDims(v.shape, outs[0].shape));
      if (!shared) {
        for (const v of views) layouts.plain(v.storage);
        return kernel(inputs, attrs, outs);
      }
      // Same element order in every operand: the flat computation is the same in either layout.
      return kernel(inputs, attrs, outs).map((s) => ((s.blocked = first), s));
    };
  }
  return wrapped as unknown as Kernels<CpuStorage>;
};
