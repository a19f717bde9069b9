/**
 * The networks of "Deep Residual Learning for Image Recognition" (He, Zhang, Ren, Sun, 2015), named
 * like torchvision's `resnet.py` so state dicts load without key mapping.
 *
 * Table 1 (ImageNet): conv1 7x7/2 -> maxpool 3x3/2 -> layer1..4 -> global average pool -> fc.
 * Section 4.2 (CIFAR-10): conv1 3x3 -> layer1..3 of n blocks with 16/32/64 filters -> pool -> fc, 6n+2 layers.
 */
import {
  BatchNorm2d, Conv2d, constant_, convBn, flatten, globalAvgPool2d, kaimingNormal_, Linear, maxPool2d, Module, pad,
  Sequential, type Tensor,
} from '@residual/core';
import { alexnet, AlexNet, alexnet_original, vgg16, VGG, vgg16_bn, type BaselineOptions } from './baselines.js';

/**
 * How a block's shortcut handles a change of shape (the paper's section 3.3):
 * A: identity, subsampled by the stride, with zero channels added (no parameters);
 * B: a 1x1 projection + batch-norm only where the shape changes, identity elsewhere;
 * C: a projection on every shortcut.
 */
export type Shortcut = 'A' | 'B' | 'C';

/** Where a bottleneck's stride goes: the paper's first 1x1 ('v1') or torchvision's 3x3 ('v1.5'). */
export type BottleneckStride = 'v1' | 'v1.5';

/** He initialisation mode: the paper's cited fan-in, or torchvision's fan-out. */
export type InitMode = 'fanIn' | 'fanOut';

/** Options shared by every builder. */
export interface ResNetOptions {
  numClasses?: number;
  shortcut?: Shortcut;
  /** False gives the paper's "plain" twin: the same layers with no shortcuts. */
  residual?: boolean;
  bottleneckStride?: BottleneckStride;
  /** Start each block's last batch-norm at zero so blocks begin as identities (torchvision's option). */
  zeroInitResidual?: boolean;
  /** Grouped 3x3 convolutions in bottlenecks (ResNeXt); 1 for ResNets. */
  groups?: number;
  /** Bottleneck width per group (64 for ResNets, 128 for wide ResNets). */
  widthPerGroup?: number;
  init?: InitMode;
}

const conv3x3 = (inC: number, outC: number, stride = 1, groups = 1) =>
  new Conv2d(inC, outC, 3, { stride, padding: 1, groups, bias: false });
const conv1x1 = (inC: number, outC: number, stride = 1) => new Conv2d(inC, outC, 1, { stride, bias: false });

/** Option A's zero channels, [before, after] the input's: the extra split evenly, an odd one after. */
export const optionAPadding = (inChannels: number, outChannels: number): [number, number] => {
  const before = Math.floor((outChannels - inChannels) / 2);
  return [before, outChannels - inChannels - before];
};

/** Option A: take every stride-th pixel and pad channels with zeros (`optionAPadding`). */
const zeroPadShortcut = (x: Tensor, stride: number, outChannels: number): Tensor => {
  const sub = stride === 1 ? x : maxPool2d(x, { kernelSize: 1, stride });
  if (outChannels === x.shape[1]) return sub;
  return pad(sub, [[0, 0], optionAPadding(x.shape[1], outChannels), [0, 0], [0, 0]]);
};

interface BlockConfig {
  inChannels: number;
  planes: number;
  stride: number;
  shortcut: Shortcut;
  residual: boolean;
  groups: number;
  widthPerGroup: number;
  bottleneckStride: BottleneckStride;
}

/**
 * A block's shortcut: null for a plain block, else the projection (conv + batch-norm) or option A's
 * zero-padded identity.
 */
const shortcutOf = (x: Tensor, c: BlockConfig, downsample: Sequential | null, outChannels: number): Tensor | undefined => {
  if (!c.residual) return undefined;
  if (!downsample) return zeroPadShortcut(x, c.stride, outChannels);
  const [conv, bn] = downsample.layers as [Conv2d, BatchNorm2d];
  return convBn(conv, bn, x);
};

/** Whether a block gets a projection (`downsample`) under the chosen option. */
const needsProjection = (c: BlockConfig, outChannels: number) =>
  c.residual && (c.shortcut === 'C' || (c.shortcut === 'B' && (c.stride !== 1 || c.inChannels !== outChannels)));

/** Two 3x3 convolutions (Figure 2 left). */
export class BasicBlock extends Module {
  static readonly expansion = 1;
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly conv2: Conv2d;
  readonly bn2: BatchNorm2d;
  readonly downsample: Sequential | null;

