"""encode@q: the compressed train set — every pixel mapped to its cluster palette, bit-packed.

Reads  `encode:` + `base`; the prepared store (train/), the cluster store, the refined palette store q.
Writes `OUT`, a DCQ store (format in `pipeline.io.dcq_store`): q-bit packed indices, per-image cluster
       and label, the palettes as uint8 sRGB, attrs with bits, clusters, image size, source and the
       resolved params with their hash. Test images are never quantized and are not copied here.

The nearest colour is searched in LAB among the *stored* uint8 palette colours, so decoding gives
exactly the image the encoder chose.
"""

from __future__ import annotations

from pathlib import Path

import typer

from pipeline.config import BaseParams
from pipeline.quantize.encode_store import EncodeParams, write_dcq
from pipeline.stages.common import PARAMS_OPTION, TIMING_OPTION, read_params, stage_command


def run(params: EncodeParams, base: BaseParams, bits: int, prepared: Path, clusters: Path, refined: Path,
        out: Path) -> dict:
    return write_dcq(params, base, bits, prepared, clusters, refined, out)


def command(
    bits: int = typer.Option(..., help="bit depth q"),
    prepared: Path = typer.Option(..., help="prepared Zarr store"),
    clusters: Path = typer.Option(..., help="cluster Zarr store"),
    refined: Path = typer.Option(..., help="refined palette Zarr store for this bit depth"),
    out: Path = typer.Option(..., help="DCQ store to write"),
    params_file: Path = PARAMS_OPTION,
    timing: Path | None = TIMING_OPTION,
):
    """Encode the train set as q-bit palette indices plus shared palettes."""
    base, params = read_params(params_file, "encode", EncodeParams)
    with stage_command(f"encode@{bits}", timing):
        run(params, base, bits, prepared, clusters, refined, out)
