"""Time every DCQ stage on the real CIFAR-10 train set with a given teacher checkpoint.

Each stage runs as its own `dcq` process (exactly what `dvc repro` runs), so its wall time and peak
resident memory (from wait4's rusage) are its own. Prints images/s per stage and peak memory, and writes
a JSON record.

    python benchmarks/bench_stages.py --teacher data/teacher/model.pt --bits 2 --work /tmp/dcq-bench

Each stage also writes its in-stage time (`--timing`); the rest of its process wall time is its start-up (imports,
argument parsing), reported per stage. `--repo` times another checkout's code (an earlier commit, for a before and
after on one machine).

Goals on the 2-core CPU: the whole DCQ build on 50k images in at most 100 s; features under 10 s or at least 25% of
the sgemm rate, attention under 30 s or at least 40% (their FLOPs per image by torch's FLOP counter: the extractor's
forward; the teacher's forward plus the CAM's backward to its layer); peak memory < 4 GiB.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def run_stage(args: list[str], env: dict, python: str) -> tuple[float, float]:
    """(seconds, peak RSS in GiB) of one `dcq` stage process."""
    start = time.perf_counter()
    # in the checkout (`python -m` puts the working directory first on sys.path, before any editable install)
    proc = subprocess.Popen([python, "-m", "pipeline.cli", *args], env=env, cwd=env["PYTHONPATH"])
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"stage failed: dcq {' '.join(args)}")
    return seconds, usage.ru_maxrss / 2**20  # ru_maxrss is in KiB on Linux


def model_flops(teacher: Path, params: dict, image_size: int, batch: int = 8) -> dict[str, float]:
    """FLOPs per image of features (the truncated extractor's forward and the pooling) and of attention (the
    teacher's forward with the CAM's backward to its layer), counted by torch on a batch of `batch` images."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from pipeline.models.checkpoint import load_checkpoint
    from pipeline.models.layers import get_module, truncated_extractor
    from pipeline.quantize.attention import LabelCAM
    from pipeline.quantize.feature_store import pool

    x = torch.randn(batch, 3, image_size, image_size)
    model, _, _ = load_checkpoint(teacher)
    f = params["features"]
    extractor = truncated_extractor(model, f["layer"], "features.layer", image_size)  # its set-up pass not counted
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        pool(extractor(x), f["pooling"], f["grid_size"])
    flops = {"features": counter.get_total_flops() / batch}
    model, _, _ = load_checkpoint(teacher)
    cam = LabelCAM(model, get_module(model, params["attention"]["layer"], "attention.layer"),
                   params["attention"]["method"])
    with FlopCounterMode(display=False) as counter:
        cam(x, torch.zeros(batch, dtype=torch.int64))
    flops["attention"] = counter.get_total_flops() / batch
    return flops


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", required=True, type=Path, help="a dcq teacher checkpoint (the teacher stage's output)")
    ap.add_argument("--root", default=str(REPO.parent / "shared" / "data" / "cifar10-jpeg"))
    ap.add_argument("--train-per-class", type=int, default=None, help="default: all 5,000 per class")
    ap.add_argument("--bits", type=int, default=2)
    ap.add_argument("--work", type=Path, default=Path("/tmp/dcq-bench"))
    ap.add_argument("--params", type=Path, default=REPO / "params.yaml", help="stage params to start from")
    ap.add_argument("--json", type=Path, default=None, help="write the figures here")
    ap.add_argument("--repo", type=Path, default=REPO, help="the checkout whose `dcq` runs the stages")
    ap.add_argument("--python", default=sys.executable, help="the interpreter (of that checkout's environment)")
    args = ap.parse_args()

    work = args.work
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    params = yaml.safe_load(args.params.read_text())
    params["prepare"].update(root=args.root, train_per_class=args.train_per_class, test_per_class=1)
    params["teacher"]["checkpoint"] = str(args.teacher.resolve())
    params_file = work / "params.yaml"
    params_file.write_text(yaml.safe_dump(params))
    env = dict(os.environ, TQDM_DISABLE="1", PYTHONPATH=str(args.repo.resolve()))
    p, q = ["--params", str(params_file)], str(args.bits)
    d = {name: str(work / name) for name in ("prepared.zarr", "features.zarr", "clusters.zarr", "attention.zarr",
                                             "counts.zarr", "palette.zarr")}
    d["refined.zarr"] = str(work / "refined" / f"q{q}.zarr")  # encode reads q{q}.zarr from a folder
    stages = [
        ("prepare", ["prepare", *p, "--out", d["prepared.zarr"]]),
        ("features", ["features", *p, "--prepared", d["prepared.zarr"], "--teacher", str(args.teacher),
                      "--out", d["features.zarr"]]),
        ("cluster", ["cluster", *p, "--features", d["features.zarr"], "--out", d["clusters.zarr"]]),
        ("attention", ["attention", *p, "--prepared", d["prepared.zarr"], "--teacher", str(args.teacher),
                       "--out", d["attention.zarr"]]),
        ("colour_counts", ["colour_counts", *p, "--prepared", d["prepared.zarr"], "--clusters", d["clusters.zarr"],
                           "--attention", d["attention.zarr"], "--out", d["counts.zarr"]]),
        ("palette", ["palette", *p, "--bits", q, "--colour-counts", d["counts.zarr"], "--out", d["palette.zarr"]]),
        ("refine", ["refine", *p, "--bits", q, "--prepared", d["prepared.zarr"], "--clusters", d["clusters.zarr"],
                    "--palettes", d["palette.zarr"], "--out", d["refined.zarr"], "--metrics", str(work / "refine.json")]),
        ("encode", ["encode", *p, "--bits", q, "--prepared", d["prepared.zarr"], "--clusters", d["clusters.zarr"],
                    "--refined", str(work / "refined"), "--out", str(work / "dcq")]),
    ]
    results = {}
    for name, stage_args in stages:
        timing = work / f"timing-{name}.json"
        seconds, peak = run_stage([*stage_args, "--timing", str(timing)], env, args.python)
        in_stage = json.loads(timing.read_text())["seconds"]
        results[name] = {"seconds": round(seconds, 1), "in_stage_seconds": in_stage,
                         "startup_seconds": round(seconds - in_stage, 1), "peak_rss_gib": round(peak, 2)}
        print(f"{name:10s} {seconds:8.1f} s  (start-up {seconds - in_stage:4.1f} s)  peak {peak:5.2f} GiB", flush=True)
    import zarr

    n = zarr.open_group(d["prepared.zarr"], mode="r")["train/images"].shape[0]
    print(f"\n{n:,} train images, {args.bits}-bit, teacher {args.teacher}")
    print(f"{'stage':10s} {'seconds':>8s} {'start-up':>8s} {'img/s':>8s} {'peak GiB':>9s}")
    import torch
    from bench_architectures import sgemm_rate  # the same ceiling as the architectures benchmark

    peak_gflops = sgemm_rate(torch.get_num_threads())
    size = zarr.open_group(d["prepared.zarr"], mode="r")["train/images"].shape[1]
    flops = model_flops(args.teacher, params, size)
    for name, r in results.items():
        r["images_per_second"] = round(n / r["seconds"], 1)
        line = (f"{name:10s} {r['seconds']:8.1f} {r['startup_seconds']:8.1f} {r['images_per_second']:8.1f} "
                f"{r['peak_rss_gib']:9.2f}")
        if name in flops:
            r["mflop_per_image"] = round(flops[name] / 1e6, 2)
            r["share_of_sgemm"] = round(r["images_per_second"] * flops[name] / 1e9 / peak_gflops, 4)
            line += (f"   {r['mflop_per_image']:.1f} MFLOP/image, {r['images_per_second'] * flops[name] / 1e9:.1f} "
                     f"GFLOP/s = {100 * r['share_of_sgemm']:.1f}% of sgemm")
        print(line)
    build = sum(r["seconds"] for r in results.values())
    startup = sum(r["startup_seconds"] for r in results.values())
    print(f"DCQ build {build:.1f} s for {n:,} images (goal at 50,000: <= 100 s), of which start-up {startup:.1f} s; "
          f"sgemm fp32 {peak_gflops:.1f} GFLOP/s")
    goals = {"features": (10, 0.25), "attention": (30, 0.40)}
    for name, (goal_s, goal_share) in goals.items():
        r = results[name]
        print(f"{name:10s} {r['seconds']:6.1f} s (goal < {goal_s} s) or {100 * r['share_of_sgemm']:.1f}% of sgemm "
              f"(goal >= {100 * goal_share:.0f}%)")
    peak = max(r["peak_rss_gib"] for r in results.values())
    print(f"peak memory {peak:.2f} GiB (goal < 4 GiB)")
    from pipeline.device import resolve_runtime

    runtime = resolve_runtime(params["base"]["device"], params["base"]["precision"])
    commit = subprocess.run(["git", "-C", str(args.repo), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    record = {"images": n, "bits": args.bits, "stages": results, "peak_rss_gib": peak, "cpu_count": os.cpu_count(),
              "build_seconds": round(build, 1), "startup_seconds": round(startup, 1),
              "sgemm_gflops": round(peak_gflops, 1), "hardware": runtime.hardware, "runtime": runtime.describe,
              "code": commit}
    out = args.json or work / "bench.json"
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
