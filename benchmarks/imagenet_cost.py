"""What the DCQ build of ImageNet-1K costs on this CPU, from the per-image rates bench_scale.py measured at 224 px.

Reads a bench_scale.py JSON with two sizes n1 < n2 (run with the ImageNet preset at 224 px). For each stage the
marginal cost per image is (t2 - t1) / (n2 - n1) and its fixed cost (process start, model load) t1 - n1 x that;
ImageNet-1K's 1,281,167 train images then cost fixed + N x marginal. Where the growth from n1 to n2 is within
10% of t2 (run-to-run noise at such small N), t2 / n2 per image is used instead: an upper bound. Two stages do not scale with N:
- `refine` optimises images_per_cluster images of each of the k clusters for `steps` steps. With `--refine` (a
  bench_refine_memory.py JSON at 224 px) it costs k x images_per_cluster x (steps x the measured seconds per
  image-step + the measured overhead per image); otherwise the bench_scale time scaled by the images it would
  optimise (k x images_per_cluster against the clusters' images at n2) and by the preset's steps against the steps
  run (`--set refine.steps=...`), which also scales the loss evaluations by the steps (an upper bound).
- `palette` fits K-means on distinct (cluster, colour) counts, which saturate at k x 2^24; its time at n2 is kept as
  it is (a lower bound while they grow).
`palette` and `refine` run once per bit depth of the preset, `encode` writes them all in one pass (counted as the
measured one-q rate times the number of bit depths: an upper bound).

    python benchmarks/imagenet_cost.py benchmarks/scale_imagenet_224px_cpu.json
    python benchmarks/imagenet_cost.py benchmarks/scale_imagenet_224px_avx512.json \
        --refine benchmarks/refine_memory_224px_avx512.json --workers 1 8
    python benchmarks/imagenet_cost.py scale_imagenet_224px_h100.json --workers 1 8   (a bench run on one GPU)

`--workers`: one column per number of workers (Dask workers, one per GPU with dask-cuda; torchrun processes for
refine), each as fast as the benchmark's machine: the per-image stages (prepare, features, cluster's assignment,
attention, colour_counts' counting, encode) divide by it, and so does refine, whose sampled images are split among
torchrun processes (each step sums a (k, 2^q, 3) gradient over them); palette fits cluster by cluster in one
process and does not.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

IMAGENET_TRAIN = 1_281_167
PER_CLUSTER = ("palette",)  # one process, cluster by cluster: not divided among workers


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bench", type=Path, help="bench_scale.py JSON with two sizes")
    ap.add_argument("--preset", type=Path, default=Path("pipeline/presets/imagenet.yaml"))
    ap.add_argument("--workers", type=int, nargs="+", default=[1], help="a column per number of workers")
    ap.add_argument("--refine", type=Path, default=None, help="bench_refine_memory.py JSON: refine's measured rates")
    args = ap.parse_args()
    bench = json.loads(args.bench.read_text())
    refine_rate = json.loads(args.refine.read_text())["rate"] if args.refine else None
    from pipeline.config import preset_params

    preset = preset_params(args.preset, REPO / "params.yaml")  # the preset's overrides over params.yaml
    n1, n2 = bench["sizes"][:2]
    overrides = dict(item.split("=", 1) for item in bench.get("overrides", []))
    bits = len(preset["palette"]["bits"])
    k, per_cluster = preset["cluster"]["k"], preset["refine"]["images_per_cluster"]
    steps_run = int(overrides.get("refine.steps", preset["refine"]["steps"]))
    rows = []
    for stage, by_n in bench["stages"].items():
        t1, t2 = by_n[str(n1)]["seconds"], by_n[str(n2)]["seconds"]
        marginal = max(t2 - t1, 0.0) / (n2 - n1)
        fixed = max(t1 - n1 * marginal, 0.0)
        bound = t2 - t1 < 0.1 * t2  # growth within run-to-run noise at these N: bound it by t2 / n2 instead
        if bound:
            marginal, fixed = t2 / n2, 0.0
        if stage == "refine" and refine_rate is not None:
            images, steps = k * per_cluster, preset["refine"]["steps"]
            per_image = steps * refine_rate["seconds_per_image_step"] + refine_rate["overhead_seconds_per_image"]
            seconds = images * per_image * bits
            how = (f"{images:,} images x ({steps} steps x {1000 * refine_rate['seconds_per_image_step']:.1f} ms + "
                   f"{1000 * refine_rate['overhead_seconds_per_image']:.0f} ms) x {bits} q (`--refine`)")
        elif stage == "refine":
            scale = (k * per_cluster) / min(n2, k * per_cluster) * preset["refine"]["steps"] / steps_run
            seconds, how = t2 * scale * bits, f"{t2:.0f} s at N={n2:,} x {scale:.0f} (images, steps) x {bits} q"
        elif stage == "palette":
            seconds, how = t2 * bits, f"{t2:.0f} s at N={n2:,} x {bits} q (a lower bound until the distinct colours saturate)"
        else:
            per_q = bits if stage == "encode" else 1
            seconds = (fixed + IMAGENET_TRAIN * marginal) * per_q
            how = (f"<= {t2:.1f} s / {n2:,} images (no growth measurable at these N: an upper bound)" if bound
                   else f"{1 / marginal:,.1f} img/s marginal, {fixed:.0f} s fixed")
            how += f" x {bits} q" if per_q > 1 else ""
        rows.append((stage, seconds, how))
    print(f"ImageNet-1K DCQ build ({IMAGENET_TRAIN:,} train images, 224 px, {bits} bit depths) on the benchmark's "
          f"machine, from {bench['images']} at N = {n1:,} and {n2:,} ({bench['cpu_count']} cores; overrides "
          f"{bench.get('overrides', [])})")
    heads = [f"hours, {w} worker{'s' if w > 1 else ''}" for w in args.workers]
    print("| stage | " + " | ".join(heads) + " | from |\n|---|" + "---|" * len(heads) + "---|")
    totals = [0.0] * len(args.workers)
    for stage, seconds, how in rows:
        split = [seconds if stage in PER_CLUSTER else seconds / w for w in args.workers]
        totals = [t + x for t, x in zip(totals, split)]
        print(f"| {stage} | " + " | ".join(f"{x / 3600:,.2f}" for x in split) + f" | {how} |")
    print("| **total** | " + " | ".join(f"**{t / 3600:,.2f}**" for t in totals) + " | |")


if __name__ == "__main__":
    main()
