/** Node-only parts of @residual/core (file system): `@residual/core/node`. */
export * from './io/safetensors-node.js';
