/** Node-only parts of @residual/core (file system): `@residual/core/node`. */
export * from './io/safetensors-node.js';
export { openPth, PthError } from './io/pth-node.js';
export { PickleError } from './io/pickle.js';
export * from './io/weights-node.js';
