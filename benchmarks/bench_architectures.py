"""Training rate of the registry's networks on this machine, and what limits it (issue 15).

For each model: FLOPs of one training step per image (3x the forward pass by torch's FLOP counter), then images/s of a
training step (SGD, batch of real CIFAR-10 images) in four settings: contiguous NCHW eager, channels_last eager,
channels_last under torch.compile, and channels_last eager on one thread. Each rate is also given as the share of
this machine's measured fp32 matrix-multiply rate (a 4096^2 sgemm on every thread), the practical ceiling for
convolutions here.

    python benchmarks/bench_architectures.py --models resnet18 mobilenetv2 convnetd3w64 --json /tmp/arch.json

Images: real CIFAR-10 from the shared JPEG copy (one batch, reused: the rate of the step, not of the data path,
which the engine keeps on the device anyway).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from pipeline.io.sources import list_imagefolder, load_image
from pipeline.models.inputs import Normalization, to_input
from pipeline.models.registry import create_model

REPO = Path(__file__).resolve().parents[1]
SETTINGS = ("eager NCHW", "eager channels_last", "compiled channels_last", "eager channels_last, 1 thread")


def sgemm_rate(threads: int, size: int = 4096, repeats: int = 5) -> float:
    """Measured fp32 GFLOP/s of a size^2 matrix product on `threads` threads."""
    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def step_flops(model_name: str, image_size: int) -> float:
    """FLOPs per image of one training step: 3x the forward pass (the backward pass computes the gradients of the
    inputs and of the weights, each a forward's worth). Counted on the forward only, because torch's counter
    counts a grouped convolution's backward as if it were dense (20x MobileNetV2's forward instead of 2x)."""
    model = create_model(model_name, 10, image_size).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.randn(1, 3, image_size, image_size))
    return 3 * counter.get_total_flops()


def step_rate(model_name: str, x: torch.Tensor, y: torch.Tensor, setting: str, steps: int) -> float:
    """Training images/s of `steps` timed SGD steps after 3 warm-up steps (compilation included there)."""
    torch.set_num_threads(1 if "1 thread" in setting else _THREADS)
    torch.manual_seed(0)
    model = create_model(model_name, 10, x.shape[-1]).train()
    if "channels_last" in setting:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    else:
        x = x.contiguous()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    forward = torch.compile(model, dynamic=False) if "compiled" in setting else model

    def step():
        loss = F.cross_entropy(forward(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * len(x) / (time.perf_counter() - start)


_THREADS = torch.get_num_threads()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["resnet18", "mobilenetv2", "convnetd3w64"])
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--root", default=str(REPO.parent / "shared" / "data" / "cifar10-jpeg"))
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    listing = list_imagefolder(Path(args.root), "train")
    rows = np.sort(np.random.default_rng(0).choice(len(listing), args.batch_size, replace=False))
    images = np.stack([load_image(listing.files[r], 32, "reject") for r in rows])
    x = to_input(torch.from_numpy(images), Normalization.from_images(images)).contiguous()
    y = torch.from_numpy(listing.labels[rows]).long()
    peak = {1: sgemm_rate(1), _THREADS: sgemm_rate(_THREADS)}
    print(f"sgemm fp32: {peak[1]:.1f} GFLOP/s on 1 thread, {peak[_THREADS]:.1f} on {_THREADS}; "
          f"batch {args.batch_size} real CIFAR-10 images at 32 px")
    results = {"sgemm_gflops": {str(k): round(v, 1) for k, v in peak.items()}, "batch_size": args.batch_size,
               "models": {}}
    for name in args.models:
        flops = step_flops(name, 32)
        row = {"train_gflop_per_image": round(flops / 1e9, 3)}
        for setting in SETTINGS:
            rate = step_rate(name, x, y, setting, args.steps)
            share = rate * flops / 1e9 / peak[1 if "1 thread" in setting else _THREADS]
            row[setting] = {"images_per_s": round(rate, 1), "share_of_sgemm": round(share, 3)}
            print(f"{name:14s} {flops / 1e9:6.3f} GFLOP/img  {setting:32s} {rate:8.1f} img/s  "
                  f"{100 * share:5.1f}% of sgemm", flush=True)
        results["models"][name] = row
    torch.set_num_threads(_THREADS)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
