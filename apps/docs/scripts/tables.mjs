// Writes pages/_generated/table1.md, cifar.md and baselines.md: the paper's parameter and FLOP figures
// beside the ones `profile` counts on the built networks, so the models page shows what the code really builds.
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createMetaBackend, Linear, setBackend } from '@residual/core';
import { MODELS, profile } from '@residual/resnet';

const out = join(dirname(fileURLToPath(import.meta.url)), '../pages/_generated');
mkdirSync(out, { recursive: true });

// Table 1 ("FLOPs" are multiply-adds) and section 4.2 of the paper.
const IMAGENET = { resnet18: 1.8, resnet34: 3.6, resnet50: 3.8, resnet101: 7.6, resnet152: 11.3 };
const CIFAR = { resnet20: 0.27, resnet32: 0.46, resnet44: 0.66, resnet56: 0.85, resnet110: 1.7, resnet1202: 19.4 };

const rows = Object.entries(IMAGENET).map(([name, paper]) => {
  const v1 = profile(() => MODELS[name]({ bottleneckStride: 'v1' }), [1, 3, 224, 224]);
  const v15 = profile(() => MODELS[name](), [1, 3, 224, 224]);
  return `| \`${name}\` | ${paper} | ${(v1.multiplyAdds / 1e9).toFixed(2)} | ${(v15.multiplyAdds / 1e9).toFixed(2)} | ${(v1.parameters / 1e6).toFixed(1)}M |`;
});
writeFileSync(join(out, 'table1.md'), `| model | paper (x10^9) | \`profile\`, \`bottleneckStride: 'v1'\` | \`profile\`, default 'v1.5' | parameters |
| --- | --- | --- | --- | --- |
${rows.join('\n')}
`);

const cifarRows = Object.entries(CIFAR).map(([name, paper]) => {
  const p = profile(() => MODELS[name](), [1, 3, 32, 32]);
  return `| \`${name}\` | ${(Number(name.slice(6)) - 2) / 6} | ${paper}M | ${(p.parameters / 1e6).toFixed(2)}M | ${(p.multiplyAdds / 1e6).toFixed(0)}M |`;
});
writeFileSync(join(out, 'cifar.md'), `| model | n | paper's parameters | \`profile\` parameters | \`profile\` multiply-adds |
| --- | --- | --- | --- | --- |
${cifarRows.join('\n')}
`);
// The baselines: the ResNet paper gives VGG-16 15.3 x10^9 FLOPs (section 4.1), the convolutions' count;
// the fully connected layers' share (in·out per layer) is shown apart.
const BASELINES = { alexnet: '', alexnet_original: '', vgg16: 15.3, vgg16_bn: '' };
const baselineRows = Object.entries(BASELINES).map(([name, paper]) => {
  const p = profile(() => MODELS[name](), [1, 3, 224, 224]);
  setBackend(createMetaBackend());
  const fc = MODELS[name]().classifier.layers.filter((m) => m instanceof Linear).reduce((n, l) => n + l.weight.size, 0);
  const giga = (v) => (v / 1e9).toFixed(2);
  return `| \`${name}\` | ${paper} | ${giga(p.multiplyAdds - fc)} | ${giga(fc)} | ${(p.parameters / 1e6).toFixed(1)}M |`;
});
writeFileSync(join(out, 'baselines.md'), `| model | paper (x10^9) | \`profile\`: convolutions (x10^9) | fully connected (x10^9) | parameters |
| --- | --- | --- | --- | --- |
${baselineRows.join('\n')}
`);
console.log(`tables: wrote ${out}`);
