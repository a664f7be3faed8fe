"""The cluster store: every train image's chromaticity cluster (faiss K-means on pooled features, or the
labels/random ablations, or `images`: every image its own cluster, i.e. DCQ's palette rule applied per image)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import zarr

from pipeline.config import BaseParams, lineage, off_switch, require
from pipeline.errors import ParamsError, StoreError
from pipeline.io.arrays import create_rows, create_small, iter_blocks, open_group, write_block_size
from pipeline.io.atomic import store_output
from pipeline.quantize.chromaticity import chromaticity, mean_lab
from pipeline.quantize.kmeans import faiss_kmeans
from pipeline.timing import Timer, summary


@dataclass(frozen=True)
class ClusterParams:
    k: int = 20
    iterations: int = 50
    n_init: int = 3  # faiss nredo: best of n_init seeded runs
    standardize: bool = True  # z-score each feature dimension first, so no channel dominates by scale
    source: Literal["features", "labels", "random", "images"] = "features"
    # > 0 (source: features): fit K-means on a seeded sample of this many images and assign every image block by
    # block, so memory is set by the sample and the block, not by N (faiss's guidance: 39-256 points per centroid)
    train_images: int = off_switch(0)

    def __post_init__(self):
        require(self.k >= 1, f"k={self.k} must be >= 1")
        require(self.train_images == 0 or self.train_images >= self.k,
                f"train_images={self.train_images} must be 0 (every image) or >= k={self.k}")
        require(self.iterations >= 1, f"iterations={self.iterations} must be >= 1")
        require(self.n_init >= 1, f"n_init={self.n_init} must be >= 1")


def assign_without_kmeans(source: str, k: int, labels: np.ndarray, classes: int, seed: int) -> np.ndarray:
    """Cluster ids for the `labels`, `random` and `images` sources."""
    if source == "images":
        if k != len(labels):
            raise ParamsError(f"cluster.k={k} but cluster.source=images makes one cluster per train image "
                              f"({len(labels)}): set cluster.k to {len(labels)}")
        return np.arange(len(labels), dtype=np.int64)
    if source == "labels":
        if k != classes:
            raise ParamsError(f"cluster.k={k} but cluster.source=labels makes one cluster per class ({classes}): "
                              f"set cluster.k to {classes}")
        return labels.astype(np.int64)
    # balanced: every cluster gets floor or ceil of N/k images
    return np.random.default_rng(seed).permutation(len(labels)) % k


def write_clusters(params: ClusterParams, base: BaseParams, features: Path, out: Path, prepared: Path | None = None) -> dict:
    # faiss runs on a GPU when faiss-gpu sees one (pipeline/quantize/kmeans.py), unless base.device is cpu: no torch
    # import just to ask whether CUDA is there
    gpu = base.device != "cpu"
    feat_root = open_group(features, "features store")
    n = feat_root["features"].shape[0]
    if params.source == "features" and 0 < params.train_images < n:
        return write_sampled_clusters(params, base, feat_root, out, gpu, prepared=prepared)
    feats = feat_root["features"][:]  # (N,D): K-means needs all of it
    if params.k > len(feats):
        raise ParamsError(f"cluster.k={params.k} is larger than the number of images ({len(feats)})")
    labels, classes = np.zeros(len(feats), np.int64), 1
    if params.source == "labels":
        if prepared is None:
            raise ParamsError("cluster.source=labels needs the prepared store (--prepared) for the train labels")
        prep = open_group(prepared, "prepared store")
        labels, classes = prep["train/labels"][:], len(prep.attrs["classes"])
        if len(labels) != len(feats):
            raise StoreError(f"{prepared} holds {len(labels)} train labels, {features} {len(feats)} feature rows")
    with Timer() as timer:
        x = feats
        if params.standardize:
            x = (feats - feats.mean(0)) / np.maximum(feats.std(0), 1e-6)
        if params.source == "features":
            centroids, assign = faiss_kmeans(x, params.k, params.iterations, base.seed,
                                             gpu, params.n_init)
        else:
            assign = assign_without_kmeans(params.source, params.k, labels, classes, base.seed)
            if len(np.unique(assign)) != params.k:
                raise StoreError(f"cluster.source={params.source}: some of the {params.k} clusters have no images")
            centroids = np.stack([x[assign == c].mean(0) for c in range(params.k)]).astype(np.float32)
        sizes = np.bincount(assign, minlength=params.k)
        inertia = float(((x - centroids[assign]) ** 2).sum())
        chroma = measure(prepared, assign, params.k)
    with store_output(out) as tmp:
        root = zarr.open_group(str(tmp), mode="w")
        root.attrs.update({"params": lineage(feat_root.attrs["params"], base=base, cluster=params), "inertia": inertia,
                           "standardized": params.standardize, **chroma})
        arr = create_rows(root, "assignments", (len(assign),), np.int32)
        arr[:] = assign.astype(np.int32)
        create_small(root, "centroids", centroids)
        create_small(root, "sizes", sizes.astype(np.int64))
    summary("cluster", len(assign), "images", timer.seconds, k=params.k, source=params.source,
            smallest=int(sizes.min()), largest=int(sizes.max()), **_shown(chroma))
    return {"sizes": sizes.tolist(), "inertia": inertia, **chroma}


def measure(prepared: Path | None, assign: np.ndarray, k: int) -> dict:
    """{"chromaticity": {"ab", "L"}} of the assignment (pipeline/quantize/chromaticity.py), from the prepared
    store's train images; {} without a prepared store to measure against."""
    if prepared is None:
        return {}
    images = open_group(prepared, "prepared store")["train/images"]
    if images.shape[0] != len(assign):
        raise StoreError(f"{prepared} holds {images.shape[0]} train images, the clusters assign {len(assign)}")
    return {"chromaticity": chromaticity(mean_lab(images), assign, k)}


