"""The DCQ store's writer: every pixel mapped to its cluster palette and bit-packed.

`assign: best_palette` (ours, not the paper's) lets each image use whichever of the k shared palettes quantizes it
with the least LAB error instead of its feature cluster's: the store already holds a palette id per image, so
this costs no byte."""

from __future__ import annotations

import contextlib
import math
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
from pipeline.io.arrays import create_rows, create_small, open_group, open_rows, write_block_size
from pipeline.io.atomic import store_output
from pipeline.io.bitpack import check_bits, pack, packed_bytes
from pipeline.io.dcq_store import FORMAT, smallest_uint
from pipeline.io.verify import open_verified
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


def encode_lab(lab: torch.Tensor, cluster_ids: torch.Tensor, palettes_lab: torch.Tensor, bits: int) -> np.ndarray:
    """LAB pixels (B,P,3) -> packed uint8 (B, ceil(P*q/8)) indices into their cluster palettes."""
    return pack(nearest(lab, palettes_lab[cluster_ids]).to(torch.uint8).cpu().numpy(), bits)


def encode_block(block_u8: torch.Tensor, cluster_ids: torch.Tensor, palettes_lab: torch.Tensor, bits: int) -> np.ndarray:
    """uint8 (B,H,W,3) images -> packed uint8 (B, ceil(H*W*q/8)) indices into their cluster palettes."""
    b, h, w, _ = block_u8.shape
    return encode_lab(rgb_to_lab(block_u8.reshape(b, h * w, 3)), cluster_ids, palettes_lab, bits)


