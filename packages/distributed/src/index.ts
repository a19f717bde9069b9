/**
 * @residual/distributed: data-parallel training across processes and hosts on Open MPI, through a
 * thin N-API binding built at install where MPI's headers exist. Without them the package still
 * loads, `mpiStatus()` says what to install, and single-process training is unaffected.
 */
export * from './group.js';
export * from './launch.js';
export * from './parallel.js';
export { INSTALL_HINT } from './native.js';
