/**
 * A reader of Python's pickle format that runs nothing. Pickle is a small stack machine whose GLOBAL
 * and REDUCE opcodes import and call any Python function, which is how a pickle runs code on load.
 * Here a global is looked up in the caller's allowlist the moment it is named, and refused otherwise;
 * REDUCE, BUILD and persistent ids go to the caller's hooks, which build plain values. Only the opcodes
 * `torch.save` emits for a state dict (protocol 2, and 4/5 when asked for) are known; any other is
 * refused by name. Memory is bounded by the input: every length is checked against the bytes left.
 * Needs no Node API.
 */

/** A pickle this reader refuses or cannot parse; the message names the source, the byte and the opcode or global. */
export class PickleError extends Error {
  override name = 'PickleError';
}

/** A global the pickle named and the allowlist let through; what calling it means is up to `reduce`. */
export class PickleGlobal {
  constructor(readonly module: string, readonly name: string) {}
  toString(): string {
    return `${this.module}.${this.name}`;
  }
}

/** What a pickle may do beyond building lists, tuples (frozen arrays), dicts (Maps), numbers and strings. */
export interface PickleHooks {
  /** Named at the start of every error (a file and an entry in it). */
  readonly label: string;
  /** `module.name` of every global the pickle may name; any other is refused before it is used. */
  readonly globals: ReadonlySet<string>;
  /** REDUCE: calls an allowed global on its arguments. Throw to refuse. */
  reduce(fn: PickleGlobal, args: readonly unknown[]): unknown;
  /** BINPERSID: what a persistent id stands for. */
  persistentLoad(pid: unknown): unknown;
  /** BUILD: sets state on an object. Throw to refuse. */
  build(obj: unknown, state: unknown): void;
}

