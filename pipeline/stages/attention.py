"""attention: Grad-CAM++ maps of the teacher for every train image, targeting its true label.

Reads  `attention:` + `base`; the prepared store (train/images, train/labels), the teacher checkpoint.
Writes `OUT` (Zarr group): `cams` float32 (N,h,w) in [0,1] at the CAM layer's resolution (the maps pytorch-grad-cam
       computes before it resizes them, per-image min-max scaled; computed a batch at a time by `LabelCAM`; attrs
       `maps: cam-resolution`, `image_size`). The palette stage upsamples them exactly as pytorch-grad-cam does and
       makes the top-k_gra% pixel selection (`palette.k_gra`), so changing k_gra does not recompute the CAMs.
"""

from __future__ import annotations

from pathlib import Path

import typer

from pipeline.config import BaseParams
from pipeline.quantize.attention_store import AttentionParams, write_attention
from pipeline.stages.common import PARAMS_OPTION, TIMING_OPTION, StageWiring, read_params, stage_command

WIRING = StageWiring(AttentionParams, "attention")


def run(params: AttentionParams, base: BaseParams, prepared: Path, teacher: Path, out: Path) -> dict:
    return write_attention(params, base, prepared, teacher, out)


def command(
    prepared: Path = typer.Option(..., help="prepared Zarr store"),
    teacher: Path = typer.Option(..., help="teacher checkpoint"),
    out: Path = typer.Option(..., help="Zarr group to write"),
    params_file: Path = PARAMS_OPTION,
    timing: Path | None = TIMING_OPTION,
):
    """Grad-CAM++ maps for every train image's true label."""
    base, params = read_params(params_file, WIRING.section, WIRING.params)
    with stage_command("attention", timing):
        run(params, base, prepared, teacher, out)
