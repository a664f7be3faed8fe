"""Distilled (synthetic) train sets, stored in the form their storage is accounted in.

A synthetic store (format `synthetic-v1`) is a Zarr v3 group; attrs `representation` says which arrays it has:
  pixels     images uint8 (N,H,W,3), labels                       MTT, DM, random real images
  palette    indices uint8 (N, C, ceil(H*W*b/8)) packed to b = log2(K) bits per channel value,
             palettes uint8 (N, C, K), labels                       AutoPalette (K levels per channel)
  low_rank   U, V float16 (S,C,H,r), (S,C,W,r); basis float16 (N,C,r,r); soft_labels float16 (N,classes)
                                                                    MTT-LSS (decoded in the experts' input space)
attrs also: method, ipc, classes, image_size, num_images, student_lr (for methods that learn one),
normalization {mean, std}, zca (bool), experts (path), params, params_hash.

Storage rule (one for every method): `stored_bytes` = the bytes of every array's chunk files (indices,
palettes, factors, labels), i.e. everything needed to rebuild the set, without Zarr's small JSON metadata,
which is the same for every method. Arrays are stored uncompressed, so the count is exact and the same on any
machine. The budget is IPC labelled full-colour uint8 images per class (H*W*3 bytes + a 1-byte label each).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import zarr

from pipeline.errors import StoreError
from pipeline.io.arrays import array_bytes
from pipeline.io.bitpack import pack, packed_bytes, unpack
from pipeline.io.formats import open_format, register_format
from pipeline.io.verify import check, check_classes, check_image_size, parsing_attrs, seal, verify_store

FORMAT = "synthetic-v1"
REPRESENTATIONS = ("pixels", "palette", "low_rank")


def budget_bytes(ipc: int, num_classes: int, image_size: tuple[int, int], channels: int = 3) -> int:
    label = 1 if num_classes <= 256 else 2
    return ipc * num_classes * (image_size[0] * image_size[1] * channels + label)


def _array(root: zarr.Group, name: str, data: np.ndarray) -> None:
    root.create_array(name, data=np.ascontiguousarray(data), chunks=data.shape or (1,), compressors=None,
                      config={"write_empty_chunks": True})


def _labels_dtype(num_classes: int):
    return np.uint8 if num_classes <= 256 else np.uint16


def write(root: zarr.Group, representation: str, attrs: dict, **arrays: np.ndarray) -> None:
    """Write one synthetic set into an open (empty) group."""
    if representation not in REPRESENTATIONS:
        raise ValueError(f"representation={representation!r} must be one of {REPRESENTATIONS}")
    root.attrs.update({"format": FORMAT, "representation": representation, **attrs})
    if representation == "pixels":
        images, labels = arrays["images"], arrays["labels"]
        _array(root, "images", np.asarray(images, dtype=np.uint8))
        _array(root, "labels", labels.astype(_labels_dtype(len(attrs["classes"]))))
    elif representation == "palette":
        idx, palettes, labels = arrays["indices"], arrays["palettes"], arrays["labels"]
        n, c, h, w = idx.shape
        bits = max(1, int(np.ceil(np.log2(palettes.shape[2]))))
        packed = pack(idx.reshape(n * c, h * w).astype(np.uint8), bits).reshape(n, c, packed_bytes(h * w, bits))
        root.attrs["index_bits"] = bits
        _array(root, "indices", packed)
        _array(root, "palettes", np.asarray(palettes, dtype=np.uint8))
        _array(root, "labels", labels.astype(_labels_dtype(len(attrs["classes"]))))
    else:
        for name in ("U", "V", "basis", "soft_labels"):
            _array(root, name, np.asarray(arrays[name], dtype=np.float16))
    seal(root)


@register_format(FORMAT)
class SyntheticStore:
    """A distilled train set (`synthetic-v1`), read-only: images as pixels, palette indices or low-rank factors,
    with hard or soft labels, within its storage budget."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.root, self.attrs = open_format(self.path, (FORMAT,), f"no synthetic store at {self.path}")
        # Stored uncompressed for exact byte accounting, so without per-chunk crc32c: at most IPC images per
        # class, small enough to hash in full on every open.
        verify_store(self.path)
        with parsing_attrs(self.path):
            self.representation: str = self.attrs["representation"]
            self.method: str = str(self.attrs["method"])
            self.classes: list[str] = list(self.attrs["classes"])
            self._check()

    def _check(self) -> None:
        p, a, root = self.path, self.attrs, self.root
        check(p, self.representation in REPRESENTATIONS,
              f"attr representation={self.representation!r} is not one of {REPRESENTATIONS}")
        size = list(check_image_size(p, a.get("image_size")))
        check_classes(p, a.get("classes"))
        n = a.get("num_images")
        if self.representation == "low_rank":
            rows = root["basis"].shape[0]
            check(p, root["soft_labels"].shape == (rows, len(self.classes)),
                  f"array 'soft_labels' is {root['soft_labels'].shape}, expected ({rows}, {len(self.classes)})")
            return
        labels = root["labels"][:]
        check(p, labels.shape == (n,), f"array 'labels' is {labels.shape}, attr num_images={n!r}")
        check(p, n == 0 or int(labels.max()) < len(self.classes),
              f"array 'labels' holds label {int(labels.max(initial=0))}, attr classes has {len(self.classes)}")
        if self.representation == "pixels":
            check(p, root["images"].shape == (n, *size, 3), f"array 'images' is {root['images'].shape}, "
                  f"expected ({n}, {size[0]}, {size[1]}, 3)")
        else:
            n_, c, k = root["palettes"].shape
            bits = a.get("index_bits")
            check(p, isinstance(bits, int) and 2 ** bits >= k and n_ == n,
                  f"attr index_bits={bits!r} and array 'palettes' {root['palettes'].shape} disagree")
            check(p, root["indices"].shape == (n, c, packed_bytes(size[0] * size[1], bits)),
                  f"array 'indices' is {root['indices'].shape}, expected ({n}, {c}, "
                  f"{packed_bytes(size[0] * size[1], bits)})")

    def describe(self) -> str:
        return f"{self.attrs['num_images']:,} {self.representation} samples ({self.method})"

    @property
    def stored_bytes(self) -> int:
        return array_bytes(self.path)

    @property
    def budget(self) -> int:
        return budget_bytes(int(self.attrs["ipc"]), len(self.classes), tuple(self.attrs["image_size"]))

    def check_budget(self) -> None:
        if self.stored_bytes > self.budget:
            raise StoreError(f"{self.path}: {self.method} stores {self.stored_bytes:,} bytes, over its budget of "
                             f"{self.budget:,} ({self.attrs['ipc']} full-colour images per class)")

    def images_u8(self) -> torch.Tensor:
        """uint8 (N,H,W,3) for the pixel and palette representations."""
        if self.representation == "pixels":
            return torch.from_numpy(self.root["images"][:])
        if self.representation == "palette":
            palettes = self.root["palettes"][:]
            n, c, k = palettes.shape
            h, w = self.attrs["image_size"]
            bits = int(self.attrs["index_bits"])
            idx = unpack(self.root["indices"][:].reshape(n * c, -1), bits, h * w).reshape(n, c, h * w)
            values = np.take_along_axis(palettes, idx.astype(np.int64), axis=2)  # (N,C,HW)
            return torch.from_numpy(values.reshape(n, c, h, w).transpose(0, 2, 3, 1).copy())
        raise StoreError(f"{self.path}: a {self.representation} set has no uint8 images; use decode()")

    def labels(self) -> torch.Tensor:
        """int64 class ids (N,), or float soft labels (N, classes) for low_rank."""
        if self.representation == "low_rank":
            return torch.from_numpy(self.root["soft_labels"][:].astype(np.float32))
        return torch.from_numpy(self.root["labels"][:].astype(np.int64))

    def low_rank_images(self) -> torch.Tensor:
        """float (N,C,H,W) in the experts' input space: U_j @ basis_i @ V_j^T per channel."""
        u = torch.from_numpy(self.root["U"][:].astype(np.float32))
        v = torch.from_numpy(self.root["V"][:].astype(np.float32))
        basis = torch.from_numpy(self.root["basis"][:].astype(np.float32))
        set_of = torch.arange(len(basis)) // (len(basis) // len(u))
        return u[set_of] @ basis @ v[set_of].transpose(-1, -2)