// pickletools' name of every opcode, so a refusal says which one; the switch below handles a subset.
const OPCODE_NAMES: Record<number, string> = {
  0x28: 'MARK', 0x29: 'EMPTY_TUPLE', 0x2e: 'STOP', 0x30: 'POP', 0x31: 'POP_MARK', 0x32: 'DUP', 0x42: 'BINBYTES',
  0x43: 'SHORT_BINBYTES', 0x46: 'FLOAT', 0x47: 'BINFLOAT', 0x49: 'INT', 0x4a: 'BININT', 0x4b: 'BININT1', 0x4c: 'LONG',
  0x4d: 'BININT2', 0x4e: 'NONE', 0x50: 'PERSID', 0x51: 'BINPERSID', 0x52: 'REDUCE', 0x53: 'STRING', 0x54: 'BINSTRING',
  0x55: 'SHORT_BINSTRING', 0x56: 'UNICODE', 0x58: 'BINUNICODE', 0x5d: 'EMPTY_LIST', 0x61: 'APPEND', 0x62: 'BUILD',
  0x63: 'GLOBAL', 0x64: 'DICT', 0x65: 'APPENDS', 0x67: 'GET', 0x68: 'BINGET', 0x69: 'INST', 0x6a: 'LONG_BINGET',
  0x6c: 'LIST', 0x6f: 'OBJ', 0x70: 'PUT', 0x71: 'BINPUT', 0x72: 'LONG_BINPUT', 0x73: 'SETITEM', 0x74: 'TUPLE',
  0x75: 'SETITEMS', 0x7d: 'EMPTY_DICT', 0x80: 'PROTO', 0x81: 'NEWOBJ', 0x82: 'EXT1', 0x83: 'EXT2', 0x84: 'EXT4',
  0x85: 'TUPLE1', 0x86: 'TUPLE2', 0x87: 'TUPLE3', 0x88: 'NEWTRUE', 0x89: 'NEWFALSE', 0x8a: 'LONG1', 0x8b: 'LONG4',
  0x8c: 'SHORT_BINUNICODE', 0x8d: 'BINUNICODE8', 0x8e: 'BINBYTES8', 0x8f: 'EMPTY_SET', 0x90: 'ADDITEMS',
  0x91: 'FROZENSET', 0x92: 'NEWOBJ_EX', 0x93: 'STACK_GLOBAL', 0x94: 'MEMOIZE', 0x95: 'FRAME', 0x96: 'BYTEARRAY8',
  0x97: 'NEXT_BUFFER', 0x98: 'READONLY_BUFFER',
};

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Runs the pickle in `bytes` through the restricted machine and returns the object it builds. */
export const unpickle = (bytes: Uint8Array, hooks: PickleHooks): unknown => {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const stack: unknown[] = [];
  const marks: number[] = [];
  const memo = new Map<number, unknown>();
  let pos = 0;
  let at = 0; // where the current opcode starts, for errors

  const opName = (op: number) => `${OPCODE_NAMES[op] ?? 'an unknown opcode'} (0x${op.toString(16).padStart(2, '0')})`;
  const fail = (msg: string) => new PickleError(`${hooks.label}, byte ${at}: ${msg}`);
  const take = (n: number): number => {
    if (n > bytes.length - pos) throw fail(`${opName(bytes[at])} needs ${n} bytes, the pickle has ${bytes.length - pos} left (truncated?)`);
    const start = pos;
    pos += n;
    return start;
  };
  const text = (n: number): string => {
    const start = take(n);
    try {
      return utf8.decode(bytes.subarray(start, start + n));
    } catch {
      throw fail('a string is not valid UTF-8');
    }
  };
  const line = (): string => {
    const end = bytes.indexOf(0x0a, pos);
    if (end < 0) throw fail('GLOBAL: the name runs to the end of the pickle');
    const s = text(end - pos);
    pos++; // the newline
    return s;
  };
  // As in Python's unpickler, a MARK hides what lies below it until the opcode that pops it.
  const pop = (): unknown => {
    if (stack.length === (marks.at(-1) ?? 0)) throw fail(`${opName(bytes[at])} found too few values on the stack`);
    return stack.pop();
  };
  const top = (): unknown => {
    if (stack.length === (marks.at(-1) ?? 0)) throw fail(`${opName(bytes[at])} found no value on the stack`);
    return stack[stack.length - 1];
  };
  const popMark = (): unknown[] => {
    const m = marks.pop();
    if (m === undefined) throw fail(`${opName(bytes[at])} without a MARK`);
    return stack.splice(m);
  };
  const tuple = (items: unknown[]) => Object.freeze(items);
  const list = (): unknown[] => {
    const l = top();
    if (!Array.isArray(l) || Object.isFrozen(l)) throw fail(`${opName(bytes[at])} on something that is not a list`);
    return l;
  };
  const dict = (): Map<unknown, unknown> => {
    const d = top();
    if (!(d instanceof Map)) throw fail(`${opName(bytes[at])} on something that is not a dict`);
    return d;
  };
  const global = (module: unknown, name: unknown): PickleGlobal => {
    if (typeof module !== 'string' || typeof name !== 'string') throw fail('STACK_GLOBAL needs two strings');
    const g = new PickleGlobal(module, name);
    if (!hooks.globals.has(String(g)))
      throw fail(`refused global ${g}: not one a tensor state dict needs; nothing was run`);
    return g;
  };
  const hook = <T>(f: () => T): T => {
    try {
      return f();
    } catch (e) {
      throw e instanceof PickleError ? e : fail((e as Error).message);
    }
  };
  const memoGet = (i: number) => {
    if (!memo.has(i)) throw fail(`memo ${i} was never stored`);
    return memo.get(i);
  };
  const memoPut = (i: number) => memo.set(i, top());

  for (;;) {
    at = pos;
    if (pos === bytes.length) throw fail('the pickle ends before its STOP opcode (truncated?)');
    const op = bytes[take(1)];
    switch (op) {
      case 0x80: { // PROTO
        const v = bytes[take(1)];
        if (v > 5) throw fail(`pickle protocol ${v} is newer than 5`);
        break;
      }
      case 0x95: take(8); break; // FRAME: a read-ahead hint; the whole pickle is in memory anyway
      case 0x2e: { // STOP
        const result = pop();
        if (stack.length || marks.length) throw fail('STOP with values left on the stack');
        return result;
      }
      case 0x28: marks.push(stack.length); break; // MARK
      case 0x63: stack.push(global(line(), line())); break; // GLOBAL
      case 0x93: { // STACK_GLOBAL
        const name = pop();
        stack.push(global(pop(), name));
        break;
      }
      case 0x51: { // BINPERSID
        const pid = pop();
        stack.push(hook(() => hooks.persistentLoad(pid)));
        break;
      }
      case 0x52: { // REDUCE
        const args = pop();
        const fn = pop();
        if (!(fn instanceof PickleGlobal) || !Array.isArray(args)) throw fail('REDUCE needs a global and a tuple of arguments');
        stack.push(hook(() => hooks.reduce(fn, args)));
        break;
      }
      case 0x62: { // BUILD
        const state = pop();
        const obj = top();
        hook(() => hooks.build(obj, state));
        break;
      }
      case 0x29: stack.push(tuple([])); break; // EMPTY_TUPLE
      case 0x74: stack.push(tuple(popMark())); break; // TUPLE
      case 0x85: case 0x86: case 0x87: { // TUPLE1, TUPLE2, TUPLE3
        const items = Array.from({ length: op - 0x84 }, pop).reverse();
        stack.push(tuple(items));
        break;
      }
      case 0x5d: stack.push([]); break; // EMPTY_LIST
      case 0x61: { // APPEND
        const v = pop();
        list().push(v);
        break;
      }
      case 0x65: { // APPENDS
        const items = popMark();
        list().push(...items);
        break;
      }
      case 0x7d: stack.push(new Map()); break; // EMPTY_DICT
      case 0x73: { // SETITEM
        const v = pop();
        const k = pop();
        dict().set(k, v);
        break;
      }
      case 0x75: { // SETITEMS
        const items = popMark();
        if (items.length % 2) throw fail('SETITEMS with an odd number of values');
        const d = dict();
        for (let i = 0; i < items.length; i += 2) d.set(items[i], items[i + 1]);
        break;
      }
      case 0x4e: stack.push(null); break; // NONE
      case 0x88: stack.push(true); break; // NEWTRUE
      case 0x89: stack.push(false); break; // NEWFALSE
      case 0x4a: stack.push(view.getInt32(take(4), true)); break; // BININT
      case 0x4b: stack.push(bytes[take(1)]); break; // BININT1
      case 0x4d: stack.push(view.getUint16(take(2), true)); break; // BININT2
      case 0x8a: { // LONG1: little-endian two's complement, kept exact (a bigint when past 2^53)
        const n = bytes[take(1)];
        const start = take(n);
        let v = 0n;
        for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[start + i]);
        if (n > 0 && bytes[start + n - 1] & 0x80) v -= 1n << BigInt(8 * n);
        stack.push(v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v);
        break;
      }
      case 0x47: stack.push(view.getFloat64(take(8), false)); break; // BINFLOAT (big-endian)
      case 0x8c: stack.push(text(bytes[take(1)])); break; // SHORT_BINUNICODE
      case 0x58: stack.push(text(view.getUint32(take(4), true))); break; // BINUNICODE
      case 0x8d: { // BINUNICODE8
        const n = view.getBigUint64(take(8), true);
        stack.push(text(n > BigInt(bytes.length) ? bytes.length + 1 : Number(n)));
        break;
      }
      case 0x71: memoPut(bytes[take(1)]); break; // BINPUT
      case 0x72: memoPut(view.getUint32(take(4), true)); break; // LONG_BINPUT
      case 0x94: memoPut(memo.size); break; // MEMOIZE
      case 0x68: stack.push(memoGet(bytes[take(1)])); break; // BINGET
      case 0x6a: stack.push(memoGet(view.getUint32(take(4), true))); break; // LONG_BINGET
      default:
        throw fail(`refused opcode ${opName(op)}: not one a tensor state dict needs; nothing was run`);
    }
  }
};
