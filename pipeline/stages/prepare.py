"""prepare: read an image dataset into chunked Zarr arrays.

Reads  `prepare:` + `base.seed`; the source (an ImageFolder tree, `train/` and `test/` or `val/`, or a
       torchvision dataset).
Writes `OUT` (a Zarr group) with `train/` and `test/` groups, each holding `images` uint8 (N,H,W,3)
       and `labels` int64 (N,); group attrs hold the class names, the source and the resolved params.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Literal

import numpy as np
import typer
import zarr

from pipeline.config import BaseParams, off_switch, require, resolved_params
from pipeline.errors import DatasetError
from pipeline.executor import map_shards
from pipeline.io.arrays import create_rows, create_small, open_rows, write_block_size
from pipeline.io.atomic import store_output
from pipeline.io.sources import (
    DEFAULT_MAX_PIXELS,
    TORCHVISION_SOURCES,
    SplitListing,
    check_file_sizes,
    check_min_size,
    decoder,
    height_width,
    list_imagefolder,
    list_torchvision,
    project_path,
)
from pipeline.stages.common import PARAMS_OPTION, TIMING_OPTION, StageWiring, Timer, read_params, stage_command, summary


@dataclass(frozen=True)
class PrepareParams:
    source: Literal["imagefolder", "cifar10", "cifar100", "svhn"] = "imagefolder"
    root: str = "../shared/data/cifar10-jpeg"
    download: bool = True
    image_size: int | list[int] | None = None  # S (S x S) or [H, W]; null: every image's own, common size
    resize: Literal["reject", "resize"] = "reject"
    train_per_class: int | None = None  # null: every image
    test_per_class: int | None = None
    skip_non_images: bool = False
    test_split: Literal["test", "val"] = off_switch("test")  # imagefolder: the held-out folder (ImageNet: val)
    # An image with more pixels is refused by name before it is decoded (a decompression bomb); Pillow's default
    max_image_pixels: int = off_switch(DEFAULT_MAX_PIXELS)

    def __post_init__(self):
        size = [self.image_size] * 2 if isinstance(self.image_size, int) else self.image_size
        require(size is None or (len(size) == 2 and all(isinstance(v, int) and v >= 8 for v in size)),
                f"image_size={self.image_size} must be one integer >= 8 or [H, W], each >= 8")
        require(self.image_size is not None or self.resize == "reject",
                "resize: resize needs an explicit image_size (S or [H, W]) to resize to")
        require(self.test_split in ("test", "val"), f"test_split={self.test_split!r} must be test or val")
        require(self.test_split == "test" or self.source == "imagefolder",
                f"test_split={self.test_split!r}: only an imagefolder source has a choice of held-out folder")
        require(self.max_image_pixels >= 1, f"max_image_pixels={self.max_image_pixels} must be >= 1")
        for key in ("train_per_class", "test_per_class"):
            value = getattr(self, key)
            require(value is None or value >= 1, f"{key}={value} must be >= 1 or null")


WIRING = StageWiring(PrepareParams, "prepare", base=("seed",))


def list_split(params: PrepareParams, split: str) -> SplitListing:
    root = project_path(params.root)
    if params.source == "imagefolder":  # the held-out split is read from test_split's folder, stored as test/
        return list_imagefolder(root, params.test_split if split == "test" else split, params.skip_non_images)
    assert params.source in TORCHVISION_SOURCES
    return list_torchvision(params.source, root, split, params.download)


def select_per_class(labels: np.ndarray, per_class: int | None, seed: int, classes: list[str], split: str) -> np.ndarray:
    """Row indices of a seeded per-class random subset, in (class, original order) order."""
    if per_class is None:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    rows = []
    for label, name in enumerate(classes):
        members = np.flatnonzero(labels == label)
        if len(members) < per_class:
            raise DatasetError(
                f"{split} class {name!r} has {len(members)} images, fewer than prepare.{split}_per_class={per_class}"
            )
        rows.append(np.sort(rng.choice(members, per_class, replace=False)))
    return np.concatenate(rows)


def decode_shard(size: tuple[int, int], resize: str, out: str, max_pixels: int, start: int, stop: int,
                 rows: SplitListing) -> int:
    """One shard of rows: decode this block's images (`rows`: its part of the listing) into OUT (an executor task)."""
    open_rows(out, "images")[start:stop] = decoder(rows, size, resize, max_pixels)(np.arange(stop - start))
    return stop - start


def write_split(group: zarr.Group, listing: SplitListing, rows: np.ndarray, size: tuple[int, int], resize: str,
                split: str, base: BaseParams, path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    images = create_rows(group, "images", (len(rows), *size, 3), np.uint8)
    create_small(group, "labels", listing.labels[rows].astype(np.int64))

    def block_of(start: int, stop: int) -> SplitListing:
        part = rows[start:stop]
        return replace(listing, labels=listing.labels[part],
                       files=None if listing.files is None else [listing.files[r] for r in part],
                       arrays=None if listing.arrays is None else listing.arrays[part])

    map_shards(base, partial(decode_shard, size, resize, str(path), max_pixels), len(rows), write_block_size(images),
               f"prepare {split}", payload=block_of)


def run(params: PrepareParams, base: BaseParams, out: Path) -> dict:
    with Timer() as timer:
        listings = {split: list_split(params, split) for split in ("train", "test")}
        if listings["train"].classes != listings["test"].classes:
            raise DatasetError(
                f"{params.root}: train and test class folders differ: {listings['train'].classes} vs {listings['test'].classes}"
            )
        rows = {
            split: select_per_class(
                listing.labels, getattr(params, f"{split}_per_class"), base.seed, listing.classes, split
            )
            for split, listing in listings.items()
        }
        first = listings["train"]
        size = None if params.image_size is None else height_width(params.image_size)
        if first.files is not None:
            size = check_file_sizes({split: [listing.files[r] for r in rows[split]] for split, listing in listings.items()},
                                    size, params.resize, max_pixels=params.max_image_pixels)
        elif size is None:
            size = tuple(int(v) for v in first.arrays.shape[1:3])
            check_min_size(size, f"{params.source} at {params.root}")
        params_used = resolved_params(base={"seed": base.seed}, prepare=params)
        with store_output(out) as tmp:
            root = zarr.open_group(str(tmp), mode="w")
            root.attrs.update(
                {"classes": first.classes, "image_size": size[0] if size[0] == size[1] else list(size),
                 "source": params.source, "root": params.root,
                 "params": params_used}
            )
            for split, listing in listings.items():
                write_split(root.create_group(split), listing, rows[split], size, params.resize, split, base,
                            tmp / split, params.max_image_pixels)
    n_train, n_test = len(rows["train"]), len(rows["test"])
    shown = size[0] if size[0] == size[1] else f"{size[0]}x{size[1]}"
    line = summary("prepare", n_train + n_test, "images", timer.seconds, train=n_train, test=n_test, size=shown, out=out)
    return {"train": n_train, "test": n_test, "image_size": shown, "classes": first.classes, "summary": line}


def command(
    out: Path = typer.Option(..., help="Zarr group to write (train/ and test/)"),
    all_train: bool = typer.Option(False, "--all-train", help="every train image, whatever prepare.train_per_class "
                                   "says (the equal-bytes study's paper-size regime); the store's params say so"),
    params_file: Path = PARAMS_OPTION,
    timing: Path | None = TIMING_OPTION,
):
    """Read the dataset named in params (prepare:) into Zarr."""
    base, params = read_params(params_file, WIRING.section, WIRING.params)
    if all_train:
        params = replace(params, train_per_class=None)
    with stage_command("prepare", timing):
        run(params, base, out)
