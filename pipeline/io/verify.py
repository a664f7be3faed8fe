"""Stores are verified, not trusted: every Zarr store a stage writes is sealed with a manifest, and every reader
checks it on open and checks each shard's bytes as it reads them.

The manifest (root attr `manifest`, version 2) holds:
- `metadata`: the sha256 of every node's `zarr.json` (the root's without the manifest itself), so every attr of
  the store and of its arrays, and each array's layout (chunk key encoding, codecs, fill value), are vouched for;
- `arrays`: each array's shape, dtype and the sha256 of its content (C order, row blocks);
- `files`: the sha256 of every chunk or shard file.
Arrays are written with a crc32c checksum after compression and with every chunk written, even an empty one
(pipeline/io/arrays.py), so:
- `check_store` (on every open, cheap): the manifest is there; every node's metadata has the hash it was sealed
  with and the layout dcq writes; each array it lists exists with that shape and dtype and no other array does;
  every chunk is present: each shard file exists, is long enough, its index passes its crc32c and points at every
  inner chunk inside the file. It reads only metadata and shard indexes.
- `open_verified` (every reader): the group after `check_store`, on a store that hashes each chunk or shard file
  the first time it is read and refuses one whose hash differs from the manifest's (a shard copied in from another
  store passes its crc32c, not this).
- `verify_store` (`dcq verify`): those checks, then every chunk is decoded and every array hashed.
A mismatch is a StoreError naming the store, the array and the chunk or shard.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import struct
import threading
from collections import OrderedDict
from collections.abc import Iterator
from itertools import product
from pathlib import Path

import google_crc32c
import numpy as np
import zarr
from zarr.abc.store import OffsetByteRequest, RangeByteRequest, SuffixByteRequest
from zarr.storage import LocalStore

from pipeline.errors import DcqError, StoreError

MANIFEST = "manifest"
MANIFEST_VERSION = 2
_MISSING = 2**64 - 1  # the sharding codec's marker for an inner chunk that was never written
_NODE_META = "zarr.json"


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


def _store_root(path: str | Path | zarr.Group) -> Path:
    if isinstance(path, zarr.Group):
        return Path(path.store.root) / path.path if path.path else Path(path.store.root)
    return Path(path)


def _node_names(root: zarr.Group) -> list[str]:
    return sorted(["", *(name for name, _ in root.members(max_depth=None))])


def _meta_key(node: str) -> str:
    return f"{node}/{_NODE_META}" if node else _NODE_META


def _read_meta(path: Path, node: str) -> dict:
    file = path / _meta_key(node)
    try:
        meta = json.loads(file.read_bytes())
    except (OSError, ValueError) as exc:
        raise StoreError(f"{path}: {_meta_key(node)} is unreadable ({type(exc).__name__}: {str(exc)[:100]})") from None
    if not isinstance(meta, dict):
        raise StoreError(f"{path}: {_meta_key(node)} is not a JSON object")
    return meta


def _meta_hash(meta: dict, is_root: bool) -> str:
    if is_root:
        meta = {**meta, "attributes": {k: v for k, v in (meta.get("attributes") or {}).items() if k != MANIFEST}}
    return hashlib.sha256(json.dumps(meta, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _file_hash(file: Path) -> str:
    return hashlib.sha256(file.read_bytes()).hexdigest()


def seal(path: str | Path | zarr.Group) -> dict:
    """Write the manifest of the store at `path` (or of an open, writable group) into its attrs: the last step
    of writing it."""
    root = path if isinstance(path, zarr.Group) else zarr.open_group(str(path), mode="r+")
    store_path = _store_root(path)
    found = arrays(root)
    files = {file.relative_to(store_path).as_posix(): _file_hash(file)  # every chunk or shard file of an array
             for name in sorted(found) for file in sorted((store_path / name).rglob("*"))
             if file.is_file() and file.name != _NODE_META}
    manifest = {
        "version": MANIFEST_VERSION,
        "arrays": {name: {"shape": list(arr.shape), "dtype": str(arr.dtype), "sha256": content_hash(arr)}
                   for name, arr in sorted(found.items())},
        "metadata": {node: _meta_hash(_read_meta(store_path, node), node == "") for node in _node_names(root)},
        "files": files,
    }
    root.attrs[MANIFEST] = manifest
    return manifest


def _store_name(key: str) -> tuple[str, str]:
    """(array, chunk or shard index) of a file key: `train/images/c/3/0/0/0` -> (`train/images`, `3.0.0.0`)."""
    array, sep, chunk = key.rpartition("/c/")
    if not sep:  # a 0-d array's one chunk: `NAME/c`
        return key.rsplit("/", 1)[0], "c"
    return array, chunk.replace("/", ".")


class VerifyingStore(LocalStore):
    """A read-only local store that hashes each chunk or shard file the first time a read touches it and refuses one
    whose sha256 differs from the manifest's. The last few files read are kept, so the range reads that follow
    (a shard's index, then its inner chunks) cost no second read."""

    KEEP = 2

    def __init__(self, root: str | Path, files: dict[str, str], label: str | None = None):
        super().__init__(root, read_only=True)
        self._files, self._label = files, label or str(root)
        self._lock, self._recent, self._checked = threading.Lock(), OrderedDict(), set()

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_lock"], state["_recent"], state["_checked"] = None, OrderedDict(), set()
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, VerifyingStore) and self.root == other.root and self._files == other._files

    __hash__ = None

    def _verified_bytes(self, key: str) -> bytes | None:
        with self._lock:
            data = self._recent.get(key)
            if data is not None:
                self._recent.move_to_end(key)
                return data
            try:
                data = (self.root / key).read_bytes()
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                return None
            if key not in self._checked:
                if hashlib.sha256(data).hexdigest() != self._files[key]:
                    array, chunk = _store_name(key)
                    raise StoreError(f"{self._label}: array {array!r}: {'shard' if '/c/' in key else 'chunk'} "
                                     f"{chunk} differs from the manifest (damaged, or copied from another store)")
                self._checked.add(key)
            self._recent[key] = data
            while len(self._recent) > self.KEEP:
                self._recent.popitem(last=False)
            return data

    async def get(self, key, prototype=None, byte_range=None):
        if key not in self._files:  # metadata: hashed and checked on open
            return await super().get(key, prototype, byte_range)
        if prototype is None:
            from zarr.core.buffer import default_buffer_prototype

            prototype = default_buffer_prototype()
        data = self._verified_bytes(key)
        if data is None:
            return None
        if byte_range is None:
            part = data
        elif isinstance(byte_range, RangeByteRequest):
            part = data[byte_range.start:byte_range.end]
        elif isinstance(byte_range, OffsetByteRequest):
            part = data[byte_range.offset:]
        elif isinstance(byte_range, SuffixByteRequest):
            part = data[max(0, len(data) - byte_range.suffix):]
        else:
            raise TypeError(f"unexpected byte range {byte_range!r}")
        return prototype.buffer.from_bytes(part)

    async def get_partial_values(self, prototype, key_ranges):
        return [await self.get(key, prototype, byte_range) for key, byte_range in key_ranges]


