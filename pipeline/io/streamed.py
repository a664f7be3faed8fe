"""Training on a full-colour set larger than memory: window-shuffled order, images streamed from Zarr.

The resident path (pipeline/train/engine.py) holds every train image on the device and draws a uniform random
permutation each epoch. A set that does not fit is instead read in windows: `WindowShuffle` cuts the rows into
contiguous blocks of `block` rows, shuffles the blocks, groups them `window // block` at a time and shuffles the
rows within each group, so an epoch is still a permutation of every row and two windows' batches never mix.
`StreamedImages` follows that order: it holds the window being trained on and reads the next one from the store
in a background thread (at most three windows held), so host and device memory are set by `window`, not by N.

The order depends only on the seed, `window` and `block`, never on the store's chunking, so a resident set (a
packed DCQ store) trained with the same `WindowShuffle` sees the same batches as a streamed full-colour one, and a
streamed run trains the same weights as a resident run of the same set with the same shuffle
(tests/train/test_streamed.py).
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from pipeline.config import require
from pipeline.io.arrays import iter_blocks
from pipeline.io.verify import reading


@dataclass(frozen=True)
class WindowShuffle:
    window: int        # images per window (held in memory while trained on; one more is prefetched)
    block: int = 256   # contiguous rows read at once; a window is window // block random blocks

    def __post_init__(self):
        require(self.block >= 1, f"stream_block={self.block} must be >= 1")
        require(self.window >= self.block, f"stream_window={self.window} must be >= stream_block={self.block}")

    @property
    def blocks_per_window(self) -> int:
        return self.window // self.block

    def order(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """An epoch's order of rows 0..n-1 (int64 (n,)) and the blocks of each window, in the order trained."""
        num_blocks = -(-n // self.block)
        shuffled = torch.randperm(num_blocks, generator=generator)
        windows = list(shuffled.split(self.blocks_per_window))
        parts = []
        for blocks in windows:
            rows = torch.cat([torch.arange(b * self.block, min(n, (b + 1) * self.block)) for b in blocks.tolist()])
            parts.append(rows[torch.randperm(len(rows), generator=generator)])
        return (torch.cat(parts) if parts else torch.empty(0, dtype=torch.int64)), windows


def window_shuffle(window: int, block: int) -> WindowShuffle | None:
    """The order a stage's `stream_window` / `stream_block` params ask for (checked): None when streaming is off
    (window 0), the uniform permutation of a resident set."""
    return WindowShuffle(window, block) if window else None


class StreamedImages:
    """uint8 (N,H,W,3) rows [first, last) of a Zarr array, indexable by row tensors like a resident tensor, read
    window by window; `follow` gives it an epoch's windows, `blocks` streams them in order (normalisation)."""

    def __init__(self, array, rows: tuple[int, int] | None = None, device: torch.device | str = "cpu",
                 block: int = 256, source: str = "store", pool: ThreadPoolExecutor | None = None):
        self.array = array
        self.source = source  # named in the error when a chunk fails to decode
        self.first, self.last = rows or (0, array.shape[0])
        self.device = torch.device(device)
        self._pool = pool or ThreadPoolExecutor(max_workers=1, thread_name_prefix="zarr-prefetch")
        self.follow(None, block)

    def __len__(self) -> int:
        return self.last - self.first

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self), *self.array.shape[1:])

    def to(self, device: torch.device | str) -> StreamedImages:
        """The same rows delivered on `device` (itself when already there), sharing the one prefetch thread."""
        if torch.device(device) == self.device:
            return self
        moved = StreamedImages(self.array, (self.first, self.last), device, self.block, self.source, self._pool)
        moved.follow(self.windows, self.block)
        return moved

    def follow(self, windows: list[torch.Tensor] | None, block: int) -> None:
        """Read in these windows (block ids, in the order they will be asked for); None: consecutive blocks, one
        per window (sequential reads). Drops what was held."""
        self.block = block
        num_blocks = -(-len(self) // block)
        self.windows = windows if windows is not None else list(torch.arange(num_blocks).split(1))
        self.window_of_block = np.empty(num_blocks, np.int64)
        self.offset_in_window = np.empty(num_blocks, np.int64)  # where each block starts in its window's buffer
        for w, blocks in enumerate(self.windows):
            blocks = blocks.numpy()
            self.window_of_block[blocks] = w
            sizes = np.minimum(len(self), (blocks + 1) * block) - blocks * block
            self.offset_in_window[blocks] = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        self.held: dict[int, Future | torch.Tensor] = {}

    def _read_window(self, w: int) -> torch.Tensor:
        with reading(self.source, "train set"):
            parts = [self.array[self.first + b * self.block:self.first + min(len(self), (b + 1) * self.block)]
                     for b in self.windows[w].tolist()]
        return torch.from_numpy(np.concatenate(parts)).to(self.device)

    def _window(self, w: int) -> torch.Tensor:
        if w not in self.held:
            self.held[w] = self._pool.submit(self._read_window, w)
        held = self.held[w]
        if isinstance(held, Future):
            held = self.held[w] = held.result()
        return held

    def __getitem__(self, rows) -> torch.Tensor:
        if isinstance(rows, int | np.integer):  # one image (H,W,3), as a tensor's row
            return self[[int(rows) + len(self) if rows < 0 else int(rows)]][0]
        if isinstance(rows, slice):
            rows = torch.arange(len(self))[rows]
        rows = torch.as_tensor(rows).cpu().numpy()
        require(len(rows) == 0 or (rows.min() >= 0 and rows.max() < len(self)), "row index out of range")
        blocks = rows // self.block
        windows = self.window_of_block[blocks]
        needed = np.unique(windows)
        for w in [w for w in self.held if needed.size and w < needed.min()]:
            del self.held[w]  # windows are asked for in order: an earlier one is done with
        out = torch.empty((len(rows), *self.array.shape[1:]), dtype=torch.uint8, device=self.device)
        for w in needed.tolist():
            pick = np.flatnonzero(windows == w)
            at = self.offset_in_window[blocks[pick]] + rows[pick] - blocks[pick] * self.block
            out[torch.from_numpy(pick).to(self.device)] = self._window(w)[torch.from_numpy(at).to(self.device)]
        following = int(needed.max(initial=-1)) + 1
        if needed.size and following < len(self.windows) and following not in self.held:
            self.held[following] = self._pool.submit(self._read_window, following)  # prefetch
        return out

    def blocks(self, rows: int = 4096):
        """The images in row order, `rows` at a time, read straight from the store (nothing held)."""
        for start, stop in iter_blocks(len(self), rows):
            with reading(self.source, "train set"):
                block = self.array[self.first + start:self.first + stop]
            yield torch.from_numpy(block)

    @property
    def held_windows(self) -> int:
        return len(self.held)
