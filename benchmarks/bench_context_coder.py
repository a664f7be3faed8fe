"""DCQ's index maps through the context coder (pipeline/io/context_coder.py, the `dcq-context-v1` format's) against
zstd: bytes per image, bits per pixel, encode and decode seconds, and a checked round trip.

    python benchmarks/bench_context_coder.py data/dcq/q1.zarr data/dcq/q2.zarr --json benchmarks/context_coder.json

It runs the context_code stage's `run` into a scratch folder (the neighbour count chosen as the stage chooses it),
then decodes every block and compares the maps with the DCQ store's.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from pipeline.io.arrays import disk_bytes
from pipeline.io.context_store import ContextStore
from pipeline.io.dcq_store import DCQStore
from pipeline.stages.context_code import ContextCodeParams, run


def measure(path: Path, block: int) -> dict:
    source = DCQStore(path)
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "coded.zarr"
        result = run(ContextCodeParams(block_images=block), path, out)
        start = time.perf_counter()
        store = ContextStore(out)
        for lo in range(0, len(store), block):
            hi = min(len(store), lo + block)
            if not np.array_equal(store.indices(lo, hi), source.indices(lo, hi)):
                raise SystemExit(f"{path}: block at row {lo} did not decode to its maps")
        decode_s = time.perf_counter() - start
        coded = disk_bytes(out)
    n, (h, w) = len(source), source.image_size
    zstd_maps = disk_bytes(path / "indices")
    return {"store": str(path), "bits": source.bits, "images": n, "block": block,
            "neighbours": result["neighbours"], "model_bytes": result["model_bytes"],
            "zstd_maps_bytes_per_image": round(zstd_maps / n, 2),
            "coded_maps_bytes_per_image": round((result["stream_bytes"] + result["model_bytes"]) / n, 2),
            "bits_per_pixel": round(8 * result["stream_bytes"] / (n * h * w), 4),
            "store_bytes_per_image_zstd": round(disk_bytes(path) / n, 2),
            "store_bytes_per_image_coded": round(coded / n, 2),
            "encode_seconds": round(result["seconds"], 2), "decode_seconds": round(decode_s, 2),
            "round_trip": "equal"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stores", nargs="+", type=Path, help="DCQ stores (dcq-v1)")
    ap.add_argument("--block", type=int, default=1000, help="images per coded stream")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    results = [measure(p, args.block) for p in args.stores]
    for r in results:
        print(f"{r['store']}: q={r['bits']}, {r['images']:,} images, {r['neighbours']} neighbours: maps "
              f"{r['zstd_maps_bytes_per_image']} B/image as zstd, {r['coded_maps_bytes_per_image']} B coded "
              f"({r['bits_per_pixel']} bits/pixel + a {r['model_bytes']:,} B model); whole store "
              f"{r['store_bytes_per_image_zstd']} -> {r['store_bytes_per_image_coded']} B/image; encode "
              f"{r['encode_seconds']} s, decode {r['decode_seconds']} s, round trip equal")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
