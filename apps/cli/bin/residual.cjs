#!/usr/bin/env node
// The `residual` command's entry. libvips decodes on libuv's thread pool, which Node sizes once,
// from UV_THREADPOOL_SIZE (4 threads unless it says more), before any ES module runs: so the size is
// set here, in CommonJS, before the command loads. One thread per core, at least libuv's 4, unless
// the caller chose; otherwise decoding could never use more than 4 cores.
const { availableParallelism } = require('node:os');
process.env.UV_THREADPOOL_SIZE ??= String(Math.max(4, availableParallelism()));
import('../dist/main.js');
