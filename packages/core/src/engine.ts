/**
 * The engine: tensors, the active backend, dispatch of ops, the autograd graph and memory scopes.
 *
 * Memory is freed deterministically, never by the JS garbage collector:
 * - every tensor made inside `tidy(fn)` is disposed when fn returns, except what fn returns or `keep()`s;
 * - a tensor that a recorded op still needs for its backward keeps its storage after `dispose()` until that
 *   graph is released: by `backward()`, or as soon as nothing can reach the graph any more (reference counts
 *   on graph nodes, so a forward pass under grad whose result is dropped leaks nothing);
 * - `reshape` views share one storage, freed with the last view.
 */
import type { Backend } from './backend.js';
import { GRADS, type GradRule } from './grads.js';
import { OPS, type DataArray, type DType, type OpAttrs, type OpInputs, type OpName, type TensorSpec, type TensorView } from './ops.js';
import { checkShape, sizeOf, type Shape } from './shape.js';

interface StorageRef {
  readonly backend: Backend;
  readonly storage: unknown;
  refs: number;
  /** The contents' number (see `TensorView.version`). */
  version: number;
}

let lastVersion = 0;
/**
 * A number no storage's contents have had before (see `TensorView.version`). Core numbers every
 * storage it makes and every in-place write; code that builds a `TensorView` by hand (a backend's
 * own tests) takes one here.
 */
export const nextVersion = (): number => ++lastVersion;

/** A recorded op application: what backward needs to differentiate it. */
interface Node {
  readonly name: string;
  readonly rule: GradRule;
  readonly inputs: Record<string, Tensor | readonly Tensor[]>;
  readonly outputs: readonly Tensor[];
  readonly attrs: unknown;
  /** Recorded nodes whose inputs include one of this node's outputs, not yet released. */
  consumers: number;
  /** Outputs not yet disposed by their owner. */
  liveOutputs: number;
  released: boolean;
}

const flat = (inputs: Record<string, Tensor | readonly Tensor[]>): Tensor[] =>
  Object.values(inputs).flatMap((v) => (Array.isArray(v) ? (v as Tensor[]) : [v as Tensor]));

/** An op's inputs without the optional ones left out (`undefined`). */
const given = <T>(inputs: Record<string, T | undefined>): Record<string, T> =>
  Object.fromEntries(Object.entries(inputs).filter((e): e is [string, T] => e[1] !== undefined));

/**
 * An n-dimensional array on a backend. Data stays on the device; reading it is explicit
 * (`await t.data()`). Free it with `dispose()`, a `using` declaration, or a `tidy` scope.
 */
export class Tensor implements Disposable {
  /** Element count. */
  readonly size: number;
  /** Whether gradients flow back to this tensor. */
  requiresGrad = false;
  /** The gradient accumulated by `backward()` (leaves only); owned by this tensor. */
  grad: Tensor | null = null;
  /** @internal the op that made this tensor while recording, if any. */
  producer: Node | null = null;
  /** @internal recorded nodes that saved this tensor for their backward. */
  graphRefs = 0;
  #disposed = false;
  #freed = false;
  /** @internal hooks run once `backward()` has finished this leaf's gradient. */
  gradHooks: ((t: Tensor) => void)[] | null = null;

  /** @internal use the factory functions (`tensor`, `zeros`, ...) instead. */
  constructor(
    /** Dimensions, outermost first. */
    readonly shape: readonly number[],
    /** Element type. */
    readonly dtype: DType,
    /** @internal */
    public ref: StorageRef,
  ) {
    this.size = sizeOf(shape);
    track(this);
  }

  /** Number of dimensions. */
  get rank(): number {
    return this.shape.length;
  }

  /**
   * Identifies the contents: it changes at every in-place write (`assign`, an optimizer step) and is
   * never reused, so a value derived from this tensor (folded weights, a packed copy) is current
   * exactly while the version it was made from is.
   */
  get version(): number {
    return this.ref.version;
  }

  /** True once `dispose()` was called. */
  get isDisposed(): boolean {
    return this.#disposed;
  }

  /** @internal the view kernels receive. */
  view(): TensorView {
    this.assertLive();
    return { storage: this.ref.storage, shape: this.shape, dtype: this.dtype, size: this.size, version: this.ref.version };
  }

