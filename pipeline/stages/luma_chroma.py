"""luma_chroma@q: the train set as luma and chroma codes into two codebooks shared by the whole set, sized near DCQ's
bytes at q.

Reads  `luma_chroma:` + `base` (seed of the samples and of K-means; executor: the shards map serially or on Dask);
       the prepared store (train/). q comes from dvc.yaml's matrix over `luma_chroma.bits`; the geometry at that q
       (luma patch and codebook bits, chroma factor, chroma patch and codebook bits) from `luma_chroma.points`.
Writes `OUT`, a luma/chroma codebook store (`luma-chroma-vq-v1`, pipeline/io/luma_chroma_store.py): every patch's
       code, bit-packed, the two codebooks, labels, attrs with the geometry and the resolved params.

The codebooks are faiss K-means of seeded samples of luma and chroma patch vectors (pipeline/quantize/luma_chroma.py);
then every image's patches get their nearest stored codeword, a shard of images per executor task.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import typer
import zarr

from pipeline.config import BaseParams, lineage, params_hash, require
from pipeline.executor import map_shards
from pipeline.io.arrays import create_rows, create_small, iter_blocks, open_group, open_rows, write_block_size
from pipeline.io.atomic import store_output
from pipeline.io.bitpack import check_bits
from pipeline.io.dcq_store import smallest_uint
from pipeline.io.luma_chroma_store import FORMAT, METHOD
from pipeline.io.patch_store import check_code_bits, pack_codes, packed_code_bytes
from pipeline.io.verify import open_verified
from pipeline.quantize.luma_chroma import Assigner, Geometry, fit_codebooks, sample_vectors
from pipeline.stages.common import PARAMS_OPTION, TIMING_OPTION, StageWiring, Timer, read_params, stage_command, summary

BLOCK_IMAGES = 2048  # images turned into LAB patch vectors at a time (memory set by this, not by N)
POINT_KEYS = {"luma_patch", "luma_bits", "chroma_factor", "chroma_patch", "chroma_bits"}


def _shape(value) -> bool:
    return isinstance(value, (list, tuple)) and len(value) == 2 and all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)


@dataclass(frozen=True)
class LumaChromaParams:
    bits: list[int] = (1, 2, 4)  # read by dvc.yaml's matrix: the DCQ q whose bytes each store is sized near
    points: dict = field(default_factory=lambda: {
        1: {"luma_patch": [4, 4], "luma_bits": 6, "chroma_factor": 4, "chroma_patch": [2, 2], "chroma_bits": 6},
        2: {"luma_patch": [4, 4], "luma_bits": 13, "chroma_factor": 4, "chroma_patch": [2, 2], "chroma_bits": 11},
        4: {"luma_patch": [4, 2], "luma_bits": 11, "chroma_factor": 2, "chroma_patch": [2, 2], "chroma_bits": 12}})
    sample_vectors: int = 200_000  # seeded sample of patch vectors each codebook is fitted on, at least ...
    min_vectors_per_codeword: int = 50  # ... this many per codeword
    iterations: int = 20

    def __post_init__(self):
        for q in self.bits:
            check_bits(q)
            require(q in self.points, f"bits {q} needs an entry in points")
        for q, point in self.points.items():
            require(isinstance(point, dict) and set(point) == POINT_KEYS,
                    f"points[{q}] must have exactly the keys {sorted(POINT_KEYS)}")
            for key in ("luma_patch", "chroma_patch"):
                require(_shape(point[key]), f"points[{q}].{key}={point[key]!r} must be [height, width], each >= 1")
            for key in ("luma_bits", "chroma_bits"):
                check_code_bits(point[key], f"points[{q}].{key}")
            f = point["chroma_factor"]
            require(isinstance(f, int) and not isinstance(f, bool) and f >= 1,
                    f"points[{q}].chroma_factor={f!r} must be an integer >= 1")
        require(self.sample_vectors >= 1, f"sample_vectors={self.sample_vectors} must be >= 1")
        require(self.min_vectors_per_codeword >= 1,
                f"min_vectors_per_codeword={self.min_vectors_per_codeword} must be >= 1")
        require(self.iterations >= 1, f"iterations={self.iterations} must be >= 1")


WIRING = StageWiring(LumaChromaParams, "luma_chroma", base=("seed",), matrix=("bits",))


def geometry_at(params: LumaChromaParams, bits: int, image_size: tuple[int, int]) -> Geometry:
    p = params.points[bits]
    g = Geometry(tuple(p["luma_patch"]), p["luma_bits"], p["chroma_factor"], tuple(p["chroma_patch"]),
                 p["chroma_bits"])
    (h, w), f, (lh, lw), (ch, cw) = image_size, g.chroma_factor, g.luma_patch, g.chroma_patch
    require(h % lh == 0 and w % lw == 0, f"luma_chroma.points[{bits}].luma_patch={[lh, lw]} must divide the "
            f"{h}x{w} images into whole patches")
    require(h % f == 0 and w % f == 0 and (h // f) % ch == 0 and (w // f) % cw == 0,
            f"luma_chroma.points[{bits}]: chroma_factor={f} and chroma_patch={[ch, cw]} must divide the {h}x{w} "
            "images into whole patches")
    return g


def code_shard(books: tuple[np.ndarray, np.ndarray], geometry: Geometry, prepared: str, out: str, start: int,
               stop: int) -> None:
    """One shard of rows: the packed luma and chroma codes of images [start, stop) into OUT (an executor task)."""
    images = open_verified(prepared, checked=False)["train/images"]
    assign = Assigner(*books, geometry)
    luma_out, chroma_out = open_rows(out, "luma_codes"), open_rows(out, "chroma_codes")
    for lo, hi in iter_blocks(stop - start, BLOCK_IMAGES):
        luma, chroma = assign.codes(images[start + lo:start + hi])
        luma_out[start + lo:start + hi] = pack_codes(luma, geometry.luma_bits)
        chroma_out[start + lo:start + hi] = pack_codes(chroma, geometry.chroma_bits)


def run(params: LumaChromaParams, base: BaseParams, bits: int, prepared: Path, out: Path) -> dict:
    bits = check_bits(bits, "luma_chroma --bits")
    require(bits in params.points, f"luma_chroma: no points entry for bits {bits}")
    prep = open_group(prepared, "prepared store")
    images, labels = prep["train/images"], prep["train/labels"][:]
    n, h, w, _ = images.shape
    g = geometry_at(params, bits, (h, w))
    counts = tuple(max(params.sample_vectors, params.min_vectors_per_codeword << b) for b in (g.luma_bits,
                                                                                               g.chroma_bits))
    point = {"luma_patch": list(g.luma_patch), "luma_bits": g.luma_bits, "chroma_factor": g.chroma_factor,
             "chroma_patch": list(g.chroma_patch), "chroma_bits": g.chroma_bits}
    attrs = {
        "format": FORMAT, "method": METHOD, "bits": bits, **point, "image_size": [h, w], "num_images": n,
        "classes": prep.attrs["classes"], "source": {"dataset": prep.attrs["source"], "root": prep.attrs["root"]},
        # only this q's point: a change to another q's geometry leaves this store's bytes alone
        "params": lineage(prep.attrs["params"], base=base) | {"luma_chroma": point | {
            "sample_vectors": list(counts), "iterations": params.iterations}, "run": {"bits": bits}},
    }
    attrs["params_hash"] = params_hash(attrs["params"])
    with Timer() as timer, store_output(out) as tmp:
        luma_sample, chroma_sample = sample_vectors(images, g, counts, base.seed, BLOCK_IMAGES)
        books = fit_codebooks(luma_sample, chroma_sample, g, params.iterations, base.seed)
        root = zarr.open_group(str(tmp), mode="w")
        root.attrs.update(attrs)
        luma_count = (h // g.luma_patch[0]) * (w // g.luma_patch[1])
        chroma_count = (h // g.chroma_factor // g.chroma_patch[0]) * (w // g.chroma_factor // g.chroma_patch[1])
        codes = create_rows(root, "luma_codes", (n, packed_code_bytes(luma_count, g.luma_bits)), np.uint8)
        create_rows(root, "chroma_codes", (n, packed_code_bytes(chroma_count, g.chroma_bits)), np.uint8)
        create_small(root, "luma_codebook", books[0])
        create_small(root, "chroma_codebook", books[1])
        create_small(root, "labels", labels.astype(smallest_uint(int(labels.max(initial=0)))))
        task = partial(code_shard, books, g, str(prepared), str(tmp))
        map_shards(base, task, n, write_block_size(codes), f"luma_chroma q={bits}")
    summary("luma_chroma", n, "images", timer.seconds, bits=bits, luma=f"{g.luma_patch[0]}x{g.luma_patch[1]}"
            f"@{g.luma_bits}", chroma=f"/{g.chroma_factor} {g.chroma_patch[0]}x{g.chroma_patch[1]}@{g.chroma_bits}",
            executor=base.executor, out=out)
    return {"images": n, "bits": bits, "geometry": g, "seconds": timer.seconds}


def command(
    bits: int = typer.Option(..., help="the DCQ bit depth q whose bytes the store is sized near"),
    prepared: Path = typer.Option(..., help="prepared Zarr store"),
    out: Path = typer.Option(..., help="luma/chroma codebook store to write"),
    params_file: Path = PARAMS_OPTION,
    timing: Path | None = TIMING_OPTION,
):
    """Store the train set as luma (L*) and low-resolution chroma patch codes into two shared codebooks."""
    base, params = read_params(params_file, WIRING.section, WIRING.params)
    with stage_command(f"luma_chroma@{bits}", timing):
        run(params, base, bits, prepared, out)
