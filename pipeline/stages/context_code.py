"""context_code@q: a DCQ store's index maps coded losslessly with a shared context model, in place of zstd.

Reads  `context_code:` (the neighbour count is chosen up to `max_neighbours`; `cluster_context`; `block_images`);
       STORE, a `dcq-v1` store (pipeline/io/dcq_store.py). q is the store's; dvc.yaml's matrix over
       `context_code.bits` names which stores are coded.
Writes `OUT`, a `dcq-context-v1` store (pipeline/io/context_store.py): the range-coder streams of each block of
       images, the model, and STORE's palettes, clusters and labels; it decodes to STORE's indices exactly. Attrs
       carry STORE's lineage plus this stage's point.

Two passes over STORE, a block of images at a time: the context counts of every pixel for each neighbour count
(pipeline/io/context_coder.py), then the coding of each block under the chosen model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import typer
import zarr

from pipeline.config import lineage, params_hash, require
from pipeline.io import context_coder as coder
from pipeline.io.arrays import CHECKSUMMED, EVERY_CHUNK, create_small, iter_blocks
from pipeline.io.atomic import store_output
from pipeline.io.bitpack import check_bits
from pipeline.io.context_store import FORMAT, METHOD
from pipeline.io.dcq_store import DCQStore
from pipeline.stages.common import PARAMS_OPTION, TIMING_OPTION, StageWiring, Timer, read_params, stage_command, summary

STREAM_CHUNK_WORDS = 1 << 16  # 256 KiB of stream per chunk file
MAX_MODEL_ENTRIES = 1 << 22  # counts held per candidate neighbour count (32 MiB); larger models cost more than saved


@dataclass(frozen=True)
class ContextCodeParams:
    bits: list[int] = (1, 2, 3, 4)  # read by dvc.yaml's matrix: the DCQ stores (q) that are coded
    max_neighbours: int = 6     # of W, N, NW, NE, WW, NN; the count with the fewest bytes (model + code) is used
    cluster_context: bool = True  # the image's cluster is part of every context
    block_images: int = 1000    # images per coded stream: the unit of random access

    def __post_init__(self):
        for q in self.bits:
            check_bits(q)
        require(0 <= self.max_neighbours <= len(coder.NEIGHBOURS),
                f"max_neighbours={self.max_neighbours} must be 0..{len(coder.NEIGHBOURS)}")
        require(isinstance(self.cluster_context, bool), f"cluster_context={self.cluster_context!r} must be a bool")
        require(self.block_images >= 1, f"block_images={self.block_images} must be >= 1")


WIRING = StageWiring(ContextCodeParams, "context_code", base=(), matrix=("bits",))


def candidate_neighbours(params: ContextCodeParams, alphabet: int, clusters: int) -> list[int]:
    return [n for n in range(params.max_neighbours + 1)
            if n == 0 or coder.num_contexts(alphabet, n, clusters) * alphabet <= MAX_MODEL_ENTRIES]


def run(params: ContextCodeParams, store: Path, out: Path) -> dict:
    source = DCQStore(store)
    require(not source.per_image, f"{store}: a per-image palette store; context_code codes DCQ (dcq-v1) stores")
    n, (h, w), alphabet = len(source), source.image_size, 2 ** source.bits
    groups = len(source.palettes) if params.cluster_context else 1
    contexts = source.clusters if params.cluster_context else np.zeros(n, np.int64)
    block = params.block_images
    attrs = {
        "format": FORMAT, "method": METHOD, "bits": source.bits, "clusters": source.attrs["clusters"],
        "image_size": [h, w], "num_images": n, "classes": source.classes, "source": source.attrs["source"],
        "cluster_context": params.cluster_context, "block_images": block,
        "params": lineage(source.attrs.get("params", {})) | {"context_code": {
            "max_neighbours": params.max_neighbours, "cluster_context": params.cluster_context,
            "block_images": block}},
    }
    attrs["params_hash"] = params_hash(attrs["params"])
    with Timer() as timer, store_output(out) as tmp:
        candidates = candidate_neighbours(params, alphabet, groups)
        counts = {k: 0 for k in candidates}
        for lo, hi in iter_blocks(n, block):
            maps = source.indices(lo, hi)
            for k in candidates:
                counts[k] = counts[k] + coder.context_counts(maps, contexts[lo:hi], alphabet, k, groups)
        neighbours = coder.best_neighbours(counts, alphabet, groups)
        model = coder.quantized_model(counts[neighbours])
        table = coder.probabilities(model)
        root = zarr.open_group(str(tmp), mode="w")
        root.attrs.update(attrs | {"neighbours": neighbours})
        streams = root.create_array("streams", shape=(0,), dtype=np.uint32, chunks=(STREAM_CHUNK_WORDS,),
                                    fill_value=0, compressors=CHECKSUMMED, config=EVERY_CHUNK)
        offsets = [0]
        for lo, hi in iter_blocks(n, block):
            words = coder.encode_block(source.indices(lo, hi), contexts[lo:hi], table, alphabet, neighbours)
            streams.append(words)
            offsets.append(offsets[-1] + len(words))
        create_small(root, "offsets", np.asarray(offsets, dtype=np.uint64))
        create_small(root, "model", model)
        create_small(root, "palettes", source.palettes)
        create_small(root, "clusters", source.root["clusters"][:])
        create_small(root, "labels", source.root["labels"][:])
    words = offsets[-1]
    summary("context_code", n, "images", timer.seconds, bits=source.bits, neighbours=neighbours,
            bits_per_pixel=f"{32 * words / max(1, n * h * w):.4f}", model_bytes=model.nbytes, out=out)
    return {"images": n, "bits": source.bits, "neighbours": neighbours, "stream_bytes": 4 * words,
            "model_bytes": int(model.nbytes), "seconds": timer.seconds}


def command(
    store: Path = typer.Option(..., help="DCQ store (dcq-v1) whose index maps are coded"),
    out: Path = typer.Option(..., help="context-coded store to write"),
    params_file: Path = PARAMS_OPTION,
    timing: Path | None = TIMING_OPTION,
):
    """Code a DCQ store's index maps losslessly with a shared context model (range coder), in place of zstd."""
    _, params = read_params(params_file, WIRING.section, ContextCodeParams)
    with stage_command(f"context_code {store}", timing):
        run(params, store, out)
