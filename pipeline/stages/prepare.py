"""prepare: read an image dataset into chunked Zarr arrays.

Reads  `prepare:` + `base.seed`; the source (an ImageFolder tree or a torchvision dataset).
Writes `OUT` (a Zarr group) with `train/` and `test/` groups, each holding `images` uint8 (N,H,W,3)
       and `labels` int64 (N,); group attrs hold the class names, the source and the resolved params.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import typer
import zarr
from tqdm import tqdm

from pipeline.config import BaseParams, require, resolved_params
from pipeline.errors import DatasetError
from pipeline.io.arrays import create_rows, iter_blocks, write_block_size
from pipeline.io.atomic import atomic_output
from pipeline.io.sources import (
    TORCHVISION_SOURCES,
    SplitListing,
    check_readable,
    decoder,
    list_imagefolder,
    list_torchvision,
    project_path,
)
from pipeline.stages.common import PARAMS_OPTION, TIMING_OPTION, Timer, read_params, stage_command, summary


@dataclass(frozen=True)
class PrepareParams:
    source: Literal["imagefolder", "cifar10", "cifar100", "svhn"] = "imagefolder"
    root: str = "../shared/data/cifar10-jpeg"
    download: bool = True
    image_size: int | None = None  # null: the size of the first train image
    resize: Literal["reject", "resize"] = "reject"
    train_per_class: int | None = None  # null: every image
    test_per_class: int | None = None
    skip_non_images: bool = False

    def __post_init__(self):
        require(self.image_size is None or self.image_size >= 8, f"image_size={self.image_size} must be >= 8")
        for key in ("train_per_class", "test_per_class"):
            value = getattr(self, key)
            require(value is None or value >= 1, f"{key}={value} must be >= 1 or null")


def list_split(params: PrepareParams, split: str) -> SplitListing:
    root = project_path(params.root)
    if params.source == "imagefolder":
        return list_imagefolder(root, split, params.skip_non_images)
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


def write_split(group: zarr.Group, listing: SplitListing, rows: np.ndarray, size: int, resize: str, split: str) -> None:
    images = create_rows(group, "images", (len(rows), size, size, 3), np.uint8)
    group.create_array("labels", data=listing.labels[rows].astype(np.int64))
    decode = decoder(listing, size, resize)
    block = write_block_size(images)
    with tqdm(total=len(rows), desc=f"prepare {split}", unit="img", leave=False) as bar:
        for start, stop in iter_blocks(len(rows), block):
            images[start:stop] = decode(rows[start:stop])
            bar.update(stop - start)


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
        size = params.image_size
        if first.files is not None:
            # Header-only pass over every selected file: bad files fail here, before any decoding.
            for split, listing in listings.items():
                files = [listing.files[r] for r in rows[split]]
                with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
                    sizes = list(tqdm(pool.map(check_readable, files), total=len(files), desc=f"check {split}",
                                      unit="file", leave=False))
                size = size or sizes[0][0]
                for path, (w, h) in zip(files, sizes):
                    if params.resize == "reject" and (w, h) != (size, size):
                        raise DatasetError(
                            f"{path}: image is {w}x{h}, the dataset's size is {size}x{size}; set "
                            "prepare.resize: resize to scale the shorter side and centre-crop"
                        )
        elif size is None:
            size = int(first.arrays.shape[1])
        params_used = resolved_params(base={"seed": base.seed}, prepare=params)
        with atomic_output(out) as tmp:
            root = zarr.open_group(str(tmp), mode="w")
            root.attrs.update(
                {"classes": first.classes, "image_size": size, "source": params.source, "root": params.root,
                 "params": params_used}
            )
            for split, listing in listings.items():
                write_split(root.create_group(split), listing, rows[split], size, params.resize, split)
    n_train, n_test = len(rows["train"]), len(rows["test"])
    line = summary("prepare", n_train + n_test, "images", timer.seconds, train=n_train, test=n_test, size=size, out=out)
    return {"train": n_train, "test": n_test, "image_size": size, "classes": first.classes, "summary": line}


def command(
    out: Path = typer.Option(..., help="Zarr group to write (train/ and test/)"),
    params_file: Path = PARAMS_OPTION,
    timing: Path | None = TIMING_OPTION,
):
    """Read the dataset named in params (prepare:) into Zarr."""
    base, params = read_params(params_file, "prepare", PrepareParams)
    with stage_command("prepare", timing):
        run(params, base, out)
