/**
 * ONNX export: a network of this package as an inference graph of standard operators (Conv,
 * BatchNormalization, Relu, Add, MaxPool, Slice, Pad, GlobalAveragePool, Flatten, Gemm), for
 * onnxruntime and the other ONNX runtimes. The graph computes what `forward` computes in eval mode
 * (batch-norm with running statistics), whatever mode the model is in.
 */
import type { BatchNorm2d, Conv2d, Pair, Tensor } from '@residual/core';
import { Bottleneck, ResNet, optionAPadding, type BasicBlock, type CifarResNet } from './models.js';
import { AttributeType, DataType, ModelProto } from './onnx-proto.js';

/** The operator sets `exportOnnx` writes: each operator it uses has one definition across them. */
export const ONNX_OPSETS: readonly number[] = [13, 14, 15, 16, 17];

/** Options of `exportOnnx`. */
export interface OnnxExportOptions {
  /** ONNX operator set (`ONNX_OPSETS`); default 17. */
  opset?: number;
  /**
   * Fold each batch-norm into the convolution before it (default): weights scaled and a bias added,
   * in float64, rounded once to f32. False keeps BatchNormalization nodes with the running statistics.
   */
  foldBatchNorm?: boolean;
  /** The input's batch size: a number (default 1), or 'dynamic' for a symbolic axis named `batch`. */
  batch?: number | 'dynamic';
  /** Input height and width; default 224 for the ImageNet networks, 32 for the CIFAR ones. */
  imageSize?: Pair;
}

/**
 * The IR version of the ONNX release that brought each operator set: the oldest that can hold it,
 * so a runtime that knows the operator set also reads the file.
 */
const irVersionOf = (opset: number) => (opset >= 15 ? 8 : 7);

const pair = (v: Pair | undefined, fallback: number): [number, number] =>
  v === undefined ? [fallback, fallback] : typeof v === 'number' ? [v, v] : [v[0], v[1]];

type Attribute = { name: string; type: number; i?: number; ints?: number[]; f?: number };
const int = (name: string, i: number): Attribute => ({ name, type: AttributeType.INT, i });
const ints = (name: string, v: readonly number[]): Attribute => ({ name, type: AttributeType.INTS, ints: [...v] });
const float = (name: string, f: number): Attribute => ({ name, type: AttributeType.FLOAT, f });

/** Little-endian bytes, as `TensorProto.raw_data` holds them on any host. */
const rawData = (values: Float32Array | BigInt64Array): Uint8Array => {
  const out = new Uint8Array(values.byteLength);
  const view = new DataView(out.buffer);
  if (values instanceof Float32Array) for (let i = 0; i < values.length; i++) view.setFloat32(4 * i, values[i], true);
  else for (let i = 0; i < values.length; i++) view.setBigInt64(8 * i, values[i], true);
  return out;
};

const int64s = (v: readonly (number | bigint)[]) => BigInt64Array.from(v, (x) => BigInt(x));
const MAX_INT64 = 2n ** 63n - 1n;

/** Nodes and initializers in the order they are made (a topological order, as ONNX requires). */
class Graph {
  readonly nodes: object[] = [];
  readonly initializers: object[] = [];

  /** Adds an initializer; returns its name. */
  constant(name: string, values: Float32Array | BigInt64Array, dims: readonly number[]): string {
    const type = values instanceof Float32Array ? DataType.FLOAT : DataType.INT64;
    this.initializers.push({ name, dims: [...dims], data_type: type, raw_data: rawData(values) });
    return name;
  }

  /** Adds a node with one output, named like the node unless `output` says otherwise; returns the output. */
  node(op: string, name: string, input: string[], attribute: Attribute[] = [], output = name): string {
    this.nodes.push({ op_type: op, name, input, output: [output], attribute });
    return output;
  }
}

