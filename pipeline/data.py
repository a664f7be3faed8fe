"""Train-set stores as a `torch.utils.data.Dataset`, for a training loop outside this pipeline.

    from torch.utils.data import DataLoader
    from pipeline.data import StoreDataset

    train = StoreDataset("data/dcq/q2.zarr")            # any train-set store: DCQ, per-image, codec, coreset, prepared
    loader = DataLoader(train, batch_size=256, shuffle=True, num_workers=4)
    for images, labels in loader:                       # uint8 (B,3,H,W) and int64 (B,)
        ...

Images are decoded a block of rows at a time, as items are asked for, and the last block is kept: the whole store is
never expanded in memory. A dataset pickles without any open handle, so each DataLoader worker opens its own.
Every read is verified against the store's manifest (pipeline/io/verify.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from pipeline.errors import StoreError
from pipeline.io.arrays import open_group
from pipeline.io.dcq_store import FORMATS as INDEXED_FORMATS
from pipeline.io.formats import open_store
from pipeline.io.train_sets import CODEC_FORMAT, SUBSET_FORMAT, is_prepared_store
from pipeline.io.verify import check_classes, reading

READABLE = (*INDEXED_FORMATS, SUBSET_FORMAT, CODEC_FORMAT)


class _PreparedTrain:
    """The train split of a prepared (full-colour) store, with the reader interface of the other formats."""

    def __init__(self, path: Path):
        self.path = path
        root = open_group(path, "prepared store")
        self.images = root["train/images"]
        self.classes = check_classes(path, root.attrs.get("classes"))
        with reading(path, "prepared store"):
            self.labels = root["train/labels"][:].astype(np.int64)

    def decode(self, start: int, stop: int) -> np.ndarray:
        with reading(self.path, "prepared store"):
            return self.images[start:stop]


def open_reader(path: Path):
    """The store's reader: `labels`, `classes` and `decode(start, stop)` -> uint8 (n,H,W,3)."""
    if not Path(path).exists():
        raise StoreError(f"train set {path} does not exist")
    if is_prepared_store(path):
        return _PreparedTrain(path)
    return open_store(path, READABLE, "train-set")


class StoreDataset(Dataset):
    """Item i of a train-set store: (image, label), the image a uint8 (3,H,W) tensor, exactly the pixels the store
    rebuilds, or `transform(image)` (torchvision's v2 transforms take such tensors)."""

    def __init__(self, path: str | Path, transform: Callable | None = None, block: int = 256):
        self.path, self.transform, self.block = Path(path), transform, max(1, int(block))
        reader = open_reader(self.path)
        self.classes: list[str] = list(reader.classes)
        self.labels = torch.from_numpy(np.asarray(reader.labels, dtype=np.int64))
        self._reader, self._cached = reader, (None, None)

    def __len__(self) -> int:
        return len(self.labels)

    def __getstate__(self) -> dict:  # workers open their own reader
        return {**self.__dict__, "_reader": None, "_cached": (None, None)}

    def _block(self, index: int) -> np.ndarray:
        first = index // self.block * self.block
        if self._cached[0] != first:
            if self._reader is None:
                self._reader = open_reader(self.path)
            self._cached = (first, self._reader.decode(first, min(len(self), first + self.block)))
        return self._cached[1]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} is out of range for {len(self)} images")
        index %= len(self)
        image = torch.from_numpy(np.ascontiguousarray(self._block(index)[index % self.block])).permute(2, 0, 1)
        return (image if self.transform is None else self.transform(image)), int(self.labels[index])
