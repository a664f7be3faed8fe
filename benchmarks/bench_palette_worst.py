"""The palette stage's worst case per cluster: K-means on every one of the 2^24 sRGB colours (issue 14's cost table).

`palette` fits each cluster's K-means on its distinct colours weighted by their pixel counts (exact, and what
`colour_counts` stores). The distinct colours of a cluster grow with N up to 2^24, so an ImageNet-size cluster can
cost at most a K-means on all 2^24 colours. This benchmark times `fit_palette_counts` on one cluster holding every
colour (counts drawn from a seeded geometric law, weights only) for each bit depth of a preset, with its K-means
iterations and no pixel cap, as the stage runs it. The palette row of the cost table is at most k x the sum.

    python benchmarks/bench_palette_worst.py --json benchmarks/palette_worst_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", type=Path, default=REPO / "pipeline" / "presets" / "imagenet.yaml")
    ap.add_argument("--colours", type=int, default=1 << 24, help="distinct colours of the cluster (at most 2^24)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    from pipeline.config import preset_params
    from pipeline.quantize.palette import ColourCounts, fit_palette_counts

    preset = preset_params(args.preset, REPO / "params.yaml")  # the preset's overrides over params.yaml
    palette, k = preset["palette"], preset["cluster"]["k"]
    counts = ColourCounts()
    counts.codes = np.random.default_rng(0).permutation(1 << 24)[: args.colours].astype(np.int32)
    counts.codes.sort()
    counts.counts = np.random.default_rng(1).geometric(0.05, args.colours).astype(np.int64)
    seconds = {}
    for q in palette["bits"]:
        start = time.perf_counter()
        fit_palette_counts(counts, 2**q, palette["iterations"], 0, palette["max_pixels_per_cluster"])
        seconds[q] = round(time.perf_counter() - start, 2)
        print(f"q={q}: {seconds[q]:.1f} s for {args.colours:,} colours, {palette['iterations']} iterations", flush=True)
    total = sum(seconds.values())
    print(f"one cluster, every q: {total:.1f} s; the stage's worst case for k = {k}: {k * total / 3600:.2f} h")
    if args.json:
        args.json.write_text(json.dumps({
            "preset": str(args.preset.relative_to(REPO)), "colours": args.colours, "iterations": palette["iterations"],
            "clusters": k, "seconds_per_cluster": seconds, "worst_case_hours": round(k * total / 3600, 3),
            "cpu_count": os.cpu_count()}, indent=2) + "\n")


if __name__ == "__main__":
    main()
