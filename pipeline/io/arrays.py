"""Chunked Zarr (v3) arrays: few, large shard files (DVC hashes every file of a directory output)
and streaming block reads/writes aligned to shards. Every chunk carries a crc32c after compression and is
written even when it equals the fill value, so a missing or damaged chunk is an error, never zeros
(pipeline/io/verify.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterator

import numpy as np
import zarr
from zarr.codecs import Crc32cCodec, ZstdCodec

from pipeline.errors import StoreError
from pipeline.io.verify import open_verified

# ~16 MiB of uint8 32x32 RGB images per shard file; inner chunks stay small for random access.
SHARD_BYTES = 16 * 2**20
CHUNK_BYTES = 256 * 2**10
# ... but at least this many rows per inner chunk: one 224 px image per chunk read at 66 MB/s here, 16 at 148 MB/s
# (zstd and the shard index pay per chunk). At 32 px a chunk already holds 85 images, so nothing changes there.
MIN_CHUNK_ROWS = 16
CHECKSUMMED = (ZstdCodec(level=0), Crc32cCodec())
EVERY_CHUNK = {"write_empty_chunks": True}


def _rows(row_bytes: int, target: int) -> int:
    return max(1, target // max(1, row_bytes))


def create_rows(group: zarr.Group, name: str, shape: tuple[int, ...], dtype, attrs: dict | None = None) -> zarr.Array:
    """An array chunked along its first (row/image) axis only, sharded into ~16 MiB files."""
    row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * np.dtype(dtype).itemsize
    chunk = min(max(shape[0], 1), max(MIN_CHUNK_ROWS, _rows(row_bytes, CHUNK_BYTES)))
    shard = min(max(shape[0], 1), _rows(row_bytes, SHARD_BYTES))
    shard = max(chunk, shard // chunk * chunk)
    arr = group.create_array(
        name, shape=shape, dtype=dtype, chunks=(chunk, *shape[1:]), shards=(shard, *shape[1:]), fill_value=0,
        compressors=CHECKSUMMED, config=EVERY_CHUNK,
    )
    if attrs:
        arr.attrs.update(attrs)
    return arr


def output_name(path: str | Path) -> str:
    """The output a temporary sibling `.NAME.tmp-PID` stands for (pipeline/io/atomic.py), for messages."""
    path = Path(path)
    match = re.match(r"^\.(.+)\.(tmp|work)-\d+(-.*)?$", path.name)
    return str(path.with_name(match.group(1))) if match else str(path)


def finite(data: np.ndarray, store: str | Path, name: str, rows: tuple[int, int] | None = None) -> np.ndarray:
    """`data`, or a StoreError when a float array holds NaN or Inf: such a store is never written or sealed."""
    data = np.asarray(data)
    if data.dtype.kind in "fc" and not np.isfinite(data).all():
        bad = int(data.size - np.isfinite(data).sum())
        where = "" if rows is None else f" rows {rows[0]}-{rows[1]}"
        raise StoreError(f"{output_name(store)}: refusing to write {bad} NaN or infinite values into array "
                         f"{name!r}{where} (a diverged model or a zero std upstream)")
    return data


def create_small(group: zarr.Group, name: str, data: np.ndarray) -> zarr.Array:
    """A small array (palettes, labels, per-cluster numbers) written whole, checksummed like the others; never
    NaN or Inf."""
    data = finite(data, group.store.root if hasattr(group.store, "root") else "store", name)
    return group.create_array(name, data=data, compressors=CHECKSUMMED, config=EVERY_CHUNK)


def open_rows(path: str | Path, name: str) -> zarr.Array:
    """Array `name` of the store being written at `path`, for one task's block write (an executor task opens it
    anew). The write config is not stored with an array, and a re-opened one skips every chunk, and so every
    shard, that equals the fill value: the store would then fail its open check with a missing shard."""
    return zarr.open_group(str(path), mode="r+")[name].with_config(EVERY_CHUNK)


def write_block_size(arr: zarr.Array) -> int:
    """Rows per write so each write fills whole shards (no read-modify-write of a shard)."""
    return arr.shards[0] if arr.shards else arr.chunks[0]


def iter_blocks(n: int, block: int) -> Iterator[tuple[int, int]]:
    for start in range(0, n, block):
        yield start, min(n, start + block)


def take_rows(arr: zarr.Array, rows: np.ndarray) -> np.ndarray:
    """arr[rows] for sorted, distinct row indices, read one inner chunk of rows at a time. zarr's
    get_orthogonal_selection with an index array held ~50x its result in temporaries (9.7 GB of peak for 199 MB of
    224 px images)."""
    rows = np.asarray(rows, dtype=np.int64)
    if rows.size and (np.any(np.diff(rows) <= 0) or rows[0] < 0 or rows[-1] >= arr.shape[0]):
        raise ValueError(f"take_rows needs sorted distinct rows within [0, {arr.shape[0]})")
    out = np.empty((len(rows), *arr.shape[1:]), arr.dtype)
    if not rows.size:
        return out
    step = arr.chunks[0]
    chunk_of = rows // step
    bounds = np.flatnonzero(np.diff(chunk_of)) + 1
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(rows)]):
        first = int(chunk_of[lo]) * step
        out[lo:hi] = arr[first:min(arr.shape[0], first + step)][rows[lo:hi] - first]
    return out


def open_group(path: str | Path, what: str) -> zarr.Group:
    """A stage's input store, read-only, after the cheap checks of pipeline/io/verify.py."""
    path = Path(path)
    if not (path / "zarr.json").is_file():
        raise FileNotFoundError(f"{what}: no Zarr store at {path} (run the stage that writes it first)")
    return open_verified(path)


def array_bytes(path: str | Path) -> int:
    """Bytes of a Zarr store's array data (chunks and shards), without its JSON metadata: what a storage budget
    counts (the metadata is a few hundred bytes per array, the same whatever the data)."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file() and p.name != "zarr.json")


def uncompressed_bytes(path: str | Path) -> int:
    """Bytes of every array in a Zarr group as held in memory (shape x itemsize), whatever its codecs: the
    storage rule for stores whose chunks are compressed, comparable with the uncompressed synthetic stores."""
    group = zarr.open_group(str(path), mode="r")
    return sum(int(a.nbytes) for _, a in group.members(max_depth=None) if isinstance(a, zarr.Array))


def disk_bytes(path: str | Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def write_json(path: str | Path, obj) -> None:
    """A JSON output (a mapping), marked as dcq's (`written_by: dcq`) so that a rerun may replace it and nothing
    else is ever replaced (pipeline/io/atomic.py)."""
    from pipeline.io.atomic import MARKER, MARKER_KEY, atomic_output

    if not isinstance(obj, dict):
        raise TypeError(f"write_json writes a mapping, got {type(obj).__name__}")
    with atomic_output(path) as tmp:
        Path(tmp).write_text(json.dumps({**obj, MARKER_KEY: MARKER}, indent=2, sort_keys=True) + "\n")
