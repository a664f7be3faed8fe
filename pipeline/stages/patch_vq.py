"""patch_vq@q: the train set as codes into one patch codebook shared by the whole set, sized near DCQ's bytes at q.

Reads  `patch_vq:` + `base` (seed of the sample and of K-means; executor: the shards map serially or on Dask); the
       prepared store (train/). q comes from dvc.yaml's matrix over `patch_vq.bits`; the patch shape and the
       codebook size at that q from `patch_vq.patch` and `patch_vq.code_bits`.
Writes `OUT`, a patch codebook store (`patch-vq-v1`, pipeline/io/patch_store.py): every patch's code, bit-packed,
       the sRGB codebook, labels, attrs with the shape, the code bits and the resolved params.

The codebook is faiss K-means of a seeded sample of `sample_patches` LAB patches (pipeline/quantize/patch_vq.py);
then every image's patches get their nearest codeword, a shard of images per executor task.
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
from pipeline.io.patch_store import FORMAT, check_code_bits, pack_codes, packed_code_bytes
from pipeline.io.verify import open_verified
from pipeline.quantize.patch_vq import Assigner, check_patch, fit_codebook, lab_patches
from pipeline.stages.common import PARAMS_OPTION, TIMING_OPTION, StageWiring, Timer, read_params, stage_command, summary

BLOCK_IMAGES = 2048  # images turned into LAB patches at a time (memory set by this, not by N)


@dataclass(frozen=True)
class PatchVQParams:
    bits: list[int] = (1, 2, 4)  # read by dvc.yaml's matrix: the DCQ q whose bytes each store is sized near
    patch: dict = field(default_factory=lambda: {1: [4, 4], 2: [4, 2], 4: [2, 2]})  # q -> [ph, pw]
    code_bits: dict = field(default_factory=lambda: {1: 8, 2: 9, 4: 10})        # q -> codebook of 2^b patches
    sample_patches: int = 200_000
    min_patches_per_codeword: int = 50  # a larger codebook samples more: max(sample_patches, this x 2^code_bits)
    iterations: int = 20

    def __post_init__(self):
        for q in self.bits:
            check_bits(q)
            require(q in self.patch and q in self.code_bits, f"bits {q} needs an entry in patch and in code_bits")
        for q, shape in self.patch.items():
            require(isinstance(shape, (list, tuple)) and len(shape) == 2
                    and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in shape),
                    f"patch[{q}]={shape!r} must be [height, width], each >= 1")
        for q, b in self.code_bits.items():
            check_code_bits(b, f"code_bits[{q}]")
        require(self.sample_patches >= 1, f"sample_patches={self.sample_patches} must be >= 1")
        require(self.min_patches_per_codeword >= 1,
                f"min_patches_per_codeword={self.min_patches_per_codeword} must be >= 1")
        require(self.iterations >= 1, f"iterations={self.iterations} must be >= 1")


WIRING = StageWiring(PatchVQParams, "patch_vq", base=("seed",), matrix=("bits",))


def sample_patches(images, patch: tuple[int, int], count: int, seed: int) -> np.ndarray:
    """(m, ph*pw*3) LAB vectors of a seeded sample of min(count, all) patches, read a block of images at a time."""
    n, h, w, _ = images.shape
    per_image = (h // patch[0]) * (w // patch[1])
    chosen = np.sort(np.random.default_rng(seed).choice(n * per_image, min(count, n * per_image), replace=False))
    picked = []
    for start, stop in iter_blocks(n, BLOCK_IMAGES):
        lo, hi = np.searchsorted(chosen, [start * per_image, stop * per_image])
        vectors = lab_patches(images[start:stop], patch)
        picked.append(vectors.reshape(-1, vectors.shape[-1])[chosen[lo:hi] - start * per_image])
    return np.concatenate(picked)


def code_shard(codebook: np.ndarray, bits: int, prepared: str, out: str, start: int, stop: int) -> None:
    """One shard of rows: the packed codes of images [start, stop) into OUT's `codes` (an executor task)."""
    images = open_verified(prepared, checked=False)["train/images"]
    assign = Assigner(codebook)
    target = open_rows(out, "codes")
    for lo, hi in iter_blocks(stop - start, BLOCK_IMAGES):
        target[start + lo:start + hi] = pack_codes(assign.codes(images[start + lo:start + hi]), bits)


def run(params: PatchVQParams, base: BaseParams, bits: int, prepared: Path, out: Path) -> dict:
    bits = check_bits(bits, "patch_vq --bits")
    require(bits in params.patch and bits in params.code_bits, f"patch_vq: no patch or code_bits for bits {bits}")
    prep = open_group(prepared, "prepared store")
    images, labels = prep["train/images"], prep["train/labels"][:]
    n, h, w, _ = images.shape
    patch = check_patch(tuple(params.patch[bits]), (h, w), f"patch_vq.patch[{bits}]")
    code_bits = params.code_bits[bits]
    sample_size = max(params.sample_patches, params.min_patches_per_codeword << code_bits)
    attrs = {
        "format": FORMAT, "method": "patch_vq", "bits": bits, "code_bits": code_bits, "patch": list(patch),
        "image_size": [h, w], "num_images": n, "classes": prep.attrs["classes"],
        "source": {"dataset": prep.attrs["source"], "root": prep.attrs["root"]},
        # only this q's point: a change to another q's patch or codebook size leaves this store's bytes alone
        "params": lineage(prep.attrs["params"], base=base) | {"patch_vq": {
            "patch": list(patch), "code_bits": code_bits, "sample_patches": sample_size,
            "iterations": params.iterations}, "run": {"bits": bits}},
    }
    attrs["params_hash"] = params_hash(attrs["params"])
    with Timer() as timer, store_output(out) as tmp:
        sample = sample_patches(images, patch, sample_size, base.seed)
        codebook = fit_codebook(sample, patch, code_bits, params.iterations, base.seed)
        root = zarr.open_group(str(tmp), mode="w")
        root.attrs.update(attrs)
        codes = create_rows(root, "codes", (n, packed_code_bytes((h // patch[0]) * (w // patch[1]), code_bits)),
                            np.uint8)
        create_small(root, "codebook", codebook)
        create_small(root, "labels", labels.astype(smallest_uint(int(labels.max(initial=0)))))
        task = partial(code_shard, codebook, code_bits, str(prepared), str(tmp))
        map_shards(base, task, n, write_block_size(codes), f"patch_vq q={bits}")
    summary("patch_vq", n, "images", timer.seconds, bits=bits, patch=f"{patch[0]}x{patch[1]}",
            codewords=2 ** code_bits, sample=len(sample), executor=base.executor, out=out)
    return {"images": n, "bits": bits, "code_bits": code_bits, "patch": patch, "seconds": timer.seconds}


def command(
    bits: int = typer.Option(..., help="the DCQ bit depth q whose bytes the store is sized near"),
    prepared: Path = typer.Option(..., help="prepared Zarr store"),
    out: Path = typer.Option(..., help="patch codebook store to write"),
    params_file: Path = PARAMS_OPTION,
    timing: Path | None = TIMING_OPTION,
):
    """Store the train set as codes into one shared codebook of LAB patches (faiss K-means)."""
    base, params = read_params(params_file, WIRING.section, WIRING.params)
    with stage_command(f"patch_vq@{bits}", timing):
        run(params, base, bits, prepared, out)