const f32 = async (t: Tensor): Promise<Float32Array> => {
  const d = await t.data();
  return d instanceof Float32Array ? d : Float32Array.from(d);
};

/**
 * Writes `model` as an ONNX model (the bytes of an `.onnx` file): input `input` [N, 3, H, W] f32,
 * output `logits` [N, classes]. Initializers and nodes carry the state dict's names (`conv1.weight`,
 * `layer1.0.bn1`), so a graph viewer reads like the module tree. Option A shortcuts become a strided
 * Slice (every stride-th pixel) and a Pad of zero channels.
 */
export const exportOnnx = async (model: ResNet | CifarResNet, options: OnnxExportOptions = {}): Promise<Uint8Array> => {
  const { opset = 17, foldBatchNorm = true, batch = 1 } = options;
  if (!ONNX_OPSETS.includes(opset)) throw new Error(`exportOnnx: opset ${opset} is not supported (use one of ${ONNX_OPSETS.join(', ')})`);
  if (batch !== 'dynamic' && !(Number.isInteger(batch) && batch >= 1)) throw new Error(`exportOnnx: batch must be an integer >= 1 or 'dynamic', got ${batch}`);
  const imagenet = model instanceof ResNet;
  const [height, width] = pair(options.imageSize, imagenet ? 224 : 32);
  const g = new Graph();

  const convBn = async (conv: Conv2d, convName: string, bn: BatchNorm2d, bnName: string, x: string): Promise<string> => {
    const [outC, , kh, kw] = conv.weight.shape;
    const [ph, pw] = pair(conv.options.padding, 0);
    const attributes = [
      ints('kernel_shape', [kh, kw]), ints('strides', pair(conv.options.stride, 1)), ints('pads', [ph, pw, ph, pw]),
      ints('dilations', pair(conv.options.dilation, 1)), int('group', conv.options.groups ?? 1),
    ];
    const weight = await f32(conv.weight);
    const bias = conv.bias && (await f32(conv.bias));
    const [gamma, beta, mean, variance] = await Promise.all([bn.weight, bn.bias, bn.runningMean, bn.runningVar].map(f32));
    if (!foldBatchNorm) {
      const inputs = [x, g.constant(`${convName}.weight`, weight, conv.weight.shape)];
      if (bias) inputs.push(g.constant(`${convName}.bias`, bias, [outC]));
      const y = g.node('Conv', convName, inputs, attributes);
      const stats = Object.entries({ weight: gamma, bias: beta, running_mean: mean, running_var: variance })
        .map(([name, v]) => g.constant(`${bnName}.${name}`, v, [outC]));
      // ONNX's momentum weighs the old running value, PyTorch's the new batch; inference uses neither.
      return g.node('BatchNormalization', bnName, [y, ...stats], [float('epsilon', bn.eps), float('momentum', 1 - bn.momentum)]);
    }
    const perChannel = weight.length / outC;
    const foldedWeight = new Float32Array(weight.length);
    const foldedBias = new Float32Array(outC);
    for (let k = 0; k < outC; k++) {
      const scale = gamma[k] / Math.sqrt(variance[k] + bn.eps);
      foldedBias[k] = beta[k] + ((bias ? bias[k] : 0) - mean[k]) * scale;
      for (let j = k * perChannel; j < (k + 1) * perChannel; j++) foldedWeight[j] = weight[j] * scale;
    }
    const inputs = [x, g.constant(`${convName}.weight`, foldedWeight, conv.weight.shape), g.constant(`${convName}.bias`, foldedBias, [outC])];
    return g.node('Conv', convName, inputs, attributes);
  };

  const shortcut = async (b: BasicBlock | Bottleneck, p: string, x: string, outC: number): Promise<string | null> => {
    if (!b.config.residual) return null;
    if (b.downsample) {
      const [conv, bn] = b.downsample.layers as [Conv2d, BatchNorm2d];
      return convBn(conv, `${p}.downsample.0`, bn, `${p}.downsample.1`, x);
    }
    const { stride, inChannels } = b.config;
    let y = x;
    if (stride !== 1) {
      // Ends past the last index are clamped to it, so the subsample holds for any image size.
      const starts = [0, 0], ends = [MAX_INT64, MAX_INT64], axes = [2, 3], steps = [stride, stride];
      const inputs = Object.entries({ starts, ends, axes, steps }).map(([what, v]) => g.constant(`${p}.shortcut.${what}`, int64s(v), [2]));
      y = g.node('Slice', `${p}.shortcut.subsample`, [y, ...inputs]);
    }
    if (outC !== inChannels) {
      const [before, after] = optionAPadding(inChannels, outC);
      const pads = g.constant(`${p}.shortcut.pads`, int64s([0, before, 0, 0, 0, after, 0, 0]), [8]);
      y = g.node('Pad', `${p}.shortcut.pad`, [y, pads]);
    }
    return y;
  };

  const block = async (b: BasicBlock | Bottleneck, p: string, x: string): Promise<string> => {
    const pairs: [Conv2d, BatchNorm2d][] = b instanceof Bottleneck
      ? [[b.conv1, b.bn1], [b.conv2, b.bn2], [b.conv3, b.bn3]]
      : [[b.conv1, b.bn1], [b.conv2, b.bn2]];
    let h = x;
    for (const [i, [conv, bn]] of pairs.entries()) {
      h = await convBn(conv, `${p}.conv${i + 1}`, bn, `${p}.bn${i + 1}`, h);
      if (i < pairs.length - 1) h = g.node('Relu', `${p}.relu${i + 1}`, [h]);
    }
    const identity = await shortcut(b, p, x, pairs.at(-1)![0].weight.shape[0]);
    if (identity) h = g.node('Add', `${p}.add`, [h, identity]);
    return g.node('Relu', `${p}.relu${pairs.length}`, [h]);
  };

  let h = await convBn(model.conv1, 'conv1', model.bn1, 'bn1', 'input');
  h = g.node('Relu', 'relu', [h]);
  if (imagenet) h = g.node('MaxPool', 'maxpool', [h], [ints('kernel_shape', [3, 3]), ints('strides', [2, 2]), ints('pads', [1, 1, 1, 1])]);
  const layers = imagenet ? [model.layer1, model.layer2, model.layer3, model.layer4] : [model.layer1, model.layer2, model.layer3];
  for (const [i, layer] of layers.entries())
    for (const [j, b] of layer.layers.entries()) h = await block(b as BasicBlock | Bottleneck, `layer${i + 1}.${j}`, h);
  h = g.node('GlobalAveragePool', 'avgpool', [h]);
  h = g.node('Flatten', 'flatten', [h], [int('axis', 1)]);
  const classes = model.fc.weight.shape[0];
  const fc = [h, g.constant('fc.weight', await f32(model.fc.weight), model.fc.weight.shape)];
  if (model.fc.bias) fc.push(g.constant('fc.bias', await f32(model.fc.bias), [classes]));
  g.node('Gemm', 'fc', fc, [int('transB', 1)], 'logits');

  const n = batch === 'dynamic' ? { dim_param: 'batch' } : { dim_value: batch };
  const value = (name: string, dims: object[]) => ({ name, type: { tensor_type: { elem_type: DataType.FLOAT, shape: { dim: dims } } } });
  const message = ModelProto.fromObject({
    ir_version: irVersionOf(opset),
    opset_import: [{ domain: '', version: opset }],
    producer_name: '@residual/resnet',
    graph: {
      name: model.constructor.name,
      node: g.nodes,
      initializer: g.initializers,
      input: [value('input', [n, { dim_value: 3 }, { dim_value: height }, { dim_value: width }])],
      output: [value('logits', [n, { dim_value: classes }])],
    },
  });
  return ModelProto.encode(message).finish();
};
