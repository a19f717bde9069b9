#!/usr/bin/env python3
"""PyTorch peer of `residual train` on CIFAR-10 binary files: same network (ResNet-20, option A),
same recipe (SGD 0.9, wd 1e-4, lr /10 at 50% and 75% of the run), same augmentation (pad 4, random
32 crop, flip), same normalisation and the same held-out split. Prints one JSON line.

    /usr/bin/python3 bench/cifar/torch_peer.py DIR --train-subset 8000 --val-split 2000 --epochs 3 --threads 2

With --iterations N it runs N steps instead of whole epochs (the schedule of `residual reproduce
cifar`: `--val-split 5000 --iterations 6000` is its small scale), and with a test_batch.bin in DIR
it reports the test error too.
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
    p.add_argument("--iterations", type=int, default=None)
    p.add_argument("--model", default="resnet20", choices=["resnet20", "resnet32", "resnet44", "resnet56", "resnet110"])
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
    model = golden.CifarResNet((int(a.model[len("resnet"):]) - 2) // 6)
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
    opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=0.9, weight_decay=1e-4)
    steps_per_epoch = (len(yt) + a.batch_size - 1) // a.batch_size
    total = a.iterations or steps_per_epoch * a.epochs
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [round(total * 0.5), round(total * 0.75)], 0.1)
    g = torch.Generator().manual_seed(a.seed)
    t0 = time.time()
    step = images = 0
    while step < total:
        model.train()
        perm = torch.randperm(len(yt), generator=g)
        wrong = seen = 0  # training error over the epoch (augmented images, as they were trained on)
        for s in range(min(steps_per_epoch, total - step)):
            idx = perm[s * a.batch_size : (s + 1) * a.batch_size]
            xb = (augment(xt[idx], g) - MEAN) / STD
            out = model(xb)
            loss = F.cross_entropy(out, yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            wrong += (out.argmax(1) != yt[idx]).sum().item()
            seen += len(idx)
            step += 1
        images += seen
    train_seconds = time.time() - t0
    model.eval()

    def logits_of(x):
        with torch.no_grad():
            return torch.cat([model(x[i : i + 500]) for i in range(0, len(x), 500)])

    logits = logits_of(xv)
    acc = (logits.argmax(1) == yv).float().mean().item()
    test_error = None
    if (Path(a.dir) / "test_batch.bin").exists():
        raw = np.fromfile(Path(a.dir) / "test_batch.bin", dtype=np.uint8).reshape(-1, 3073)
        xs = (torch.from_numpy(raw[:, 1:].reshape(-1, 3, 32, 32)).float() / 255 - MEAN) / STD
        test_error = (logits_of(xs).argmax(1) != torch.from_numpy(raw[:, 0].astype(np.int64))).float().mean().item()
    print(json.dumps({"bench": f"cifar-{a.model}-peer", "peer": f"torch {torch.__version__}", "valAccuracy": acc,
                      "valLoss": F.cross_entropy(logits, yv).item(), "imagesPerSecond": images / train_seconds,
                      "iterations": total, "trainError": wrong / max(seen, 1), "testError": test_error, "seconds": train_seconds}))


if __name__ == "__main__":
    main()
