"""What the per-shard content hashes cost (pipeline/io/verify.py): sealing a store, and reading it back through the
verifying store against plain zarr, on the prepared store of all 50,000 real CIFAR-10 train images (32 px).

    python benchmarks/bench_shard_hash.py --json benchmarks/shard_hash_cpu_50k.json

Measured:
- `prepare`: the whole stage (decode, write, seal with every file's sha256), once;
- `seal_file_hashes`: the sha256 of every chunk and shard file of the store (the part of sealing that is new);
- `read_train_plain` / `read_train_verified`: the train images read in shard-aligned blocks (what the DCQ stages
  do), best of `--repeats`, with a warm page cache;
- `load_train_set_plain` / `load_train_set_verified`: what a training run does before its first step
  (`load_train_set` on the prepared store), best of `--repeats`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml
import zarr

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def cpu_kind() -> str:
    flags = set(re.findall(r"avx512\w*", Path("/proc/cpuinfo").read_text())) if Path("/proc/cpuinfo").exists() else set()
    return "AVX-512 (" + ", ".join(sorted(flags)) + ")" if flags else "AVX2, no AVX-512"


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def read_blocks(group: zarr.Group) -> int:
    images = group["train/images"]
    step = images.shards[0]
    total = 0
    for start in range(0, images.shape[0], step):
        total += images[start:start + step].nbytes
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=REPO.parent / "shared" / "data" / "cifar10-jpeg")
    ap.add_argument("--work", type=Path, default=Path("/tmp/dcq-shard-hash"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    from pipeline.io import verify
    from pipeline.io.train_sets import load_train_set

    args.work.mkdir(parents=True, exist_ok=True)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["base"].update(device="cpu")
    params["prepare"].update(root=str(args.root), train_per_class=None, test_per_class=None)
    params_file = args.work / "params.yaml"
    params_file.write_text(yaml.safe_dump(params))
    store = args.work / "prepared.zarr"
    env = dict(os.environ, TQDM_DISABLE="1", PYTHONPATH=str(REPO))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pipeline.cli", "prepare", "--out", str(store), "--params",
                    str(params_file)], check=True, env=env, cwd=REPO)
    prepare_s = time.perf_counter() - start

    manifest = verify.check_store(store)
    files = sorted(manifest["files"])
    data_bytes = sum((store / f).stat().st_size for f in files)
    seal_s = best(lambda: [hashlib.sha256((store / f).read_bytes()).hexdigest() for f in files], args.repeats)

    plain = zarr.open_group(str(store), mode="r")
    raw_bytes = read_blocks(plain)
    read_plain = best(lambda: read_blocks(zarr.open_group(str(store), mode="r")), args.repeats)
    read_verified = best(lambda: read_blocks(verify.open_verified(store)), args.repeats)

    load_verified = best(lambda: load_train_set(store), args.repeats)
    real_open = verify.open_verified
    try:  # the same loader on plain zarr (after the same open checks): what the hashes add
        verify.open_verified = lambda path, checked=True: (verify.check_store(path) if checked else None,
                                                           zarr.open_group(str(path), mode="r"))[1]
        import pipeline.io.arrays as arrays
        arrays.open_verified = verify.open_verified
        load_plain = best(lambda: load_train_set(store), args.repeats)
    finally:
        verify.open_verified = real_open
        arrays.open_verified = real_open

    result = {
        "what": "per-shard sha256 of dcq stores: sealing and verified reads (pipeline/io/verify.py)",
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {cpu_kind()}",
        "images": int(plain["train/images"].shape[0]), "image_size": 32,
        "store_files": len(files), "store_data_bytes": data_bytes, "train_raw_bytes": raw_bytes,
        "prepare_s": round(prepare_s, 2),
        "seal_file_hashes_s": round(seal_s, 3),
        "read_train_plain_s": round(read_plain, 3), "read_train_verified_s": round(read_verified, 3),
        "read_overhead": round(read_verified / read_plain - 1, 3),
        "load_train_set_plain_s": round(load_plain, 3), "load_train_set_verified_s": round(load_verified, 3),
        "load_overhead": round(load_verified / load_plain - 1, 3),
        "sha256_mb_per_s": round(data_bytes / seal_s / 1e6, 1),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
