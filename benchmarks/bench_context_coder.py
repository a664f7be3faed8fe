"""A real round trip of DCQ's index maps through a context-model range coder (issue 36, item 2), against zstd.

The model: each index given its causal neighbours W, N, NW, NE and the image's cluster, with probabilities from the
counts of the whole store (+1/2 each, so no symbol is impossible), shared by every image. The coder: constriction's
range coder (`pip install constriction`), one stream per block of images. Decoding runs in wavefront order
(t = 2y + x): a pixel's W, N, NW and NE neighbours all lie on earlier wavefronts, so each wavefront of a whole block
decodes in one vectorised call (94 calls for 32x32 images). The maps are checked equal after the round trip.

    pip install constriction
    python benchmarks/bench_context_coder.py data/dcq/q1.zarr data/dcq/q2.zarr --json benchmarks/context_coder.json

Bytes per image count the streams (4-byte words) and the model: every (context, index) probability as 16 bits.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from pipeline.io.arrays import disk_bytes
from pipeline.io.dcq_store import DCQStore

NEIGHBOURS = ((0, -1), (-1, 0), (-1, -1), (-1, 1))  # W, N, NW, NE: coded before (y, x) in raster or wavefront order


def padded(maps: np.ndarray) -> np.ndarray:
    """maps with a border of index 0 (one row above, one column each side), so every neighbour exists."""
    return np.pad(maps, ((0, 0), (1, 0), (1, 1)))


def contexts_at(pad: np.ndarray, clusters: np.ndarray, ys: np.ndarray, xs: np.ndarray, alphabet: int) -> np.ndarray:
    """(n_images, len(ys)) context ids of pixels (ys, xs) of every image, from the padded (decoded so far) maps."""
    ctx = np.broadcast_to(clusters[:, None], (len(pad), len(ys))).astype(np.int64)
    for dy, dx in NEIGHBOURS:
        ctx = ctx * alphabet + pad[:, ys + 1 + dy, xs + 1 + dx]
    return ctx


def wavefronts(h: int, w: int) -> list[tuple[np.ndarray, np.ndarray]]:
    ys, xs = np.mgrid[0:h, 0:w]
    t = (2 * ys + xs).ravel()
    order = np.argsort(t, kind="stable")
    ys, xs, t = ys.ravel()[order], xs.ravel()[order], t[order]
    cuts = np.flatnonzero(np.diff(t)) + 1
    return list(zip(np.split(ys, cuts), np.split(xs, cuts)))


def model_table(maps: np.ndarray, clusters: np.ndarray, alphabet: int, n_clusters: int) -> np.ndarray:
    """float32 (contexts, alphabet) probabilities from the counts of every pixel of the store."""
    h, w = maps.shape[1:]
    ys, xs = (a.ravel() for a in np.mgrid[0:h, 0:w])
    ctx = contexts_at(padded(maps), clusters, ys, xs, alphabet)
    contexts = n_clusters * alphabet ** len(NEIGHBOURS)
    counts = np.bincount((ctx * alphabet + maps.reshape(len(maps), -1)).ravel(), minlength=contexts * alphabet)
    counts = counts.reshape(contexts, alphabet).astype(np.float64) + 0.5
    return (counts / counts.sum(1, keepdims=True)).astype(np.float32)


def code_block(maps: np.ndarray, clusters: np.ndarray, table: np.ndarray, fronts, alphabet: int):
    import constriction

    family = constriction.stream.model.Categorical(perfect=False)
    pad = padded(maps)
    encoder = constriction.stream.queue.RangeEncoder()
    for ys, xs in fronts:
        ctx = contexts_at(pad, clusters, ys, xs, alphabet).ravel()
        encoder.encode(maps[:, ys, xs].ravel().astype(np.int32), family, table[ctx])
    return encoder.get_compressed()


def decode_block(words: np.ndarray, clusters: np.ndarray, table: np.ndarray, fronts, alphabet: int,
                 shape: tuple[int, int, int]) -> np.ndarray:
    import constriction

    family = constriction.stream.model.Categorical(perfect=False)
    n, h, w = shape
    pad = np.zeros((n, h + 1, w + 2), np.int64)
    decoder = constriction.stream.queue.RangeDecoder(words)
    for ys, xs in fronts:
        ctx = contexts_at(pad, clusters, ys, xs, alphabet).ravel()
        pad[:, ys + 1, xs + 1] = decoder.decode(family, table[ctx]).reshape(n, len(ys))
    return pad[:, 1:, 1:-1].astype(np.uint8)


def measure(path: Path, block: int) -> dict:
    store = DCQStore(path)
    maps = store.indices()
    n, h, w = maps.shape
    alphabet, n_clusters = 2**store.bits, len(store.palettes)
    clusters = store.clusters
    start = time.perf_counter()
    table = model_table(maps, clusters, alphabet, n_clusters)
    fronts = wavefronts(h, w)
    streams = [code_block(maps[s:s + block], clusters[s:s + block], table, fronts, alphabet)
               for s in range(0, n, block)]
    encode_s = time.perf_counter() - start
    start = time.perf_counter()
    for i, s in enumerate(range(0, n, block)):
        rows = maps[s:s + block]
        decoded = decode_block(streams[i], clusters[s:s + block], table, fronts, alphabet, rows.shape)
        if not np.array_equal(decoded, rows):
            raise SystemExit(f"{path}: block at row {s} did not decode to its maps")
    decode_s = time.perf_counter() - start
    stream_bytes = 4 * sum(len(x) for x in streams)
    model_bytes = 2 * table.size
    zstd_maps = disk_bytes(path / "indices")
    return {"store": str(path), "bits": store.bits, "images": n, "block": block,
            "zstd_maps_bytes_per_image": round(zstd_maps / n, 2),
            "coded_maps_bytes_per_image": round((stream_bytes + model_bytes) / n, 2),
            "streams_bytes_per_image": round(stream_bytes / n, 2), "model_bytes": model_bytes,
            "bits_per_pixel": round(8 * stream_bytes / maps.size, 4),
            "share_of_zstd": round((stream_bytes + model_bytes) / zstd_maps, 4),
            "store_bytes_per_image_zstd": round(disk_bytes(path) / n, 2),
            "store_bytes_per_image_coded": round((disk_bytes(path) - zstd_maps + stream_bytes + model_bytes) / n, 2),
            "encode_seconds": round(encode_s, 2), "decode_seconds": round(decode_s, 2), "round_trip": "equal"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stores", nargs="+", type=Path, help="DCQ stores (dcq-v1)")
    ap.add_argument("--block", type=int, default=1000, help="images per coded stream")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    results = [measure(p, args.block) for p in args.stores]
    for r in results:
        print(f"{r['store']}: q={r['bits']}, {r['images']:,} images: maps {r['zstd_maps_bytes_per_image']} B/image as "
              f"zstd, {r['coded_maps_bytes_per_image']} B coded ({r['bits_per_pixel']} bits/pixel + a "
              f"{r['model_bytes']:,} B model; {100 * r['share_of_zstd']:.1f}% of zstd); whole store "
              f"{r['store_bytes_per_image_zstd']} -> {r['store_bytes_per_image_coded']} B/image; encode "
              f"{r['encode_seconds']} s, decode {r['decode_seconds']} s, round trip equal")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
