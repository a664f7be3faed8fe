"""palette@q: one shared palette of 2^q colours per cluster, from attention-selected pixels.

Reads  `palette:` + `base`; the colour-counts store (colour_counts stage: the top-k_gra% pixels of every image,
       counted by cluster and colour; its k_gra must be `palette.k_gra`). The bit depth q comes from dvc.yaml's
       foreach over `palette.bits`.
Writes `OUT` (Zarr group): `palettes` float32 (k, 2^q, 3) in CIE LAB, `distinct` int64 (k,) palette
       entries that are real colours (fewer than 2^q when a cluster has fewer distinct colours),
       `pixels` int64 (k,) selected pixels pooled per cluster.

The distinct colours of a cluster, weighted by their pixel counts, are converted to LAB and clustered by faiss
K-means into 2^q colours (the same objective as K-means on every pooled pixel).
"""

from __future__ import annotations

from pathlib import Path

import typer

from pipeline.config import BaseParams
from pipeline.quantize.palette_store import PaletteParams, write_palettes
from pipeline.stages.common import PARAMS_OPTION, TIMING_OPTION, StageWiring, read_params, stage_command

WIRING = StageWiring(PaletteParams, "palette", matrix=("bits",))


def run(params: PaletteParams, base: BaseParams, bits: int, colour_counts: Path, out: Path) -> dict:
    return write_palettes(params, base, bits, colour_counts, out)


def command(
    bits: int = typer.Option(..., help="bit depth q: 2^q colours per palette"),
    colour_counts: Path = typer.Option(..., help="colour-counts Zarr store (colour_counts stage)"),
    out: Path = typer.Option(..., help="Zarr group to write"),
    params_file: Path = PARAMS_OPTION,
    timing: Path | None = TIMING_OPTION,
):
    """K-means palettes in LAB per cluster from the colour counts of the top-k_gra% attention pixels."""
    base, params = read_params(params_file, WIRING.section, WIRING.params)
    with stage_command(f"palette@{bits}", timing):
        run(params, base, bits, colour_counts, out)
