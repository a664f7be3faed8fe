"""baseline@method-q: a per-image colour-quantization baseline of the train set.

Reads  `baseline:` + `base` (seed; executor: the shards map serially or on Dask); the prepared store (train/). The method and bit depth come from dvc.yaml's
       matrix over `baseline.methods` x `baseline.bits`.
Writes `OUT`, a per-image-palette store (`palette-per-image-v1`, pipeline/io/dcq_store.py): q-bit packed
       indices, one uint8 sRGB palette of 2^q colours per image, labels, attrs with the method and the
       resolved params. Stored exactly like DCQ, so bytes on disk compare honestly: a palette per image
       costs N x 2^q x 3 bytes where DCQ pays k x 2^q x 3.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import typer
import zarr

from pipeline.config import BaseParams, lineage, params_hash
from pipeline.executor import map_shards
from pipeline.io.arrays import create_rows, create_small, iter_blocks, open_group, open_rows, write_block_size
from pipeline.io.atomic import store_output
from pipeline.io.bitpack import check_bits, pack, packed_bytes
from pipeline.io.dcq_store import PER_IMAGE_FORMAT, smallest_uint
from pipeline.io.verify import open_verified
from pipeline.quantize.per_image import QUANTIZERS, BaselineParams, check_quantizer, quantize_block
from pipeline.stages.common import PARAMS_OPTION, TIMING_OPTION, StageWiring, Timer, read_params, stage_command, summary

SUB_BLOCK_PIXELS = 1 << 21  # images are read and quantized ~2 M pixels at a time (memory set by this, not the shard)


WIRING = StageWiring(BaselineParams, "baseline", matrix=("methods", "bits"))


def quantize_shard(method: str, bits: int, iterations: int, seed: int, prepared: str, out: str, start: int,
                   stop: int) -> np.ndarray:
    """One shard of rows: images [start, stop) quantized, their packed indices into OUT's `indices` (an executor
    task). Returns their palettes."""
    images = open_verified(prepared, checked=False)["train/images"]
    packed, palettes = [], []
    for lo, hi in iter_blocks(stop - start, sub_block_rows(*images.shape[1:3])):
        idx, pal = quantize_block(images[start + lo:start + hi], method, bits, iterations, seed)
        packed.append(pack(idx.reshape(hi - lo, -1), bits))
        palettes.append(pal)
    open_rows(out, "indices")[start:stop] = np.concatenate(packed)
    return np.concatenate(palettes)


def sub_block_rows(h: int, w: int) -> int:
    """Images quantized at a time within a shard (a shard of packed indices holds 65,536 images at 32 px and q=2).
    Each image is quantized on its own, so the block changes no bits (tests/stages/test_baseline.py)."""
    return max(1, SUB_BLOCK_PIXELS // (h * w))


def run(params: BaselineParams, base: BaseParams, method: str, bits: int, prepared: Path, out: Path) -> dict:
    method = check_quantizer(method, "baseline --method")
    bits = check_bits(bits, "baseline --bits")
    prep = open_group(prepared, "prepared store")
    images, labels = prep["train/images"], prep["train/labels"][:]
    n, h, w, _ = images.shape
    attrs = {
        "format": PER_IMAGE_FORMAT, "method": method, "bits": bits, "image_size": [h, w], "num_images": n,
        "classes": prep.attrs["classes"], "source": {"dataset": prep.attrs["source"], "root": prep.attrs["root"]},
        "params": lineage(prep.attrs["params"], base=base, baseline=params) | {"run": {"method": method, "bits": bits}},
    }
    attrs["params_hash"] = params_hash(attrs["params"])
    with Timer() as timer, store_output(out) as tmp:
        root = zarr.open_group(str(tmp), mode="w")
        root.attrs.update(attrs)
        packed = create_rows(root, "indices", (n, packed_bytes(h * w, bits)), np.uint8)
        palettes = create_rows(root, "palettes", (n, 2**bits, 3), np.uint8)
        create_small(root, "labels", labels.astype(smallest_uint(int(labels.max(initial=0)))))
        task = partial(quantize_shard, method, bits, params.kmeans_iterations, base.seed, str(prepared), str(tmp))
        # the palettes' shards differ from the indices', so the tasks return them and this process writes them
        palettes[:] = np.concatenate(map_shards(base, task, n, write_block_size(packed), f"baseline {method} q={bits}"))
    summary("baseline", n, "images", timer.seconds, method=method, bits=bits, executor=base.executor, out=out)
    return {"images": n, "method": method, "bits": bits, "seconds": timer.seconds}


def command(
    method: str = typer.Option(..., help=f"per-image quantizer: {' | '.join(QUANTIZERS)}"),
    bits: int = typer.Option(..., help="bit depth q (2^q colours per image)"),
    prepared: Path = typer.Option(..., help="prepared Zarr store"),
    out: Path = typer.Option(..., help="per-image-palette store to write"),
    params_file: Path = PARAMS_OPTION,
    timing: Path | None = TIMING_OPTION,
):
    """Quantize every train image on its own (Median Cut, octree, K-means) at q bits."""
    base, params = read_params(params_file, WIRING.section, WIRING.params)
    with stage_command(f"baseline {method}@{bits}", timing):
        run(params, base, method, bits, prepared, out)
