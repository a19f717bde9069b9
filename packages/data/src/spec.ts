/** A data set named by a spec string: an ImageFolder tree, CIFAR's binary files, tar shards, or a built-in set. */
export type DataSpec =
  | { readonly kind: 'imagenet' | 'cifar10' | 'cifar100'; readonly dir: string }
  | { readonly kind: 'shards'; readonly location: string }
  | { readonly kind: 'builtin'; readonly name: 'shapes' };

const FORMS = 'imagenet:DIR, cifar10:DIR, cifar100:DIR, shards:PATTERN|DIR|URL or builtin:shapes';

/** Parses 'imagenet:DIR' | 'cifar10:DIR' | 'cifar100:DIR' | 'shards:LOCATION' | 'builtin:shapes'; errors name the spec. */
export function parseDataSpec(spec: string): DataSpec {
  const colon = spec.indexOf(':');
  if (colon < 0) throw new Error(`data spec "${spec}" has no kind; expected ${FORMS}`);
  const kind = spec.slice(0, colon);
  const rest = spec.slice(colon + 1);
  if (kind === 'builtin') {
    if (rest !== 'shapes') throw new Error(`data spec "${spec}": unknown built-in set "${rest}"; the one built-in set is builtin:shapes`);
    return { kind, name: rest };
  }
  if (kind === 'shards') {
    if (rest === '') throw new Error(`data spec "${spec}" names no shards; write shards:PATTERN (e.g. shards:train-{000000..000127}.tar) or shards:DIR`);
    return { kind, location: rest };
  }
  if (kind !== 'imagenet' && kind !== 'cifar10' && kind !== 'cifar100') {
    throw new Error(`data spec "${spec}": unknown kind "${kind}"; expected ${FORMS}`);
  }
  if (rest === '') throw new Error(`data spec "${spec}" names no directory; write ${kind}:DIR`);
  return { kind, dir: rest };
}
