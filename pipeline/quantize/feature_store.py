"""The features store: pooled shallow-layer teacher features of every train image (DCQ sec. 3.1)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import zarr

from pipeline.config import BaseParams, lineage, require
from pipeline.device import resolve_runtime
from pipeline.executor import cached, file_stamp, map_shards
from pipeline.io.arrays import create_rows, finite, open_group, open_rows, write_block_size
from pipeline.io.atomic import store_output
from pipeline.io.verify import open_verified
from pipeline.models.checkpoint import load_checkpoint
from pipeline.models.inputs import to_input
from pipeline.models.layers import truncated_extractor
from pipeline.timing import Timer, summary


@dataclass(frozen=True)
class FeaturesParams:
    layer: str = "layer1"  # the first residual stage of a ResNet; "pixels": the input image itself
    pooling: Literal["mean", "mean_std", "grid"] = "mean_std"
    grid_size: int = 2  # only for pooling: grid
    batch_size: int = 512

    def __post_init__(self):
        require(self.grid_size >= 1, f"grid_size={self.grid_size} must be >= 1")
        require(self.batch_size >= 1, f"batch_size={self.batch_size} must be >= 1")


def pool(fmap: torch.Tensor, pooling: str, grid_size: int) -> torch.Tensor:
    """(B,C,h,w) feature maps -> (B,D) float32 vectors."""
    fmap = fmap.float()
    if pooling == "grid":
        return torch.nn.functional.adaptive_avg_pool2d(fmap, grid_size).flatten(1)
    b, c, h, w = fmap.shape
    # Reduce along the axis that is contiguous in memory: over dims (2, 3) of a channels_last map torch's mean and
    # std walk it with a stride of C and took 4x the time of the convolution before them.
    if fmap.is_contiguous(memory_format=torch.channels_last) and not fmap.is_contiguous():
        pixels, axis = fmap.permute(0, 2, 3, 1).reshape(b, h * w, c), 1
    else:
        pixels, axis = fmap.reshape(b, c, h * w), 2
    mean = pixels.mean(axis)
    if pooling == "mean":
        return mean
    std = (pixels - mean.unsqueeze(axis)).square().mean(axis).sqrt()  # the population std, two-pass
    return torch.cat([mean, std], 1)


def forward_rows(device: torch.device) -> int:
    """Images per forward pass: on a CPU, slices whose shallow maps (32 images x 64 channels x 32x32 px = 8 MiB) stay
    in cache from the convolution through the norm to the pooling; a GPU takes the whole batch."""
    return 32 if device.type == "cpu" else 1 << 30


def _extractor(teacher: str, layer: str, device: torch.device, image_size: int):
    model, norm, _ = load_checkpoint(Path(teacher))
    extractor = (torch.nn.Identity() if layer == "pixels"
                 else truncated_extractor(model, layer, "features.layer", image_size))
    return extractor.to(device).to(memory_format=torch.channels_last), norm


def features_block(params: FeaturesParams, base: BaseParams, prepared: str, teacher: str, out: str,
                   start: int, stop: int) -> int:
    """One shard of rows: pooled features of images [start, stop) into OUT's `features` (an executor task)."""
    runtime = resolve_runtime(base.device, base.precision)
    images = open_verified(prepared, checked=False)["train/images"]
    extractor, norm = cached(("features", file_stamp(teacher), params.layer, str(runtime.device)),
                             lambda: _extractor(teacher, params.layer, runtime.device, images.shape[1]))
    target = open_rows(out, "features")
    # One array for the shard's vectors, filled slice by slice: small tensors kept alive between the slices' large
    # temporaries fragmented the heap, and memory grew with the shard (1.2 GiB more at 20,000 images).
    vectors = np.empty((stop - start, target.shape[1]), np.float32)
    with torch.no_grad():
        for s in range(start, stop, params.batch_size):  # read a batch at a time: memory set by the batch
            batch = torch.from_numpy(images[s:min(stop, s + params.batch_size)]).to(runtime.device)
            row = s - start
            for part in batch.split(forward_rows(runtime.device)):
                with runtime.autocast():
                    vectors[row:row + len(part)] = pool(extractor(to_input(part, norm)), params.pooling,
                                                        params.grid_size).cpu().numpy()
                row += len(part)
    target[start:stop] = finite(vectors, out, "features", (start, stop))
    return stop - start


def write_features(params: FeaturesParams, base: BaseParams, prepared: Path, teacher: Path, out: Path) -> dict:
    runtime = resolve_runtime(base.device, base.precision)
    images = open_group(prepared, "prepared store")["train/images"]
    model, norm, ckpt = load_checkpoint(teacher)
    extractor = (torch.nn.Identity() if params.layer == "pixels"
                 else truncated_extractor(model, params.layer, "features.layer", images.shape[1])).to(runtime.device)
    n = images.shape[0]
    with torch.no_grad(), runtime.autocast():  # the feature width, from one image
        probe = pool(extractor(to_input(torch.from_numpy(images[:1]).to(runtime.device), norm)), params.pooling, params.grid_size)
    dim = probe.shape[1]
    with Timer() as timer, store_output(out) as tmp:
        root = zarr.open_group(str(tmp), mode="w")
        root.attrs["params"] = lineage(ckpt.get("params"), base=base, features=params)
        feats = create_rows(root, "features", (n, dim), np.float32)
        task = partial(features_block, params, base, str(prepared), str(teacher), str(tmp))
        map_shards(base, task, n, write_block_size(feats), "features")
    summary("features", n, "images", timer.seconds, dim=dim, layer=params.layer, runtime=runtime.describe,
            executor=base.executor)
    return {"images": n, "dim": dim, "seconds": timer.seconds}
