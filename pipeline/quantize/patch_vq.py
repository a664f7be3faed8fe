"""Shared patch codebooks: DCQ's palette grown from a pixel to a patch (issue 36, item 4).

Every image is cut into ph x pw patches; one codebook of 2^b patches, shared by the whole train set, is fitted by
faiss K-means on a seeded sample of the patches in CIE LAB, and every patch is stored as the index of its nearest
codeword. The codewords are kept as sRGB uint8 patches (what the decoder pastes back), and patches are assigned
against those rounded codewords in LAB, so the index chosen is the nearest among what is decoded.

The store, its bit-packed codes and the decoder are pipeline/io/patch_store.py.
"""

from __future__ import annotations

import numpy as np
import torch

from pipeline.errors import ParamsError
from pipeline.io.patch_store import check_code_bits
from pipeline.quantize.color import lab_to_rgb_u8, rgb_to_lab
from pipeline.quantize.kmeans import faiss_kmeans


def check_patch(patch: tuple[int, int], image_size: tuple[int, int], where: str = "patch") -> tuple[int, int]:
    """(ph, pw), each dividing the image's side, or a ParamsError naming `where`."""
    ph, pw = patch
    h, w = image_size
    if not (1 <= ph <= h and 1 <= pw <= w and h % ph == 0 and w % pw == 0):
        raise ParamsError(f"{where}={[ph, pw]} must divide the {h}x{w} images into whole patches")
    return ph, pw


def to_patches(images: np.ndarray, patch: tuple[int, int]) -> np.ndarray:
    """uint8 (n, H, W, C) -> (n, H/ph * W/pw, ph*pw*C): each patch's pixels row-major, patches row-major."""
    n, h, w, c = images.shape
    ph, pw = patch
    grid = images.reshape(n, h // ph, ph, w // pw, pw, c).transpose(0, 1, 3, 2, 4, 5)
    return grid.reshape(n, (h // ph) * (w // pw), ph * pw * c)


def lab_patches(images: np.ndarray, patch: tuple[int, int]) -> np.ndarray:
    """float32 (n, P, ph*pw*3): each patch's pixels in CIE LAB."""
    lab = rgb_to_lab(torch.from_numpy(np.ascontiguousarray(images))).numpy()
    return to_patches(lab, patch).astype(np.float32)


def fit_codebook(sample: np.ndarray, patch: tuple[int, int], bits: int, iterations: int, seed: int) -> np.ndarray:
    """The codebook, uint8 sRGB (2^bits, ph, pw, 3): K-means of `sample` (m, ph*pw*3) LAB patch vectors."""
    bits = check_code_bits(bits)
    centroids, _ = faiss_kmeans(sample, 1 << bits, iterations, seed)
    ph, pw = patch
    rgb = lab_to_rgb_u8(torch.from_numpy(centroids.reshape(-1, ph * pw, 3)))
    return rgb.numpy().reshape(-1, ph, pw, 3)


class Assigner:
    """Nearest codeword in LAB, exactly (faiss flat L2 index over the decoded codewords)."""

    def __init__(self, codebook: np.ndarray):
        import faiss

        k, ph, pw, _ = codebook.shape
        self.patch = (ph, pw)
        self.index = faiss.IndexFlatL2(ph * pw * 3)
        self.index.add(np.ascontiguousarray(lab_patches(codebook, (ph, pw)).reshape(k, -1)))  # a codeword is one patch

    def codes(self, images: np.ndarray) -> np.ndarray:
        """int64 (n, P) codes of uint8 images (n, H, W, 3)."""
        vectors = lab_patches(images, self.patch)
        n, p, d = vectors.shape
        _, found = self.index.search(np.ascontiguousarray(vectors.reshape(n * p, d)), 1)
        return found[:, 0].astype(np.int64).reshape(n, p)
