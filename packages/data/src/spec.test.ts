import { describe, expect, it } from 'vitest';
import { parseDataSpec } from './spec.js';

describe('parseDataSpec', () => {
  it('parses every form, keeping colons inside the directory', () => {
    expect(parseDataSpec('imagenet:/data/in1k')).toEqual({ kind: 'imagenet', dir: '/data/in1k' });
    expect(parseDataSpec('cifar10:rel/dir')).toEqual({ kind: 'cifar10', dir: 'rel/dir' });
    expect(parseDataSpec('cifar100:C:\\data')).toEqual({ kind: 'cifar100', dir: 'C:\\data' });
    expect(parseDataSpec('builtin:shapes')).toEqual({ kind: 'builtin', name: 'shapes' });
    expect(parseDataSpec('shards:https://h/in/train-{000000..000127}.tar')).toEqual({ kind: 'shards', location: 'https://h/in/train-{000000..000127}.tar' });
  });

  it('names the spec in every error', () => {
    expect(() => parseDataSpec('mnist:/x')).toThrow(/"mnist:\/x": unknown kind "mnist"/);
    expect(() => parseDataSpec('/data/cifar')).toThrow(/"\/data\/cifar" has no kind/);
    expect(() => parseDataSpec('cifar10:')).toThrow(/"cifar10:" names no directory/);
    expect(() => parseDataSpec('shards:')).toThrow(/"shards:" names no shards/);
    expect(() => parseDataSpec('builtin:mnist')).toThrow(/"builtin:mnist": unknown built-in set "mnist"/);
  });
});
