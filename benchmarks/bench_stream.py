"""Peak memory and seconds of the train stage on full colour, resident against streamed, as N doubles (issue 14).

Resident, the train stage holds the whole train split on the device; streamed (`train.stream_window` > 0,
pipeline/io/streamed.py) it holds about three windows of images and reads the next one from the prepared store
while training. The images are bench_scale's: real CIFAR-10 train images repeated with seeded flips and shifts
(for scale only), upsampled by prepare to `--image-size`. Each run is its own `dcq train` process; its peak RSS is
the kernel's (wait4), with one malloc arena as in tests/test_memory.py.

    python benchmarks/bench_stream.py --sizes 10000 40000 --image-size 32 --json benchmarks/stream_cpu_32px.json

Goal: streamed, the peak at the larger N within 10% of the smaller N's; resident, it grows by the images' bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scale import GOAL, REPO, augmented_imagefolder, run_stage


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 40_000])
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--window", type=int, default=512, help="train.stream_window of the streamed runs")
    ap.add_argument("--block", type=int, default=256, help="train.stream_block of the streamed runs")
    ap.add_argument("--model", default="convnetd3w64")
    ap.add_argument("--root", type=Path, default=REPO.parent / "shared" / "data" / "cifar10-jpeg")
    ap.add_argument("--work", type=Path, default=Path("/tmp/dcq-stream"))
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    sizes = sorted(args.sizes)
    work = args.work
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    env = dict(os.environ, TQDM_DISABLE="1", PYTHONPATH=str(REPO), MALLOC_ARENA_MAX="1")
    folder = work / "images"
    copies = augmented_imagefolder(args.root, folder, max(sizes) // 10, 10, seed=0)
    label = (f"CIFAR-10 train images repeated with seeded flips and 4-px shifts ({copies:,} of {max(sizes):,} are "
             f"copies), {args.image_size} px")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["base"]["device"] = "cpu"
    params["train"]["recipe"].update(epochs=1, compile=False)
    results: dict[str, dict[int, dict]] = {"resident": {}, "streamed": {}}
    for n in sizes:
        params["prepare"].update(root=str(folder), train_per_class=n // 10, test_per_class=10,
                                 image_size=args.image_size, resize="resize")
        prepared = work / f"prepared-{n}.zarr"
        for mode, window in (("resident", 0), ("streamed", args.window)):
            params["train"].update(stream_window=window, stream_block=args.block)
            path = work / f"params-{n}-{mode}.yaml"
            path.write_text(yaml.safe_dump(params))
            if not prepared.exists():
                run_stage(["prepare", "--params", str(path), "--out", str(prepared)], env)
            seconds, peak = run_stage(["train", "--params", str(path), "--method", "full", "--model", args.model,
                                       "--seed", "0", "--train-set", str(prepared), "--prepared", str(prepared),
                                       "--checkpoint", str(work / f"{mode}-{n}.pt"),
                                       "--record", str(work / f"{mode}-{n}.json")], env)
            record = json.loads((work / f"{mode}-{n}.json").read_text())
            results[mode][n] = {"seconds": round(seconds, 1), "peak_rss_mib": round(peak, 1),
                                "train_images_per_s": round(n / record["train_seconds"], 1),
                                "test_accuracy": record["test_accuracy"]}
            print(f"N={n:>7,} {mode:9s} {seconds:7.1f} s  peak {peak:7.1f} MiB  "
                  f"{results[mode][n]['train_images_per_s']:.1f} train img/s", flush=True)
    pixels_mib = (sizes[-1] - sizes[0]) * args.image_size**2 * 3 / 2**20
    print(f"\n{label}; {args.model}, 1 epoch; the larger N holds {pixels_mib:.0f} MiB more pixels")
    verdict = {}
    for mode, by_n in results.items():
        ratio = by_n[sizes[-1]]["peak_rss_mib"] / by_n[sizes[0]]["peak_rss_mib"]
        grew = by_n[sizes[-1]]["peak_rss_mib"] - by_n[sizes[0]]["peak_rss_mib"]
        verdict[mode] = ratio <= GOAL
        print(f"{mode:9s} peak {by_n[sizes[0]]['peak_rss_mib']:.0f} -> {by_n[sizes[-1]]['peak_rss_mib']:.0f} MiB "
              f"(+{grew:.0f}, x{ratio:.3f}){'' if mode == 'resident' or verdict[mode] else '  over goal'}")
    out = args.json or work / "stream.json"
    out.write_text(json.dumps({"images": label, "sizes": sizes, "image_size": args.image_size, "model": args.model,
                               "window": args.window, "block": args.block, "cpu_count": os.cpu_count(),
                               "runs": {m: {str(n): v for n, v in r.items()} for m, r in results.items()},
                               "streamed_within_goal": verdict["streamed"]}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
