#!/usr/bin/env python3
"""Writes the golden logits that packages/resnet checks its networks against.

Needs Debian's python3-torch and python3-torchvision (for cross-checks only; never a dependency).
Weights and inputs come from a formula both sides compute (see packages/resnet/src/golden.ts), so
only the small expected outputs are committed. Name models to write only theirs:

    /usr/bin/python3 scripts/make-golden.py packages/resnet/src/golden [resnet18 vgg16 ...]
"""
import json
import math
import sys
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision


def formula_value(key: str, k: int, i: int, shape) -> float:
    base = math.sin(0.001 * i * (k + 1) + k)
    if key.endswith("num_batches_tracked"):
        return 0.0
    if key.endswith("running_mean"):
        return 0.1 * base
    if key.endswith("running_var"):
        return 1.0 + 0.5 * base
    if key.endswith(".weight") and len(shape) >= 2:
        fan_in = math.prod(shape[1:])
        return base * math.sqrt(3.0 / fan_in)
    if key.endswith(".weight"):
        return 0.3 + 0.1 * base
    if key.startswith("fc."):
        return 0.1 * base
    return 0.1 * base  # batch-norm bias


def formula_tensor(key: str, k: int, shape) -> torch.Tensor:
    """formula_value for every element at once, in float64 with the same operations in the same order
    (VGG-16 has 138M weights); the rare last-bit difference of a vectorised sin vanishes in float32."""
    i = torch.arange(math.prod(shape), dtype=torch.float64)
    base = torch.sin(0.001 * i * (k + 1) + k)
    if key.endswith("num_batches_tracked"):
        return torch.zeros(shape, dtype=torch.float64)
    if key.endswith("running_mean"):
        vals = 0.1 * base
    elif key.endswith("running_var"):
        vals = 1.0 + 0.5 * base
    elif key.endswith(".weight") and len(shape) >= 2:
        vals = base * math.sqrt(3.0 / math.prod(shape[1:]))
    elif key.endswith(".weight"):
        vals = 0.3 + 0.1 * base
    else:
        vals = 0.1 * base
    return vals.reshape(shape)


def fill_state(model: nn.Module) -> None:
    state = model.state_dict()
    new = {}
    for k, (key, t) in enumerate(state.items()):
        new[key] = formula_tensor(key, k, list(t.shape)).to(t.dtype)
        probe = min(t.numel() - 1, 12345) if t.numel() else None
        if probe is not None:  # the vectorised formula is the scalar one
            assert abs(float(new[key].flatten()[probe]) - float(torch.tensor(formula_value(key, k, probe, list(t.shape))).to(t.dtype))) <= 1e-6
    model.load_state_dict(new)


def formula_input(shape):
    n = math.prod(shape)
    return torch.tensor([math.sin(0.01 * i) for i in range(n)], dtype=torch.float64).reshape(shape).float()


class LambdaShortcutA(nn.Module):
    """Option A: subsample by 2 and pad channels with zeros split evenly (section 4.2)."""

    def __init__(self, planes):
        super().__init__()
        self.planes = planes

    def forward(self, x):
        extra = self.planes - x.shape[1]
        before = extra // 2
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, before, extra - before))


class CifarBlock(nn.Module):
    def __init__(self, inp, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(inp, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = LambdaShortcutA(planes) if stride != 1 or inp != planes else nn.Identity()

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, n, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = nn.Sequential(*[CifarBlock(16, 16, 1) for _ in range(n)])
        self.layer2 = nn.Sequential(CifarBlock(16, 32, 2), *[CifarBlock(32, 32, 1) for _ in range(n - 1)])
        self.layer3 = nn.Sequential(CifarBlock(32, 64, 2), *[CifarBlock(64, 64, 1) for _ in range(n - 1)])
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def alexnet_original() -> nn.Module:
    """AlexNet with its paper's widths and local response normalisation on one tower, as
    packages/resnet/src/baselines.ts builds it: torchvision's avgpool and classifier."""
    model = torchvision.models.alexnet()
    lrn = lambda: nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)
    model.features = nn.Sequential(
        nn.Conv2d(3, 96, 11, stride=4, padding=2), nn.ReLU(), lrn(), nn.MaxPool2d(3, 2),
        nn.Conv2d(96, 256, 5, padding=2), nn.ReLU(), lrn(), nn.MaxPool2d(3, 2),
        nn.Conv2d(256, 384, 3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 384, 3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2),
    )
    return model


# AlexNet at 224 (its 6x6 features pass the adaptive pool unchanged); VGG at 64 and 32, whose 2x2 and
# 1x1 features the adaptive pool spreads to 7x7 (cells averaged over overlapping windows, or repeated).
CASES = {
    "resnet18": (lambda: torchvision.models.resnet18(), [1, 3, 40, 40]),
    "resnet50": (lambda: torchvision.models.resnet50(), [1, 3, 40, 40]),
    "resnet20": (lambda: CifarResNet(3), [2, 3, 32, 32]),
    "alexnet": (lambda: torchvision.models.alexnet(), [1, 3, 224, 224]),
    "alexnet_original": (alexnet_original, [1, 3, 224, 224]),
    "vgg16": (lambda: torchvision.models.vgg16(), [1, 3, 64, 64]),
    "vgg16_bn": (lambda: torchvision.models.vgg16_bn(), [1, 3, 32, 32]),
}


def main(out_dir: str, names) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_grad_enabled(False)
    unknown = [n for n in names if n not in CASES]
    if unknown:
        sys.exit(f"unknown model(s) {unknown}; known: {list(CASES)}")
    for name, (build, shape) in CASES.items():
        if names and name not in names:
            continue
        model = build().eval()
        fill_state(model)
        x = formula_input(shape)
        logits = model(x)
        doc = {
            "model": name,
            "inputShape": shape,
            "made_by": f"torch {torch.__version__}, torchvision {torchvision.__version__}",
            "logits": [float(v) for v in logits.flatten().tolist()],
            "shape": list(logits.shape),
        }
        (out / f"{name}.json").write_text(json.dumps(doc) + "\n")
        print(name, list(logits.shape), float(logits.abs().max()))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "packages/resnet/src/golden", sys.argv[2:])