  constructor(readonly config: BlockConfig) {
    super();
    const { inChannels, planes, stride } = config;
    if (config.groups !== 1 || config.widthPerGroup !== 64) throw new Error('BasicBlock supports only groups=1 and widthPerGroup=64');
    this.conv1 = this.registerModule('conv1', conv3x3(inChannels, planes, stride));
    this.bn1 = this.registerModule('bn1', new BatchNorm2d(planes));
    this.conv2 = this.registerModule('conv2', conv3x3(planes, planes));
    this.bn2 = this.registerModule('bn2', new BatchNorm2d(planes));
    this.downsample = needsProjection(config, planes)
      ? this.registerModule('downsample', new Sequential(conv1x1(inChannels, planes, stride), new BatchNorm2d(planes)))
      : null;
  }

  /** The batch-norm closing the residual branch. */
  get lastBn(): BatchNorm2d {
    return this.bn2;
  }

  /** relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)); the addition and ReLUs are fused into bn1 and bn2. */
  forward(x: Tensor): Tensor {
    const identity = shortcutOf(x, this.config, this.downsample, this.config.planes);
    const out = convBn(this.conv1, this.bn1, x, { relu: true });
    return convBn(this.conv2, this.bn2, out, { residual: identity, relu: true });
  }
}

/** 1x1 reduce, 3x3, 1x1 expand by 4 (Figure 5 right). */
export class Bottleneck extends Module {
  static readonly expansion = 4;
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly conv2: Conv2d;
  readonly bn2: BatchNorm2d;
  readonly conv3: Conv2d;
  readonly bn3: BatchNorm2d;
  readonly downsample: Sequential | null;

  constructor(readonly config: BlockConfig) {
    super();
    const { inChannels, planes, stride, groups, widthPerGroup, bottleneckStride } = config;
    const width = Math.floor(planes * (widthPerGroup / 64)) * groups;
    const outC = planes * Bottleneck.expansion;
    const [s1, s3] = bottleneckStride === 'v1' ? [stride, 1] : [1, stride];
    this.conv1 = this.registerModule('conv1', conv1x1(inChannels, width, s1));
    this.bn1 = this.registerModule('bn1', new BatchNorm2d(width));
    this.conv2 = this.registerModule('conv2', conv3x3(width, width, s3, groups));
    this.bn2 = this.registerModule('bn2', new BatchNorm2d(width));
    this.conv3 = this.registerModule('conv3', conv1x1(width, outC));
    this.bn3 = this.registerModule('bn3', new BatchNorm2d(outC));
    this.downsample = needsProjection(config, outC)
      ? this.registerModule('downsample', new Sequential(conv1x1(inChannels, outC, stride), new BatchNorm2d(outC)))
      : null;
  }

  /** The batch-norm closing the residual branch. */
  get lastBn(): BatchNorm2d {
    return this.bn3;
  }

  /** relu(bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x)))))))) + shortcut(x)), epilogues fused as in BasicBlock. */
  forward(x: Tensor): Tensor {
    const identity = shortcutOf(x, this.config, this.downsample, this.config.planes * Bottleneck.expansion);
    let out = convBn(this.conv1, this.bn1, x, { relu: true });
    out = convBn(this.conv2, this.bn2, out, { relu: true });
    return convBn(this.conv3, this.bn3, out, { residual: identity, relu: true });
  }
}

type BlockClass = (typeof BasicBlock | typeof Bottleneck) & { expansion: number };

/** Initialises as the paper / torchvision do: He normal convolutions, BN weight 1 and bias 0. */
const initialise = (net: Module, mode: InitMode, zeroInitResidual: boolean) => {
  for (const [, m] of net.namedModules()) {
    if (m instanceof Conv2d) kaimingNormal_(m.weight, { mode, nonlinearity: 'relu' });
    else if (m instanceof BatchNorm2d) {
      constant_(m.weight, 1);
      constant_(m.bias, 0);
    }
  }
  if (zeroInitResidual)
    for (const [, m] of net.namedModules()) if (m instanceof BasicBlock || m instanceof Bottleneck) constant_(m.lastBn.weight, 0);
};

const resolve = (o: ResNetOptions, defaults: Required<ResNetOptions>) => ({ ...defaults, ...o });

/** A stage of blocks; the first may change stride and width. */
const makeLayer = (block: BlockClass, inChannels: number, planes: number, count: number, stride: number, o: Required<ResNetOptions>) => {
  const blocks: Module[] = [];
  for (let i = 0; i < count; i++) {
    const config: BlockConfig = {
      inChannels: i === 0 ? inChannels : planes * block.expansion,
      planes,
      stride: i === 0 ? stride : 1,
      shortcut: o.shortcut,
      residual: o.residual,
      groups: o.groups,
      widthPerGroup: o.widthPerGroup,
      bottleneckStride: o.bottleneckStride,
    };
    blocks.push(new block(config));
  }
  return new Sequential(...blocks);
};

