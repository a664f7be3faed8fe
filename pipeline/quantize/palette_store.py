"""The palette store: one LAB K-means palette of 2^q colours per cluster from the attention-selected pixels."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
import zarr
from tqdm import tqdm

from pipeline.config import BaseParams, lineage, require
from pipeline.device import resolve_runtime
from pipeline.errors import StoreError
from pipeline.executor import reduce_shards
from pipeline.io.arrays import create_small, open_group, write_block_size
from pipeline.io.atomic import store_output
from pipeline.quantize.attention import check_maps, image_size_maps, top_pixels
from pipeline.quantize.bitpack import check_bits
from pipeline.quantize.palette import ClusterColourCounts, ColourCounts, fit_palette_counts
from pipeline.timing import Timer, summary


@dataclass(frozen=True)
class PaletteParams:
    bits: list[int] = (1, 2, 3, 4, 5, 6)  # the bit depths dvc.yaml runs this stage for
    k_gra: float = 50.0  # percent of each image's pixels kept, by Grad-CAM++ attention
    iterations: int = 25
    max_pixels_per_cluster: int | None = 1_000_000  # seeded subsample above this; null = all pixels

    def __post_init__(self):
        require(len(self.bits) >= 1, "bits must list at least one bit depth")
        for q in self.bits:
            check_bits(q, "bits")
        require(0 < self.k_gra <= 100, f"k_gra={self.k_gra} must be in (0, 100]")
        require(self.iterations >= 1, f"iterations={self.iterations} must be >= 1")
        require(self.max_pixels_per_cluster is None or self.max_pixels_per_cluster >= 1,
                f"max_pixels_per_cluster={self.max_pixels_per_cluster} must be >= 1 or null")


def pool_shard(k_gra: float, prepared: str, attention: str, clusters: str, start: int,
               stop: int) -> ClusterColourCounts:
    """One block of rows: the colour counts of its images' selected (top k_gra%) pixels, by cluster (an executor
    task; the blocks' counts merge exactly)."""
    cams = image_size_maps(zarr.open_group(attention, mode="r"), Path(attention), start, stop)
    block = zarr.open_group(prepared, mode="r")["train/images"][start:stop]
    owner = zarr.open_group(clusters, mode="r")["assignments"][start:stop].astype(np.int64)
    mask = top_pixels(torch.from_numpy(cams.astype(np.float32)), k_gra).numpy()
    counts = mask.reshape(len(block), -1).sum(1)
    return ClusterColourCounts.of_pixels(block[mask], np.repeat(owner, counts))  # pixels in image-major order


def selected_colour_counts(base: BaseParams, prepared: Path, attention: Path, clusters: Path, n: int, k: int,
                           k_gra: float, block: int) -> list[ColourCounts]:
    """Colour counts of the selected pixels of every cluster, counted block by block on the executor and reduced
    as a tree of exact merges."""
    task = partial(pool_shard, k_gra, str(prepared), str(attention), str(clusters))
    pooled = reduce_shards(base, task, ClusterColourCounts.merge, n, block, "pool pixels")
    return pooled.per_cluster(k)


def write_palettes(params: PaletteParams, base: BaseParams, bits: int, prepared: Path, clusters: Path, attention: Path,
        out: Path) -> dict:
    bits = check_bits(bits, "palette --bits")
    runtime = resolve_runtime(base.device, base.precision)
    images = open_group(prepared, "prepared store")["train/images"]
    att_root = open_group(attention, "attention store")
    check_maps(att_root, attention)
    cams = att_root["cams"]
    cluster_root = open_group(clusters, "cluster store")
    assigned = cluster_root["assignments"].shape[0]
    k = int(cluster_root["centroids"].shape[0])
    n_colors = 2**bits
    # attention.method none: there is no ranking to cut at k_gra, so every pixel is kept
    k_gra = 100.0 if att_root.attrs["params"].get("attention", {}).get("method") == "none" else params.k_gra
    n = images.shape[0]
    if cams.shape[0] != n or assigned != n:
        raise StoreError(f"stores disagree on the number of images: images {n}, cams {cams.shape[0]}, "
                         f"cluster assignments {assigned}")
    with Timer() as timer:
        pooled = selected_colour_counts(base, prepared, attention, clusters, n, k, k_gra, write_block_size(images))
        palettes = np.zeros((k, n_colors, 3), np.float32)
        distinct = np.zeros(k, np.int64)
        for c in tqdm(range(k), desc=f"palette q={bits}", leave=False):
            palettes[c], distinct[c] = fit_palette_counts(pooled[c], n_colors, params.iterations, base.seed + c,
                                                          params.max_pixels_per_cluster, runtime.device.type == "cuda")
    with store_output(out) as tmp:
        root = zarr.open_group(str(tmp), mode="w")
        root.attrs.update({"bits": bits, "clusters": k, "color_space": "CIE LAB (D65)",
                           "params": lineage(cluster_root.attrs["params"], att_root.attrs["params"], base=base, palette=params)})
        create_small(root, "palettes", palettes)
        create_small(root, "distinct", distinct)
        create_small(root, "pixels", np.array([p.pixels for p in pooled], np.int64))
    summary("palette", sum(p.pixels for p in pooled), "pixels", timer.seconds, bits=bits, clusters=k,
            short_clusters=int((distinct < n_colors).sum()))
    return {"palettes": palettes, "distinct": distinct}
