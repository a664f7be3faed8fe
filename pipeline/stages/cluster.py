"""cluster: chromaticity-aware clustering — faiss K-means on the pooled shallow features.

Reads  `cluster:` + `base`; the features store.
Writes `OUT` (Zarr group): `assignments` int32 (N,) cluster id of every train image, `centroids`
       float32 (k,D), `sizes` int64 (k,); attrs hold the resolved params and the K-means objective.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import typer
import zarr

from pipeline.config import BaseParams, lineage, require
from pipeline.device import resolve_runtime
from pipeline.errors import ParamsError
from pipeline.io.arrays import create_rows, open_group
from pipeline.io.atomic import atomic_output
from pipeline.quantize.kmeans import faiss_kmeans
from pipeline.stages.common import PARAMS_OPTION, TIMING_OPTION, Timer, read_params, stage_command, summary


@dataclass(frozen=True)
class ClusterParams:
    k: int = 20
    iterations: int = 50
    n_init: int = 3  # faiss nredo: best of n_init seeded runs
    standardize: bool = True  # z-score each feature dimension first, so no channel dominates by scale

    def __post_init__(self):
        require(self.k >= 1, f"k={self.k} must be >= 1")
        require(self.iterations >= 1, f"iterations={self.iterations} must be >= 1")
        require(self.n_init >= 1, f"n_init={self.n_init} must be >= 1")


def run(params: ClusterParams, base: BaseParams, features: Path, out: Path) -> dict:
    runtime = resolve_runtime(base.device, base.precision)
    feat_root = open_group(features, "features store")
    feats = feat_root["features"][:]  # (N,D): K-means needs all of it
    if params.k > len(feats):
        raise ParamsError(f"cluster.k={params.k} is larger than the number of images ({len(feats)})")
    with Timer() as timer:
        x = feats
        if params.standardize:
            x = (feats - feats.mean(0)) / np.maximum(feats.std(0), 1e-6)
        centroids, assign = faiss_kmeans(x, params.k, params.iterations, base.seed, runtime.device.type == "cuda",
                                         params.n_init)
        sizes = np.bincount(assign, minlength=params.k)
        inertia = float(((x - centroids[assign]) ** 2).sum())
    with atomic_output(out) as tmp:
        root = zarr.open_group(str(tmp), mode="w")
        root.attrs.update({"params": lineage(feat_root.attrs["params"], base=base, cluster=params), "inertia": inertia,
                           "standardized": params.standardize})
        arr = create_rows(root, "assignments", (len(assign),), np.int32)
        arr[:] = assign.astype(np.int32)
        root.create_array("centroids", data=centroids)
        root.create_array("sizes", data=sizes.astype(np.int64))
    summary("cluster", len(assign), "images", timer.seconds, k=params.k, smallest=int(sizes.min()),
            largest=int(sizes.max()))
    return {"sizes": sizes.tolist(), "inertia": inertia}


def command(
    features: Path = typer.Option(..., help="features Zarr store"),
    out: Path = typer.Option(..., help="Zarr group to write"),
    params_file: Path = PARAMS_OPTION,
    timing: Path | None = TIMING_OPTION,
):
    """faiss K-means of the train images into chromaticity clusters."""
    base, params = read_params(params_file, "cluster", ClusterParams)
    with stage_command("cluster", timing):
        run(params, base, features, out)
