/**
 * @residual/resnet: the networks of "Deep Residual Learning for Image Recognition", named like
 * torchvision, with the paper's training recipes and evaluation.
 */
export * from './models.js';
export * from './baselines.js';
export * from './flops.js';
export * from './recipes.js';
export * from './trainer.js';
export * from './golden.js';
export * from './evaluation.js';
export * from './imagenet-classes.js';
export * from './onnx.js';
export * from './responses.js';