def open_verified(path: str | Path, checked: bool = True) -> zarr.Group:
    """The store at `path`, read-only, every chunk or shard hashed against the manifest as it is read. `checked`:
    run the open checks first (an executor task skips them: its stage ran them once)."""
    path = Path(path)
    if not (path / _NODE_META).is_file():
        raise StoreError(f"{path} is not a Zarr store (no zarr.json)")
    manifest = check_store(path) if checked else _manifest(path, read_attrs(path))
    return zarr.open_group(store=VerifyingStore(path, manifest["files"], str(path)), mode="r")


@contextlib.contextmanager
def reading(path: str | Path, what: str = "store") -> Iterator[None]:
    """Turn a chunk that fails to decode (crc32c mismatch, truncated or garbled bytes) into a StoreError."""
    try:
        yield
    except DcqError:
        raise
    except (ValueError, RuntimeError, OSError) as exc:  # wraps reads of chunk bytes only
        text = (str(exc).splitlines() or [type(exc).__name__])[0][:120]
        culprit = _first_bad_file(Path(path))
        where = "a chunk" if culprit is None else \
            f"array {culprit[0]!r}: {'shard' if culprit[2] else 'chunk'} {culprit[1]}"
        raise StoreError(f"{what} {path}: {where} is corrupt or truncated ({text}); rebuild the store with the "
                         "stage that wrote it") from None


def _first_bad_file(path: Path) -> tuple[str, str, bool] | None:
    """(array, chunk index, is a shard) of the first chunk file whose bytes differ from the manifest's hash (or
    that is gone); None when the store has no manifest to compare with or every file matches. Error path only."""
    try:
        files = _manifest(path, read_attrs(path))["files"]
    except (DcqError, OSError, ValueError):
        return None
    for key, digest in sorted(files.items()):
        file = path / key
        if not file.is_file() or _file_hash(file) != digest:
            array, chunk = _store_name(key)
            return array, chunk, "/c/" in key and _is_sharded(path, array)
    return None


def _is_sharded(path: Path, array: str) -> bool:
    try:
        meta = json.loads((path / array / _NODE_META).read_text())
    except (OSError, ValueError):
        return False
    return any(c.get("name") == "sharding_indexed" for c in meta.get("codecs", []) if isinstance(c, dict))


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


def read_attrs(path: str | Path) -> dict:
    """The root attrs of the store at `path`, read from its zarr.json without trusting it (a StoreError naming the
    store when the file is missing, not JSON or not a group's metadata)."""
    path = Path(path)
    if not (path / _NODE_META).is_file():
        raise StoreError(f"{path} is not a Zarr store (no zarr.json)")
    return _attrs(path, _read_meta(path, ""))


