#!/usr/bin/env python3
"""Writes the golden logits that packages/resnet checks its networks against.

Needs Debian's python3-torch and python3-torchvision (for cross-checks only; never a dependency).
Weights and inputs come from a formula both sides compute (see packages/resnet/src/golden.ts), so
only the small expected outputs are committed:

    /usr/bin/python3 scripts/make-golden.py packages/resnet/src/golden
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


def fill_state(model: nn.Module) -> None:
    state = model.state_dict()
    new = {}
    for k, (key, t) in enumerate(state.items()):
        n = t.numel()
        vals = torch.tensor([formula_value(key, k, i, list(t.shape)) for i in range(n)], dtype=torch.float64)
        new[key] = vals.reshape(t.shape).to(t.dtype)
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


CASES = {
    "resnet18": (lambda: torchvision.models.resnet18(), [1, 3, 40, 40]),
    "resnet50": (lambda: torchvision.models.resnet50(), [1, 3, 40, 40]),
    "resnet20": (lambda: CifarResNet(3), [2, 3, 32, 32]),
}


def main(out_dir: str) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_grad_enabled(False)
    for name, (build, shape) in CASES.items():
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
    main(sys.argv[1] if len(sys.argv) > 1 else "packages/resnet/src/golden")
