"""colour_counts: how many attention-selected pixels of each colour every cluster has, counted once per k_gra.

Reads  `palette:` (k_gra only) + `base`; the prepared store (train/images), the cluster store (assignments), the
       attention store (CAM-resolution maps, upsampled here block by block).
Writes `OUT` (Zarr group, format `colour-counts-v1`): `keys` int64 (M,) sorted cluster * 2^24 + 0xRRGGBB and
       `counts` int64 (M,) pixels of that colour among the top k_gra% pixels of the cluster's images; attrs
       `clusters`, `images`, `k_gra` and the lineage of the cluster and attention stores. Every palette@q fits its
       palettes from this one store, so the images are read once whatever the number of bit depths. The blocks are
       counted on the executor, each spilled as a sorted run next to OUT and merged a few keys of every run at a
       time, so no process holds all the (cluster, colour) pairs.
"""

from __future__ import annotations

from pathlib import Path

import typer

from pipeline.config import BaseParams
from pipeline.quantize.palette_store import PaletteParams, write_colour_counts
from pipeline.stages.common import PARAMS_OPTION, TIMING_OPTION, StageWiring, read_params, stage_command

READS = ("k_gra",)  # of the palette section


WIRING = StageWiring(PaletteParams, "palette", reads_only=READS)


def run(params: PaletteParams, base: BaseParams, prepared: Path, clusters: Path, attention: Path, out: Path) -> dict:
    return write_colour_counts(params, base, prepared, clusters, attention, out)


def command(
    prepared: Path = typer.Option(..., help="prepared Zarr store"),
    clusters: Path = typer.Option(..., help="cluster Zarr store"),
    attention: Path = typer.Option(..., help="attention Zarr store"),
    out: Path = typer.Option(..., help="Zarr group to write"),
    params_file: Path = PARAMS_OPTION,
    timing: Path | None = TIMING_OPTION,
):
    """Colour counts of the top-k_gra% attention pixels of every cluster (shared by every palette@q)."""
    base, params = read_params(params_file, WIRING.section, WIRING.params)
    with stage_command("colour_counts", timing):
        run(params, base, prepared, clusters, attention, out)
