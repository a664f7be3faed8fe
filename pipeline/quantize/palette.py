"""Shared cluster palettes: K-means in CIE LAB over the attention-selected pixels of a cluster, and
nearest-colour assignment of pixels to a palette."""

from __future__ import annotations

import numpy as np
import torch

from pipeline.quantize.color import rgb_to_lab
from pipeline.quantize.kmeans import faiss_kmeans


def distinct_colours(pixels_rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct uint8 RGB colours (M,3) of (N,3) pixels, sorted, and how many pixels have each."""
    unique, counts = np.unique(colour_codes(pixels_rgb), return_counts=True)
    return code_colours(unique), counts


def colour_codes(pixels_rgb: np.ndarray) -> np.ndarray:
    """int32 code 0xRRGGBB of every uint8 (N,3) pixel."""
    return (pixels_rgb[:, 0].astype(np.int32) << 16) | (pixels_rgb[:, 1].astype(np.int32) << 8) | pixels_rgb[:, 2]


def code_colours(codes: np.ndarray) -> np.ndarray:
    return np.stack([(codes >> 16) & 255, (codes >> 8) & 255, codes & 255], axis=1).astype(np.uint8)


class ColourCounts:
    """How many selected pixels of each colour a cluster has, accumulated block by block: memory grows with the
    distinct colours (at most 2^24), not with the pixels. The palette K-means weighs distinct colours by count,
    so pooling counts is exact."""

    def __init__(self):
        self.codes = np.zeros(0, np.int32)
        self.counts = np.zeros(0, np.int64)

    def add(self, pixels_rgb: np.ndarray) -> None:
        codes = np.concatenate([self.codes, colour_codes(pixels_rgb)])
        weights = np.concatenate([self.counts, np.ones(len(pixels_rgb), np.int64)])
        self.codes, inverse = np.unique(codes, return_inverse=True)
        self.counts = np.bincount(inverse.reshape(-1), weights=weights, minlength=len(self.codes)).astype(np.int64)

    @property
    def pixels(self) -> int:
        return int(self.counts.sum())


class ClusterColourCounts:
    """Colour counts of every cluster at once: sorted unique keys cluster * 2^24 + 0xRRGGBB and their pixel counts.
    Memory grows with the distinct (cluster, colour) pairs, not with the pixels; two partial counts (two blocks
    of images) merge exactly (`merge`; many sorted runs of them: `merge_sorted_runs`)."""

    def __init__(self, keys: np.ndarray | None = None, counts: np.ndarray | None = None):
        self.keys = np.zeros(0, np.int64) if keys is None else keys
        self.counts = np.zeros(0, np.int64) if counts is None else counts

    @classmethod
    def of_pixels(cls, pixels_rgb: np.ndarray, clusters: np.ndarray) -> ClusterColourCounts:
        keys, counts = np.unique((clusters.astype(np.int64) << 24) | colour_codes(pixels_rgb), return_counts=True)
        return cls(keys, counts.astype(np.int64))

    def merge(self, other: ClusterColourCounts) -> ClusterColourCounts:
        """The exact sum of two counts. The smaller one's new keys are inserted into the larger (both sorted and
        distinct), so a merge holds its inputs and one output of M entries, not the sort of their concatenation."""
        big, small = (self, other) if len(self.keys) >= len(other.keys) else (other, self)
        pos = np.searchsorted(big.keys, small.keys)
        seen = pos < len(big.keys)
        seen[seen] = big.keys[pos[seen]] == small.keys[seen]
        new = ~seen
        keys = np.insert(big.keys, pos[new], small.keys[new])
        counts = np.insert(big.counts, pos[new], small.counts[new])
        # a key already in `big` moved right by the new keys inserted at or before its position
        at = pos[seen]
        counts[at + np.searchsorted(pos[new], at, side="right")] += small.counts[seen]
        return ClusterColourCounts(keys, counts)


def merge_sorted_runs(runs: list[tuple[np.ndarray, np.ndarray]], chunk: int):
    """The exact sum of several counts, each (keys, counts) sorted by distinct key (arrays, or runs on disk sliced like them),
    yielded as consecutive sorted distinct (keys, counts) pieces. Each round reads at most `chunk` keys of every
    run, and everything up to the smallest key at which some run's read stops is final: memory is set by the
    number of runs times `chunk`, not by their total length."""
    positions = [0] * len(runs)
    while True:
        live = [i for i, (keys, _) in enumerate(runs) if positions[i] < len(keys)]
        if not live:
            return
        ends = {i: min(positions[i] + chunk, len(runs[i][0])) for i in live}
        cut = [int(runs[i][0][ends[i] - 1]) for i in live if ends[i] < len(runs[i][0])]
        frontier = min(cut) if cut else None  # None: every run ends within this round
        keys_taken, counts_taken = [], []
        for i in live:
            keys = np.asarray(runs[i][0][positions[i]:ends[i]])
            take = len(keys) if frontier is None else int(np.searchsorted(keys, frontier, side="right"))
            keys_taken.append(keys[:take])
            counts_taken.append(np.asarray(runs[i][1][positions[i]:positions[i] + take]))
            positions[i] += take
        keys = np.concatenate(keys_taken)
        counts = np.concatenate(counts_taken).astype(np.int64)
        order = np.argsort(keys, kind="stable")
        keys, counts = keys[order], counts[order]
        first = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
        yield keys[first].astype(np.int64), np.add.reduceat(counts, first)



def fit_palette_counts(counts: ColourCounts, n_colors: int, iterations: int, seed: int, max_pixels: int | None,
                       use_gpu: bool = False) -> tuple[np.ndarray, int]:
    """`fit_palette` on pooled colour counts. Above `max_pixels` pixels, a seeded sample of that many pixels
    without replacement (multivariate hypergeometric over the counts: the same law as sampling pixels)."""
    codes, weights = counts.codes, counts.counts
    if len(codes) == 0:
        return np.zeros((n_colors, 3), np.float32), 0
    if max_pixels is not None and weights.sum() > max_pixels:
        weights = np.random.default_rng(seed).multivariate_hypergeometric(weights, max_pixels)
        codes, weights = codes[weights > 0], weights[weights > 0]
    return _fit_distinct(code_colours(codes), weights, n_colors, iterations, seed, use_gpu)


def fit_palette(pixels_rgb: np.ndarray, n_colors: int, iterations: int, seed: int, max_pixels: int | None,
                use_gpu: bool = False) -> tuple[np.ndarray, int]:
    """LAB palette (n_colors,3) float32 for uint8 RGB pixels (M,3), and how many entries are distinct.

    K-means runs on the distinct colours weighted by their pixel counts: the same objective as on
    every pixel, on far fewer points. With at most n_colors distinct colours there is nothing to
    cluster: the palette is those colours, padded by repeating the last one (a padded entry is never
    the unique nearest colour, so it is never used). An empty cluster gets a black palette and 0.
    """
    if len(pixels_rgb) == 0:
        return np.zeros((n_colors, 3), np.float32), 0
    if max_pixels is not None and len(pixels_rgb) > max_pixels:
        rows = np.sort(np.random.default_rng(seed).choice(len(pixels_rgb), max_pixels, replace=False))
        pixels_rgb = pixels_rgb[rows]
    colours, counts = distinct_colours(pixels_rgb)
    return _fit_distinct(colours, counts, n_colors, iterations, seed, use_gpu)


def _fit_distinct(colours: np.ndarray, counts: np.ndarray, n_colors: int, iterations: int, seed: int,
                  use_gpu: bool) -> tuple[np.ndarray, int]:
    lab = rgb_to_lab(torch.from_numpy(colours)).numpy()
    if len(colours) <= n_colors:
        pad = np.repeat(lab[-1:], n_colors - len(lab), axis=0)
        return np.concatenate([lab, pad]).astype(np.float32), len(colours)
    centroids, _ = faiss_kmeans(lab, n_colors, iterations, seed, use_gpu, weights=counts)
    return centroids, n_colors


def nearest(lab: torch.Tensor, palettes: torch.Tensor, max_elements: int = 1 << 18) -> torch.Tensor:
    """Index of the nearest palette colour for every pixel.

    lab (G,P,3) pixels in G groups, palettes (G,K,3): one palette per group -> int64 (G,P). Squared
    Euclidean distance in LAB; ties go to the lower index. |x|^2 is the same for every colour, so only
    |p|^2 - 2 x.p is computed (one fused baddbmm), in cache-sized blocks of at most `max_elements`.
    """
    g, p, _ = lab.shape
    k = palettes.shape[1]
    out = torch.empty(g, p, dtype=torch.int64, device=lab.device)
    p_sq = (palettes**2).sum(-1)[:, None, :]  # (G,1,K)
    pal_t = palettes.transpose(1, 2)  # (G,3,K)
    rows = max(1, max_elements // max(1, k))
    groups = max(1, rows // max(1, p))
    if groups > 1 or rows >= p:
        for s in range(0, g, groups):
            d = torch.baddbmm(p_sq[s:s + groups], lab[s:s + groups], pal_t[s:s + groups], alpha=-2.0)
            out[s:s + groups] = d.argmin(-1)
    else:
        for s in range(g):
            for r in range(0, p, rows):
                d = torch.baddbmm(p_sq[s:s + 1], lab[s:s + 1, r:r + rows], pal_t[s:s + 1], alpha=-2.0)
                out[s, r:r + rows] = d[0].argmin(-1)
    return out