  /** @internal */
  assertLive(what = 'used'): void {
    if (this.#freed) throw new Error(`tensor of shape [${this.shape.join(', ')}] was disposed and cannot be ${what}`);
  }

  /** Reads the elements (row-major) back to the host. */
  async data(): Promise<DataArray> {
    this.assertLive('read');
    return this.ref.backend.download(this.ref.storage, this.size, this.dtype);
  }

  /** Reads the elements synchronously; only backends whose memory the host sees (the CPU) allow it. */
  dataSync(): DataArray {
    this.assertLive('read');
    const read = this.ref.backend.readSync;
    if (!read) throw new Error(`backend '${this.ref.backend.name}' cannot read synchronously; use await tensor.data()`);
    return read.call(this.ref.backend, this.ref.storage, this.size, this.dtype);
  }

  /** The single element of a 1-element tensor. */
  async item(): Promise<number> {
    if (this.size !== 1) throw new Error(`item() needs a 1-element tensor, got shape [${this.shape.join(', ')}]`);
    return (await this.data())[0];
  }

  /** Marks this tensor as a leaf that gradients flow to (PyTorch's `requires_grad_`). */
  requireGrad(flag = true): this {
    if (flag && this.dtype !== 'f32') throw new Error(`only f32 tensors can require gradients, got ${this.dtype}`);
    if (this.producer && !flag) throw new Error('cannot stop gradients of a non-leaf tensor in place; use detach()');
    this.requiresGrad = flag;
    return this;
  }

  /** A tensor sharing this one's storage, cut from the graph. */
  detach(): Tensor {
    this.assertLive();
    this.ref.refs++;
    return new Tensor(this.shape, this.dtype, this.ref);
  }

  /**
   * Calls `hook(this)` whenever `backward()` has finished accumulating this leaf's gradient, while the
   * rest of the backward pass is still to run (PyTorch's `register_post_accumulate_grad_hook`):
   * data-parallel training starts reducing a gradient across processes as soon as it is ready. The
   * hook must not change the graph. Returns a function that removes it.
   */
  onGradReady(hook: (t: Tensor) => void): () => void {
    (this.gradHooks ??= []).push(hook);
    return () => {
      this.gradHooks = this.gradHooks?.filter((h) => h !== hook) ?? null;
    };
  }

  /** Keeps this tensor alive past the end of the enclosing `tidy` scopes. */
  keep(): this {
    untrack(this);
    return this;
  }

  /**
   * Reverse-mode differentiation from this tensor. `grad` defaults to ones for a 1-element tensor.
   * Gradients accumulate into `.grad` of every leaf that requires them; the graph is released afterwards.
   */
  backward(grad?: Tensor): void {
    backward(this, grad);
  }

  /**
   * Overwrites this tensor's elements with a copy of `src` (same shape and dtype), keeping its identity,
   * so optimizers and modules holding it see the new values. Used for loading weights and running statistics.
   * The copy is made on the active backend, which the tensor then lives on: a module built on the meta
   * backend (no weights drawn) becomes a real one by loading a state dict.
   */
  assign(src: Tensor): this {
    this.assertLive('assigned');
    if (src.shape.join() !== this.shape.join() || src.dtype !== this.dtype)
      throw new Error(`assign: source ${src.dtype}[${src.shape.join(', ')}] does not match target ${this.dtype}[${this.shape.join(', ')}]`);
    if (this.graphRefs > 0) throw new Error('assign: this tensor is still needed by a recorded graph; call backward() or dispose the graph first');
    const backend = getBackend();
    const [storage] = backend.kernels.copy({ x: src.view() }, {}, [{ shape: src.shape, dtype: src.dtype }]);
    if (--this.ref.refs === 0) this.ref.backend.free(this.ref.storage);
    this.ref = { backend, storage, refs: 1, version: nextVersion() };
    return this;
  }

  /**
   * @internal `assign` without the copy, for a `src` made only to be assigned (initialisers): this
   * tensor takes src's storage, its own is freed, and src is disposed. Falls back to `assign` when
   * src's storage is shared (a view) or held by a graph.
   */
  adopt(src: Tensor): this {
    if (src.ref.refs !== 1 || src.graphRefs > 0 || src.ref.backend !== this.ref.backend || src.#disposed) return this.assign(src);
    this.assertLive('assigned');
    if (src.shape.join() !== this.shape.join() || src.dtype !== this.dtype)
      throw new Error(`assign: source ${src.dtype}[${src.shape.join(', ')}] does not match target ${this.dtype}[${this.shape.join(', ')}]`);
    if (this.graphRefs > 0) throw new Error('assign: this tensor is still needed by a recorded graph; call backward() or dispose the graph first');
    if (--this.ref.refs === 0) this.ref.backend.free(this.ref.storage);
    this.ref = { backend: src.ref.backend, storage: src.ref.storage, refs: 1, version: nextVersion() };
    // src gives its storage away: disposed, without freeing what is now this tensor's.
    src.#freed = true;
    src.dispose();
    return this;
  }

  /** Frees the storage (deferred while a recorded op still needs it for backward). Idempotent. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    untrack(this);
    if (this.grad) {
      this.grad.dispose();
      this.grad = null;
    }
    const p = this.producer;
    if (p) {
      p.liveOutputs--;
      maybeRelease(p);
    }
    this.maybeFree();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  /** @internal frees the storage once disposed and no graph needs it. */
  maybeFree(): void {
    if (this.#freed || !this.#disposed || this.graphRefs > 0) return;
    this.#freed = true;
    if (--this.ref.refs === 0) this.ref.backend.free(this.ref.storage);
  }

  toString(): string {
    return `Tensor(${this.dtype}[${this.shape.join(', ')}]${this.requiresGrad ? ', requiresGrad' : ''})`;
  }
}

// ---------------------------------------------------------------------------------------------
// Backend

let active: Backend | null = null;

/** Makes `backend` the one every op runs on. Tensors of the previous backend stay readable. */
export const setBackend = <S>(backend: Backend<S>): Backend<S> => {
  active = backend as unknown as Backend;
  return backend;
};

/** The active backend; throws a clear message when none was chosen. */
export const getBackend = (): Backend => {
  if (!active) throw new Error("no backend selected: call `await useBackend('cpu' | 'webgpu' | 'auto')` or setBackend(createCpuBackend()) first");
  return active;
};

/** The active backend, or null. */
export const currentBackend = (): Backend | null => active;

// ---------------------------------------------------------------------------------------------
// Scopes

const scopes: Set<Tensor>[] = [];

const track = (t: Tensor) => {
  scopes[scopes.length - 1]?.add(t);
};
const untrack = (t: Tensor) => {
  for (let i = scopes.length - 1; i >= 0; i--) if (scopes[i].delete(t)) return;
};

/** Tensors found in a (nested) result value: arrays, plain objects, Maps. */
const tensorsIn = (value: unknown, out = new Set<Tensor>()): Set<Tensor> => {
  if (value instanceof Tensor) out.add(value);
  else if (Array.isArray(value)) value.forEach((v) => tensorsIn(v, out));
  else if (value instanceof Map) value.forEach((v) => tensorsIn(v, out));
  else if (value && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype)
    Object.values(value).forEach((v) => tensorsIn(v, out));
  return out;
};

/**
 * Runs `fn` and disposes every tensor it made, except those it returns (anywhere inside arrays,
 * plain objects or Maps) and those it `keep()`s. Synchronous: do not pass an async function.
 */
export const tidy = <T>(fn: () => T): T => {
  const scope = new Set<Tensor>();
  scopes.push(scope);
  let result: T;
  try {
    result = fn();
    if (result instanceof Promise) throw new Error('tidy() takes a synchronous function; await outside it');
  } catch (e) {
    scopes.pop();
    for (const t of scope) t.dispose();
    throw e;
  }
  scopes.pop();
  const keep = tensorsIn(result);
  for (const t of scope) if (!keep.has(t)) t.dispose();
  for (const t of keep) if (scope.has(t)) track(t);
  return result;
};

let gradEnabled = true;

/** Runs `fn` without recording anything for autograd (inference, optimizer updates). */
export const noGrad = <T>(fn: () => T): T => {
  const prev = gradEnabled;
  gradEnabled = false;
  try {
    return fn();
  } finally {
    gradEnabled = prev;
  }
};

/** Whether ops are being recorded for autograd right now. */
export const isGradEnabled = (): boolean => gradEnabled;

// ---------------------------------------------------------------------------------------------
// Dispatch

type TensorInputs<K extends OpName> = { [P in keyof OpInputs<K>]: OpInputs<K>[P] extends readonly unknown[] ? readonly Tensor[] : Tensor };

const specOf = (t: Tensor): TensorSpec => {
  t.assertLive();
  return { shape: t.shape, dtype: t.dtype };
};

/** Wraps a new storage from `backend` as a tensor. */
export const wrap = (backend: Backend, storage: unknown, shape: Shape, dtype: DType): Tensor =>
  new Tensor([...shape], dtype, { backend, storage, refs: 1, version: nextVersion() });

/**
 * Runs one op of the interface: validates the inputs through the op's declaration, dispatches to the
 * active backend's kernel, and records the op for autograd when an input requires gradients.
 */
export const runOp = <K extends OpName>(name: K, allInputs: TensorInputs<K>, attrs: OpAttrs<K>): Tensor[] => {
  const backend = getBackend();
  const inputs = given(allInputs as Record<string, Tensor | readonly Tensor[] | undefined>);
  const entries = Object.entries(inputs);
  const specs: Record<string, TensorSpec | TensorSpec[]> = {};
  const views: Record<string, TensorView | TensorView[]> = {};
  for (const [k, v] of entries) {
    if (Array.isArray(v)) {
      specs[k] = v.map(specOf);
      views[k] = v.map((t: Tensor) => t.view());
    } else {
      const t = v as Tensor;
      if (!(t instanceof Tensor)) throw new TypeError(`${name}: input '${k}' is not a Tensor`);
      specs[k] = specOf(t);
      views[k] = t.view();
    }
  }
  for (const [k, v] of entries)
    for (const t of Array.isArray(v) ? v : [v as Tensor])
      if (t.ref.backend !== backend)
        throw new Error(`${name}: input '${k}' lives on backend '${t.ref.backend.name}', the active backend is '${backend.name}'`);
  const decl = OPS[name] as { outputs: (i: unknown, a: unknown) => TensorSpec[]; writes?: readonly string[] };
  const outSpecs = decl.outputs(specs, attrs);
  const kernel = backend.kernels[name] as (i: unknown, a: unknown, o: readonly TensorSpec[]) => unknown[];
  const storages = kernel(views, attrs, outSpecs);
  for (const k of decl.writes ?? []) (inputs[k] as Tensor).ref.version = nextVersion();
  const outputs = outSpecs.map((s, i) => wrap(backend, storages[i], s.shape, s.dtype));
  const rule = GRADS[name as keyof typeof GRADS] as GradRule | undefined;
  if (rule) record(name, rule, inputs, outputs, attrs);
  return outputs;
};

/**
 * Runs a step outside the op interface as one differentiable node (PyTorch's `autograd.Function`):
 * `forward` runs with gradients off and must return new tensors; when an input requires gradients,
 * `backward` (output gradients in, input gradients out, written with ops) is recorded as their rule.
 * Meant for steps that are not maths, such as a collective across processes; maths belongs in the
 * op interface and `grads.ts`.
 */
export const customOp = (name: string, inputs: Record<string, Tensor>, forward: () => Tensor[], backward: GradRule['backward']): Tensor[] => {
  const outputs = noGrad(forward);
  if (outputs.some((o) => Object.values(inputs).includes(o))) throw new Error(`customOp '${name}': forward must return new tensors, not its inputs`);
  record(name, { backward }, inputs, outputs, undefined);
  return outputs;
};

/**
 * Records an op on the autograd graph if gradients are enabled and an input requires them.
 * Used by `runOp` and by ops that need no kernel (reshape views).
 */
export const record = (
  name: string, rule: GradRule, inputs: Record<string, Tensor | readonly Tensor[]>, outputs: readonly Tensor[], attrs: unknown,
): void => {
  if (!gradEnabled) return;
  const ins = flat(inputs);
  if (!ins.some((t) => t.requiresGrad)) return;
  const node: Node = { name, rule, inputs, outputs, attrs, consumers: 0, liveOutputs: outputs.length, released: false };
  for (const t of ins) {
    t.graphRefs++;
    if (t.producer && !t.producer.released) t.producer.consumers++;
  }
  const diff = rule.differentiableOutputs;
  outputs.forEach((o, i) => {
    o.graphRefs++;
    o.producer = node;
    o.requiresGrad = diff ? diff.includes(i) : true;
  });
};

const maybeRelease = (node: Node) => {
  if (!node.released && node.liveOutputs === 0 && node.consumers === 0) release(node);
};

const release = (node: Node) => {
  if (node.released) return;
  node.released = true;
  for (const o of node.outputs) {
    if (o.producer === node) o.producer = null;
    o.graphRefs--;
    o.maybeFree();
  }
  for (const t of flat(node.inputs)) {
    t.graphRefs--;
    const p = t.producer;
    if (p && !p.released) {
      p.consumers--;
      maybeRelease(p);
    }
    t.maybeFree();
  }
};

// ---------------------------------------------------------------------------------------------
// Backward

const topoOrder = (root: Node): Node[] => {
  const order: Node[] = [];
  const seen = new Set<Node>();
  const stack: [Node, boolean][] = [[root, false]];
  while (stack.length) {
    const [n, done] = stack.pop()!;
    if (done) {
      order.push(n);
      continue;
    }
    if (seen.has(n)) continue;
    seen.add(n);
    stack.push([n, true]);
    for (const t of flat(n.inputs)) if (t.producer && !t.producer.released && !seen.has(t.producer)) stack.push([t.producer, false]);
  }
  return order; // inputs before consumers
};

const accumulate = (a: Tensor | null, b: Tensor): Tensor => {
  if (!a) return b;
  const [sum] = runOp('binary', { a, b }, { fn: 'add' });
  a.dispose();
  b.dispose();
  return sum;
};

const backward = (root: Tensor, seed?: Tensor) => {
  if (!root.requiresGrad) throw new Error('backward(): this tensor does not require gradients (no input of its graph called requireGrad())');
  if (!seed && root.size !== 1) throw new Error(`backward(): pass a gradient for a non-scalar output of shape [${root.shape.join(', ')}]`);
  noGrad(() => {
    const g = seed ?? runOp('fill', {}, { shape: root.shape, dtype: 'f32', value: 1 })[0];
    if (seed && seed.shape.join() !== root.shape.join())
      throw new Error(`backward(): gradient shape [${seed.shape.join(', ')}] differs from the output's [${root.shape.join(', ')}]`);
    const leafGrad = (t: Tensor, dt: Tensor) => {
      untrack(dt);
      t.grad = accumulate(t.grad, dt);
      untrack(t.grad);
    };
    const ready = (t: Tensor) => t.gradHooks?.forEach((h) => h(t));
    if (!root.producer) {
      leafGrad(root, seed ? seed.detach() : g);
      ready(root);
      return;
    }
    const order = topoOrder(root.producer);
    // Leaves with hooks: how many recorded uses are still to deliver a gradient; the hooks run at zero.
    const uses = new Map<Tensor, number>();
    const leavesOf = (node: Node) => flat(node.inputs).filter((t) => t.gradHooks?.length && t.requiresGrad && !(t.producer && !t.producer.released));
    for (const node of order) for (const t of leavesOf(node)) uses.set(t, (uses.get(t) ?? 0) + 1);
    const delivered = (node: Node) => {
      if (uses.size === 0) return;
      for (const t of leavesOf(node)) {
        const left = uses.get(t)! - 1;
        uses.set(t, left);
        if (left === 0 && t.grad) ready(t);
      }
    };
    const grads = new Map<Node, (Tensor | null)[]>();
    const rootNode = root.producer;
    grads.set(rootNode, rootNode.outputs.map((o) => (o === root ? (seed ? seed.detach() : g) : null)));
    for (let i = order.length - 1; i >= 0; i--) {
      const node = order[i];
      const dys = grads.get(node);
      grads.delete(node);
      if (!dys || dys.every((d) => d === null)) {
        delivered(node);
        continue;
      }
      const dxs = tidy(() => node.rule.backward({ inputs: node.inputs, outputs: node.outputs, attrs: node.attrs }, dys));
      // A rule may pass an output gradient through, or return one tensor for two inputs (add):
      // each use after the first gets its own view of the storage, so every gradient has one owner.
      const owned = new Set<Tensor>();
      const unused: Tensor[] = [];
      const own = (d: Tensor) => {
        const t = owned.has(d) ? d.detach() : d;
        owned.add(t);
        return t;
      };
      for (const [key, value] of Object.entries(node.inputs)) {
        const ts = Array.isArray(value) ? (value as Tensor[]) : [value as Tensor];
        const ds = dxs[key];
        const dl = Array.isArray(ds) ? ds : [ds];
        ts.forEach((t, j) => {
          const d0 = dl[j] ?? null;
          if (!d0) return;
          const d = own(d0);
          if (!t.requiresGrad) {
            unused.push(d);
            return;
          }
          if (d.shape.join() !== t.shape.join())
            throw new Error(`internal: gradient rule of '${node.name}' returned shape [${d.shape}] for input '${key}' of shape [${t.shape}]`);
          const p = t.producer;
          if (p && !p.released) {
            const slot = grads.get(p) ?? p.outputs.map(() => null);
            const k = p.outputs.indexOf(t);
            slot[k] = accumulate(slot[k], d);
            grads.set(p, slot);
          } else leafGrad(t, d);
        });
      }
      for (const d of unused) d.dispose();
      for (const d of dys) if (d && !owned.has(d)) d.dispose();
      delivered(node);
    }
    for (const node of order) release(node);
  });
};
