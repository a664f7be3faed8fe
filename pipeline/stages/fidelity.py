"""fidelity: how close a quantized train set decodes to the images it was made from.

Reads  `fidelity:` (block size); a quantized train-set store (DCQ `dcq-v1`, per-image `palette-per-image-v1`,
       `codec-v1`, `patch-vq-v1`, `dcq-context-v1` or `luma-chroma-vq-v1`)
       and the prepared store's full-colour train split, streamed block by block.
Writes `OUT`: a small JSON with the store, its bits and params hash, the image count, the mean per-image PSNR and
       SSIM and the mean per-pixel CIEDE2000 ΔE (pipeline/quantize/fidelity.py). A store whose rows are a coreset
       of the train split (DCQ of a coreset) cannot be matched to its originals: its JSON says so, unmeasured.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import typer

from pipeline.config import require
from pipeline.errors import StoreError
from pipeline.io.arrays import open_group, write_json
from pipeline.io.codec_store import FORMAT as CODEC_FORMAT
from pipeline.io.context_store import FORMAT as CONTEXT_FORMAT
from pipeline.io.dcq_store import FORMATS as QUANTIZED_FORMATS
from pipeline.io.formats import open_store
from pipeline.io.luma_chroma_store import FORMAT as LUMA_CHROMA_FORMAT
from pipeline.io.patch_store import FORMAT as PATCH_FORMAT
from pipeline.quantize.fidelity import store_fidelity
from pipeline.stages.common import PARAMS_OPTION, TIMING_OPTION, StageWiring, Timer, read_params, stage_command, summary


@dataclass(frozen=True)
class FidelityParams:
    block_size: int = 1000  # images decoded and compared at a time (bounds memory)

    def __post_init__(self):
        require(self.block_size >= 1, f"block_size={self.block_size} must be >= 1")


WIRING = StageWiring(FidelityParams, "fidelity", base=())


def run(params: FidelityParams, store_path: Path, prepared: Path, out: Path) -> dict:
    with Timer() as timer:
        if not (Path(store_path) / "zarr.json").is_file():
            raise StoreError(f"no DCQ store at {store_path} (nor a per-image palette, codec, patch codebook, "
                             "context-coded or luma/chroma store)")
        readable = QUANTIZED_FORMATS + (CODEC_FORMAT, PATCH_FORMAT, CONTEXT_FORMAT, LUMA_CHROMA_FORMAT)
        store = open_store(store_path, readable, "quantized train-set")
        originals = open_group(prepared, "prepared store")["train/images"]
        result = {"store": str(store_path), "format": store.attrs["format"], "method": store.method,
                  "bits": store.bits, "params_hash": store.attrs.get("params_hash")}
        if store.attrs.get("source_images") or len(store) != originals.shape[0]:
            result |= {"measured": False, "images": len(store),
                       "why": f"{len(store)} rows selected from {originals.shape[0]}: no row-to-original mapping"}
        else:
            measured = store_fidelity(lambda a, b: originals[a:b], store.decode, len(store), params.block_size,
                                      desc=f"fidelity {store_path.name}")
            result |= {"measured": True} | measured.to_dict()
    write_json(out, result)
    summary("fidelity", result["images"], "images", timer.seconds, store=str(store_path),
            delta_e2000=result.get("delta_e2000", "-"), psnr_db=result.get("psnr_db", "-"))
    return result


def command(
    store: Path = typer.Option(..., help="a quantized train-set store (DCQ, per-image palette, codec or patch "
                               "codebook)"),
    prepared: Path = typer.Option(..., help="prepared store whose train split the store was made from"),
    out: Path = typer.Option(..., help="where to write the fidelity JSON"),
    params_file: Path = PARAMS_OPTION,
    timing: Path | None = TIMING_OPTION,
):
    """Measure PSNR, SSIM and CIEDE2000 ΔE of a quantized train set against the original images."""
    _, params = read_params(params_file, WIRING.section, WIRING.params)
    with stage_command(f"fidelity {store.name}", timing):
        run(params, store, prepared, out)
