"""Peak memory and seconds of every DCQ stage as N grows (issue 14): memory must be set by chunk and batch sizes.

The images are real CIFAR-10 train images repeated with seeded flips and crops up to the largest N, labelled as such
in the output (for scale only, never for accuracy), written once as an ImageFolder of JPEGs; each N is a seeded
per-class subset of it (prepare.train_per_class = N / 10). Above 32 px, prepare upsamples them (resize: resize). The
teacher is trained once by the teacher stage on `--teacher-images` of them for `--teacher-epochs` (its quality
changes neither memory nor rates) and loaded by every N.

Each stage runs as its own `dcq` process, started from this small process; its peak RSS is the kernel's (wait4),
with one malloc arena (MALLOC_ARENA_MAX=1: glibc's per-thread arenas add run-to-run slack that is not the stage's
data; see tests/test_memory.py) and a fixed mmap threshold (MALLOC_MMAP_THRESHOLD_=131072: glibc otherwise raises
the threshold to the largest block freed, up to 32 MiB, so later shard-sized buffers come from the heap, whose
high-water mark crept up with the number of shards: features 1,013 -> 1,141 MiB from 50k to 200k images with the
default, 988 -> 989 MiB with the threshold fixed; benchmarks/scale_cpu_32px_avx512*.json).

    python benchmarks/bench_scale.py --sizes 50000 100000 200000 --image-size 32 --json benchmarks/scale_cpu_32px.json

Goal: for every stage, peak RSS at the largest N within 10% of the smallest N's.
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

import numpy as np
import yaml
from PIL import Image, ImageOps

REPO = Path(__file__).resolve().parents[1]
STAGES = ["prepare", "features", "cluster", "attention", "colour_counts", "palette", "refine", "encode"]
BASELINES = ["baseline", "codec"]  # opt-in (--stages): Median Cut per image, and JPEG at the DCQ store's bytes
GOAL = 1.10


def augmented_imagefolder(source: Path, dest: Path, per_class: int, test_per_class: int, seed: int) -> int:
    """dest/train/<class>/ with per_class images: the originals, then flipped and 4-px-shifted copies of them
    (seeded); dest/test/<class>/ with the first test_per_class originals. Returns the number of copies made."""
    rng = np.random.default_rng(seed)
    copies = 0
    for class_dir in sorted((source / "train").iterdir()):
        files = sorted(class_dir.iterdir())
        out = dest / "train" / class_dir.name
        out.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            src, repeat = files[i % len(files)], i // len(files)
            target = out / f"{i:07d}.jpg"
            if repeat == 0:
                shutil.copyfile(src, target)
                continue
            image = Image.open(src).convert("RGB")
            if repeat % 2:
                image = ImageOps.mirror(image)
            dx, dy = (int(v) for v in rng.integers(-4, 5, 2))
            image = image.transform(image.size, Image.Transform.AFFINE, (1, 0, dx, 0, 1, dy))
            image.save(target, quality=95)
            copies += 1
        test_out = dest / "test" / class_dir.name
        test_out.mkdir(parents=True, exist_ok=True)
        for src in sorted((source / "test" / class_dir.name).iterdir())[:test_per_class]:
            shutil.copyfile(src, test_out / src.name)
    return copies


def run_stage(args: list[str], env: dict) -> tuple[float, float]:
    """(seconds, peak RSS in MiB) of one `dcq` stage process."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", *args], env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"stage failed: dcq {' '.join(args)}")
    return time.perf_counter() - start, usage.ru_maxrss / 1024


