"""cluster: chromaticity-aware clustering — faiss K-means on the pooled shallow features.

Reads  `cluster:` + `base`; the features store; the prepared store's train labels (source: labels only).
       `source` picks what defines the clusters (an ablation of the paper's choice): `features` (default,
       K-means on the features store), `labels` (one cluster per class; k must equal the class count) or
       `random` (a seeded, balanced random partition into k clusters).
Writes `OUT` (Zarr group): `assignments` int32 (N,) cluster id of every train image, `centroids`
       float32 (k,D), `sizes` int64 (k,); attrs hold the resolved params and the K-means objective.
"""

from __future__ import annotations

from pathlib import Path

import typer

from pipeline.config import BaseParams
from pipeline.quantize.cluster_store import ClusterParams, write_clusters
from pipeline.stages.common import PARAMS_OPTION, TIMING_OPTION, StageWiring, read_params, stage_command

WIRING = StageWiring(ClusterParams, "cluster")


def run(params: ClusterParams, base: BaseParams, features: Path, out: Path, prepared: Path | None = None) -> dict:
    return write_clusters(params, base, features, out, prepared)


def command(
    features: Path = typer.Option(..., help="features Zarr store"),
    prepared: Path = typer.Option(None, help="prepared Zarr store (its train labels; cluster.source=labels)"),
    out: Path = typer.Option(..., help="Zarr group to write"),
    params_file: Path = PARAMS_OPTION,
    timing: Path | None = TIMING_OPTION,
):
    """faiss K-means of the train images into chromaticity clusters (or the labels/random ablations)."""
    base, params = read_params(params_file, WIRING.section, WIRING.params)
    with stage_command("cluster", timing):
        run(params, base, features, out, prepared)
