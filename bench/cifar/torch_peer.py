#!/usr/bin/env python3
"""PyTorch peer of `residual train` on CIFAR-10 binary files: same network (ResNet-20, option A),
same recipe (SGD 0.9, wd 1e-4, lr /10 at 50% and 75% of the run), same augmentation (pad 4, random
32 crop, flip), same normalisation and the same held-out split. Prints one JSON line.

    /usr/bin/python3 bench/cifar/torch_peer.py DIR --train-subset 8000 --val-split 2000 --epochs 3 --threads 2
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from importlib import import_module  # noqa: E402

golden = import_module("make-golden")

MEAN = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
STD = torch.tensor([0.247, 0.2435, 0.2616]).view(1, 3, 1, 1)


def load(dir_: Path):
    files = sorted(dir_.glob("data_batch_*.bin"))
    raw = np.concatenate([np.fromfile(f, dtype=np.uint8).reshape(-1, 3073) for f in files])
    return raw[:, 1:].reshape(-1, 3, 32, 32), raw[:, 0].astype(np.int64)


def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    n = x.shape[0]
    padded = F.pad(x, (4, 4, 4, 4))
    out = torch.empty_like(x)
    ij = torch.randint(0, 9, (n, 2), generator=g)
    flip = torch.rand(n, generator=g) < 0.5
    for k in range(n):
        i, j = ij[k].tolist()
        crop = padded[k, :, i : i + 32, j : j + 32]
        out[k] = crop.flip(-1) if flip[k] else crop
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("dir")
    p.add_argument("--train-subset", type=int, default=None)
    p.add_argument("--val-split", type=int, default=2000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    x, y = load(Path(a.dir))
    xv, yv = x[-a.val_split :], y[-a.val_split :]
    xt, yt = x[: -a.val_split], y[: -a.val_split]
    if a.train_subset:
        xt, yt = xt[: a.train_subset], yt[: a.train_subset]
    xt = torch.from_numpy(xt).float() / 255
    xv = (torch.from_numpy(xv).float() / 255 - MEAN) / STD
    yt, yv = torch.from_numpy(yt), torch.from_numpy(yv)
    model = golden.CifarResNet(3)
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
    opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=0.9, weight_decay=1e-4)
    steps_per_epoch = (len(yt) + a.batch_size - 1) // a.batch_size
    total = steps_per_epoch * a.epochs
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [round(total * 0.5), round(total * 0.75)], 0.1)
    g = torch.Generator().manual_seed(a.seed)
    t0 = time.time()
    for _ in range(a.epochs):
        model.train()
        perm = torch.randperm(len(yt), generator=g)
        for s in range(steps_per_epoch):
            idx = perm[s * a.batch_size : (s + 1) * a.batch_size]
            xb = (augment(xt[idx], g) - MEAN) / STD
            loss = F.cross_entropy(model(xb), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    train_seconds = time.time() - t0
    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(xv[i : i + 500]) for i in range(0, len(yv), 500)])
    acc = (logits.argmax(1) == yv).float().mean().item()
    print(json.dumps({"bench": "cifar-resnet20-peer", "peer": f"torch {torch.__version__}", "valAccuracy": acc,
                      "valLoss": F.cross_entropy(logits, yv).item(), "imagesPerSecond": len(yt) * a.epochs / train_seconds}))


if __name__ == "__main__":
    main()
