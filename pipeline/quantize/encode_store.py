"""The DCQ store's writer: every pixel mapped to its cluster palette and bit-packed.

`assign: best_palette` (ours, not the paper's) lets each image use whichever of the k shared palettes quantizes it
with the least LAB error instead of its feature cluster's: the store already holds a palette id per image, so
this costs no byte."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import zarr

from pipeline.config import BaseParams, lineage, off_switch, params_hash, require
from pipeline.device import resolve_runtime
from pipeline.errors import StoreError
from pipeline.executor import map_shards
from pipeline.io.arrays import create_rows, create_small, open_group, write_block_size
from pipeline.io.atomic import store_output
from pipeline.io.dcq_store import FORMAT, smallest_uint
from pipeline.quantize.bitpack import check_bits, pack, packed_bytes
from pipeline.quantize.color import lab_to_rgb_u8, rgb_to_lab
from pipeline.quantize.palette import nearest
from pipeline.timing import Timer, summary


@dataclass(frozen=True)
class EncodeParams:
    batch_size: int = 512  # images per nearest-colour batch (bounds the distance tensor)
    assign: Literal["cluster", "best_palette"] = off_switch("cluster")  # which shared palette an image uses

    def __post_init__(self):
        require(self.batch_size >= 1, f"batch_size={self.batch_size} must be >= 1")
        require(self.assign in ("cluster", "best_palette"), f"assign={self.assign!r} must be cluster or best_palette")


def encode_block(block_u8: torch.Tensor, cluster_ids: torch.Tensor, palettes_lab: torch.Tensor, bits: int) -> np.ndarray:
    """uint8 (B,H,W,3) images -> packed uint8 (B, ceil(H*W*q/8)) indices into their cluster palettes."""
    b, h, w, _ = block_u8.shape
    lab = rgb_to_lab(block_u8.reshape(b, h * w, 3))
    idx = nearest(lab, palettes_lab[cluster_ids])
    return pack(idx.to(torch.uint8).cpu().numpy(), bits)


def best_palettes(block_u8: torch.Tensor, palettes_lab: torch.Tensor, max_elements: int = 1 << 24) -> torch.Tensor:
    """For uint8 (B,H,W,3) images, the index of the (k,K,3) palette that quantizes each with the least summed
    squared LAB error (nearest colour per pixel); ties go to the lower index."""
    b, h, w, _ = block_u8.shape
    lab = rgb_to_lab(block_u8.reshape(b, h * w, 3))
    k, colours, _ = palettes_lab.shape
    step = max(1, max_elements // max(1, b * h * w * colours))
    errors = []
    for s in range(0, k, step):
        pal = palettes_lab[s:s + step]  # (c,K,3)
        d = ((lab[:, :, None, None, :] - pal[None, None]) ** 2).sum(-1)  # (B,P,c,K)
        errors.append(d.amin(-1).sum(1))  # (B,c)
    return torch.cat(errors, 1).argmin(1)


def encode_shard(params: EncodeParams, base: BaseParams, bits: int, prepared: str, clusters: str, out: str,
                 palettes_u8: np.ndarray, start: int, stop: int) -> np.ndarray:
    """One shard of rows: the packed indices of images [start, stop) into OUT's `indices` (an executor task).
    Returns the palette id each image uses (its cluster's, or with assign: best_palette its best fitting one)."""
    runtime = resolve_runtime(base.device, base.precision)
    palettes_lab = rgb_to_lab(torch.from_numpy(palettes_u8)).to(runtime.device)
    chunk = torch.from_numpy(zarr.open_group(prepared, mode="r")["train/images"][start:stop]).to(runtime.device)
    ids = torch.from_numpy(zarr.open_group(clusters, mode="r")["assignments"][start:stop].astype(np.int64))
    ids = ids.to(runtime.device)
    parts = []
    for s in range(0, len(chunk), params.batch_size):
        if params.assign == "best_palette":
            ids[s:s + params.batch_size] = best_palettes(chunk[s:s + params.batch_size], palettes_lab)
        parts.append(encode_block(chunk[s:s + params.batch_size], ids[s:s + params.batch_size], palettes_lab, bits))
    zarr.open_group(out, mode="r+")["indices"][start:stop] = np.concatenate(parts)
    return ids.cpu().numpy()


def write_dcq(params: EncodeParams, base: BaseParams, bits: int, prepared: Path, clusters: Path, refined: Path,
        out: Path) -> dict:
    bits = check_bits(bits, "encode --bits")
    resolve_runtime(base.device, base.precision)  # a device this machine lacks fails here, before any work
    prep = open_group(prepared, "prepared store")
    images, labels = prep["train/images"], prep["train/labels"][:]
    assignments = open_group(clusters, "cluster store")["assignments"][:].astype(np.int64)
    original = assignments
    ref = open_group(refined, "refined palette store")
    if int(ref.attrs["bits"]) != bits:
        raise StoreError(f"{refined} holds {ref.attrs['bits']}-bit palettes, encode was asked for {bits} bits")
    n, h, w, _ = images.shape
    if len(assignments) != n:
        raise StoreError(f"{clusters} assigns {len(assignments)} images, {prepared} holds {n} train images")
    palettes_u8 = lab_to_rgb_u8(torch.from_numpy(ref["palettes"][:]))  # (k, 2^q, 3)
    k = palettes_u8.shape[0]
    attrs = {
        "format": FORMAT, "bits": bits, "clusters": k, "image_size": [h, w], "num_images": n,
        "classes": prep.attrs["classes"], "source": {"dataset": prep.attrs["source"], "root": prep.attrs["root"]},
        "params": lineage(ref.attrs["params"], base=base, encode=params),
    }
    attrs["params_hash"] = params_hash(attrs["params"])
    with Timer() as timer, store_output(out) as tmp:
        root = zarr.open_group(str(tmp), mode="w")
        root.attrs.update(attrs)
        packed = create_rows(root, "indices", (n, packed_bytes(h * w, bits)), np.uint8)
        create_small(root, "labels", labels.astype(smallest_uint(int(labels.max(initial=0)))))
        create_small(root, "palettes", palettes_u8.numpy())
        task = partial(encode_shard, params, base, bits, str(prepared), str(clusters), str(tmp), palettes_u8.numpy())
        assignments = np.concatenate(map_shards(base, task, n, write_block_size(packed), f"encode q={bits}"))
        moved = int((assignments != original).sum())
        create_small(root, "clusters", assignments.astype(smallest_uint(max(k - 1, 0))))
    summary("encode", n, "images", timer.seconds, bits=bits, clusters=k, assign=params.assign, moved=moved,
            executor=base.executor, out=out)
    return {"images": n, "bits": bits, "seconds": timer.seconds}
