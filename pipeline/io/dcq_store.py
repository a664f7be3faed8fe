"""The compressed-dataset formats (indices + palettes) and their reader.

A DCQ store (format `dcq-v1`) is a Zarr v3 group:
  indices   uint8 (N, ceil(H*W*q/8))  palette index of every pixel, bit-packed to q bits (row-major)
  clusters  uint8/16/32 (N,)          the cluster (= palette) of every image
  labels    uint8/16/32 (N,)          class label of every image
  palettes  uint8 (k, 2^q, 3)         one shared sRGB palette per cluster
  attrs     format, bits, clusters, image_size, num_images, classes, source, params, params_hash
A per-image-palette store (format `palette-per-image-v1`, the colour-quantization baselines) is the same
without `clusters`: `palettes` is (N, 2^q, 3), image i uses palette i, and attrs add `method`.

`DCQStore(path).decode(start, stop)` rebuilds uint8 RGB images; `.tensor(...)` gives a torch tensor;
`export_imagefolder` writes palette PNGs in ImageFolder layout for any other trainer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from pipeline.io.arrays import disk_bytes, iter_blocks, write_block_size
from pipeline.io.atomic import atomic_output
from pipeline.io.formats import open_format, register_format
from pipeline.quantize.bitpack import unpack

FORMAT = "dcq-v1"
PER_IMAGE_FORMAT = "palette-per-image-v1"
FORMATS = (FORMAT, PER_IMAGE_FORMAT)


def smallest_uint(max_value: int) -> np.dtype:
    for dtype in (np.uint8, np.uint16, np.uint32):
        if max_value <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.uint64)


@register_format(*FORMATS)
class DCQStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.root, self.attrs = open_format(self.path, FORMATS, f"no DCQ store at {self.path}")
        self.per_image = self.attrs["format"] == PER_IMAGE_FORMAT
        self.method: str = str(self.attrs.get("method", "dcq"))
        self.bits: int = int(self.attrs["bits"])
        self.image_size: tuple[int, int] = tuple(self.attrs["image_size"])
        self.palettes: np.ndarray = self.root["palettes"][:]
        self.labels: np.ndarray = self.root["labels"][:].astype(np.int64)
        self.clusters: np.ndarray = (np.arange(len(self.labels)) if self.per_image
                                     else self.root["clusters"][:].astype(np.int64))
        self.classes: list[str] = list(self.attrs["classes"])

    def __len__(self) -> int:
        return len(self.labels)

    def indices(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Unpacked palette indices, uint8 (n,H,W)."""
        stop = len(self) if stop is None else stop
        h, w = self.image_size
        return unpack(self.root["indices"][start:stop], self.bits, h * w).reshape(-1, h, w)

    def decode(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Reconstructed images uint8 (n,H,W,3)."""
        stop = len(self) if stop is None else stop
        idx = self.indices(start, stop)
        pal = self.palettes[self.clusters[start:stop]]  # (n,K,3)
        n, h, w = idx.shape
        flat = np.take_along_axis(pal, idx.reshape(n, h * w, 1).astype(np.int64), axis=1)
        return flat.reshape(n, h, w, 3)

    def iter_decoded(self, block: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        block = block or write_block_size(self.root["indices"])
        for start, stop in iter_blocks(len(self), block):
            yield start, self.decode(start, stop)

    def tensor(self, start: int = 0, stop: int | None = None, device: str | torch.device = "cpu") -> torch.Tensor:
        return torch.from_numpy(self.decode(start, stop)).to(device)

    def describe(self) -> str:
        """What the store holds, in a few words (the report's storage table)."""
        if self.per_image:
            return f"{len(self):,} per-image palettes x {2 ** self.bits} colours"
        palettes = f"{self.attrs['clusters']} shared palettes x {2 ** self.bits} colours"
        if self.attrs.get("source_images"):  # DCQ of a coreset (ablate stage)
            return f"{len(self):,} of {self.attrs['source_images']:,} images, {palettes}"
        return palettes

    def summary(self) -> dict:
        n = len(self)
        h, w = self.image_size
        on_disk = disk_bytes(self.path)
        raw = n * h * w * 3
        return {
            "path": str(self.path), "bits": self.bits, "images": n, "method": self.method,
            "clusters": self.attrs.get("clusters"), "palettes": len(self.palettes),
            "colors_per_palette": 2**self.bits, "image_size": [h, w], "bytes_on_disk": on_disk,
            "bytes_raw_rgb24": raw, "measured_ratio": on_disk / raw if raw else None,
            "nominal_ratio": self.bits / 24, "source": self.attrs.get("source"),
            "params_hash": self.attrs.get("params_hash"),
        }


def export_imagefolder(store: DCQStore, out: Path) -> int:
    """Write every image as an indexed (palette) PNG to out/<class>/<row>.png; returns the count."""
    width = len(str(max(0, len(store) - 1)))
    with atomic_output(out) as tmp:
        for name in store.classes:
            (tmp / name).mkdir(parents=True)
        with tqdm(total=len(store), desc="export", unit="img", leave=False) as bar:
            for start, stop in iter_blocks(len(store), 4096):
                idx = store.indices(start, stop)
                for row, image_idx in enumerate(idx, start):
                    im = Image.fromarray(image_idx, mode="P")
                    im.putpalette(store.palettes[store.clusters[row]].reshape(-1).tolist())
                    im.save(tmp / store.classes[store.labels[row]] / f"{row:0{width}d}.png", optimize=False)
                bar.update(stop - start)
        (tmp / "dcq_store.json").write_text(json.dumps(store.summary(), indent=2) + "\n")
    return len(store)
