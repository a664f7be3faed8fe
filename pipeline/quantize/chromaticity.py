"""How chromatic a partition of the train images is: the share of the variance of each image's mean CIE LAB colour
that the partition explains (1 - within-cluster / total sum of squares), for the chroma (a*, b*) jointly and for
the lightness L*. 1: every cluster holds one colour; about 0: the clusters ignore colour (a random partition).
DCQ fits one palette per cluster, so its premise is a high share for (a*, b*)."""

from __future__ import annotations

import numpy as np

from pipeline.io.arrays import iter_blocks

BLOCK_IMAGES = 1024  # images converted to LAB at a time: memory is set by the block, not by N


def mean_lab(images, block: int = BLOCK_IMAGES) -> np.ndarray:
    """(N, 3) float64 mean L*, a*, b* of each uint8 (N, H, W, 3) image (an array or a Zarr array), block by block."""
    from skimage.color import rgb2lab  # here, not at import: the cluster stage starts without it

    out = np.empty((images.shape[0], 3))
    for start, stop in iter_blocks(images.shape[0], block):
        lab = rgb2lab(np.asarray(images[start:stop]).astype(np.float64) / 255.0)
        out[start:stop] = lab.reshape(stop - start, -1, 3).mean(1)
    return out


def explained_share(values: np.ndarray, assignments: np.ndarray, k: int) -> float:
    """1 - (within-cluster sum of squares) / (total sum of squares) of `values` (N, d) under `assignments` (N,)."""
    values = np.asarray(values, np.float64).reshape(len(values), -1)
    total = float(((values - values.mean(0)) ** 2).sum())
    if total == 0.0:
        return 0.0
    counts = np.bincount(assignments, minlength=k).astype(np.float64)
    sums = np.stack([np.bincount(assignments, weights=values[:, j], minlength=k) for j in range(values.shape[1])], 1)
    means = sums / np.maximum(counts, 1.0)[:, None]
    within = float(((values - means[assignments]) ** 2).sum())
    return 1.0 - within / total


def chromaticity(lab_means: np.ndarray, assignments: np.ndarray, k: int) -> dict:
    """{"ab": share of the (a*, b*) variance explained, "L": share of the L* variance explained}, 4 decimals."""
    assignments = np.asarray(assignments, np.int64)
    return {"ab": round(explained_share(lab_means[:, 1:], assignments, k), 4),
            "L": round(explained_share(lab_means[:, :1], assignments, k), 4)}
