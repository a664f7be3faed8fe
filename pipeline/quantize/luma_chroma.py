"""Luma and chroma apart: the encoder of `luma-chroma-vq-v1` (pipeline/io/luma_chroma_store.py holds the decoder).

L* patches at full resolution and (a*, b*) patches of a grid averaged over f x f pixels are each vector-quantized
with one codebook shared by the whole set: faiss K-means of a seeded sample, the centroids rounded to the stored
integers (L* x 2.55 as uint8, a* and b* as int8), and every patch assigned its nearest stored codeword (exact, faiss
flat L2). Colour differences live mostly in lightness detail and in smooth chroma, so the split spends the bits where
JPEG does (its 4:2:0 chroma).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pipeline.io.arrays import iter_blocks
from pipeline.io.luma_chroma_store import L_SCALE, dequantized, grid_patches
from pipeline.quantize.color import rgb_to_lab
from pipeline.quantize.kmeans import faiss_kmeans


@dataclass(frozen=True)
class Geometry:
    luma_patch: tuple[int, int]
    luma_bits: int
    chroma_factor: int
    chroma_patch: tuple[int, int]
    chroma_bits: int


def lab_of(images: np.ndarray) -> np.ndarray:
    return rgb_to_lab(torch.from_numpy(np.ascontiguousarray(images))).numpy().astype(np.float32)


def luma_chroma_vectors(images: np.ndarray, geometry: Geometry) -> tuple[np.ndarray, np.ndarray]:
    """float32 luma (n, PL, lh*lw) and chroma (n, PC, ch*cw*2) patch vectors of uint8 images (n, H, W, 3)."""
    lab = lab_of(images)
    n, h, w, _ = lab.shape
    f = geometry.chroma_factor
    coarse = lab[..., 1:].reshape(n, h // f, f, w // f, f, 2).mean(axis=(2, 4))
    return grid_patches(lab[..., :1], geometry.luma_patch), grid_patches(coarse, geometry.chroma_patch)


def fit_codebooks(luma: np.ndarray, chroma: np.ndarray, geometry: Geometry, iterations: int,
                  seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The stored codebooks, uint8 L* (2^bl, lh, lw) and int8 (a*, b*) (2^bc, ch, cw, 2): K-means of the sampled
    luma (m, lh*lw) and chroma (m', ch*cw*2) vectors, rounded to the stored integers."""
    g = geometry
    luma_centroids, _ = faiss_kmeans(luma, 1 << g.luma_bits, iterations, seed)
    chroma_centroids, _ = faiss_kmeans(chroma, 1 << g.chroma_bits, iterations, seed)
    luma_book = np.clip(np.rint(luma_centroids * L_SCALE), 0, 255).astype(np.uint8).reshape(-1, *g.luma_patch)
    chroma_book = np.clip(np.rint(chroma_centroids), -128, 127).astype(np.int8).reshape(-1, *g.chroma_patch, 2)
    return luma_book, chroma_book


class Assigner:
    """Nearest stored codeword of every luma and chroma patch, exactly (faiss flat L2 over the decoded codewords)."""

    def __init__(self, luma_codebook: np.ndarray, chroma_codebook: np.ndarray, geometry: Geometry):
        import faiss

        self.geometry = geometry
        self.indexes = []
        for words in dequantized(luma_codebook, chroma_codebook):
            index = faiss.IndexFlatL2(words.shape[1])
            index.add(np.ascontiguousarray(words))
            self.indexes.append(index)

    def codes(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """int64 luma (n, PL) and chroma (n, PC) codes of uint8 images (n, H, W, 3)."""
        found = []
        for vectors, index in zip(luma_chroma_vectors(images, self.geometry), self.indexes):
            n, p, d = vectors.shape
            _, nearest = index.search(np.ascontiguousarray(vectors.reshape(n * p, d)), 1)
            found.append(nearest[:, 0].astype(np.int64).reshape(n, p))
        return found[0], found[1]


def sample_vectors(images, geometry: Geometry, counts: tuple[int, int], seed: int,
                   block: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded samples of min(count, all) luma and chroma patch vectors of `images` (any array-like (N, H, W, 3)),
    read `block` images at a time."""
    n = images.shape[0]
    first_luma, first_chroma = luma_chroma_vectors(images[:1], geometry)
    per_image = (first_luma.shape[1], first_chroma.shape[1])
    rng = np.random.default_rng(seed)
    chosen = [np.sort(rng.choice(n * p, min(c, n * p), replace=False)) for p, c in zip(per_image, counts)]
    picked: tuple[list, list] = ([], [])
    for start, stop in iter_blocks(n, block):
        for k, vectors in enumerate(luma_chroma_vectors(images[start:stop], geometry)):
            lo, hi = np.searchsorted(chosen[k], [start * per_image[k], stop * per_image[k]])
            picked[k].append(vectors.reshape(-1, vectors.shape[-1])[chosen[k][lo:hi] - start * per_image[k]])
    return np.concatenate(picked[0]), np.concatenate(picked[1])
