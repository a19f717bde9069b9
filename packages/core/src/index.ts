/**
 * @residual/core: tensors, the op interface, autograd, nn, optim, weights io (safetensors; PyTorch's .pth in `./node`) and a seeded RNG.
 * Pick a backend first: `await useBackend('cpu')` (or 'webgpu' / 'auto').
 */
export * from './api.js';
export type { Backend, MemoryInfo } from './backend.js';
export { currentBackend, customOp, getBackend, isGradEnabled, nextVersion, noGrad, runOp, setBackend, tidy } from './engine.js';
export * from './geometry.js';
export { GRADS, type GradContext, type GradRule, type InputGrads } from './grads.js';
export * from './init.js';
export * from './nn.js';
export * from './ops.js';
export * from './optim.js';
export { addCounter, blocksFor, philox4x32, philoxFill, u32ToUnit } from './philox.js';
export { getRngState, manualSeed, setRngState, type RngState } from './random.js';
export { BACKEND_PACKAGES, useBackend, type BackendName } from './select.js';
export { broadcastReductionAxes, broadcastShapes, normAxis, ShapeError, shapesEqual, sizeOf, stridesOf, type Shape } from './shape.js';
export { createMetaBackend, type MetaObserver } from './meta.js';
export * from './io/safetensors.js';
export type { SafetensorsDtype, SafetensorsTensor, WeightsEntry, WeightsFile } from './io/weights.js';
export * from './io/tensors.js';
