"""DCQ stores whose index maps are context-coded (format `dcq-context-v1`), written by the context_code stage.

A Zarr v3 group, a `dcq-v1` store (pipeline/io/dcq_store.py) with `indices` replaced by a coded form:
  streams   uint32 (W,)                  range-coder words of every block of images, block after block
  offsets   uint64 (blocks + 1,)         where each block's words start; block b holds images
                                         [b * block_images, (b + 1) * block_images)
  model     uint16 (contexts, 2^q)       the shared context model (pipeline/io/context_coder.py)
  clusters, labels, palettes             as in `dcq-v1`
  attrs     format, method (dcq_context), bits, clusters, image_size, num_images, classes, source, params,
            params_hash, neighbours, cluster_context, block_images, manifest
It decodes to exactly the indices of the DCQ store it was coded from.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.io.arrays import disk_bytes
from pipeline.io.context_coder import NEIGHBOURS, num_contexts, probabilities
from pipeline.io.context_coder import decode_block as decode_maps
from pipeline.io.dcq_store import check_header
from pipeline.io.formats import open_format, register_format
from pipeline.io.verify import check, parsing_attrs, reading

FORMAT = "dcq-context-v1"
METHOD = "dcq_context"


@register_format(FORMAT)
class ContextStore:
    """A DCQ train set with context-coded index maps, read-only; `indices(start, stop)` and `decode(start, stop)`
    (uint8 RGB (n, H, W, 3)) as `DCQStore`'s. Every read is checked against the store's manifest."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.root, self.attrs = open_format(self.path, (FORMAT,), f"no context-coded DCQ store at {self.path}")
        self.bits, self.image_size, self.classes = check_header(self.path, self.attrs)
        self.method: str = METHOD
        p = self.path
        with parsing_attrs(p), reading(p):
            neighbours, by_cluster, block = (self.attrs["neighbours"], self.attrs["cluster_context"],
                                             self.attrs["block_images"])
            self.palettes: np.ndarray = self.root["palettes"][:]
            self.labels: np.ndarray = self.root["labels"][:].astype(np.int64)
            self.clusters: np.ndarray = self.root["clusters"][:].astype(np.int64)
            self.offsets: np.ndarray = self.root["offsets"][:].astype(np.int64)
            model = self.root["model"][:]
        check(p, isinstance(neighbours, int) and 0 <= neighbours <= len(NEIGHBOURS),
              f"attr neighbours={neighbours!r} must be an integer 0..{len(NEIGHBOURS)}")
        check(p, isinstance(by_cluster, bool), f"attr cluster_context={by_cluster!r} must be true or false")
        check(p, isinstance(block, int) and block >= 1, f"attr block_images={block!r} must be an integer >= 1")
        self.neighbours, self.cluster_context, self.block_images = neighbours, by_cluster, block
        self._check_arrays(model)
        self.table = probabilities(model)
        self._cached: tuple[int, np.ndarray] | None = None

    def _check_arrays(self, model: np.ndarray) -> None:
        p, n, k, colours = self.path, len(self.labels), len(self.palettes), 2 ** self.bits
        check(p, self.palettes.shape == (k, colours, 3) and self.palettes.dtype == np.uint8 and k >= 1,
              f"array 'palettes' is {self.palettes.shape} {self.palettes.dtype}, expected (k, {colours}, 3) uint8")
        check(p, self.clusters.shape == (n,) and (n == 0 or 0 <= self.clusters.min() and self.clusters.max() < k),
              f"array 'clusters' must hold one palette number < {k} for each of the {n} images")
        contexts = num_contexts(colours, self.neighbours, k if self.cluster_context else 1)
        check(p, model.shape == (contexts, colours) and model.dtype == np.uint16 and (n == 0 or model.min() >= 1),
              f"array 'model' is {model.shape} {model.dtype}, expected ({contexts}, {colours}) uint16, all >= 1")
        blocks = -(-n // self.block_images)
        words = self.root["streams"].shape[0]
        check(p, self.offsets.shape == (blocks + 1,) and self.offsets[0] == 0 and self.offsets[-1] == words
              and bool(np.all(np.diff(self.offsets) >= 0)),
              f"array 'offsets' must rise from 0 to the {words} stream words, one step per block of "
              f"{self.block_images} images ({blocks} blocks)")
        check(p, self.attrs.get("num_images") == n, f"attr num_images={self.attrs.get('num_images')!r}, "
              f"the arrays hold {n} images")
        check(p, n == 0 or int(self.labels.max()) < len(self.classes),
              f"array 'labels' holds label {int(self.labels.max(initial=0))}, attr classes has {len(self.classes)}")

    def __len__(self) -> int:
        return len(self.labels)

    def _block(self, b: int) -> np.ndarray:
        if self._cached is None or self._cached[0] != b:
            lo, hi = b * self.block_images, min(len(self), (b + 1) * self.block_images)
            with reading(self.path):
                words = self.root["streams"][self.offsets[b]:self.offsets[b + 1]]
            contexts = self.clusters[lo:hi] if self.cluster_context else np.zeros(hi - lo, np.int64)
            self._cached = (b, decode_maps(words, contexts, self.table, 2 ** self.bits, self.neighbours,
                                           (hi - lo, *self.image_size)))
        return self._cached[1]

    def indices(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Palette indices, uint8 (n, H, W), decoded a whole block of images at a time."""
        stop = len(self) if stop is None else stop
        size = self.block_images
        parts = [self._block(b)[max(start - b * size, 0):stop - b * size]
                 for b in range(start // size, -(-stop // size))]
        return np.concatenate(parts) if parts else np.zeros((0, *self.image_size), np.uint8)

    def decode(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        stop = len(self) if stop is None else stop
        idx = self.indices(start, stop).astype(np.int64)
        pal = self.palettes[self.clusters[start:stop]]
        n, h, w = idx.shape
        return np.take_along_axis(pal, idx.reshape(n, h * w, 1), axis=1).reshape(n, h, w, 3)

    def describe(self) -> str:
        return (f"{len(self.palettes)} shared palettes x {2 ** self.bits} colours, index maps context-coded "
                f"({self.neighbours} neighbours{' + cluster' if self.cluster_context else ''})")

    @property
    def stored_bytes(self) -> int:
        return disk_bytes(self.path)
