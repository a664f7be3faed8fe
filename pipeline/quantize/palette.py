"""Shared cluster palettes: K-means in CIE LAB over the attention-selected pixels of a cluster, and
nearest-colour assignment of pixels to a palette."""

from __future__ import annotations

import numpy as np
import torch

from pipeline.quantize.color import rgb_to_lab
from pipeline.quantize.kmeans import faiss_kmeans


def fit_palette(pixels_rgb: np.ndarray, n_colors: int, iterations: int, seed: int, max_pixels: int | None,
                use_gpu: bool = False) -> tuple[np.ndarray, int]:
    """LAB palette (n_colors,3) float32 for uint8 RGB pixels (M,3), and how many entries are distinct.

    With at most n_colors distinct colours there is nothing to cluster: the palette is those colours,
    padded by repeating the last one (a padded entry is never the unique nearest colour, so it is never
    used). With none at all (an empty cluster) the palette is black and 0 is returned.
    """
    if len(pixels_rgb) == 0:
        return np.zeros((n_colors, 3), np.float32), 0
    distinct = np.unique(pixels_rgb, axis=0)
    if len(distinct) <= n_colors:
        lab = rgb_to_lab(torch.from_numpy(distinct)).numpy()
        pad = np.repeat(lab[-1:], n_colors - len(lab), axis=0)
        return np.concatenate([lab, pad]).astype(np.float32), len(distinct)
    if max_pixels is not None and len(pixels_rgb) > max_pixels:
        rows = np.sort(np.random.default_rng(seed).choice(len(pixels_rgb), max_pixels, replace=False))
        pixels_rgb = pixels_rgb[rows]
    lab = rgb_to_lab(torch.from_numpy(pixels_rgb)).numpy()
    centroids, _ = faiss_kmeans(lab, n_colors, iterations, seed, use_gpu)
    return centroids, n_colors


def nearest(lab: torch.Tensor, palettes: torch.Tensor, max_elements: int = 1 << 25) -> torch.Tensor:
    """Index of the nearest palette colour for every pixel.

    lab (G,P,3) pixels in G groups, palettes (G,K,3): one palette per group -> int64 (G,P). Squared
    Euclidean distance in LAB; ties go to the lower index. Chunked so the (G,P,K) distance tensor never
    exceeds `max_elements`.
    """
    g, p, _ = lab.shape
    k = palettes.shape[1]
    step = max(1, max_elements // max(1, p * k))
    out = torch.empty(g, p, dtype=torch.int64, device=lab.device)
    p_sq = (palettes**2).sum(-1)[:, None, :]
    for s in range(0, g, step):
        x, pal = lab[s:s + step], palettes[s:s + step]
        d = (x**2).sum(-1, keepdim=True) - 2 * torch.bmm(x, pal.transpose(1, 2)) + p_sq[s:s + step]
        out[s:s + step] = d.argmin(-1)
    return out
