"""The data bench's images and its peer: PyTorch's DataLoader with torchvision transforms (PIL).

python3 peer.py make DIR [--count N] [--seed S]
    Writes N ImageNet-sized JPEGs (about 500x375, quality 90) as DIR/train/<class>/<i>.jpg: smooth
    gradients, shapes and sensor-like noise, so they compress like photographs, not like noise.
python3 peer.py enlarge SRC DIR [--seed S]
    Writes SRC/train's photos (e.g. imagenette's 224x224 ones) again into DIR/train at ImageNet's
    sizes, so that real photo content exercises decoding at varied sizes: long side 500 for 75%
    (aspect 4:3, 3:2, 1:1, 3:4 or 2:3), 600-1000 for 12%, 1000-2000 for 5%, 250-400 for 8%;
    enlarged with Lanczos and given sensor-like grain (sigma 8) so a file holds about as many bytes
    as an ImageNet one (100 KB on average); quality 90, one in 20 progressive, one in 33 CMYK,
    grayscale ones kept grayscale. Enlarged photos are smoother than photos taken at that size.
python3 peer.py bench DIR --workers W [--batch-size B] [--epochs E]
    Streams DIR/train through the paper's augmentation (shorter side uniform in [256, 480], random
    224 crop, flip, ToTensor, Normalize) and prints one JSON line per epoch with its images/s, then
    one with the CPU seconds of the whole run (worker processes included) and the seconds from the
    first batch to the end, so the caller, timing the whole process, can tell start-up apart.
"""
import argparse
import json
import os
import random
import resource
import sys
import time


def make(args):
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(args.seed)
    for i in range(args.count):
        w, h = (500, 375) if i % 4 else (375, 500)  # mostly landscape, some portrait, like ImageNet
        w += int(rng.integers(-40, 41))
        h += int(rng.integers(-30, 31))
        y, x = np.mgrid[0:h, 0:w].astype(np.float32)
        base = rng.uniform(0, 255, 3)
        slope = rng.uniform(-0.4, 0.4, (3, 2))
        img = np.stack([base[c] + slope[c, 0] * x + slope[c, 1] * y for c in range(3)], axis=-1)
        pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(pil)
        for _ in range(12):
            x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
            x1, y1 = x0 + int(rng.integers(20, 200)), y0 + int(rng.integers(20, 200))
            fill = tuple(int(v) for v in rng.integers(0, 256, 3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x0, y0, x1, y1], fill=fill)
        noisy = np.asarray(pil, dtype=np.float32) + rng.normal(0, 16, (h, w, 3))
        out = os.path.join(args.dir, "train", f"c{i % 10}")
        os.makedirs(out, exist_ok=True)
        Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(os.path.join(out, f"{i}.jpg"), quality=90)


def enlarge(args):
    import glob
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(args.seed)
    for i, path in enumerate(sorted(glob.glob(os.path.join(args.src, "train", "*", "*")))):
        im = Image.open(path)
        u = rng.random()
        aspect = [4 / 3, 3 / 2, 1, 3 / 4, 2 / 3][int(rng.integers(0, 5))]
        long = 500 if u < 0.75 else int(rng.integers(600, 1000)) if u < 0.87 else int(rng.integers(1000, 2000)) if u < 0.92 else int(rng.integers(250, 400))
        w, h = (long, round(long / aspect)) if aspect >= 1 else (round(long * aspect), long)
        big = np.asarray(im.convert("L" if im.mode == "L" else "RGB").resize((w, h), Image.LANCZOS), dtype=np.float32)
        out = Image.fromarray(np.clip(big + rng.normal(0, 8, big.shape), 0, 255).astype(np.uint8))
        folder = os.path.join(args.dir, "train", os.path.basename(os.path.dirname(path)))
        os.makedirs(folder, exist_ok=True)
        if i % 33 == 5:
            out = out.convert("CMYK")
        out.save(os.path.join(folder, os.path.basename(path)), "JPEG", quality=90, progressive=i % 20 == 7)


def bench(args):
    try:
        import torch
        import torchvision.transforms as T
        import torchvision.transforms.functional as F
        from torchvision.datasets import ImageFolder
    except ImportError as e:
        print(json.dumps({"error": f"PyTorch/torchvision is not installed ({e})"}))
        return

    class RandomShorterSide:
        """The paper's scale augmentation: resize so the shorter side is uniform in [lo, hi]."""

        def __init__(self, lo, hi):
            self.lo, self.hi = lo, hi

        def __call__(self, img):
            return F.resize(img, random.randint(self.lo, self.hi))

    transform = T.Compose([
        RandomShorterSide(256, 480),
        T.RandomCrop(224),
        T.RandomHorizontalFlip(),
        T.ToTensor(),
        T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    ])
    data = ImageFolder(os.path.join(args.dir, "train"), transform=transform)
    loader = torch.utils.data.DataLoader(data, batch_size=args.batch_size, shuffle=True, num_workers=args.workers, persistent_workers=args.workers > 0)
    total = 0
    first = None
    for epoch in range(args.epochs):
        start = time.perf_counter()
        images = 0
        for x, _ in loader:
            if first is None:
                first = (time.perf_counter(), x.shape[0])
            images += x.shape[0]
        seconds = time.perf_counter() - start
        total += images
        print(json.dumps({"epoch": epoch, "images": images, "seconds": seconds, "imagesPerSecond": images / seconds}), flush=True)
    del loader  # joins the worker processes, so their CPU time is counted below
    # The whole process, imports included, as the other side counts its own.
    cpu = sum(u.ru_utime + u.ru_stime for u in map(resource.getrusage, (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)))
    end = time.perf_counter()
    print(json.dumps({"images": total, "cpuSeconds": cpu, "afterFirstBatchSeconds": end - first[0], "firstBatchImages": first[1]}), flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("command", choices=["make", "enlarge", "bench"])
    p.add_argument("dir", help="enlarge: SRC then DIR")
    p.add_argument("out", nargs="?")
    p.add_argument("--count", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=os.cpu_count())
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=2)
    args = p.parse_args()
    if args.command == "enlarge":
        args.src, args.dir = args.dir, args.out
    {"make": make, "enlarge": enlarge, "bench": bench}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
