"""refine@q: texture-preserving palette optimisation (DCQ eq. 6, Sobel edge loss with STE).

Reads  `refine:` + `base`; the prepared store (train/images), the cluster store, the palette store q.
Writes `OUT` (Zarr group): `palettes` float32 (k, 2^q, 3) refined LAB palettes, `loss_before` and
       `loss_after` float32 (k,) edge loss of the stored (uint8 RGB) K-means and refined palettes on the
       refinement images, attrs with the resolved params; and `METRICS` (flat JSON for DVC: mean edge loss
       before/after, clusters improved, steps, seconds, params hash).

`images_per_cluster` images are drawn (seeded) from every cluster and the palettes are optimised on
them full-batch. A cluster whose refined palette, once rounded to uint8 RGB, is not better than its
K-means palette keeps the K-means palette. `enabled: false` is the no-refinement ablation. Above 2^24 sampled pixels a
step runs in chunks of images; under `torchrun --nproc_per_node N` each process holds its share of every cluster's
images and rank 0 writes the outputs (pipeline/quantize/refine.py).
"""

from __future__ import annotations

from pathlib import Path

import typer

from pipeline.config import BaseParams
from pipeline.quantize.refine_store import RefineParams, write_refined
from pipeline.stages.common import PARAMS_OPTION, TIMING_OPTION, StageWiring, read_params, stage_command

WIRING = StageWiring(RefineParams, "refine")


def run(params: RefineParams, base: BaseParams, bits: int, prepared: Path, clusters: Path, palettes: Path,
        out: Path, metrics_out: Path) -> dict:
    return write_refined(params, base, bits, prepared, clusters, palettes, out, metrics_out)


def command(
    bits: int = typer.Option(..., help="bit depth q"),
    prepared: Path = typer.Option(..., help="prepared Zarr store"),
    clusters: Path = typer.Option(..., help="cluster Zarr store"),
    palettes: Path = typer.Option(..., help="palette Zarr store for this bit depth"),
    out: Path = typer.Option(..., help="Zarr group to write"),
    metrics_out: Path = typer.Option(..., "--metrics", help="JSON metrics to write"),
    params_file: Path = PARAMS_OPTION,
    timing: Path | None = TIMING_OPTION,
):
    """Refine the K-means palettes by minimising the Sobel edge loss."""
    base, params = read_params(params_file, WIRING.section, WIRING.params)
    with stage_command(f"refine@{bits}", timing):
        run(params, base, bits, prepared, clusters, palettes, out, metrics_out)
