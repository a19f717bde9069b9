import { describe, expect, it } from 'vitest';
import { createMetaBackend, setBackend } from '@residual/core';
import { MODELS, profile, resnet18, resnet50, resnet20, type ModelName } from './index.js';

const keysOf = (name: ModelName, opts = {}) => {
  setBackend(createMetaBackend());
  return [...MODELS[name](opts).stateDict().keys()];
};

describe('parameter counts (section 4.2, Table 6)', () => {
  it.each([
    ['resnet20', 0.27], ['resnet32', 0.46], ['resnet44', 0.66], ['resnet56', 0.85], ['resnet110', 1.7], ['resnet1202', 19.4],
  ] as const)('%s has %sM parameters', (name, millions) => {
    const { parameters } = profile(() => MODELS[name](), [1, 3, 32, 32]);
    // rounded to as many decimals as the paper prints
    const decimals = String(millions).split('.')[1]?.length ?? 0;
    expect(Number((parameters / 1e6).toFixed(decimals))).toBe(millions);
  });

  it('plain twins have the same parameters as option-A ResNets (the shortcuts are free)', () => {
    expect(profile(() => MODELS.plain20(), [1, 3, 32, 32]).parameters).toBe(profile(() => resnet20(), [1, 3, 32, 32]).parameters);
  });

  it('matches torchvision for the ImageNet models', () => {
    expect(profile(() => resnet18(), [1, 3, 224, 224]).parameters).toBe(11_689_512);
    expect(profile(() => resnet50(), [1, 3, 224, 224]).parameters).toBe(25_557_032);
    expect(profile(() => MODELS.resnet101(), [1, 3, 224, 224]).parameters).toBe(44_549_160);
    expect(profile(() => MODELS.resnet152(), [1, 3, 224, 224]).parameters).toBe(60_192_808);
  });
});

describe('multiply-adds (Table 1)', () => {
  it.each([
    ['resnet18', 1.8], ['resnet34', 3.6], ['resnet50', 3.8], ['resnet101', 7.6], ['resnet152', 11.3],
  ] as const)('%s with the paper\'s V1 stride needs %s x 10^9', (name, giga) => {
    const { multiplyAdds } = profile(() => MODELS[name]({ bottleneckStride: 'v1' }), [1, 3, 224, 224]);
    // Table 1 truncates to one decimal; allow the rounding either way.
    expect(Math.abs(multiplyAdds / 1e9 - giga)).toBeLessThan(0.1);
  });

  it("torchvision's V1.5 ResNet-50 costs more (stride on the 3x3): 4.1 x 10^9", () => {
    expect(profile(() => resnet50(), [1, 3, 224, 224]).multiplyAdds / 1e9).toBeCloseTo(4.09, 2);
  });

  it('resnet20 at 32x32 needs about 41M multiply-adds', () => {
    expect(profile(() => resnet20(), [1, 3, 32, 32]).multiplyAdds / 1e6).toBeCloseTo(40.6, 0);
  });
});

describe("torchvision's names", () => {
  it('resnet18 has the 122 keys of torchvision, in its order', () => {
    const keys = keysOf('resnet18');
    expect(keys.length).toBe(122);
    expect(keys.slice(0, 7)).toEqual(['conv1.weight', 'bn1.weight', 'bn1.bias', 'bn1.running_mean', 'bn1.running_var', 'bn1.num_batches_tracked', 'layer1.0.conv1.weight']);
    expect(keys).toContain('layer2.0.downsample.0.weight');
    expect(keys).toContain('layer2.0.downsample.1.running_var');
    expect(keys).not.toContain('layer1.0.downsample.0.weight');
    expect(keys.slice(-2)).toEqual(['fc.weight', 'fc.bias']);
    expect(keys).toMatchSnapshot();
  });

  it('resnet50 has the 320 keys of torchvision', () => {
    const keys = keysOf('resnet50');
    expect(keys.length).toBe(320);
    expect(keys).toContain('layer1.0.downsample.0.weight');
    expect(keys).toContain('layer4.2.conv3.weight');
    expect(keys).toMatchSnapshot();
  });

  it.each(['resnet34', 'resnet101', 'resnet152', 'resnet20', 'resnet56', 'plain20'] as const)('%s key list is pinned', (name) => {
    expect(keysOf(name)).toMatchSnapshot();
  });

  it('CIFAR option A has no downsample; option B adds projections where the shape changes', () => {
    expect(keysOf('resnet20').some((k) => k.includes('downsample'))).toBe(false);
    const b = keysOf('resnet20', { shortcut: 'B' }).filter((k) => k.endsWith('downsample.0.weight'));
    expect(b).toEqual(['layer2.0.downsample.0.weight', 'layer3.0.downsample.0.weight']);
    const c = keysOf('resnet20', { shortcut: 'C' }).filter((k) => k.endsWith('downsample.0.weight'));
    expect(c.length).toBe(9);
  });
});