def _attrs(path: Path, root_meta: dict) -> dict:
    attrs = root_meta.get("attributes", {})
    if not isinstance(attrs, dict):
        raise StoreError(f"{path}: zarr.json's attributes are not a mapping")
    return attrs


def _same_names(path: Path, what: str, found, listed) -> None:
    if sorted(found) != sorted(listed):
        missing, extra = sorted(set(listed) - set(found)), sorted(set(found) - set(listed))
        raise StoreError(f"{path}: {what} differ from the manifest (missing {missing}, unexpected {extra})")


def _manifest(path: Path, attrs: dict) -> dict:
    manifest = attrs.get(MANIFEST)
    if not isinstance(manifest, dict):
        raise StoreError(f"{path}: no manifest: not a sealed dcq store (rerun the stage that writes it)")
    if manifest.get("version") != MANIFEST_VERSION:
        raise StoreError(f"{path}: sealed by an older dcq (no shard hashes in its manifest); rerun the stage that "
                         "writes it")
    if not all(isinstance(manifest.get(k), dict) for k in ("arrays", "metadata", "files")) \
            or not all(isinstance(v, dict) for v in manifest["arrays"].values()) \
            or not all(isinstance(v, str) for k in ("metadata", "files") for v in manifest[k].values()):
        raise StoreError(f"{path}: malformed manifest (needs arrays, metadata and files)")
    return manifest


_LAYOUT = {"chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
           "storage_transformers": []}


def _check_layout(path: Path, name: str, meta: dict) -> None:
    """The array layout dcq's writers write (pipeline/io/arrays.py): anything else would make zarr read chunks
    from other files, or fill what it cannot find."""
    for key, want in _LAYOUT.items():
        if meta.get(key, want) != want:
            raise StoreError(f"{path}: array {name!r}: {key} is {meta.get(key)!r}, dcq writes {want!r}")
    if meta.get("fill_value") not in (0, 0.0, False):
        raise StoreError(f"{path}: array {name!r}: fill_value is {meta.get('fill_value')!r}, dcq writes 0")
    codecs = meta.get("codecs") or []
    sharded = [c for c in codecs if isinstance(c, dict) and c.get("name") == "sharding_indexed"]
    index_codecs = (sharded[0].get("configuration") or {}).get("index_codecs") if sharded else None
    if sharded and not (isinstance(index_codecs, list) and index_codecs and index_codecs[-1].get("name") == "crc32c"):
        raise StoreError(f"{path}: array {name!r}: its shard index has no crc32c checksum (not dcq's layout)")


def check_store(path: str | Path, root: zarr.Group | None = None) -> dict:
    """The cheap checks (see the module docstring); returns the manifest."""
    path = Path(path)
    root_meta = _read_meta(path, "")
    manifest = _manifest(path, _attrs(path, root_meta))
    try:
        root = zarr.open_group(str(path), mode="r") if root is None else root
        nodes = _node_names(root)
        found = arrays(root)
    except DcqError:
        raise
    except Exception as exc:  # zarr parsing metadata we did not vouch for yet: any failure is the file's fault
        raise StoreError(f"{path}: unreadable metadata ({type(exc).__name__}: {str(exc)[:100]})") from None
    _same_names(path, "nodes", nodes, manifest["metadata"])
    for node in nodes:
        meta = root_meta if node == "" else _read_meta(path, node)
        if _meta_hash(meta, node == "") != manifest["metadata"][node]:
            what = "the store's attrs or metadata" if node == "" else f"{node!r}: its attrs or metadata"
            raise StoreError(f"{path}: {what} differ from the manifest ({_meta_key(node)} was changed)")
        if meta.get("node_type") == "array":
            _check_layout(path, node, meta)
    _same_names(path, "arrays", found, manifest["arrays"])
    for name, arr in found.items():
        entry = manifest["arrays"][name]
        if list(arr.shape) != list(entry.get("shape", [])) or str(arr.dtype) != entry.get("dtype"):
            raise StoreError(f"{path}: array {name!r} is {list(arr.shape)} {arr.dtype}, the manifest says "
                             f"{entry.get('shape')} {entry.get('dtype')}")
        _check_chunks(path, name, arr)
    return manifest


def verify_store(path: str | Path) -> dict:
    """Every check, including each file's and each array's content hash; returns {array: rows} on success."""
    path = Path(path)
    if not (path / _NODE_META).is_file():
        raise StoreError(f"{path} is not a Zarr store (no zarr.json)")
    manifest = check_store(path)
    root = open_verified(path, checked=False)
    checked = {}
    for name, arr in sorted(arrays(root).items()):
        with reading(path):
            digest = content_hash(arr)
        if digest != manifest["arrays"][name].get("sha256"):
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
