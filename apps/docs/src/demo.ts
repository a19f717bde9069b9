/**
 * The in-browser demo's engine: starts a backend (WebGPU, else the CPU), loads a torchvision-named
 * safetensors state dict into a network of @residual/resnet, and classifies an image. The page (ClassifierDemo.vue) only
 * draws what this returns.
 */
import { currentBackend, loadSafetensors, noGrad, setBackend, softmax, tensor, tensorsFromSafetensors, tidy, topk } from '@residual/core';
import { classifierKey, createModel, IMAGENET_LABELS, isCifarModel, MODELS, type ImageClassifier, type ModelName } from '@residual/resnet';

/** Which backend the page asks for. */
export type BackendChoice = 'auto' | 'webgpu' | 'cpu';

/** The model names a weights file may belong to. */
export const MODEL_NAMES = Object.keys(MODELS) as ModelName[];

/** The backend that runs the demo: its name and device, and why it is not WebGPU when it fell back. */
export interface Started {
  readonly name: string;
  readonly device: string;
  readonly fallback: string | null;
  /** The CPU backend's threads that run ops (more than one on a cross-origin isolated page); null on WebGPU. */
  readonly threads: number | null;
}

/**
 * Starts a backend and makes it the active one, disposing the one that was (dispose its tensors
 * first). 'auto' takes WebGPU where the browser offers an adapter and otherwise the CPU backend,
 * with `fallback` saying why. `threads` is the CPU backend's option (default: every core, where
 * the page is cross-origin isolated); its workers are up when this resolves.
 */
export const startBackend = async (choice: BackendChoice, threads?: number): Promise<Started> => {
  currentBackend()?.dispose();
  let fallback: string | null = null;
  if (choice !== 'cpu') {
    try {
      if (!('gpu' in navigator)) throw new Error('this browser has no WebGPU (navigator.gpu is missing)');
      const { createWebGpuBackend } = await import('@residual/backend-webgpu');
      const { name, device } = setBackend(await createWebGpuBackend());
      return { name, device, fallback, threads: null };
    } catch (e) {
      if (choice === 'webgpu') throw e;
      fallback = (e as Error).message;
    }
  }
  const { createCpuBackend } = await import('@residual/backend-cpu');
  const cpu = createCpuBackend({ threads });
  setBackend(cpu);
  return { name: cpu.name, device: cpu.device, fallback, threads: await cpu.ready() };
};

/** A network with its weights loaded, ready to classify. */
export interface Classifier {
  readonly name: ModelName;
  /** Whether the weights named their network, or `fallbackName` was taken. */
  readonly named: boolean;
  readonly model: ImageClassifier;
  /** The label of every output, in order. */
  readonly labels: readonly string[];
  readonly parameters: number;
  /** What the weights file says of itself (its safetensors metadata). */
  readonly metadata: Readonly<Record<string, string>>;
}

/**
 * Loads a safetensors state dict on the active backend. The architecture is the file's `model`
 * metadata (as `residual train` writes it), else `fallbackName`; labels come from its `classes`
 * metadata, else ImageNet-1k's for 1000 outputs, else the class numbers.
 */
export const loadClassifier = async (bytes: ArrayBuffer, fileName: string, fallbackName?: ModelName): Promise<Classifier> => {
  const file = await loadSafetensors(bytes, fileName);
  const { metadata, tensors: entries } = file.header;
  const name = (metadata.model ?? fallbackName) as ModelName | undefined;
  if (!name) throw new Error(`${fileName}: its metadata names no model; choose the network it belongs to`);
  if (!MODEL_NAMES.includes(name)) throw new Error(`${fileName}: unknown model '${name}'; known: ${MODEL_NAMES.join(', ')}`);
  const key = classifierKey(name);
  const fc = entries.get(key);
  if (!fc) throw new Error(`${fileName}: no tensor "${key}"; is this a torchvision-named ${name} state dict?`);
  const numClasses = fc.shape[0];
  const model = createModel(name, { numClasses });
  const tensors = await tensorsFromSafetensors(file);
  try {
    model.loadStateDict(tensors);
  } catch (e) {
    model.dispose();
    throw new Error(`${fileName} does not fit ${name}: ${(e as Error).message}`);
  } finally {
    for (const t of tensors.values()) t.dispose();
  }
  model.eval();
  const named = metadata.classes ? (JSON.parse(metadata.classes) as string[]) : numClasses === 1000 ? IMAGENET_LABELS : null;
  const labels = Array.from({ length: numClasses }, (_, i) => named?.[i] ?? String(i));
  return { name, named: metadata.model !== undefined, model, labels, parameters: model.numParameters(), metadata };
};

/** Anything a canvas can draw that knows its size. */
export type Picture = CanvasImageSource & { readonly width: number; readonly height: number };

// The normalisations of @residual/data (CIFAR10_NORM, IMAGENET_NORM), which the page cannot import:
// that package decodes with sharp. The site's test checks this page against `residual predict`.
const CIFAR = { mean: [0.4914, 0.4822, 0.4465], std: [0.247, 0.2435, 0.2616] };
const IMAGENET = { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };

/**
 * The network's input for a picture, as `residual predict` makes it: CIFAR-sized networks see the
 * picture at 32x32 (a 32x32 picture unchanged), ImageNet networks a 224 center crop of it scaled
 * to a shorter side of 256; then pixel / 255 and the data set's mean and std.
 */
export const toInput = (picture: Picture, name: ModelName): { data: Float32Array; size: number } => {
  const [resize, size, norm] = isCifarModel(name) ? [32, 32, CIFAR] : [256, 224, IMAGENET];
  const scale = resize / Math.min(picture.width, picture.height);
  const [w, h] = [picture.width * scale, picture.height * scale];
  const canvas = new OffscreenCanvas(size, size);
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  if (!ctx) throw new Error('this browser gives no 2d canvas context');
  ctx.imageSmoothingQuality = 'high';
  ctx.drawImage(picture, (size - w) / 2, (size - h) / 2, w, h);
  const rgba = ctx.getImageData(0, 0, size, size).data;
  const plane = size * size;
  const data = new Float32Array(3 * plane);
  for (let c = 0; c < 3; c++) {
    for (let p = 0; p < plane; p++) data[c * plane + p] = (rgba[p * 4 + c] / 255 - norm.mean[c]) / norm.std[c];
  }
  return { data, size };
};

/** One class of a prediction. */
export interface Guess {
  readonly index: number;
  readonly label: string;
  readonly probability: number;
}

/**
 * The top-k classes of a picture and the milliseconds from input to probabilities read back
 * (the first call on WebGPU also compiles the shaders).
 */
export const classify = async (c: Classifier, picture: Picture, k = 5): Promise<{ top: Guess[]; ms: number }> => {
  const { data, size } = toInput(picture, c.name);
  const started = performance.now();
  const { values, indices } = tidy(() => {
    const logits = noGrad(() => c.model.forward(tensor(data, [1, 3, size, size])));
    return topk(softmax(logits, 1), Math.min(k, c.labels.length));
  });
  const [p, idx] = await Promise.all([values.data(), indices.data()]);
  const ms = performance.now() - started;
  values.dispose();
  indices.dispose();
  return { top: Array.from(idx, (index, i) => ({ index, label: c.labels[index], probability: p[i] })), ms };
};
