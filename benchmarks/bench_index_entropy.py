"""How many bytes a context model would need for a DCQ store's index maps, against zstd on disk (issue 36, item 2).

For each store, the index maps are coded in raster order with the probabilities of each index given its causal
neighbourhood (the already-coded pixels W, N, NW, NE; optionally the image's cluster), with statistics shared across
the whole dataset. The figure is the code length of a static arithmetic coder with that model: N x H(index | context)
plus the model itself (every (context, index) count at ceil(log2(max count + 1)) bits), which an arithmetic coder
reaches within a few bytes per stream. It is an estimate for choosing a direction, not a store: no coder is run.

    python benchmarks/bench_index_entropy.py data/dcq/q1.zarr data/dcq/q2.zarr --json benchmarks/index_entropy.json

Prints, per store and context: bits per pixel, bytes per image (maps only, and with the store's other arrays as zstd
on disk), and the share of zstd's bytes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from pipeline.io.arrays import disk_bytes
from pipeline.io.dcq_store import DCQStore

# The causal neighbours each context uses (row offset, column offset); pixels outside the image count as index 0.
CONTEXTS = {
    "none (order 0)": (),
    "W": ((0, -1),),
    "W N": ((0, -1), (-1, 0)),
    "W N NW NE": ((0, -1), (-1, 0), (-1, -1), (-1, 1)),
    "W N NW NE WW NN": ((0, -1), (-1, 0), (-1, -1), (-1, 1), (0, -2), (-2, 0)),
}


def neighbour(maps: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """maps shifted so each pixel sees its neighbour at (dy, dx) (0 outside the image)."""
    out = np.zeros_like(maps)
    n, h, w = maps.shape
    ys, yd = (slice(0, h + dy), slice(-dy, h)) if dy < 0 else (slice(dy, h), slice(0, h - dy))
    xs, xd = (slice(0, w + dx), slice(-dx, w)) if dx < 0 else (slice(dx, w), slice(0, w - dx))
    out[:, yd, xd] = maps[:, ys, xs]
    return out


def code_bits(symbols: np.ndarray, contexts: np.ndarray, alphabet: int) -> tuple[float, float]:
    """(data bits, model bits) of a static arithmetic coder of `symbols` given `contexts` (int64 arrays). The model
    is sent as a dense table of every (context, symbol) count, or, when shorter, as the used entries each with its
    position; either way each count takes the bits its largest value needs."""
    joint, counts = np.unique((contexts * alphabet + symbols).ravel(), return_counts=True)
    context_of = joint // alphabet
    starts = np.flatnonzero(np.r_[True, context_of[1:] != context_of[:-1]])
    per_context = np.repeat(np.add.reduceat(counts, starts), np.diff(np.r_[starts, len(counts)]))
    data = float(-(counts * np.log2(counts / per_context)).sum())
    count_bits = np.ceil(np.log2(counts.max() + 1))
    table = (int(contexts.max()) + 1) * alphabet
    model = float(min(table * count_bits, len(counts) * (count_bits + np.ceil(np.log2(table)))))
    return data, model


def measure(store_path: Path, with_cluster: bool) -> dict:
    store = DCQStore(store_path)
    maps = store.indices().astype(np.int64)
    n, h, w = maps.shape
    alphabet = 2**store.bits
    on_disk = disk_bytes(store_path)
    indices_on_disk = disk_bytes(store_path / "indices")
    rows = {}
    for name, offsets in CONTEXTS.items():
        context = np.zeros_like(maps)
        for dy, dx in offsets:
            context = context * alphabet + neighbour(maps, dy, dx)
        variants = {name: context}
        if with_cluster and not store.per_image:
            clusters = np.broadcast_to(store.clusters[:, None, None], maps.shape)
            variants[f"{name} + cluster"] = context * len(store.palettes) + clusters
        for label, ctx in variants.items():
            data, model = code_bits(maps, ctx, alphabet)
            maps_bytes = (data + model) / 8
            rows[label] = {"bits_per_pixel": round(data / maps.size, 4), "model_bytes": round(model / 8),
                           "maps_bytes_per_image": round(maps_bytes / n, 2),
                           "store_bytes_per_image": round((on_disk - indices_on_disk + maps_bytes) / n, 2),
                           "share_of_zstd_maps": round(maps_bytes / indices_on_disk, 4)}
    return {"store": str(store_path), "bits": store.bits, "images": n, "image_size": [h, w],
            "zstd_bytes_per_image": round(on_disk / n, 2), "zstd_maps_bytes_per_image": round(indices_on_disk / n, 2),
            "zstd_maps_bits_per_pixel": round(8 * indices_on_disk / maps.size, 4), "contexts": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stores", nargs="+", type=Path, help="DCQ stores (dcq-v1 or palette-per-image-v1)")
    ap.add_argument("--no-cluster", action="store_true", help="skip the contexts that add the image's cluster")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    results = []
    for path in args.stores:
        r = measure(path, not args.no_cluster)
        results.append(r)
        print(f"\n{path}: q={r['bits']}, {r['images']:,} images; zstd {r['zstd_bytes_per_image']} B/image on disk, "
              f"of which maps {r['zstd_maps_bytes_per_image']} B ({r['zstd_maps_bits_per_pixel']} bits/pixel)")
        print(f"{'context':28s} {'bits/px':>8s} {'maps B/img':>10s} {'store B/img':>11s} {'of zstd':>8s}")
        for name, c in r["contexts"].items():
            print(f"{name:28s} {c['bits_per_pixel']:8.4f} {c['maps_bytes_per_image']:10.2f} "
                  f"{c['store_bytes_per_image']:11.2f} {100 * c['share_of_zstd_maps']:7.1f}%")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
