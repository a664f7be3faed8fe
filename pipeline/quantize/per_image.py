"""Per-image colour quantizers: every image gets its own palette of at most 2^q colours.

  median_cut     Pillow's Median Cut (Heckbert), no dithering
  octree         Pillow's fast octree, no dithering
  libimagequant  pngquant's libimagequant (the `imagequant` package), no dithering
  kmeans_rgb     K-means (faiss) on the image's pixels in sRGB, nearest stored colour in sRGB
  kmeans_lab     K-means (faiss) on the image's pixels in CIE LAB, nearest stored colour in LAB

Each returns palette indices (B,H,W) uint8 and palettes (B,2^q,3) uint8 sRGB, such that
palette[index] is exactly the quantized image (for Pillow's methods: exactly Pillow's own output).
A quantizer that finds fewer colours than 2^q pads the palette by repeating its last colour.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from pipeline.config import require
from pipeline.errors import ParamsError
from pipeline.io.bitpack import check_bits
from pipeline.quantize.color import rgb_to_lab
from pipeline.quantize.kmeans import faiss_kmeans
from pipeline.quantize.palette import distinct_colours, nearest

PILLOW_METHODS = {
    "median_cut": Image.Quantize.MEDIANCUT,
    "octree": Image.Quantize.FASTOCTREE,
    "libimagequant": None,  # Pillow here is built without it: the `imagequant` package binds the same library
}
KMEANS_SPACES = {"kmeans_rgb": "rgb", "kmeans_lab": "lab"}
QUANTIZERS = tuple(PILLOW_METHODS) + tuple(KMEANS_SPACES)


@dataclass(frozen=True)
class BaselineParams:
    """`baseline:` in params.yaml: the per-image quantizers the baselines study runs (stages/baseline.py), and how."""
    methods: list[str] = field(default_factory=lambda: ["median_cut", "octree", "kmeans_lab"])
    bits: list[int] = field(default_factory=lambda: [1, 2, 4])  # dvc.yaml runs every method at each
    kmeans_iterations: int = 20

    def __post_init__(self):
        unknown = [m for m in self.methods if m not in QUANTIZERS]
        require(not unknown, f"methods={unknown} are not per-image quantizers {list(QUANTIZERS)}")
        for q in self.bits:
            check_bits(q)
        require(self.kmeans_iterations >= 1, f"kmeans_iterations={self.kmeans_iterations} must be >= 1")


def check_quantizer(method: str, where: str = "method") -> str:
    if method not in QUANTIZERS:
        raise ParamsError(f"{where}={method!r} is not a per-image quantizer; choose from {list(QUANTIZERS)}")
    return method


def _pad(palette: np.ndarray, colours: int) -> np.ndarray:
    if len(palette) >= colours:
        return palette[:colours]
    return np.concatenate([palette, np.repeat(palette[-1:], colours - len(palette), axis=0)])


def pillow_quantize(image: np.ndarray, method: str, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """(H,W) uint8 indices and (2^q,3) uint8 palette of one uint8 (H,W,3) image, from Pillow."""
    colours = 2**bits
    if method == "libimagequant":
        return libimagequant_quantize(image, bits)
    quantized = Image.fromarray(image).quantize(colors=colours, method=PILLOW_METHODS[method],
                                                dither=Image.Dither.NONE)
    indices = np.asarray(quantized, dtype=np.uint8)
    used = int(indices.max()) + 1
    palette = np.asarray(quantized.getpalette()[: 3 * max(used, 1)], dtype=np.uint8).reshape(-1, 3)
    return indices, _pad(palette, colours)


def libimagequant_quantize(image: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """(H,W) uint8 indices and (2^q,3) uint8 palette from libimagequant, no dithering (opaque RGBA in)."""
    import imagequant

    h, w, _ = image.shape
    rgba = np.concatenate([image, np.full((h, w, 1), 255, np.uint8)], axis=2)
    raw, palette = imagequant.quantize_raw_rgba_bytes(rgba.tobytes(), w, h, dithering_level=0.0, max_colors=2**bits)
    indices = np.frombuffer(raw, np.uint8).reshape(h, w).copy()
    palette = np.asarray(palette, np.uint8).reshape(-1, 4)[:, :3]
    return indices, _pad(palette[: max(int(indices.max()) + 1, 1)], 2**bits)


def kmeans_palette(image: np.ndarray, space: str, bits: int, iterations: int, seed: int) -> np.ndarray:
    """(2^q,3) uint8 sRGB palette: K-means of the image's pixels (distinct colours weighted by count)."""
    colours = 2**bits
    distinct, counts = distinct_colours(image.reshape(-1, 3))
    if len(distinct) <= colours:
        return _pad(distinct, colours)
    points = rgb_to_lab(torch.from_numpy(distinct)).numpy() if space == "lab" else distinct.astype(np.float32)
    centroids, _ = faiss_kmeans(points, colours, iterations, seed, weights=counts)
    if space == "lab":
        from pipeline.quantize.color import lab_to_rgb_u8

        return lab_to_rgb_u8(torch.from_numpy(centroids)).numpy()
    return np.clip(np.rint(centroids), 0, 255).astype(np.uint8)


def quantize_block(images: np.ndarray, method: str, bits: int, iterations: int = 20, seed: int = 0
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Quantize uint8 (B,H,W,3) images one by one -> indices (B,H,W) uint8, palettes (B,2^q,3) uint8."""
    check_quantizer(method)
    b, h, w, _ = images.shape
    if method in PILLOW_METHODS:
        pairs = [pillow_quantize(im, method, bits) for im in images]
        return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
    space = KMEANS_SPACES[method]
    palettes = np.stack([kmeans_palette(im, space, bits, iterations, seed) for im in images])
    # Nearest among the *stored* uint8 colours, in the space K-means ran in, so decoding is exact.
    pixels = torch.from_numpy(images.reshape(b, h * w, 3))
    pal = torch.from_numpy(palettes)
    if space == "lab":
        idx = nearest(rgb_to_lab(pixels), rgb_to_lab(pal))
    else:
        idx = nearest(pixels.float(), pal.float())
    return idx.to(torch.uint8).numpy().reshape(b, h, w), palettes
