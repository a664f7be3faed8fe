"""Training throughput: the pipeline's engine (uint8 tensors on the device, batched tensor augmentation,
channels_last, the runtime's autocast, torch.compile'd step as `train.recipe.compile: true` sets it) against a
plain torchvision DataLoader + transforms loop (eager, as most training scripts are written) on the same model,
device, batch size and precision.

    python benchmarks/bench_train_engine.py --model convnetd3 --images 4096 --epochs 2

Uses real CIFAR-10 images from the shared JPEG copy. Prints images/s for each and the speed-up.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms as T
from PIL import Image

from pipeline.allocator import keep_freed_memory
from pipeline.device import resolve_runtime
from pipeline.io.sources import list_imagefolder, load_image
from pipeline.models.inputs import Normalization
from pipeline.models.registry import create_model
from pipeline.train.engine import Recipe, train

REPO = Path(__file__).resolve().parents[1]


class PilDataset(torch.utils.data.Dataset):
    def __init__(self, images: np.ndarray, labels: np.ndarray, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def dataloader_loop(model, images, labels, norm, runtime, batch_size, epochs, workers) -> float:
    transform = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                           T.Normalize(norm.mean, norm.std)])
    loader = torch.utils.data.DataLoader(PilDataset(images, labels, transform), batch_size=batch_size, shuffle=True,
                                         num_workers=workers, drop_last=False)
    model.to(runtime.device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)

    def step(x, y):
        x, y = x.to(runtime.device), y.to(runtime.device)
        with runtime.autocast():
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    warm_x, warm_y = next(iter(loader))
    step(warm_x, warm_y)  # warm-up, as the engine gets
    step(warm_x, warm_y)
    start = time.perf_counter()
    for _ in range(epochs):
        for x, y in loader:
            step(x, y)
    return epochs * len(images) / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="convnetd3")
    ap.add_argument("--images", type=int, default=4096)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--workers", type=int, nargs="*", default=[0, 2])
    ap.add_argument("--no-compile", action="store_true", help="engine without torch.compile")
    ap.add_argument("--root", default=str(REPO.parent / "shared" / "data" / "cifar10-jpeg"))
    ap.add_argument("--precision", default="auto", help="base.precision: auto | fp32 | bf16")
    ap.add_argument("--default-malloc", action="store_true",
                    help="leave glibc's mmap threshold as it is (the `dcq` entry point keeps freed memory)")
    ap.add_argument("--json", type=Path, default=None, help="append the figures as one JSON line here")
    args = ap.parse_args()
    if not args.default_malloc:
        keep_freed_memory()

    listing = list_imagefolder(Path(args.root), "train")
    rows = np.sort(np.random.default_rng(0).choice(len(listing), args.images, replace=False))
    images = np.stack([load_image(listing.files[r], 32, "reject") for r in rows])
    labels = listing.labels[rows]
    norm = Normalization.from_images(images)
    runtime = resolve_runtime("auto", args.precision)
    print(f"{args.model}, {args.images} real CIFAR-10 images, batch {args.batch_size}, {runtime.describe}")

    torch.manual_seed(0)
    model = create_model(args.model, 10, 32)
    compile_ = not args.no_compile
    recipe = Recipe(epochs=args.epochs, batch_size=args.batch_size, lr=0.05, compile=compile_)
    start = time.perf_counter()
    train(model, torch.from_numpy(images[:args.batch_size * 2]), torch.from_numpy(labels[:args.batch_size * 2]),
          Recipe(epochs=1, batch_size=args.batch_size, compile=compile_), norm, runtime, 0)  # warm-up (+ compile)
    warmup = time.perf_counter() - start
    start = time.perf_counter()
    train(model, torch.from_numpy(images), torch.from_numpy(labels), recipe, norm, runtime, 0)
    steps = args.epochs * (args.images // args.batch_size)
    engine = steps * args.batch_size / (time.perf_counter() - start)
    print(f"engine{' (compiled)' if compile_ else ''}          {engine:8.1f} img/s   (warm-up incl. compile {warmup:.1f} s)")
    for workers in args.workers:
        torch.manual_seed(0)
        rate = dataloader_loop(create_model(args.model, 10, 32), images, labels, norm, runtime, args.batch_size,
                               args.epochs, workers)
        print(f"DataLoader, {workers} workers       {rate:8.1f} img/s   engine speed-up {engine / rate:.2f}x")
    if args.json:
        record = {"model": args.model, "images": args.images, "epochs": args.epochs, "batch_size": args.batch_size,
                  "runtime": runtime.describe, "hardware": runtime.hardware, "compile": compile_,
                  "keep_freed_memory": not args.default_malloc, "engine_images_per_second": round(engine, 1),
                  "warmup_seconds": round(warmup, 1)}
        with args.json.open("a") as f:
            f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
