"""Stores are verified, not trusted: every Zarr store a stage writes is sealed with a manifest, and every reader
checks it on open.

The manifest (root attr `manifest`) lists each array: shape, dtype and the sha256 of its content (C order, row
blocks). Arrays are written with a crc32c checksum after compression and with every chunk written, even an empty
one (pipeline/io/arrays.py), so:
- `check_store` (on every open, cheap): the manifest is there; each array it lists exists with that shape and
  dtype and no other array does; every chunk is present: each shard file exists, is long enough, its index passes
  its crc32c and points at every inner chunk inside the file. It reads only the shard indexes.
- `verify_store` (`dcq verify`): those checks, then every chunk is decoded (crc32c) and hashed against the manifest.
A mismatch is a StoreError naming the store, the array and what is wrong.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import struct
from collections.abc import Iterator
from itertools import product
from pathlib import Path

import google_crc32c
import numpy as np
import zarr

from pipeline.errors import DcqError, StoreError

MANIFEST = "manifest"
_MISSING = 2**64 - 1  # the sharding codec's marker for an inner chunk that was never written


def arrays(root: zarr.Group) -> dict[str, zarr.Array]:
    return {name: arr for name, arr in root.members(max_depth=None) if isinstance(arr, zarr.Array)}


def _row_blocks(arr: zarr.Array) -> Iterator[np.ndarray]:
    if arr.ndim == 0:
        yield np.asarray(arr[()])
        return
    step = arr.shards[0] if arr.shards else arr.chunks[0]
    for start in range(0, arr.shape[0], max(1, step)):
        yield arr[start:start + step]


def content_hash(arr: zarr.Array) -> str:
    digest = hashlib.sha256()
    for block in _row_blocks(arr):
        digest.update(np.ascontiguousarray(block).tobytes())
    return digest.hexdigest()


def seal(path: str | Path | zarr.Group) -> dict:
    """Write the manifest of the store at `path` (or of an open, writable group) into its attrs: the last step
    of writing it."""
    root = path if isinstance(path, zarr.Group) else zarr.open_group(str(path), mode="r+")
    manifest = {name: {"shape": list(arr.shape), "dtype": str(arr.dtype), "sha256": content_hash(arr)}
                for name, arr in sorted(arrays(root).items())}
    root.attrs[MANIFEST] = manifest
    return manifest


@contextlib.contextmanager
def reading(path: str | Path, what: str = "store") -> Iterator[None]:
    """Turn a chunk that fails to decode (crc32c mismatch, truncated or garbled bytes) into a StoreError."""
    try:
        yield
    except DcqError:
        raise
    except (ValueError, RuntimeError, OSError) as exc:  # wraps reads of chunk bytes only
        text = (str(exc).splitlines() or [type(exc).__name__])[0][:120]
        raise StoreError(f"{what} {path}: a chunk is corrupt or truncated ({text}); run `dcq verify {path}`") from None


def _chunk_keys(arr: zarr.Array, grid_shape: tuple[int, ...]) -> Iterator[str]:
    for idx in product(*(range(n) for n in grid_shape)):
        yield "/".join(["c", *map(str, idx)]) if arr.ndim else "c"


def _check_chunks(path: Path, name: str, arr: zarr.Array) -> None:
    base = path / name
    if arr.shards:
        grid = tuple(math.ceil(s / c) for s, c in zip(arr.shape, arr.shards))
        per_shard = tuple(s // c for s, c in zip(arr.shards, arr.chunks))
        index_bytes = 16 * math.prod(per_shard) + 4
        for shard_idx, key in zip(product(*(range(n) for n in grid)), _chunk_keys(arr, grid)):
            shard = base / key
            if not shard.is_file():
                raise StoreError(f"{path}: array {name!r}: shard {key} is missing")
            size = shard.stat().st_size
            if size < index_bytes:
                raise StoreError(f"{path}: array {name!r}: shard {key} is truncated ({size} bytes)")
            with shard.open("rb") as f:
                f.seek(size - index_bytes)
                raw = f.read(index_bytes)
            if struct.pack("<I", google_crc32c.value(raw[:-4])) != raw[-4:]:
                raise StoreError(f"{path}: array {name!r}: shard {key} is truncated or corrupt (index checksum)")
            index = np.frombuffer(raw[:-4], "<u8").reshape(*per_shard, 2)
            # inner chunks past the array's edge (in the last shard along an axis) are never written
            inside = np.ones(per_shard, bool)
            for axis, (i, n, c, extent) in enumerate(zip(shard_idx, per_shard, arr.chunks, arr.shape)):
                first = i * n
                valid = (np.arange(first, first + n) * c) < extent
                inside &= valid.reshape([-1 if a == axis else 1 for a in range(len(per_shard))])
            offsets, lengths = index[..., 0][inside], index[..., 1][inside]
            if (offsets == _MISSING).any():
                raise StoreError(f"{path}: array {name!r}: shard {key} lacks {int((offsets == _MISSING).sum())} "
                                 "of its chunks")
            if (offsets + lengths > size - index_bytes).any():
                raise StoreError(f"{path}: array {name!r}: shard {key} is truncated (a chunk ends past its data)")
    else:
        grid = tuple(math.ceil(s / c) for s, c in zip(arr.shape, arr.chunks))
        raw_bytes = None if arr.compressors else math.prod(arr.chunks) * arr.dtype.itemsize  # uncompressed: exact
        for key in _chunk_keys(arr, grid):
            if math.prod(grid) and not (base / key).is_file():
                raise StoreError(f"{path}: array {name!r}: chunk {key} is missing")
            if math.prod(grid) and raw_bytes is not None and (base / key).stat().st_size != raw_bytes:
                raise StoreError(f"{path}: array {name!r}: chunk {key} is {(base / key).stat().st_size} bytes, "
                                 f"{raw_bytes} expected (truncated)")


def check_store(path: str | Path, root: zarr.Group | None = None) -> dict:
    """The cheap checks (see the module docstring); returns the manifest."""
    path = Path(path)
    root = zarr.open_group(str(path), mode="r") if root is None else root
    manifest = root.attrs.get(MANIFEST)
    if not isinstance(manifest, dict):
        raise StoreError(f"{path}: no manifest: not a sealed dcq store (rerun the stage that writes it)")
    found = arrays(root)
    if sorted(found) != sorted(manifest):
        missing, extra = sorted(set(manifest) - set(found)), sorted(set(found) - set(manifest))
        raise StoreError(f"{path}: arrays differ from the manifest (missing {missing}, unexpected {extra})")
    for name, arr in found.items():
        entry = manifest[name]
        if list(arr.shape) != list(entry.get("shape", [])) or str(arr.dtype) != entry.get("dtype"):
            raise StoreError(f"{path}: array {name!r} is {list(arr.shape)} {arr.dtype}, the manifest says "
                             f"{entry.get('shape')} {entry.get('dtype')}")
        _check_chunks(path, name, arr)
    return manifest


def verify_store(path: str | Path) -> dict:
    """Every check, including each array's content hash; returns {array: rows} on success."""
    path = Path(path)
    if not (path / "zarr.json").is_file():
        raise StoreError(f"{path} is not a Zarr store (no zarr.json)")
    root = zarr.open_group(str(path), mode="r")
    manifest = check_store(path, root)
    checked = {}
    for name, arr in sorted(arrays(root).items()):
        with reading(path):
            digest = content_hash(arr)
        if digest != manifest[name].get("sha256"):
            raise StoreError(f"{path}: array {name!r}: content hash differs from the manifest (corrupt data)")
        checked[name] = int(arr.shape[0]) if arr.ndim else 1
    return checked


def check(path: str | Path, ok: bool, message: str) -> None:
    """A semantic check of a store's arrays and attrs (format readers): a StoreError naming the store."""
    if not ok:
        raise StoreError(f"{path}: {message}")


@contextlib.contextmanager
def parsing_attrs(path: str | Path) -> Iterator[None]:
    """Attrs of the wrong type or shape while a reader parses them: a StoreError naming the store, not a
    KeyError or TypeError from deep inside."""
    try:
        yield
    except DcqError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise StoreError(f"{path}: malformed attrs ({type(exc).__name__}: {str(exc)[:120]})") from None


def check_image_size(path: str | Path, size: object) -> tuple[int, int]:
    """The `image_size` attr of a store of images: [H, W], two positive integers."""
    check(path, isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size),
          f"attr image_size={size!r} must be [H, W], two positive integers")
    return size[0], size[1]


def check_classes(path: str | Path, classes: object) -> list[str]:
    """The `classes` attr: a non-empty list of class names."""
    check(path, isinstance(classes, list) and len(classes) > 0 and all(isinstance(c, str) for c in classes),
          f"attr classes={classes!r} must be a non-empty list of names")
    return list(classes)