def best_palettes_lab(lab: torch.Tensor, palettes_lab: torch.Tensor, max_elements: int = 1 << 24) -> torch.Tensor:
    """For LAB pixels (B,P,3), the index of the (k,K,3) palette that quantizes each image with the least summed
    squared LAB error (nearest colour per pixel); ties go to the lower index."""
    b, p, _ = lab.shape
    k, colours, _ = palettes_lab.shape
    step = max(1, max_elements // max(1, b * p * colours))
    errors = []
    for s in range(0, k, step):
        pal = palettes_lab[s:s + step]  # (c,K,3)
        d = ((lab[:, :, None, None, :] - pal[None, None]) ** 2).sum(-1)  # (B,P,c,K)
        errors.append(d.amin(-1).sum(1))  # (B,c)
    return torch.cat(errors, 1).argmin(1)


def best_palettes(block_u8: torch.Tensor, palettes_lab: torch.Tensor, max_elements: int = 1 << 24) -> torch.Tensor:
    """`best_palettes_lab` of uint8 (B,H,W,3) images."""
    b, h, w, _ = block_u8.shape
    return best_palettes_lab(rgb_to_lab(block_u8.reshape(b, h * w, 3)), palettes_lab, max_elements)


def encode_shard(params: EncodeParams, base: BaseParams, bits: tuple[int, ...], prepared: str, clusters: str,
                 outs: tuple[str, ...], palettes_u8: tuple[np.ndarray, ...], start: int, stop: int) -> list[np.ndarray]:
    """One block of rows for every bit depth at once: images [start, stop) are read and converted to LAB once, and
    their packed indices go to each OUT's `indices` (an executor task). Returns, per bit depth, the palette id each
    image uses (its cluster's, or with assign: best_palette its best fitting one)."""
    runtime = resolve_runtime(base.device, base.precision)
    palettes_lab = [rgb_to_lab(torch.from_numpy(p)).to(runtime.device) for p in palettes_u8]
    images = open_verified(prepared, checked=False)["train/images"]
    cluster_ids = torch.from_numpy(open_verified(clusters, checked=False)["assignments"][start:stop].astype(np.int64))
    ids = [cluster_ids.to(runtime.device).clone() for _ in bits]  # one per q: best_palette fills each in place
    parts: list[list[np.ndarray]] = [[] for _ in bits]
    _, h, w, _ = images.shape
    for s in range(0, stop - start, params.batch_size):  # images read a batch at a time: memory set by batch_size
        batch = slice(s, min(s + params.batch_size, stop - start))
        pixels = torch.from_numpy(images[start + batch.start:start + batch.stop]).to(runtime.device)
        lab = rgb_to_lab(pixels.reshape(-1, h * w, 3))
        for i, q in enumerate(bits):
            if params.assign == "best_palette":
                ids[i][batch] = best_palettes_lab(lab, palettes_lab[i])
            parts[i].append(encode_lab(lab, ids[i][batch], palettes_lab[i], q))
    for out, part in zip(outs, parts):
        open_rows(out, "indices")[start:stop] = np.concatenate(part)
    return [i.cpu().numpy() for i in ids]


def common_block(blocks: list[int], n: int) -> int:
    """Rows per task that fill whole shards of every output: their least common multiple (at most n rows)."""
    return min(max(n, 1), math.lcm(*blocks))


def encode_passes(blocks: dict[int, int], n: int, max_ratio: int = 4) -> list[list[int]]:
    """Bit depths grouped into passes over the images. One pass when the outputs' shard rows nest (powers of two:
    the common block is the largest shard); a bit depth whose shards would make the common block more than
    `max_ratio` x its group's largest shard starts another pass, so a task's memory stays a few shards."""
    groups: list[list[int]] = []
    for q, rows in blocks.items():
        for group in groups:
            members = [blocks[g] for g in group] + [rows]
            if common_block(members, n) <= max_ratio * min(max(members), max(n, 1)):
                group.append(q)
                break
        else:
            groups.append([q])
    return groups


def write_dcq(params: EncodeParams, base: BaseParams, bits: int, prepared: Path, clusters: Path, refined: Path,
              out: Path) -> dict:
    """The DCQ store of one bit depth (see `write_dcq_stores`)."""
    return write_dcq_stores(params, base, {bits: (refined, out)}, prepared, clusters)


def _dcq_attrs(params: EncodeParams, base: BaseParams, bits: int, ref: zarr.Group, prep: zarr.Group,
               shape: tuple[int, ...], k: int) -> dict:
    n, h, w, _ = shape
    attrs = {
        "format": FORMAT, "bits": bits, "clusters": k, "image_size": [h, w], "num_images": n,
        "classes": prep.attrs["classes"], "source": {"dataset": prep.attrs["source"], "root": prep.attrs["root"]},
        "params": lineage(ref.attrs["params"], base=base, encode=params),
    }
    attrs["params_hash"] = params_hash(attrs["params"])
    return attrs


def write_dcq_stores(params: EncodeParams, base: BaseParams, stores: dict[int, tuple[Path, Path]], prepared: Path,
                     clusters: Path) -> dict:
    """DCQ stores for several bit depths, {q: (refined palette store, OUT)}, in as few passes over the images as
    the outputs' shard layouts allow (usually one). Each store is the one a single-q encode writes, byte for byte."""
    resolve_runtime(base.device, base.precision)  # a device this machine lacks fails here, before any work
    for q in stores:
        check_bits(q, "encode --bits")
    prep = open_group(prepared, "prepared store")
    images, labels = prep["train/images"], prep["train/labels"][:]
    cluster_root = open_group(clusters, "cluster store")
    original = cluster_root["assignments"][:].astype(np.int64)
    # how chromatic the clusters the palettes were fitted to are (the cluster stage measures it), for the report
    chroma = cluster_root.attrs.get("chromaticity")
    n, h, w, _ = images.shape
    if len(original) != n:
        raise StoreError(f"{clusters} assigns {len(original)} images, {prepared} holds {n} train images")
    palettes_u8, attrs = {}, {}
    for q, (refined, _) in stores.items():
        ref = open_group(refined, "refined palette store")
        if int(ref.attrs["bits"]) != q:
            raise StoreError(f"{refined} holds {ref.attrs['bits']}-bit palettes, encode was asked for {q} bits")
        palettes_u8[q] = lab_to_rgb_u8(torch.from_numpy(ref["palettes"][:])).numpy()  # (k, 2^q, 3)
        attrs[q] = _dcq_attrs(params, base, q, ref, prep, images.shape, palettes_u8[q].shape[0])
        if isinstance(chroma, dict):
            attrs[q]["cluster_chromaticity"] = chroma
    moved = {}
    with Timer() as timer, contextlib.ExitStack() as stack:
        tmps, blocks = {}, {}
        for q, (_, out) in stores.items():
            tmps[q] = stack.enter_context(store_output(out))
            root = zarr.open_group(str(tmps[q]), mode="w")
            root.attrs.update(attrs[q])
            packed = create_rows(root, "indices", (n, packed_bytes(h * w, q)), np.uint8)
            create_small(root, "labels", labels.astype(smallest_uint(int(labels.max(initial=0)))))
            create_small(root, "palettes", palettes_u8[q])
            blocks[q] = write_block_size(packed)
        passes = encode_passes(blocks, n)
        for group in passes:
            task = partial(encode_shard, params, base, tuple(group), str(prepared), str(clusters),
                           tuple(str(tmps[q]) for q in group), tuple(palettes_u8[q] for q in group))
            block = common_block([blocks[q] for q in group], n)
            results = map_shards(base, task, n, block, "encode q=" + ",".join(map(str, group)))
            for i, q in enumerate(group):
                assignments = np.concatenate([r[i] for r in results])
                moved[q] = int((assignments != original).sum())
                k = palettes_u8[q].shape[0]
                create_small(zarr.open_group(str(tmps[q]), mode="r+"), "clusters",
                             assignments.astype(smallest_uint(max(k - 1, 0))))
    bits = list(stores)
    summary("encode", n * len(bits), "image encodings", timer.seconds, bits=bits, passes=len(passes),
            clusters=[palettes_u8[q].shape[0] for q in bits], assign=params.assign, moved=[moved[q] for q in bits],
            executor=base.executor, out=[str(out) for _, out in stores.values()])
    return {"images": n, "bits": bits, "passes": len(passes), "seconds": timer.seconds}
