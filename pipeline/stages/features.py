"""features: shallow-layer feature maps of every train image, pooled to a fixed-length vector.

Reads  `features:` + `base`; the prepared store (train/images) and the teacher checkpoint.
Writes `OUT` (Zarr group): `features` float32 (N,D) with D set by the pooling:
       mean -> C (per-channel mean), mean_std -> 2C (per-channel mean and std, the default: it keeps
       each channel's spread, i.e. the colour distribution rather than only its average), grid -> C*g*g
       (adaptive average pooling to a g x g grid, which also keeps the layout).
       `layer: pixels` pools the normalised input image itself instead of a teacher layer (the raw-pixel
       ablation of the clustering features).
"""

from __future__ import annotations

from pathlib import Path

import typer

from pipeline.config import BaseParams
from pipeline.quantize.feature_store import FeaturesParams, write_features
from pipeline.stages.common import PARAMS_OPTION, TIMING_OPTION, StageWiring, read_params, stage_command

WIRING = StageWiring(FeaturesParams, "features")


def run(params: FeaturesParams, base: BaseParams, prepared: Path, teacher: Path, out: Path) -> dict:
    return write_features(params, base, prepared, teacher, out)


def command(
    prepared: Path = typer.Option(..., help="prepared Zarr store"),
    teacher: Path = typer.Option(..., help="teacher checkpoint"),
    out: Path = typer.Option(..., help="Zarr group to write"),
    params_file: Path = PARAMS_OPTION,
    timing: Path | None = TIMING_OPTION,
):
    """Pooled shallow-layer teacher features for every train image."""
    base, params = read_params(params_file, WIRING.section, WIRING.params)
    with stage_command("features", timing):
        run(params, base, prepared, teacher, out)
