"""A palette-indexed train set kept packed where it trains: q-bit indices plus palettes, decoded batch by batch.

The DCQ and per-image-palette stores rebuild every image from packed indices (q bits per pixel) and a small
palette per cluster or image. Decoding the whole set to uint8 first costs 24/q times the stored bytes on the host
and the device; `PackedImages` holds what the store holds and decodes only the rows a batch asks for, on the
device the rows live on, to exactly the pixels `DCQStore.decode` gives (tests/train/test_packed.py).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from pipeline.io.arrays import iter_blocks


class PackedImages:
    """uint8 (N,H,W,3) images, indexable like a tensor by a row index tensor or a slice, stored packed."""

    def __init__(self, packed: torch.Tensor, palettes: torch.Tensor, palette_of: torch.Tensor, bits: int,
                 image_size: tuple[int, int]):
        self.packed = packed          # uint8 (N, ceil(H*W*q/8)), big-endian within each byte (bitpack.pack)
        self.palettes = palettes      # uint8 (P, 2^q, 3)
        self.palette_of = palette_of  # int64 (N,): the palette each image uses (its cluster, or itself)
        self.bits = bits
        self.height, self.width = image_size

    @classmethod
    def of_store(cls, store, rows: tuple[int, int] | None = None) -> PackedImages:
        """From an open DCQ or per-image-palette store (pipeline/io/dcq_store.py), read shard by shard; `rows`:
        only images [start, stop) (one data-parallel rank's share)."""
        start, stop = rows or (0, len(store))
        indices = store.root["indices"]
        block = indices.shards[0] if indices.shards else 4096
        parts = [torch.from_numpy(indices[start + a:start + b]) for a, b in iter_blocks(stop - start, block)]
        packed = torch.cat(parts) if parts else torch.empty((0, indices.shape[1]), dtype=torch.uint8)
        return cls(packed, torch.from_numpy(np.ascontiguousarray(store.palettes)),
                   torch.from_numpy(np.asarray(store.clusters[start:stop], dtype=np.int64)), store.bits,
                   store.image_size)

    def __len__(self) -> int:
        return int(self.packed.shape[0])

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return len(self), self.height, self.width, 3

    @property
    def device(self) -> torch.device:
        return self.packed.device

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.packed, self.palettes, self.palette_of))

    def to(self, device: torch.device | str) -> PackedImages:
        return PackedImages(self.packed.to(device), self.palettes.to(device), self.palette_of.to(device), self.bits,
                            (self.height, self.width))

    def __getitem__(self, rows) -> torch.Tensor:
        if isinstance(rows, int):
            return self[torch.tensor([rows], device=self.device)][0]
        if isinstance(rows, slice):
            rows = torch.arange(len(self), device=self.device)[rows]
        rows = torch.as_tensor(rows, device=self.device)
        indices = unpack(self.packed[rows], self.bits, self.height * self.width)  # (B, H*W) int64
        colours = self.palettes[self.palette_of[rows]]  # (B, 2^q, 3)
        pixels = torch.gather(colours, 1, indices[:, :, None].expand(-1, -1, 3))
        return pixels.reshape(len(rows), self.height, self.width, 3)

    def blocks(self, rows: int = 4096) -> Iterator[torch.Tensor]:
        """The decoded images in order, `rows` at a time."""
        for start, stop in iter_blocks(len(self), rows):
            yield self[slice(start, stop)]


def unpack(packed: torch.Tensor, bits: int, pixels: int) -> torch.Tensor:
    """uint8 (B, ceil(P*q/8)) -> int64 (B, P) palette indices: `bitpack.unpack` in torch, on packed's device."""
    if bits == 8:
        return packed[:, :pixels].long()
    shifts = torch.arange(7, -1, -1, device=packed.device, dtype=torch.uint8)
    planes = (packed[:, :, None] >> shifts) & 1  # (B, bytes, 8): the bit stream, most significant bit first
    planes = planes.reshape(len(packed), -1)[:, :pixels * bits].reshape(len(packed), pixels, bits).long()
    weights = 1 << torch.arange(bits - 1, -1, -1, device=packed.device)
    return (planes * weights).sum(2)
