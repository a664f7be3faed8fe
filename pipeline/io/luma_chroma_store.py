"""Train sets stored as luma and chroma apart (format `luma-chroma-vq-v1`), written by the luma_chroma stage.

Lightness L* at full resolution as codes into one shared codebook of lh x lw L* patches; chroma (a*, b*) averaged
over f x f pixels, then as codes into one shared codebook of ch x cw patches of that coarse grid. Decoding looks
both up, upsamples the chroma bilinearly (half-pixel centres, edges clamped) and converts CIE LAB (D65) to sRGB.

A Zarr v3 group:
  luma_codes       uint8 (N, ceil(PL*bl/8))   the luma codeword of each of an image's PL patches, bl bits each,
                                              packed most significant bit first (pipeline/io/patch_store.py)
  chroma_codes     uint8 (N, ceil(PC*bc/8))   the same for the PC chroma patches of the coarse grid
  luma_codebook    uint8 (2^bl, lh, lw)       L* x 2.55, rounded
  chroma_codebook  int8 (2^bc, ch, cw, 2)     a*, b*, rounded
  labels           smallest uint (N,)
  attrs            format, method (luma_chroma), bits (the DCQ bit depth whose bytes it is sized near),
                   luma_patch, luma_bits, chroma_factor, chroma_patch, chroma_bits, image_size, num_images,
                   classes, source, params, params_hash, manifest
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.io.arrays import disk_bytes
from pipeline.io.dcq_store import check_header
from pipeline.io.formats import open_format, register_format
from pipeline.io.patch_store import MAX_CODE_BITS, packed_code_bytes, unpack_codes
from pipeline.io.verify import check, parsing_attrs, reading

FORMAT = "luma-chroma-vq-v1"
METHOD = "luma_chroma"
L_SCALE = 2.55  # L* in 0..100 stored as 0..255


def grid_patches(grid: np.ndarray, patch: tuple[int, int]) -> np.ndarray:
    """(n, H, W, C) -> (n, H/ph * W/pw, ph*pw*C): each patch's cells row-major, patches row-major."""
    n, h, w, c = grid.shape
    ph, pw = patch
    return grid.reshape(n, h // ph, ph, w // pw, pw, c).transpose(0, 1, 3, 2, 4, 5).reshape(n, -1, ph * pw * c)


def from_grid_patches(patches: np.ndarray, patch: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """Inverse of `grid_patches`: (n, P, ph*pw*C) -> (n, H, W, C)."""
    n, (ph, pw), (h, w) = patches.shape[0], patch, size
    c = patches.shape[2] // (ph * pw)
    return patches.reshape(n, h // ph, w // pw, ph, pw, c).transpose(0, 1, 3, 2, 4, 5).reshape(n, h, w, c)


def upsample_bilinear(grid: np.ndarray, factor: int) -> np.ndarray:
    """(n, h, w, C) float -> (n, h*f, w*f, C): bilinear with half-pixel centres and clamped edges."""
    def axis_weights(size: int):
        pos = np.clip((np.arange(size * factor) + 0.5) / factor - 0.5, 0, size - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, size - 1)
        return lo, hi, (pos - lo).astype(np.float32)

    (ylo, yhi, wy), (xlo, xhi, wx) = axis_weights(grid.shape[1]), axis_weights(grid.shape[2])
    rows = grid[:, ylo] * (1 - wy)[None, :, None, None] + grid[:, yhi] * wy[None, :, None, None]
    return rows[:, :, xlo] * (1 - wx)[None, None, :, None] + rows[:, :, xhi] * wx[None, None, :, None]


# CIE LAB (D65) -> sRGB with scikit-image's constants, as pipeline/quantize/color.py's `lab_to_rgb` (torch, a layer
# above): the decoder stays torch-free and takes 10,000 32x32 images in about a second.
_RGB_FROM_XYZ = np.linalg.inv(np.array([[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169],
                                        [0.019334, 0.119193, 0.950227]]))
_D65 = np.array([0.95047, 1.0, 1.08883])


def lab_to_srgb_u8(lab: np.ndarray) -> np.ndarray:
    """float (..., 3) CIE LAB (D65) -> uint8 sRGB, out-of-gamut colours clipped."""
    lab = lab.astype(np.float64)
    fy = (lab[..., 0] + 16.0) / 116.0
    f = np.stack([lab[..., 1] / 500.0 + fy, fy, np.maximum(fy - lab[..., 2] / 200.0, 0.0)], axis=-1)
    xyz = np.where(f > 0.2068966, f ** 3, (f - 16.0 / 116.0) / 7.787) * _D65
    linear = xyz @ _RGB_FROM_XYZ.T
    rgb = np.where(linear > 0.0031308, 1.055 * np.power(np.maximum(linear, 1e-12), 1.0 / 2.4) - 0.055,
                   linear * 12.92)
    return np.rint(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)


def dequantized(luma_codebook: np.ndarray, chroma_codebook: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float32 L* (K, lh*lw) and (a*, b*) (K', ch*cw*2) codewords, as the decoder sees them."""
    luma = luma_codebook.reshape(len(luma_codebook), -1).astype(np.float32) / L_SCALE
    return luma, chroma_codebook.reshape(len(chroma_codebook), -1).astype(np.float32)


def reconstruct(luma_codes: np.ndarray, chroma_codes: np.ndarray, luma_codebook: np.ndarray,
                chroma_codebook: np.ndarray, image_size: tuple[int, int], chroma_factor: int) -> np.ndarray:
    """uint8 sRGB (n, H, W, 3) from int64 codes (n, PL) and (n, PC) and the stored codebooks."""
    luma, chroma = dequantized(luma_codebook, chroma_codebook)
    (h, w), f = image_size, chroma_factor
    lightness = from_grid_patches(luma[luma_codes], luma_codebook.shape[1:3], (h, w))
    coarse = from_grid_patches(chroma[chroma_codes], chroma_codebook.shape[1:3], (h // f, w // f))
    return lab_to_srgb_u8(np.concatenate([lightness, upsample_bilinear(coarse, f)], axis=-1))


def _shape_attr(path: Path, name: str, value: object) -> tuple[int, int]:
    check(path, isinstance(value, list) and len(value) == 2
          and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value),
          f"attr {name}={value!r} must be [height, width], each >= 1")
    return int(value[0]), int(value[1])


def _int_attr(path: Path, name: str, value: object, top: int) -> int:
    check(path, isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= top,
          f"attr {name}={value!r} must be an integer 1..{top}")
    return int(value)


@register_format(FORMAT)
class LumaChromaStore:
    """A train set as luma and chroma codes into two shared codebooks, read-only; `decode(start, stop)` gives uint8
    RGB images (n, H, W, 3). Every read is checked against the store's manifest."""

    def __init__(self, path: str | Path):
        self.path = p = Path(path)
        self.root, self.attrs = open_format(p, (FORMAT,), f"no luma/chroma codebook store at {p}")
        self.bits, self.image_size, self.classes = check_header(p, self.attrs)
        self.method: str = METHOD
        with parsing_attrs(p), reading(p):
            a = self.attrs
            self.luma_patch = _shape_attr(p, "luma_patch", a["luma_patch"])
            self.chroma_patch = _shape_attr(p, "chroma_patch", a["chroma_patch"])
            self.luma_bits = _int_attr(p, "luma_bits", a["luma_bits"], MAX_CODE_BITS)
            self.chroma_bits = _int_attr(p, "chroma_bits", a["chroma_bits"], MAX_CODE_BITS)
            self.chroma_factor = _int_attr(p, "chroma_factor", a["chroma_factor"], min(self.image_size))
            self.luma_codebook: np.ndarray = self.root["luma_codebook"][:]
            self.chroma_codebook: np.ndarray = self.root["chroma_codebook"][:]
            self.labels: np.ndarray = self.root["labels"][:].astype(np.int64)
        self._check_arrays()

    def _check_arrays(self) -> None:
        p, n, (h, w), f = self.path, len(self.labels), self.image_size, self.chroma_factor
        (lh, lw), (ch, cw) = self.luma_patch, self.chroma_patch
        check(p, h % lh == 0 and w % lw == 0, f"attr luma_patch={[lh, lw]} must divide the {h}x{w} images")
        check(p, h % f == 0 and w % f == 0 and (h // f) % ch == 0 and (w // f) % cw == 0,
              f"attrs chroma_factor={f}, chroma_patch={[ch, cw]} must divide the {h}x{w} images into whole patches")
        self.luma_count, self.chroma_count = (h // lh) * (w // lw), (h // f // ch) * (w // f // cw)
        for name, count, bits in (("luma_codes", self.luma_count, self.luma_bits),
                                  ("chroma_codes", self.chroma_count, self.chroma_bits)):
            width = packed_code_bytes(count, bits)
            check(p, self.root[name].shape == (n, width), f"array {name!r} is {self.root[name].shape}; {count} "
                  f"patches of {bits} bits need ({n}, {width})")
        check(p, self.luma_codebook.shape == (2 ** self.luma_bits, lh, lw) and self.luma_codebook.dtype == np.uint8,
              f"array 'luma_codebook' is {self.luma_codebook.shape} {self.luma_codebook.dtype}, expected "
              f"({2 ** self.luma_bits}, {lh}, {lw}) uint8")
        check(p, self.chroma_codebook.shape == (2 ** self.chroma_bits, ch, cw, 2)
              and self.chroma_codebook.dtype == np.int8,
              f"array 'chroma_codebook' is {self.chroma_codebook.shape} {self.chroma_codebook.dtype}, expected "
              f"({2 ** self.chroma_bits}, {ch}, {cw}, 2) int8")
        check(p, self.attrs.get("num_images") == n, f"attr num_images={self.attrs.get('num_images')!r}, "
              f"the arrays hold {n} images")
        check(p, n == 0 or int(self.labels.max()) < len(self.classes),
              f"array 'labels' holds label {int(self.labels.max(initial=0))}, attr classes has {len(self.classes)}")

    def __len__(self) -> int:
        return len(self.labels)

    def codes(self, start: int = 0, stop: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """int64 luma (n, PL) and chroma (n, PC) codes."""
        stop = len(self) if stop is None else stop
        with reading(self.path):
            luma, chroma = self.root["luma_codes"][start:stop], self.root["chroma_codes"][start:stop]
        return (unpack_codes(luma, self.luma_bits, self.luma_count),
                unpack_codes(chroma, self.chroma_bits, self.chroma_count))

    def decode(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        luma, chroma = self.codes(start, stop)
        return reconstruct(luma, chroma, self.luma_codebook, self.chroma_codebook, self.image_size,
                           self.chroma_factor)

    def describe(self) -> str:
        (lh, lw), (ch, cw), f = self.luma_patch, self.chroma_patch, self.chroma_factor
        return (f"{2 ** self.luma_bits:,} shared {lh}x{lw} L* patches + {2 ** self.chroma_bits:,} shared {ch}x{cw} "
                f"chroma patches at 1/{f} resolution")

    @property
    def stored_bytes(self) -> int:
        return disk_bytes(self.path)
