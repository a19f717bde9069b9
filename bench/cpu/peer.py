"""PyTorch on the CPU as the peer of bench/cpu/run.mjs: one figure per call, printed as one JSON line.

python3 peer.py --threads N --bench NAME [--batch B] [--size S] [--steps K]
"""
import argparse
import json
import resource
import sys
import time
from importlib import import_module
from pathlib import Path

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:
    print(json.dumps({"error": "PyTorch is not installed"}))
    sys.exit(0)


# The CIFAR ResNet of section 4.2 (option A) lives once, in the golden-file script.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
CifarResNet = import_module("make-golden").CifarResNet


def train(depth, batch, steps):
    model = CifarResNet((depth - 2) // 6)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    x = torch.randn(batch, 3, 32, 32)
    y = torch.randint(0, 10, (batch,))

    def step():
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss.item()

    for _ in range(2):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * steps / (time.perf_counter() - start), "images/s"


def infer50(batch, steps):
    import torchvision

    model = torchvision.models.resnet50().eval()
    x = torch.randn(batch, 3, 224, 224)
    with torch.no_grad():
        for _ in range(3):  # as many untimed calls as bench/cpu/run.mjs gives every side
            model(x)
        start = time.perf_counter()
        for _ in range(steps):
            model(x)
    return batch * steps / (time.perf_counter() - start), "images/s"


def gemm(size, steps):
    a, b = torch.rand(size, size), torch.rand(size, size)
    torch.mm(a, b)
    start = time.perf_counter()
    for _ in range(steps):
        torch.mm(a, b)
    return 2 * size**3 * steps / (time.perf_counter() - start) / 1e9, "GFLOP/s"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--bench", choices=["train", "infer50", "gemm"], required=True)
    p.add_argument("--depth", type=int, default=20)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--steps", type=int, default=3)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    if a.bench == "train":
        value, unit = train(a.depth, a.batch, a.steps)
    elif a.bench == "infer50":
        value, unit = infer50(a.batch, a.steps)
    else:
        value, unit = gemm(a.size, a.steps)
    # ru_maxrss is in KiB on Linux: the process's peak resident memory, interpreter included.
    peak = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps({"value": value, "unit": unit, "peer": f"PyTorch {torch.__version__}", "peakRssMB": peak}))


main()
