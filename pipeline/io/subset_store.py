"""The pruned-coreset format: a subset of the full-colour train images, kept as they are.

A subset store (format `subset-v1`) is a Zarr v3 group:
  images        uint8 (n, H, W, 3)   the kept images, chunked and compressed like the prepared store
  labels        uint8/16/32 (n,)     their labels
  source_index  int64 (n,)           row of each kept image in the prepared train split (provenance only)
  attrs         format, method, bits (the bit depth whose storage it matches), keep_ratio, num_images,
                source_images, image_size, classes, source, params, params_hash

`stored_bytes` counts images + labels only: `source_index` is provenance, not needed to rebuild the set.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr

from pipeline.io.arrays import create_rows, create_small, disk_bytes, iter_blocks, write_block_size
from pipeline.io.dcq_store import smallest_uint
from pipeline.io.formats import open_format, register_format
from pipeline.io.verify import check, check_classes, parsing_attrs, reading

FORMAT = "subset-v1"


def write_subset(root: zarr.Group, images: zarr.Array, labels: np.ndarray, keep: np.ndarray, attrs: dict) -> None:
    """Copy rows `keep` (sorted) of `images` into `root`, streaming in shard-sized blocks."""
    keep = np.sort(np.asarray(keep, dtype=np.int64))
    n = len(keep)
    root.attrs.update({"format": FORMAT, **attrs, "num_images": n})
    out = create_rows(root, "images", (n, *images.shape[1:]), np.uint8)
    create_small(root, "labels", labels[keep].astype(smallest_uint(int(labels.max(initial=0)))))
    create_small(root, "source_index", keep)
    src_block = write_block_size(images)
    for start, stop in iter_blocks(n, write_block_size(out)):
        rows = keep[start:stop]
        block = np.empty((len(rows), *images.shape[1:]), np.uint8)
        # Whole source shards read once each, then a gather: bounded memory, no row-by-row chunk decodes.
        for s0 in range(int(rows[0]) // src_block * src_block, int(rows[-1]) + 1, src_block):
            inside = (rows >= s0) & (rows < s0 + src_block)
            if inside.any():
                block[inside] = images[s0:min(s0 + src_block, images.shape[0])][rows[inside] - s0]
        out[start:stop] = block


@register_format(FORMAT)
class SubsetStore:
    """A coreset (`subset-v1`): the selected full-colour images and their labels, read-only; `decode(start, stop)`
    gives uint8 RGB images (n, H, W, 3)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.root, self.attrs = open_format(self.path, (FORMAT,), f"no subset store at {self.path}")
        with parsing_attrs(self.path):
            self.method: str = str(self.attrs["method"])
            self.bits: int | None = self.attrs.get("bits")
            self.classes: list[str] = list(self.attrs["classes"])
        check_classes(self.path, self.attrs["classes"])
        check(self.path, self.bits is None or (isinstance(self.bits, int) and 1 <= self.bits <= 8),
              f"attr bits={self.bits!r} must be null or an integer 1..8")
        with reading(self.path):
            self.labels: np.ndarray = self.root["labels"][:].astype(np.int64)
            self.source_index: np.ndarray = self.root["source_index"][:]
        p, n, shape = self.path, len(self.labels), self.root["images"].shape
        check(p, len(shape) == 4 and shape[0] == n and shape[3] == 3,
              f"array 'images' is {shape}, 'labels' has {n} rows: expected ({n}, H, W, 3)")
        check(p, self.source_index.shape == (n,), f"array 'source_index' is {self.source_index.shape}, expected ({n},)")
        check(p, self.attrs.get("num_images") == n, f"attr num_images={self.attrs.get('num_images')!r}, arrays hold {n}")
        source = self.attrs.get("source_images")
        check(p, isinstance(source, int) and source >= n, f"attr source_images={source!r} must be a count >= {n}")
        check(p, n == 0 or int(self.source_index.max()) < source,
              f"array 'source_index' names row {int(self.source_index.max(initial=0))} of {source} source images")
        check(p, n == 0 or int(self.labels.max()) < len(self.classes),
              f"array 'labels' holds label {int(self.labels.max(initial=0))}, attr classes has {len(self.classes)}")

    def __len__(self) -> int:
        return len(self.labels)

    def images(self) -> np.ndarray:
        with reading(self.path):
            return self.root["images"][:]

    def decode(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Images uint8 (n,H,W,3) of rows [start, stop)."""
        with reading(self.path):
            return self.root["images"][start:len(self) if stop is None else stop]

    def describe(self) -> str:
        return f"{len(self):,} of {self.attrs['source_images']:,} images, full colour"

    @property
    def stored_bytes(self) -> int:
        return disk_bytes(self.path / "images") + disk_bytes(self.path / "labels")
