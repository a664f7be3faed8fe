"""Standard image codecs as a train-set storage: JPEG, WebP and AVIF through Pillow, at a quality chosen so that
the set's bytes on disk match a target (DCQ's at the same q).

JPEG images of one size and quality written with Pillow's standard tables (no per-image Huffman optimisation)
share one header: the tables and frame up to the start of scan. It is stored once per dataset and each image
keeps only its entropy-coded scan, so JPEG is not charged ~600 bytes of tables per 32 x 32 image. WebP and
AVIF files carry their own container per image (Pillow cannot write them without one); AVIF's is a few hundred
bytes, which is what storing AVIF costs.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image, features

from pipeline.errors import ParamsError

CODECS = ("jpeg", "webp", "avif")
QUALITY_RANGE = {"jpeg": (1, 95), "webp": (0, 100), "avif": (0, 100)}
_SOS = b"\xff\xda"


def check_codec(codec: str, where: str = "codec") -> str:
    if codec not in CODECS:
        raise ParamsError(f"{where}={codec!r} is not a codec; choose from {list(CODECS)}")
    if codec in ("webp", "avif") and not features.check_module(codec):
        raise ParamsError(f"{where}={codec}: this Pillow was built without {codec.upper()} support")
    return codec


def encode(image: np.ndarray, codec: str, quality: int) -> bytes:
    """One uint8 (H,W,3) image as the codec's file bytes (deterministic for fixed inputs)."""
    buf = io.BytesIO()
    im = Image.fromarray(image)
    if codec == "jpeg":
        im.save(buf, "JPEG", quality=quality, optimize=False, subsampling=2)
    elif codec == "webp":
        im.save(buf, "WEBP", quality=quality, method=6)
    else:
        im.save(buf, "AVIF", quality=quality, speed=6, subsampling="4:2:0")
    return buf.getvalue()


def split_jpeg(data: bytes) -> tuple[bytes, bytes]:
    """(header through the start-of-scan segment, the scan and EOI) of a baseline JPEG."""
    at = data.index(_SOS)
    length = int.from_bytes(data[at + 2:at + 4], "big")
    cut = at + 2 + length
    return data[:cut], data[cut:]


def decode(blob: bytes, header: bytes = b"") -> np.ndarray:
    with Image.open(io.BytesIO(header + blob)) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def encode_set(images: np.ndarray, codec: str, quality: int) -> tuple[bytes, list[bytes]]:
    """(shared header, per-image payloads) of uint8 (N,H,W,3) images."""
    files = [encode(im, codec, quality) for im in images]
    if codec != "jpeg":
        return b"", files
    parts = [split_jpeg(f) for f in files]
    header = parts[0][0]
    if any(h != header for h, _ in parts):
        raise ValueError("JPEG headers differ between images of one size and quality")
    return header, [body for _, body in parts]


def search_quality(bytes_at: Callable[[int], int], codec: str, target: int) -> int | None:
    """The highest quality whose bytes (`bytes_at(quality)`, assumed non-decreasing in quality) fit `target`;
    None when even the lowest quality does not."""
    low, high = QUALITY_RANGE[codec]
    if bytes_at(low) > target:
        return None
    while low < high:
        mid = (low + high + 1) // 2
        if bytes_at(mid) <= target:
            low = mid
        else:
            high = mid - 1
    return low
