/**
 * The baselines the ResNet paper measures itself against, named like torchvision's `alexnet.py` and
 * `vgg.py` so their state dicts load without key mapping (`features.0.weight`, `classifier.1.bias`):
 *
 * - AlexNet ("ImageNet Classification with Deep Convolutional Neural Networks", 2012), as torchvision
 *   has it, and as its paper had it (`alexnet_original`);
 * - VGG-16 ("Very Deep Convolutional Networks for Large-Scale Image Recognition", 2014, configuration
 *   D), plain and with batch-norm: the network of Fig. 3 and Table 3 of the ResNet paper, 15.3 billion
 *   FLOPs against ResNet-34's 3.6.
 *
 * Every layer sits at torchvision's index of `features` / `classifier` (ReLU, pooling and dropout
 * take indices too); the forward pass fuses each convolution with the batch-norm and ReLU after it.
 */
import {
  AdaptiveAvgPool2d, BatchNorm2d, Conv2d, constant_, convBn, Dropout, flatten, kaimingNormal_, Linear, LocalResponseNorm, MaxPool2d, Module,
  normal_, ReLU, Sequential, type Tensor,
} from '@residual/core';

/** Options of the AlexNet and VGG builders (torchvision's `num_classes` and `dropout`). */
export interface BaselineOptions {
  numClasses?: number;
  /** Drop probability of the classifier's dropout layers. Default 0.5. */
  dropout?: number;
}

/**
 * Runs a torchvision-style stack: a convolution with the batch-norm and ReLU that follow it is one
 * fused op (one convolution with the batch-norm folded in at inference); other layers run as they are.
 */
const runFused = (layers: readonly Module[], x: Tensor): Tensor => {
  let h = x;
  for (let i = 0; i < layers.length; i++) {
    const layer = layers[i];
    if (!(layer instanceof Conv2d)) {
      h = layer.forward(h);
      continue;
    }
    const bn = layers[i + 1] instanceof BatchNorm2d ? (layers[++i] as BatchNorm2d) : null;
    const relu = layers[i + 1] instanceof ReLU;
    if (relu) i++;
    h = bn ? convBn(layer, bn, h, { relu }) : layer.forward(h, { relu });
  }
  return h;
};

/**
 * The classifier both networks end with: dropout, fc 4096, ReLU, dropout, fc 4096, ReLU, fc; at
 * torchvision's indices (AlexNet's dropout before each hidden layer, VGG's after it).
 */
const classifier = (inFeatures: number, numClasses: number, p: number, dropoutFirst: boolean): Sequential =>
  dropoutFirst
    ? new Sequential(new Dropout(p), new Linear(inFeatures, 4096), new ReLU(), new Dropout(p), new Linear(4096, 4096), new ReLU(), new Linear(4096, numClasses))
    : new Sequential(new Linear(inFeatures, 4096), new ReLU(), new Dropout(p), new Linear(4096, 4096), new ReLU(), new Dropout(p), new Linear(4096, numClasses));

/** AlexNet: five convolutions (`features`), an adaptive pool to 6x6, three fully connected layers (`classifier`). */
export class AlexNet extends Module {
  readonly features: Sequential;
  readonly avgpool: AdaptiveAvgPool2d;
  readonly classifier: Sequential;

  /** `features` must end with 256 channels; `alexnet` and `alexnet_original` give the two there are. */
  constructor(features: Sequential, { numClasses = 1000, dropout = 0.5 }: BaselineOptions = {}) {
    super();
    this.features = this.registerModule('features', features);
    this.avgpool = this.registerModule('avgpool', new AdaptiveAvgPool2d([6, 6]));
    this.classifier = this.registerModule('classifier', classifier(256 * 6 * 6, numClasses, dropout, true));
  }

  /** Classes of the last layer. */
  get numClasses(): number {
    return (this.classifier.layers[6] as Linear).weight.shape[0];
  }

  forward(x: Tensor): Tensor {
    if (x.rank !== 4 || x.shape[1] !== 3) throw new Error(`AlexNet: input must be [N, 3, H, W], got [${x.shape.join(', ')}]`);
    // Below 63 pixels the stride-4 stem and two 3x3/2 pools leave the last pool less than its window.
    if (x.shape[2] < 63 || x.shape[3] < 63) throw new Error(`AlexNet: input must be at least 63x63 pixels, got ${x.shape[2]}x${x.shape[3]}`);
    return this.classifier.forward(flatten(this.avgpool.forward(runFused(this.features.layers, x))));
  }
}

/** VGG: 3x3 convolutions in five stages, each closed by a 2x2 max-pool, then the classifier on 7x7 features. */
export class VGG extends Module {
  readonly features: Sequential;
  readonly avgpool: AdaptiveAvgPool2d;
  readonly classifier: Sequential;

  constructor(features: Sequential, { numClasses = 1000, dropout = 0.5 }: BaselineOptions = {}) {
    super();
    this.features = this.registerModule('features', features);
    this.avgpool = this.registerModule('avgpool', new AdaptiveAvgPool2d([7, 7]));
    this.classifier = this.registerModule('classifier', classifier(512 * 7 * 7, numClasses, dropout, false));
    // torchvision's initialisation: He normal (fan-out) convolutions, N(0, 0.01) fully connected layers, zero biases.
    for (const [, m] of this.namedModules()) {
      if (m instanceof Conv2d) kaimingNormal_(m.weight, { mode: 'fanOut', nonlinearity: 'relu' });
      else if (m instanceof Linear) normal_(m.weight, 0, 0.01);
      else if (m instanceof BatchNorm2d) constant_(m.weight, 1);
      if ((m instanceof Conv2d || m instanceof Linear || m instanceof BatchNorm2d) && m.bias) constant_(m.bias, 0);
    }
  }

