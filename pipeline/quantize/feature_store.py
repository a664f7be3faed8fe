"""The features store: pooled shallow-layer teacher features of every train image (DCQ sec. 3.1)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import zarr
from tqdm import tqdm

from pipeline.config import BaseParams, lineage, require
from pipeline.device import resolve_runtime
from pipeline.io.arrays import create_rows, iter_blocks, open_group, write_block_size
from pipeline.io.atomic import store_output
from pipeline.models.checkpoint import load_checkpoint
from pipeline.models.layers import truncated_extractor
from pipeline.timing import Timer, summary
from pipeline.train.engine import to_input


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
    if pooling == "mean":
        return fmap.mean((2, 3))
    if pooling == "mean_std":
        return torch.cat([fmap.mean((2, 3)), fmap.std((2, 3), unbiased=False)], 1)
    return torch.nn.functional.adaptive_avg_pool2d(fmap, grid_size).flatten(1)


def write_features(params: FeaturesParams, base: BaseParams, prepared: Path, teacher: Path, out: Path) -> dict:
    runtime = resolve_runtime(base.device, base.precision)
    images = open_group(prepared, "prepared store")["train/images"]
    model, norm, ckpt = load_checkpoint(teacher)
    extractor = (torch.nn.Identity() if params.layer == "pixels"
                 else truncated_extractor(model, params.layer, "features.layer")).to(runtime.device)
    extractor = extractor.to(memory_format=torch.channels_last)
    n = images.shape[0]
    with torch.no_grad(), runtime.autocast():
        probe = pool(extractor(to_input(torch.from_numpy(images[:1]).to(runtime.device), norm)), params.pooling, params.grid_size)
    dim = probe.shape[1]
    with Timer() as timer, store_output(out) as tmp:
        root = zarr.open_group(str(tmp), mode="w")
        root.attrs["params"] = lineage(ckpt.get("params"), base=base, features=params)
        feats = create_rows(root, "features", (n, dim), np.float32)
        block = write_block_size(feats)
        with torch.no_grad(), tqdm(total=n, desc="features", unit="img", leave=False) as bar:
            for start, stop in iter_blocks(n, block):
                chunk = torch.from_numpy(images[start:stop])
                outs = []
                for s in range(0, len(chunk), params.batch_size):
                    x = to_input(chunk[s:s + params.batch_size].to(runtime.device), norm)
                    with runtime.autocast():
                        outs.append(pool(extractor(x), params.pooling, params.grid_size).cpu())
                    bar.update(len(x))
                feats[start:stop] = torch.cat(outs).numpy()
    summary("features", n, "images", timer.seconds, dim=dim, layer=params.layer, runtime=runtime.describe)
    return {"images": n, "dim": dim, "seconds": timer.seconds}
