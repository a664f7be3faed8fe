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

from pipeline.io.train_sets import TRAIN_SET_FORMATS as READABLE  # noqa: F401  (the formats it reads)
from pipeline.io.train_sets import open_train_store


class StoreDataset(Dataset):
    """Item i of a train-set store: (image, label), the image a uint8 (3,H,W) tensor, exactly the pixels the store
    rebuilds, or `transform(image)` (torchvision's v2 transforms take such tensors)."""

    def __init__(self, path: str | Path, transform: Callable | None = None, block: int = 256):
        self.path, self.transform, self.block = Path(path), transform, max(1, int(block))
        reader = open_train_store(self.path)
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
                self._reader = open_train_store(self.path)
            self._cached = (first, self._reader.decode(first, min(len(self), first + self.block)))
        return self._cached[1]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} is out of range for {len(self)} images")
        index %= len(self)
        image = torch.from_numpy(np.ascontiguousarray(self._block(index)[index % self.block])).permute(2, 0, 1)
        return (image if self.transform is None else self.transform(image)), int(self.labels[index])