def _shown(chroma: dict) -> dict:
    found = chroma.get("chromaticity")
    return {} if found is None else {"chroma_ab": found["ab"], "chroma_L": found["L"]}


def write_sampled_clusters(params: ClusterParams, base: BaseParams, feat_root, out: Path, gpu: bool,
                           block: int | None = None, prepared: Path | None = None) -> dict:
    """K-means fitted on a seeded sample of `params.train_images` images, then every image assigned to its nearest
    centroid `block` rows at a time (default: a features shard); the standardization uses the whole set's
    statistics, accumulated block by block."""
    import faiss

    feats = feat_root["features"]
    n, dim = feats.shape
    block = block or write_block_size(feats)
    rows = np.sort(np.random.default_rng(base.seed).choice(n, params.train_images, replace=False))
    with Timer() as timer:
        totals, picked = np.zeros((2, dim)), []  # sum, sum of squares (float64); the sample's rows
        for start, stop in iter_blocks(n, block):  # one pass: statistics, and the sampled rows of each block
            part = feats[start:stop]
            picked.append(part[rows[np.searchsorted(rows, start):np.searchsorted(rows, stop)] - start])
            part = part.astype(np.float64)
            totals += [part.sum(0), (part**2).sum(0)]
        mean = totals[0] / n
        std = np.sqrt(np.maximum(totals[1] / n - mean**2, 0.0)) if params.standardize else None

        def standardized(x: np.ndarray) -> np.ndarray:
            x = x.astype(np.float64)
            return (x if std is None else (x - mean) / np.maximum(std, 1e-6)).astype(np.float32)

        sample = standardized(np.concatenate(picked))
        centroids, _ = faiss_kmeans(sample, params.k, params.iterations, base.seed, gpu, params.n_init)
        index = faiss.IndexFlatL2(dim)
        index.add(centroids)
        sizes, inertia, chroma = np.zeros(params.k, np.int64), 0.0, {}
        with store_output(out) as tmp:
            root = zarr.open_group(str(tmp), mode="w")
            arr = create_rows(root, "assignments", (n,), np.int32)
            for shard_start, shard_stop in iter_blocks(n, write_block_size(arr)):  # one write per shard (4 B/image)
                nearest_ids = np.empty(shard_stop - shard_start, np.int32)
                for start in range(shard_start, shard_stop, block):  # features read a block at a time
                    stop = min(shard_stop, start + block)
                    distance, nearest = index.search(standardized(feats[start:stop]), 1)
                    nearest_ids[start - shard_start:stop - shard_start] = nearest[:, 0]
                    sizes += np.bincount(nearest[:, 0], minlength=params.k)
                    inertia += float(distance.astype(np.float64).sum())
                arr[shard_start:shard_stop] = nearest_ids
            create_small(root, "centroids", centroids)
            create_small(root, "sizes", sizes)
            chroma = measure(prepared, arr[:], params.k)  # 4 bytes per image: the assignment, not the images
            root.attrs.update({"params": lineage(feat_root.attrs["params"], base=base, cluster=params),
                               "inertia": inertia, "standardized": params.standardize,
                               "train_images": params.train_images, **chroma})
    summary("cluster", n, "images", timer.seconds, k=params.k, source=params.source,
            train_images=params.train_images, smallest=int(sizes.min()), largest=int(sizes.max()), **_shown(chroma))
    return {"sizes": sizes.tolist(), "inertia": inertia, **chroma}
