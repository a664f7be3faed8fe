"""What a model sees: per-channel normalisation statistics of a uint8 image set, and the conversion of a uint8
NHWC batch into the normalised NCHW float input every model, trainer and feature extractor uses."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Normalization:
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @staticmethod
    def from_images(images) -> Normalization:
        """Per-channel mean/std of uint8 (N,H,W,3) images (an array, or `PackedImages` decoded block by block), in
        [0,1] units, accumulated in float64 over pixel blocks of 2^22 whatever the image blocks were."""
        return Normalization.from_totals(Normalization.totals(images))

    @staticmethod
    def totals(images) -> np.ndarray:
        """(7,) float64: per-channel sum and sum of squares in [0,1] units, and the pixel count (so that the
        totals of several shards add up: data-parallel training)."""
        if isinstance(images, np.ndarray):
            image_blocks = iter([images.reshape(-1, 3)])
        else:
            image_blocks = (b.cpu().numpy().reshape(-1, 3) for b in images.blocks())
        total = np.zeros(3)
        total_sq = np.zeros(3)
        count = 0
        for block in _pixel_blocks(image_blocks, 1 << 22):
            block = block.astype(np.float64) / 255.0
            total += block.sum(0)
            total_sq += (block**2).sum(0)
            count += len(block)
        return np.concatenate([total, total_sq, [count]])

    @staticmethod
    def from_totals(totals: np.ndarray) -> Normalization:
        total, total_sq, count = totals[:3], totals[3:6], totals[6]
        mean = total / count
        std = np.sqrt(np.maximum(total_sq / count - mean**2, 1e-12))
        return Normalization(tuple(float(m) for m in mean), tuple(float(s) for s in std))

    def to_dict(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std)}


def _pixel_blocks(blocks, size: int):
    """Re-cut a stream of (n,3) pixel arrays into consecutive (size,3) arrays (the last one shorter)."""
    pending, held = [], 0
    for block in blocks:
        while len(block):
            take = min(size - held, len(block))
            pending.append(block[:take])
            held += take
            block = block[take:]
            if held == size:
                yield pending[0] if len(pending) == 1 else np.concatenate(pending)
                pending, held = [], 0
    if held:
        yield pending[0] if len(pending) == 1 else np.concatenate(pending)


def to_input(batch_u8: torch.Tensor, norm: Normalization) -> torch.Tensor:
    """uint8 (B,H,W,3) -> normalised float (B,3,H,W) in channels_last memory."""
    x = batch_u8.permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(norm.mean, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(norm.std, device=x.device).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous(memory_format=torch.channels_last)
