"""palette@q: one shared palette of 2^q colours per cluster, from attention-selected pixels.

Reads  `palette:` + `base`; the prepared store (train/images), the cluster store (assignments), the
       attention store (cams). The bit depth q comes from dvc.yaml's foreach over `palette.bits`.
Writes `OUT` (Zarr group): `palettes` float32 (k, 2^q, 3) in CIE LAB, `distinct` int64 (k,) palette
       entries that are real colours (fewer than 2^q when a cluster has fewer distinct colours),
       `pixels` int64 (k,) selected pixels pooled per cluster.

For every image the top `k_gra`% pixels of its Grad-CAM++ map are kept; the kept pixels of all images
of a cluster are pooled, converted to LAB and clustered by faiss K-means into 2^q colours.
"""

from __future__ import annotations

from pathlib import Path

import typer

from pipeline.config import BaseParams
from pipeline.quantize.palette_store import PaletteParams, write_palettes
from pipeline.stages.common import PARAMS_OPTION, TIMING_OPTION, read_params, stage_command


def run(params: PaletteParams, base: BaseParams, bits: int, prepared: Path, clusters: Path, attention: Path,
        out: Path) -> dict:
    return write_palettes(params, base, bits, prepared, clusters, attention, out)


def command(
    bits: int = typer.Option(..., help="bit depth q: 2^q colours per palette"),
    prepared: Path = typer.Option(..., help="prepared Zarr store"),
    clusters: Path = typer.Option(..., help="cluster Zarr store"),
    attention: Path = typer.Option(..., help="attention Zarr store"),
    out: Path = typer.Option(..., help="Zarr group to write"),
    params_file: Path = PARAMS_OPTION,
    timing: Path | None = TIMING_OPTION,
):
    """K-means palettes in LAB per cluster from the top-k_gra% attention pixels."""
    base, params = read_params(params_file, "palette", PaletteParams)
    with stage_command(f"palette@{bits}", timing):
        run(params, base, bits, prepared, clusters, attention, out)