  /** Classes of the last layer. */
  get numClasses(): number {
    return (this.classifier.layers[6] as Linear).weight.shape[0];
  }

  forward(x: Tensor): Tensor {
    if (x.rank !== 4 || x.shape[1] !== 3) throw new Error(`VGG: input must be [N, 3, H, W], got [${x.shape.join(', ')}]`);
    if (x.shape[2] < 32 || x.shape[3] < 32) throw new Error(`VGG: input must be at least 32x32 pixels (five 2x2 pools), got ${x.shape[2]}x${x.shape[3]}`);
    return this.classifier.forward(flatten(this.avgpool.forward(runFused(this.features.layers, x))));
  }
}

const pool3x3s2 = () => new MaxPool2d({ kernelSize: 3, stride: 2 });

/** torchvision's AlexNet ("one weird trick" widths 64/192/384/256/256, no normalisation). */
export const alexnet = (o: BaselineOptions = {}): AlexNet =>
  new AlexNet(
    new Sequential(
      new Conv2d(3, 64, 11, { stride: 4, padding: 2 }), new ReLU(), pool3x3s2(),
      new Conv2d(64, 192, 5, { padding: 2 }), new ReLU(), pool3x3s2(),
      new Conv2d(192, 384, 3, { padding: 1 }), new ReLU(),
      new Conv2d(384, 256, 3, { padding: 1 }), new ReLU(),
      new Conv2d(256, 256, 3, { padding: 1 }), new ReLU(), pool3x3s2(),
    ),
    o,
  );

/**
 * AlexNet as its paper built it (section 3.5 and Figure 2): 96/256/384/384/256 filters, local
 * response normalisation (size 5, alpha 1e-4, beta 0.75, k 2) after the ReLUs of the first two
 * convolutions and before their overlapping pools, the paper's initialisation (weights N(0, 0.01),
 * biases 1 in conv2, conv4, conv5 and the hidden fully connected layers, else 0). One tower: the
 * paper's split of conv2, conv4 and conv5 across two GPUs is merged, as one-GPU reproductions do,
 * and the normalisation is PyTorch's `nn.LocalResponseNorm(5, 1e-4, 0.75, 2)` as theirs use (PyTorch
 * divides alpha by the size, so the paper's own formula is alpha 5e-4 in this form). conv1 is padded
 * by 2 so a 224 crop gives the paper's 55x55 maps (a 227 crop unpadded does too); the classifier is
 * torchvision's, at its indices. Keys: `features.{0,4,8,10,12}`, `classifier.{1,4,6}`.
 */
export const alexnet_original = (o: BaselineOptions = {}): AlexNet => {
  const lrn = () => new LocalResponseNorm(5, { alpha: 1e-4, beta: 0.75, k: 2 });
  const conv = [
    new Conv2d(3, 96, 11, { stride: 4, padding: 2 }), new Conv2d(96, 256, 5, { padding: 2 }), new Conv2d(256, 384, 3, { padding: 1 }),
    new Conv2d(384, 384, 3, { padding: 1 }), new Conv2d(384, 256, 3, { padding: 1 }),
  ];
  const net = new AlexNet(
    new Sequential(
      conv[0], new ReLU(), lrn(), pool3x3s2(),
      conv[1], new ReLU(), lrn(), pool3x3s2(),
      conv[2], new ReLU(),
      conv[3], new ReLU(),
      conv[4], new ReLU(), pool3x3s2(),
    ),
    o,
  );
  const [fc6, fc7, fc8] = [1, 4, 6].map((i) => net.classifier.layers[i] as Linear);
  for (const layer of [...conv, fc6, fc7, fc8]) {
    normal_(layer.weight, 0, 0.01);
    constant_(layer.bias!, [conv[1], conv[3], conv[4], fc6, fc7].includes(layer) ? 1 : 0);
  }
  return net;
};

/** A VGG configuration: filters of each 3x3 convolution, 'M' for a 2x2 max-pool (the VGG paper's Table 1). */
type VggConfig = readonly (number | 'M')[];

/** Configuration D of the VGG paper's Table 1: VGG-16. */
const VGG16: VggConfig = [64, 64, 'M', 128, 128, 'M', 256, 256, 256, 'M', 512, 512, 512, 'M', 512, 512, 512, 'M'];

/** torchvision's `make_layers`: conv 3x3 (+ batch-norm) + ReLU per number, a max-pool per 'M'. */
const vggFeatures = (config: VggConfig, batchNorm: boolean): Sequential => {
  const layers: Module[] = [];
  let inChannels = 3;
  for (const v of config) {
    if (v === 'M') layers.push(new MaxPool2d({ kernelSize: 2, stride: 2 }));
    else {
      layers.push(new Conv2d(inChannels, v, 3, { padding: 1 }), ...(batchNorm ? [new BatchNorm2d(v)] : []), new ReLU());
      inChannels = v;
    }
  }
  return new Sequential(...layers);
};

/** VGG-16 (configuration D). */
export const vgg16 = (o: BaselineOptions = {}): VGG => new VGG(vggFeatures(VGG16, false), o);
/** VGG-16 with batch-norm after every convolution (torchvision's `vgg16_bn`). */
export const vgg16_bn = (o: BaselineOptions = {}): VGG => new VGG(vggFeatures(VGG16, true), o);