/** The ImageNet networks of Table 1. */
export class ResNet extends Module {
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly layer1: Sequential;
  readonly layer2: Sequential;
  readonly layer3: Sequential;
  readonly layer4: Sequential;
  readonly fc: Linear;

  constructor(block: BlockClass, layers: readonly [number, number, number, number], options: ResNetOptions = {}) {
    super();
    const o = resolve(options, {
      numClasses: 1000, shortcut: 'B', residual: true, bottleneckStride: 'v1.5', zeroInitResidual: false, groups: 1, widthPerGroup: 64, init: 'fanOut',
    });
    this.conv1 = this.registerModule('conv1', new Conv2d(3, 64, 7, { stride: 2, padding: 3, bias: false }));
    this.bn1 = this.registerModule('bn1', new BatchNorm2d(64));
    const widths = [64, 128, 256, 512];
    let inC = 64;
    const stages = widths.map((planes, i) => {
      const layer = makeLayer(block, inC, planes, layers[i], i === 0 ? 1 : 2, o);
      inC = planes * block.expansion;
      return this.registerModule(`layer${i + 1}`, layer);
    });
    [this.layer1, this.layer2, this.layer3, this.layer4] = stages;
    this.fc = this.registerModule('fc', new Linear(512 * block.expansion, o.numClasses));
    initialise(this, o.init, o.zeroInitResidual);
  }

  /** Classes of the last layer. */
  get numClasses(): number {
    return this.fc.weight.shape[0];
  }

  /** Features before the classifier: [N, 512·expansion, H/32, W/32]. */
  features(x: Tensor): Tensor {
    if (x.rank !== 4 || x.shape[1] !== 3) throw new Error(`ResNet: input must be [N, 3, H, W], got [${x.shape.join(', ')}]`);
    let h = convBn(this.conv1, this.bn1, x, { relu: true });
    h = maxPool2d(h, { kernelSize: 3, stride: 2, padding: 1 });
    for (const layer of [this.layer1, this.layer2, this.layer3, this.layer4]) h = layer.forward(h);
    return h;
  }

  forward(x: Tensor): Tensor {
    return this.fc.forward(flatten(globalAvgPool2d(this.features(x))));
  }
}

/** The CIFAR-10 networks of section 4.2: 6n+2 layers, 16/32/64 filters, option A by default. */
export class CifarResNet extends Module {
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly layer1: Sequential;
  readonly layer2: Sequential;
  readonly layer3: Sequential;
  readonly fc: Linear;

  constructor(readonly n: number, options: ResNetOptions = {}) {
    super();
    if (!Number.isInteger(n) || n < 1) throw new Error(`CifarResNet: n must be a positive integer, got ${n}`);
    const o = resolve(options, {
      numClasses: 10, shortcut: 'A', residual: true, bottleneckStride: 'v1', zeroInitResidual: false, groups: 1, widthPerGroup: 64, init: 'fanIn',
    });
    this.conv1 = this.registerModule('conv1', conv3x3(3, 16));
    this.bn1 = this.registerModule('bn1', new BatchNorm2d(16));
    this.layer1 = this.registerModule('layer1', makeLayer(BasicBlock, 16, 16, n, 1, o));
    this.layer2 = this.registerModule('layer2', makeLayer(BasicBlock, 16, 32, n, 2, o));
    this.layer3 = this.registerModule('layer3', makeLayer(BasicBlock, 32, 64, n, 2, o));
    this.fc = this.registerModule('fc', new Linear(64, o.numClasses));
    initialise(this, o.init, o.zeroInitResidual);
  }

  /** Classes of the last layer. */
  get numClasses(): number {
    return this.fc.weight.shape[0];
  }

  /** Depth as the paper counts it: 6n + 2 weighted layers. */
  get depth(): number {
    return 6 * this.n + 2;
  }

  forward(x: Tensor): Tensor {
    if (x.rank !== 4 || x.shape[1] !== 3) throw new Error(`CifarResNet: input must be [N, 3, H, W], got [${x.shape.join(', ')}]`);
    let h = convBn(this.conv1, this.bn1, x, { relu: true });
    for (const layer of [this.layer1, this.layer2, this.layer3]) h = layer.forward(h);
    return this.fc.forward(flatten(globalAvgPool2d(h)));
  }
}

const imagenet = (block: BlockClass, layers: [number, number, number, number], residual: boolean) => (o: ResNetOptions = {}) =>
  new ResNet(block, layers, { residual, ...o });
