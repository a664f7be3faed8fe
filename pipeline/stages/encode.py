"""encode: the compressed train sets — every pixel mapped to its cluster palette, bit-packed, for every q at once.

Reads  `encode:` + `base` + `palette.bits` (the bit depths, unless `--bits` names some); the prepared store
       (train/), the cluster store, the refined palette stores REFINED/q{q}.zarr.
Writes OUT/q{q}.zarr for each q, a DCQ store (format in `pipeline.io.dcq_store`): q-bit packed indices, per-image
       cluster and label, the palettes as uint8 sRGB, attrs with bits, clusters, image size, source and the
       resolved params with their hash. Test images are never quantized and are not copied here.

The images are read and converted to LAB once for all bit depths (one pass over the set when the stores' shard
layouts nest, as they do for q = 1, 2, 4, 8). The nearest colour is searched in LAB among the *stored* uint8
palette colours, so decoding gives exactly the image the encoder chose.
"""

from __future__ import annotations

from pathlib import Path

import typer

from pipeline.config import BaseParams, load_section
from pipeline.errors import ParamsError
from pipeline.quantize.encode_store import EncodeParams, write_dcq_stores
from pipeline.quantize.palette_store import PaletteParams
from pipeline.stages.common import PARAMS_OPTION, TIMING_OPTION, StageWiring, read_params, stage_command, user_errors

ALSO_READS = ("palette.bits",)  # the bit depths to encode, read from the palette section (declared once there)


WIRING = StageWiring(EncodeParams, "encode", also_reads=ALSO_READS)


def store_name(bits: int) -> str:
    return f"q{bits}.zarr"


def run(params: EncodeParams, base: BaseParams, bits: list[int], prepared: Path, clusters: Path, refined: Path,
        out: Path) -> dict:
    """DCQ stores OUT/q{q}.zarr from REFINED/q{q}.zarr for every q in `bits`."""
    if not bits or len(set(bits)) != len(bits):
        raise ParamsError(f"encode: bits={bits} must name each bit depth once")
    stores = {q: (refined / store_name(q), out / store_name(q)) for q in bits}
    return write_dcq_stores(params, base, stores, prepared, clusters)


OUTPUT_FOLDERS = ("out",)  # the folder of q{q}.zarr stores: each store is checked when it is written


def command(
    prepared: Path = typer.Option(..., help="prepared Zarr store"),
    clusters: Path = typer.Option(..., help="cluster Zarr store"),
    refined: Path = typer.Option(..., help="folder of refined palette stores q{q}.zarr"),
    out: Path = typer.Option(..., help="folder to write the DCQ stores q{q}.zarr into"),
    bits: list[int] = typer.Option(None, help="bit depths to encode (repeatable); default: palette.bits"),
    params_file: Path = PARAMS_OPTION,
    timing: Path | None = TIMING_OPTION,
):
    """Encode the train set as q-bit palette indices plus shared palettes, for every bit depth in one pass."""
    base, params = read_params(params_file, WIRING.section, WIRING.params)
    if not bits:
        with user_errors():
            bits = list(load_section(params_file, "palette", PaletteParams).bits)
    with stage_command("encode", timing):
        run(params, base, list(bits), prepared, clusters, refined, out)
