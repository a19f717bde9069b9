import { describe, expect, it } from 'vitest';
import { IMAGENET_LABELS, IMAGENET_WNIDS } from './index.js';

describe('ImageNet-1k classes', () => {
  it('has 1000 distinct WordNet noun ids', () => {
    expect(IMAGENET_WNIDS.length).toBe(1000);
    expect(new Set(IMAGENET_WNIDS).size).toBe(1000);
    for (const id of IMAGENET_WNIDS) expect(id).toMatch(/^n\d{8}$/);
  });

  it('is in sorted wnid order, which is how ImageNet numbers its classes', () => {
    for (let i = 1; i < IMAGENET_WNIDS.length; i++) expect(IMAGENET_WNIDS[i - 1] < IMAGENET_WNIDS[i]).toBe(true);
  });

  it('has 1000 distinct non-empty names', () => {
    expect(IMAGENET_LABELS.length).toBe(1000);
    expect(new Set(IMAGENET_LABELS).size).toBe(1000);
    for (const name of IMAGENET_LABELS) expect(name.trim()).not.toBe('');
  });

  it.each([
    [0, 'n01440764', 'tench'],
    [1, 'n01443537', 'goldfish'],
    [207, 'n02099601', 'golden retriever'],
    [281, 'n02123045', 'tabby'],
    [999, 'n15075141', 'toilet tissue'],
  ] as const)('class %i is %s (%s)', (index, wnid, label) => {
    expect(IMAGENET_WNIDS[index]).toBe(wnid);
    expect(IMAGENET_LABELS[index]).toBe(label);
  });
});