const cifar = (n: number, residual: boolean) => (o: ResNetOptions = {}) => new CifarResNet(n, { residual, ...o });

/** ResNet-18 (Table 1). */ export const resnet18 = imagenet(BasicBlock, [2, 2, 2, 2], true);
/** ResNet-34 (Table 1). */ export const resnet34 = imagenet(BasicBlock, [3, 4, 6, 3], true);
/** ResNet-50 (Table 1). */ export const resnet50 = imagenet(Bottleneck, [3, 4, 6, 3], true);
/** ResNet-101 (Table 1). */ export const resnet101 = imagenet(Bottleneck, [3, 4, 23, 3], true);
/** ResNet-152 (Table 1). */ export const resnet152 = imagenet(Bottleneck, [3, 8, 36, 3], true);
/** Plain 18-layer twin. */ export const plain18 = imagenet(BasicBlock, [2, 2, 2, 2], false);
/** Plain 34-layer twin. */ export const plain34 = imagenet(BasicBlock, [3, 4, 6, 3], false);
/** Plain 50-layer twin. */ export const plain50 = imagenet(Bottleneck, [3, 4, 6, 3], false);
/** Plain 101-layer twin. */ export const plain101 = imagenet(Bottleneck, [3, 4, 23, 3], false);
/** Plain 152-layer twin. */ export const plain152 = imagenet(Bottleneck, [3, 8, 36, 3], false);

/** CIFAR ResNet-20 (n = 3). */ export const resnet20 = cifar(3, true);
/** CIFAR ResNet-32 (n = 5). */ export const resnet32 = cifar(5, true);
/** CIFAR ResNet-44 (n = 7). */ export const resnet44 = cifar(7, true);
/** CIFAR ResNet-56 (n = 9). */ export const resnet56 = cifar(9, true);
/** CIFAR ResNet-110 (n = 18). */ export const resnet110 = cifar(18, true);
/** CIFAR ResNet-1202 (n = 200). */ export const resnet1202 = cifar(200, true);
/** CIFAR plain-20. */ export const plain20 = cifar(3, false);
/** CIFAR plain-32. */ export const plain32 = cifar(5, false);
/** CIFAR plain-44. */ export const plain44 = cifar(7, false);
/** CIFAR plain-56. */ export const plain56 = cifar(9, false);
/** CIFAR plain-110. */ export const plain110 = cifar(18, false);

/** The baselines of the paper's comparisons (see baselines.ts), by torchvision's names. */
export const BASELINES = { alexnet, alexnet_original, vgg16, vgg16_bn } as const;

/** Every builder by name, for the CLI and configs. */
export const MODELS = {
  resnet18, resnet34, resnet50, resnet101, resnet152, plain18, plain34, plain50, plain101, plain152,
  resnet20, resnet32, resnet44, resnet56, resnet110, resnet1202, plain20, plain32, plain44, plain56, plain110,
  ...BASELINES,
} as const;

/** A model name `createModel` accepts. */
export type ModelName = keyof typeof MODELS;

/** Any network `createModel` builds. */
export type ImageClassifier = ResNet | CifarResNet | AlexNet | VGG;

/** Options `createModel` passes on: a ResNet's, or a baseline's (`numClasses` is common to all). */
export type ModelOptions = ResNetOptions | BaselineOptions;

/** Whether a model is one of the CIFAR networks (32x32 inputs). */
export const isCifarModel = (name: ModelName): boolean => /^(resnet|plain)(20|32|44|56|110|1202)$/.test(name);

/** The state-dict key of a model's last weight, whose rows are its classes: `fc.weight`, or `classifier.6.weight` for the baselines. */
export const classifierKey = (name: ModelName): string => (name in BASELINES ? 'classifier.6.weight' : 'fc.weight');

/** Builds a model by name; an unknown name lists the known ones, and an option the model does not take is an error. */
export function createModel<N extends ModelName>(name: N, options?: ModelOptions): ReturnType<(typeof MODELS)[N]>;
export function createModel(name: string, options?: ModelOptions): ImageClassifier;
export function createModel(name: string, options: ModelOptions = {}): ImageClassifier {
  const build = (MODELS as Record<string, (o?: ModelOptions) => ImageClassifier>)[name];
  if (!build) throw new Error(`unknown model '${name}'; known: ${Object.keys(MODELS).join(', ')}`);
  const foreign = name in BASELINES ? Object.keys(options).filter((k) => k !== 'numClasses' && k !== 'dropout') : 'dropout' in options ? ['dropout'] : [];
  if (foreign.length) throw new Error(`createModel('${name}'): it takes no option ${foreign.map((k) => `'${k}'`).join(', ')}`);
  return build(options);
}
