"""Train sets stored with a standard image codec (format `codec-v1`), written by the codec stage.

A Zarr v3 group:
  data      uint8 (total,)   every image's encoded bytes, concatenated (already compressed: stored as is)
  offsets   uint64 (N+1,)    image i is data[offsets[i]:offsets[i+1]]
  header    uint8 (L,)       bytes shared by every image, prefixed on decode (JPEG: its tables; else empty)
  labels    smallest uint (N,)
  attrs     format, codec, quality, bits (the DCQ bit depth whose bytes it matches), target_bytes,
            image_size, num_images, classes, source, params, params_hash, manifest
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import zarr

from pipeline.errors import StoreError
from pipeline.io.arrays import create_rows, create_small, disk_bytes, iter_blocks
from pipeline.io.codecs import CODECS, decode
from pipeline.io.dcq_store import check_header, smallest_uint
from pipeline.io.formats import open_format, register_format
from pipeline.io.verify import check, parsing_attrs, reading

FORMAT = "codec-v1"


def write_codec(root: zarr.Group, parts: Sequence[tuple[bytes, np.ndarray]], pieces: Iterable[bytes],
                labels: np.ndarray, attrs: dict) -> None:
    """Write a codec store from consecutive blocks of images: `parts` holds each block's (shared header, payload
    sizes) and `pieces` yields the blocks' payload bytes, concatenated, in the same order (pieces of any length).
    The total sets `data`'s layout, which is then filled a shard at a time: memory is a shard and a piece, plus 8
    bytes of offset per image."""
    if len({header for header, _ in parts}) > 1:
        raise ValueError("JPEG headers differ between images of one size and quality")
    offsets = np.concatenate([np.zeros(1, np.uint64), *(sizes for _, sizes in parts)]).cumsum(dtype=np.uint64)
    root.attrs.update({"format": FORMAT, **attrs, "num_images": len(offsets) - 1})
    data = create_rows(root, "data", (int(offsets[-1]),), np.uint8)
    pending, source = bytearray(), iter(pieces)
    for start, stop in iter_blocks(data.shape[0], data.shards[0]):
        while len(pending) < stop - start:
            pending += next(source)
        data[start:stop] = np.frombuffer(bytes(pending[:stop - start]), np.uint8)
        del pending[:stop - start]
    if pending or next(source, b""):
        raise ValueError("the payload bytes outrun the sizes of the parts")
    create_small(root, "offsets", offsets)
    create_small(root, "header", np.frombuffer(parts[0][0] if parts else b"", np.uint8))
    create_small(root, "labels", labels.astype(smallest_uint(int(labels.max(initial=0)))))


@register_format(FORMAT)
class CodecStore:
    """A train set stored with a standard codec (`codec-v1`: one encoded file per image, the shared tables once),
    read-only; `decode(start, stop)` gives uint8 RGB images (n, H, W, 3)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.root, self.attrs = open_format(self.path, (FORMAT,), f"no codec store at {self.path}")
        self.bits, self.image_size, self.classes = check_header(self.path, self.attrs)
        with parsing_attrs(self.path), reading(self.path):
            self.method: str = str(self.attrs["codec"])
            self.offsets = self.root["offsets"][:].astype(np.int64)
            self.header = self.root["header"][:].tobytes()
            self.labels = self.root["labels"][:].astype(np.int64)
        p, n = self.path, len(self.labels)
        check(p, self.method in CODECS, f"attr codec={self.method!r} is not one of {CODECS}")
        check(p, self.attrs.get("num_images") == n and len(self.offsets) == n + 1,
              f"attr num_images={self.attrs.get('num_images')!r}, {n} labels and {len(self.offsets)} offsets disagree")
        check(p, bool(np.all(np.diff(self.offsets) > 0)) and self.offsets[0] == 0
              and self.offsets[-1] == self.root["data"].shape[0], "array 'offsets' does not partition 'data'")
        check(p, n == 0 or int(self.labels.max()) < len(self.classes),
              f"array 'labels' holds label {int(self.labels.max(initial=0))}, attr classes has {len(self.classes)}")

    def __len__(self) -> int:
        return len(self.labels)

    def decode(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        stop = len(self) if stop is None else stop
        with reading(self.path):
            blob = self.root["data"][int(self.offsets[start]):int(self.offsets[stop])].tobytes()
        base, h_w = int(self.offsets[start]), self.image_size
        images = []
        for i in range(start, stop):
            try:
                image = decode(blob[self.offsets[i] - base:self.offsets[i + 1] - base], self.header)
            except (OSError, ValueError, SyntaxError) as exc:
                raise StoreError(f"{self.path}: image {i} does not decode ({str(exc)[:100]})") from None
            check(self.path, image.shape[:2] == h_w, f"image {i} decodes to {image.shape[:2]}, not {h_w}")
            images.append(image)
        return np.stack(images) if images else np.zeros((0, *h_w, 3), np.uint8)

    def describe(self) -> str:
        return f"{len(self):,} {self.method.upper()} files at quality {self.attrs.get('quality')}" + (
            f" + one {len(self.header)}-byte shared header" if self.header else "")

    @property
    def stored_bytes(self) -> int:
        return disk_bytes(self.path)
