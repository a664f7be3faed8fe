"""Peak memory and seconds of palette refinement as the images it optimises grow (issue 14: refine at ImageNet size).

Refinement optimises `refine.images_per_cluster` images of each of the k clusters at full size; one step's autograd
graph holds ~30 image-sized float tensors. Above `STEP_PIXELS` pixels (pipeline/quantize/refine.py) a step runs in
chunks of images. This benchmark runs `refine_palettes` on real CIFAR-10 train images upsampled (bicubic) to
`--image-size`, k groups of B images (group = image index mod k, for scale only: the rates and memory do not depend
on which images share a palette), each group's starting palette 2^q of its own pixels (seeded), for B in `--per-cluster`,
each configuration in its own process (peak RSS from wait4, one malloc arena, fixed mmap threshold), in chunks (the
default) and, with `--one-graph`, forced into one graph (what refine did before chunking). The largest chunked B runs
again with `--rate-steps` steps: the difference is the marginal seconds per image-step, the rest of a one-step run
(the edge maps and the loss evaluations before and after) its overhead per image; `imagenet_cost.py --refine` turns
them into the refine row of the ImageNet-1K cost table.

    python benchmarks/bench_refine_memory.py --json benchmarks/refine_memory_224px_cpu.json
    python benchmarks/bench_refine_memory.py --device cuda --per-cluster 64 --one-graph --json refine_gpu.json

With `--device cuda` the images and palettes live on the GPU, a one-image step runs first (CUDA's kernel loading),
the seconds are taken after a synchronize, and each record adds the GPU's peak allocated memory (`peak_device_mib`); peak RSS is then the host's share only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def child(args: argparse.Namespace) -> None:
    """One configuration, in this process: print a JSON line of its figures."""
    import numpy as np
    import torch
    from PIL import Image

    from pipeline.quantize import refine
    from pipeline.quantize.color import rgb_to_lab

    if args.one_graph_child:
        refine.STEP_PIXELS = 1 << 62
    k, b, size = args.clusters, args.child, args.image_size
    files = sorted(p for d in sorted((Path(args.root) / "train").iterdir()) for p in sorted(d.iterdir())[: k * b])
    files = files[:: max(1, len(files) // (k * b))][: k * b]
    lab = torch.empty(k * b, 3, size, size)
    for i, path in enumerate(files):  # one image at a time: the loading adds nothing to the peak
        rgb = np.array(Image.open(path).convert("RGB").resize((size, size), Image.Resampling.BICUBIC))
        lab[i] = rgb_to_lab(torch.from_numpy(rgb)).permute(2, 0, 1)
    lab = lab.reshape(b, k, 3, size, size).transpose(0, 1).contiguous()  # group = image index mod k
    rng = np.random.default_rng(0)  # each group's palette: 2^q of its pixels, picked without copying the images
    picks = [np.unravel_index(rng.choice(b * size * size, 2**args.bits, replace=False), (b, size, size)) for _ in range(k)]
    start = torch.stack([lab[g, torch.from_numpy(i), :, torch.from_numpy(y), torch.from_numpy(x)]
                         for g, (i, y, x) in enumerate(picks)])
    chunks = len(refine.image_chunks(lab))
    device = torch.device(args.device)
    lab, start = lab.to(device), start.to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if device.type == "cuda":  # CUDA loads its kernels on first use: a one-image step first keeps that out of the rates
        refine.refine_palettes(lab[:, :1], start, torch.ones(3), 1, 0.5)
        torch.cuda.reset_peak_memory_stats(device)
    sync()
    t0 = time.perf_counter()
    _, before, after = refine.refine_palettes(lab, start, torch.ones(3), args.steps, 0.5)
    sync()
    seconds = time.perf_counter() - t0
    record = {"per_cluster": b, "images": k * b, "pixels": k * b * size * size, "chunks": chunks,
              "one_graph": args.one_graph_child, "device": str(device), "seconds": round(seconds, 3),
              "loss_before": round(float(before.mean()), 2), "loss_after": round(float(after.mean()), 2)}
    if device.type == "cuda":
        record["peak_device_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20)
    print(json.dumps(record))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-cluster", type=int, nargs="+", default=[8, 16, 32, 64])
    ap.add_argument("--one-graph", type=int, nargs="*", default=[8, 16, 32],
                    help="the B also run in one graph (the old refine; its memory grows with B)")
    ap.add_argument("--clusters", type=int, default=20)
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--bits", type=int, default=2)
    ap.add_argument("--steps", type=int, default=1)
    ap.add_argument("--rate-steps", type=int, default=3, help="the largest chunked B again with this many steps")
    ap.add_argument("--root", default=str(REPO.parent / "shared" / "data" / "cifar10-jpeg"))
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N: where the images and palettes live")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--one-graph-child", dest="one_graph_child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        return child(args)
    env = dict(os.environ, PYTHONPATH=str(REPO), MALLOC_ARENA_MAX="1", MALLOC_MMAP_THRESHOLD_="131072")
    largest = max(args.per_cluster)
    runs = ([(b, False, args.steps) for b in args.per_cluster] + [(b, True, args.steps) for b in args.one_graph]
            + [(largest, False, args.rate_steps)])
    results = []
    for b, one_graph, steps in runs:
        cmd = [sys.executable, __file__, "--child", str(b), "--clusters", str(args.clusters), "--image-size",
               str(args.image_size), "--bits", str(args.bits), "--steps", str(steps), "--root", args.root,
               "--device", args.device]
        proc = subprocess.Popen(cmd + (["--one-graph-child"] if one_graph else []), env=env, stdout=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        out = proc.stdout.read().decode().strip().splitlines()
        if os.waitstatus_to_exitcode(status) != 0 or not out:
            raise SystemExit(f"configuration B={b} one_graph={one_graph} failed (exit {status})")
        record = json.loads(out[-1]) | {"steps": steps, "peak_rss_mib": round(usage.ru_maxrss / 1024)}
        results.append(record)
        print(f"B={b:3d} {'one graph' if one_graph else 'chunked  '} {steps} step(s) {record['pixels'] / 1e6:6.1f} M "
              f"pixels {record['chunks']} chunk(s) peak {record['peak_rss_mib']:6,} MiB {record['seconds']:6.1f} s"
              + (f" device peak {record['peak_device_mib']:,} MiB" if "peak_device_mib" in record else ""), flush=True)
    one, many = (next(r for r in results if r["per_cluster"] == largest and not r["one_graph"] and r["steps"] == s)
                 for s in (args.steps, args.rate_steps))
    per_step = (many["seconds"] - one["seconds"]) / (many["steps"] - one["steps"]) / one["images"]
    rate = {"per_cluster": largest, "seconds_per_image_step": round(per_step, 5),
            "overhead_seconds_per_image": round(max(0.0, one["seconds"] / one["images"] - one["steps"] * per_step), 5)}
    print(f"refine at {args.image_size} px: {1000 * rate['seconds_per_image_step']:.2f} ms per image-step, "
          f"{1000 * rate['overhead_seconds_per_image']:.2f} ms per image once (edge maps, loss evaluations)")
    if args.json:
        args.json.write_text(json.dumps({
            "images": f"CIFAR-10 train images upsampled to {args.image_size} px (bicubic), {args.clusters} groups",
            "clusters": args.clusters, "image_size": args.image_size, "bits": args.bits, "cpu_count": os.cpu_count(),
            "device": args.device,
            "runs": results, "rate": rate}, indent=2) + "\n")


if __name__ == "__main__":
    main()