def stage_args(name: str, p: list[str], work: Path, teacher: Path, bits: int) -> list[str]:
    d = {k: str(work / k) for k in ("prepared.zarr", "features.zarr", "clusters.zarr", "attention.zarr", "counts.zarr",
                                    "palette.zarr")}
    q = str(bits)
    return {
        "prepare": ["prepare", *p, "--out", d["prepared.zarr"]],
        "features": ["features", *p, "--prepared", d["prepared.zarr"], "--teacher", str(teacher),
                     "--out", d["features.zarr"]],
        "cluster": ["cluster", *p, "--features", d["features.zarr"], "--out", d["clusters.zarr"]],
        "attention": ["attention", *p, "--prepared", d["prepared.zarr"], "--teacher", str(teacher),
                      "--out", d["attention.zarr"]],
        "colour_counts": ["colour_counts", *p, "--prepared", d["prepared.zarr"], "--clusters", d["clusters.zarr"],
                          "--attention", d["attention.zarr"], "--out", d["counts.zarr"]],
        "palette": ["palette", *p, "--bits", q, "--colour-counts", d["counts.zarr"], "--out", d["palette.zarr"]],
        "refine": ["refine", *p, "--bits", q, "--prepared", d["prepared.zarr"], "--clusters", d["clusters.zarr"],
                   "--palettes", d["palette.zarr"], "--out", str(work / "refined" / f"q{q}.zarr"),
                   "--metrics", str(work / "refine.json")],
        "encode": ["encode", *p, "--bits", q, "--prepared", d["prepared.zarr"], "--clusters", d["clusters.zarr"],
                   "--refined", str(work / "refined"), "--out", str(work / "dcq")],
        "baseline": ["baseline", *p, "--method", "median_cut", "--bits", q, "--prepared", d["prepared.zarr"],
                     "--out", str(work / "median_cut.zarr")],
        "codec": ["codec", *p, "--codec", "jpeg", "--bits", q, "--prepared", d["prepared.zarr"],
                  "--match", str(work / "dcq" / f"q{q}.zarr"), "--out", str(work / "jpeg.zarr")],
    }[name]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[50_000, 100_000, 200_000])
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--bits", type=int, default=2)
    ap.add_argument("--teacher-images", type=int, default=5_000)
    ap.add_argument("--teacher-epochs", type=int, default=1)
    ap.add_argument("--root", type=Path, default=REPO.parent / "shared" / "data" / "cifar10-jpeg")
    ap.add_argument("--params", type=Path, default=REPO / "params.yaml", help="stage params to start from")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="override a param (YAML value), e.g. attention.batch_size=8 for 224 px on a small host")
    ap.add_argument("--stages", nargs="+", default=STAGES, choices=STAGES + BASELINES,
                    help="the stages to run, in pipeline order (each needs the stores of the ones before it; "
                         "baseline needs prepare, codec needs encode)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/dcq-scale"))
    ap.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = ap.parse_args()
    sizes = sorted(args.sizes)
    if any(n % 10 for n in sizes):
        raise SystemExit(f"--sizes {sizes}: each must divide by the 10 classes")
    work = args.work
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    pythonpath = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))  # keep a --target site
    env = dict(os.environ, TQDM_DISABLE="1", PYTHONPATH=pythonpath, MALLOC_ARENA_MAX="1", MALLOC_MMAP_THRESHOLD_="131072")

    start = time.perf_counter()
    folder = work / "images"
    copies = augmented_imagefolder(args.root, folder, max(sizes) // 10, 10, seed=0)
    label = (f"CIFAR-10 train images repeated with seeded flips and 4-px shifts ({copies:,} of {max(sizes):,} are "
             f"copies), {args.image_size} px")
    print(f"{label}: written in {time.perf_counter() - start:.0f} s", flush=True)

    base_params = yaml.safe_load(args.params.read_text())
    base_params["base"]["device"] = "cpu"
    for item in args.overrides:
        key, _, value = item.partition("=")
        *sections, leaf = key.split(".")
        node = base_params
        for section in sections:
            node = node[section]
        if leaf not in node:
            raise SystemExit(f"--set {item}: {key} is not in {args.params}")
        node[leaf] = yaml.safe_load(value)

    def params_for(n: int, run_dir: Path, **teacher) -> list[str]:
        params = json.loads(json.dumps(base_params))
        params["prepare"].update(root=str(folder), train_per_class=n // 10, test_per_class=10,
                                 image_size=args.image_size, resize="resize")
        params["teacher"].update(teacher)
        path = run_dir / "params.yaml"
        path.write_text(yaml.safe_dump(params))
        return ["--params", str(path)]

    teacher_dir = work / "teacher"
    teacher_dir.mkdir()
    recipe = dict(base_params["teacher"]["recipe"], epochs=args.teacher_epochs, compile=False)
    p = params_for(args.teacher_images, teacher_dir, recipe=recipe)
    run_stage(["prepare", *p, "--out", str(teacher_dir / "prepared.zarr")], env)
    teacher = teacher_dir / "model.pt"
    seconds, _ = run_stage(["teacher", *p, "--prepared", str(teacher_dir / "prepared.zarr"), "--checkpoint", str(teacher),
                            "--metrics", str(teacher_dir / "metrics.json")], env)
    print(f"teacher ({args.teacher_images:,} images, {args.teacher_epochs} epoch): {seconds:.0f} s", flush=True)

    stages = [stage for stage in STAGES + BASELINES if stage in args.stages]
    results: dict[str, dict[int, dict]] = {stage: {} for stage in stages}
    for n in sizes:
        run_dir = work / f"n{n}"
        run_dir.mkdir()
        p = params_for(n, run_dir, checkpoint=str(teacher))
        for stage in stages:
            seconds, peak = run_stage(stage_args(stage, p, run_dir, teacher, args.bits), env)
            results[stage][n] = {"seconds": round(seconds, 1), "peak_rss_mib": round(peak, 1)}
            print(f"N={n:>8,} {stage:14s} {seconds:8.1f} s  peak {peak:8.1f} MiB", flush=True)
        shutil.rmtree(run_dir)  # the next N's stores need the disk

    print(f"\n{label}; q={args.bits}; seconds and peak RSS (MiB) per stage; goal: largest N's peak <= "
          f"{GOAL:.2f} x the smallest N's")
    print(f"{'stage':14s}" + "".join(f"{n:>22,}" for n in sizes) + f"{'peak ratio':>12s}")
    verdicts = {}
    for stage, by_n in results.items():
        ratio = by_n[sizes[-1]]["peak_rss_mib"] / by_n[sizes[0]]["peak_rss_mib"]
        verdicts[stage] = ratio <= GOAL
        cells = "".join(f"{by_n[n]['seconds']:>10.1f} s {by_n[n]['peak_rss_mib']:>6.0f} MiB" for n in sizes)
        print(f"{stage:14s}{cells}{ratio:>11.3f}{'' if verdicts[stage] else '  over goal'}")
    record = {"images": label, "sizes": sizes, "image_size": args.image_size, "bits": args.bits,
              "params": str(args.params), "overrides": args.overrides,
              "cpu_count": os.cpu_count(), "stages": {s: {str(n): v for n, v in r.items()} for s, r in results.items()},
              "within_goal": verdicts}
    out = args.json or work / "scale.json"
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
