"""Train sets stored as codes into one shared patch codebook (format `patch-vq-v1`), written by the patch_vq stage.

A Zarr v3 group:
  codes     uint8 (N, ceil(P*b/8))  the codeword of each of an image's P patches, b = code_bits bits each, packed
                                    most significant bit first (pipeline/quantize/patch_vq.py)
  codebook  uint8 (2^b, ph, pw, 3)  sRGB patches shared by every image
  labels    smallest uint (N,)
  attrs     format, method (patch_vq), bits (the DCQ bit depth whose bytes it is sized near), code_bits, patch
            [ph, pw], image_size, num_images, classes, source, params, params_hash, manifest
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.errors import ParamsError
from pipeline.io.arrays import disk_bytes
from pipeline.io.dcq_store import check_header
from pipeline.io.formats import open_format, register_format
from pipeline.io.verify import check, parsing_attrs, reading

FORMAT = "patch-vq-v1"
MAX_CODE_BITS = 16  # codes of b bits are bit-packed per image, most significant bit first


def check_code_bits(bits: int, where: str = "code_bits") -> int:
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 1 <= bits <= MAX_CODE_BITS:
        raise ParamsError(f"{where}={bits!r} is outside 1..{MAX_CODE_BITS} (a codebook has 2^bits patches)")
    return int(bits)


def packed_code_bytes(codes: int, bits: int) -> int:
    return (codes * bits + 7) // 8


def pack_codes(codes: np.ndarray, bits: int) -> np.ndarray:
    """(N, P) integer codes < 2^bits -> uint8 (N, ceil(P*bits/8)), most significant bit first."""
    bits = check_code_bits(bits)
    codes = np.asarray(codes, dtype=np.int64)
    if codes.size and (int(codes.min()) < 0 or int(codes.max()) >= (1 << bits)):
        raise ValueError(f"a code outside 0..{(1 << bits) - 1} does not fit in {bits} bits")
    n, p = codes.shape
    shifts = np.arange(bits - 1, -1, -1, dtype=np.int64)
    planes = ((codes[:, :, None] >> shifts) & 1).astype(np.uint8)
    return np.packbits(planes.reshape(n, p * bits), axis=1)


def unpack_codes(packed: np.ndarray, bits: int, codes: int) -> np.ndarray:
    """Inverse of `pack_codes`: uint8 (N, ceil(P*bits/8)) -> int64 (N, P)."""
    bits = check_code_bits(bits)
    packed = np.asarray(packed, dtype=np.uint8)
    planes = np.unpackbits(packed, axis=1, count=codes * bits).reshape(len(packed), codes, bits)
    return planes.astype(np.int64) @ (1 << np.arange(bits - 1, -1, -1, dtype=np.int64))


def from_patches(patches: np.ndarray, patch: tuple[int, int], image_size: tuple[int, int]) -> np.ndarray:
    """Inverse of `to_patches`: (n, P, ph*pw*C) -> (n, H, W, C)."""
    n = patches.shape[0]
    (ph, pw), (h, w) = patch, image_size
    c = patches.shape[2] // (ph * pw)
    grid = patches.reshape(n, h // ph, w // pw, ph, pw, c).transpose(0, 1, 3, 2, 4, 5)
    return grid.reshape(n, h, w, c)


def decode_codes(codes: np.ndarray, codebook: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """uint8 (n, H, W, 3) images from int64 codes (n, P) and the sRGB codebook (K, ph, pw, 3)."""
    k, ph, pw, _ = codebook.shape
    return from_patches(codebook.reshape(k, -1)[codes], (ph, pw), image_size)



@register_format(FORMAT)
class PatchStore:
    """A train set as codes into a shared patch codebook, read-only; `decode(start, stop)` gives uint8 RGB images
    (n, H, W, 3). Every read is checked against the store's manifest."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.root, self.attrs = open_format(self.path, (FORMAT,), f"no patch codebook store at {self.path}")
        self.bits, self.image_size, self.classes = check_header(self.path, self.attrs)
        p = self.path
        with parsing_attrs(p), reading(p):
            self.method: str = str(self.attrs["method"])
            code_bits, patch = self.attrs["code_bits"], self.attrs["patch"]
            self.codebook: np.ndarray = self.root["codebook"][:]
            self.labels: np.ndarray = self.root["labels"][:].astype(np.int64)
        check(p, isinstance(code_bits, int) and 1 <= code_bits <= MAX_CODE_BITS,
              f"attr code_bits={code_bits!r} must be an integer 1..{MAX_CODE_BITS}")
        check(p, isinstance(patch, list) and len(patch) == 2 and all(isinstance(v, int) and v >= 1 for v in patch)
              and self.image_size[0] % patch[0] == 0 and self.image_size[1] % patch[1] == 0,
              f"attr patch={patch!r} must be [ph, pw] dividing the {self.image_size} images")
        self.code_bits, self.patch = int(code_bits), (int(patch[0]), int(patch[1]))
        n, (h, w), (ph, pw) = len(self.labels), self.image_size, self.patch
        self.patches = (h // ph) * (w // pw)
        width = packed_code_bytes(self.patches, self.code_bits)
        check(p, self.root["codes"].shape == (n, width), f"array 'codes' is {self.root['codes'].shape}; "
              f"{self.patches} patches of {self.code_bits} bits need ({n}, {width})")
        check(p, self.codebook.shape == (2 ** self.code_bits, ph, pw, 3) and self.codebook.dtype == np.uint8,
              f"array 'codebook' is {self.codebook.shape} {self.codebook.dtype}, expected "
              f"({2 ** self.code_bits}, {ph}, {pw}, 3) uint8")
        check(p, self.attrs.get("num_images") == n, f"attr num_images={self.attrs.get('num_images')!r}, "
              f"the arrays hold {n} images")
        check(p, n == 0 or int(self.labels.max()) < len(self.classes),
              f"array 'labels' holds label {int(self.labels.max(initial=0))}, attr classes has {len(self.classes)}")

    def __len__(self) -> int:
        return len(self.labels)

    def codes(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """int64 (n, P) codeword of every patch."""
        stop = len(self) if stop is None else stop
        with reading(self.path):
            packed = self.root["codes"][start:stop]
        return unpack_codes(packed, self.code_bits, self.patches)

    def decode(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        return decode_codes(self.codes(start, stop), self.codebook, self.image_size)

    def describe(self) -> str:
        ph, pw = self.patch
        return f"one shared codebook of {2 ** self.code_bits:,} {ph}x{pw} patches"

    @property
    def stored_bytes(self) -> int:
        return disk_bytes(self.path)
