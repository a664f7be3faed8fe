"""Pack palette indices to q bits per pixel (1 <= q <= 8), big-endian within each byte, per image row."""

from __future__ import annotations

import numpy as np

from pipeline.errors import ParamsError


def check_bits(bits: int, where: str = "bits") -> int:
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 1 <= bits <= 8:
        raise ParamsError(f"{where}={bits!r} is outside 1..8 (a palette has 2^bits colours, stored in bits per pixel)")
    return int(bits)


def packed_bytes(pixels: int, bits: int) -> int:
    return (pixels * bits + 7) // 8


def pack(indices: np.ndarray, bits: int) -> np.ndarray:
    """uint8 (N,P) indices < 2^bits -> uint8 (N, ceil(P*bits/8))."""
    check_bits(bits)
    indices = np.asarray(indices, dtype=np.uint8)
    if indices.size and int(indices.max()) >= (1 << bits):
        raise ValueError(f"index {int(indices.max())} does not fit in {bits} bits")
    if bits == 8:
        return indices.copy()
    n, p = indices.shape
    shifts = np.arange(bits - 1, -1, -1, dtype=np.uint8)
    planes = (indices[:, :, None] >> shifts) & 1  # (N,P,bits), most significant bit first
    return np.packbits(planes.reshape(n, p * bits), axis=1)


def unpack(packed: np.ndarray, bits: int, pixels: int) -> np.ndarray:
    """Inverse of `pack`: uint8 (N, ceil(P*bits/8)) -> uint8 (N,P)."""
    check_bits(bits)
    packed = np.asarray(packed, dtype=np.uint8)
    if bits == 8:
        return packed[:, :pixels].copy()
    n = packed.shape[0]
    planes = np.unpackbits(packed, axis=1, count=pixels * bits).reshape(n, pixels, bits)
    weights = (1 << np.arange(bits - 1, -1, -1)).astype(np.uint8)
    return (planes * weights).sum(axis=2, dtype=np.uint8)
