import { describe, expect, it } from 'vitest';
import { createMetaBackend, Linear, setBackend } from '@residual/core';
import { createModel, MODELS, profile, resnet18, resnet50, resnet20, type ModelName } from './index.js';

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

describe('the baselines: AlexNet and VGG-16', () => {
  it.each([
    ['alexnet', 61_100_840], ['alexnet_original', 62_378_344], ['vgg16', 138_357_544], ['vgg16_bn', 138_365_992],
  ] as const)("%s has torchvision's (or, for the paper's AlexNet, its layers') %i parameters", (name, count) => {
    expect(profile(() => MODELS[name](), [1, 3, 224, 224]).parameters).toBe(count);
  });

  it("VGG-16's convolutions need 15.3 x 10^9 multiply-adds (section 4.1 and Table 3's comparison), its classifier 0.12 more", () => {
    const { multiplyAdds } = profile(() => MODELS.vgg16(), [1, 3, 224, 224]);
    setBackend(createMetaBackend());
    const classifier = MODELS.vgg16().classifier.layers.filter((m): m is Linear => m instanceof Linear).reduce((n, l) => n + l.weight.size, 0);
    expect(classifier).toBe(25088 * 4096 + 4096 * 4096 + 4096 * 1000);
    // The paper's 15.3 is the convolutions, 15.35 x 10^9 (its VGG-19 figure, 19.6, includes the classifier: 19.51 + 0.12).
    expect(((multiplyAdds - classifier) / 1e9).toFixed(1)).toBe('15.3');
    expect(multiplyAdds).toBe(15_470_264_320);
    expect(profile(() => MODELS.vgg16_bn(), [1, 3, 224, 224]).multiplyAdds).toBe(multiplyAdds);
    // "Our 34-layer baseline has 3.6 billion FLOPs ... only 18% of VGG-19"; against VGG-16, 24%.
    expect(profile(() => MODELS.resnet34({ bottleneckStride: 'v1' }), [1, 3, 224, 224]).multiplyAdds / multiplyAdds).toBeCloseTo(0.237, 3);
  });

  it("AlexNet needs 0.71 x 10^9 multiply-adds (torchvision's) and 1.14 x 10^9 (the paper's widths, one tower)", () => {
    expect(profile(() => MODELS.alexnet(), [1, 3, 224, 224]).multiplyAdds).toBe(714_188_480);
    expect(profile(() => MODELS.alexnet_original(), [1, 3, 224, 224]).multiplyAdds / 1e9).toBeCloseTo(1.135, 3);
  });

  it('say which inputs are too small for their pools', () => {
    expect(profile(() => MODELS.alexnet(), [1, 3, 63, 63]).multiplyAdds).toBeGreaterThan(0);
    expect(() => profile(() => MODELS.alexnet_original(), [1, 3, 62, 63])).toThrow('AlexNet: input must be at least 63x63 pixels, got 62x63');
    expect(profile(() => MODELS.vgg16(), [1, 3, 32, 32]).multiplyAdds).toBeGreaterThan(0);
    expect(() => profile(() => MODELS.vgg16_bn(), [1, 3, 32, 31])).toThrow('VGG: input must be at least 32x32 pixels (five 2x2 pools), got 32x31');
  });

  it('builds through createModel, rejecting the options of the other family', () => {
    setBackend(createMetaBackend());
    expect(createModel('vgg16', { numClasses: 10 }).numClasses).toBe(10);
    expect(createModel('alexnet').numClasses).toBe(1000);
    expect(() => createModel('alexnet', { shortcut: 'B' })).toThrow("createModel('alexnet'): it takes no option 'shortcut'");
    expect(() => createModel('resnet18', { dropout: 0.2 })).toThrow("createModel('resnet18'): it takes no option 'dropout'");
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

  it("alexnet, vgg16 and vgg16_bn have torchvision's keys, at its indices of features and classifier", () => {
    expect(keysOf('alexnet').filter((k) => k.endsWith('.weight'))).toEqual([
      'features.0.weight', 'features.3.weight', 'features.6.weight', 'features.8.weight', 'features.10.weight',
      'classifier.1.weight', 'classifier.4.weight', 'classifier.6.weight',
    ]);
    expect(keysOf('alexnet_original').filter((k) => k.endsWith('.weight'))).toEqual([
      'features.0.weight', 'features.4.weight', 'features.8.weight', 'features.10.weight', 'features.12.weight',
      'classifier.1.weight', 'classifier.4.weight', 'classifier.6.weight',
    ]);
    const vgg = keysOf('vgg16');
    expect(vgg.length).toBe(32);
    expect(vgg.slice(-6)).toEqual(['classifier.0.weight', 'classifier.0.bias', 'classifier.3.weight', 'classifier.3.bias', 'classifier.6.weight', 'classifier.6.bias']);
    expect(vgg).toContain('features.28.weight');
    const bn = keysOf('vgg16_bn');
    expect(bn.length).toBe(97);
    expect(bn.slice(0, 7)).toEqual(['features.0.weight', 'features.0.bias', 'features.1.weight', 'features.1.bias', 'features.1.running_mean', 'features.1.running_var', 'features.1.num_batches_tracked']);
    expect(bn).toContain('features.41.running_var');
  });

  it.each(['resnet34', 'resnet101', 'resnet152', 'resnet20', 'resnet56', 'plain20', 'alexnet', 'alexnet_original', 'vgg16', 'vgg16_bn'] as const)('%s key list is pinned', (name) => {
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
