"""Store formats by name. Every Zarr store a stage writes carries a `format` attr; a store class registers the
format names it reads with `@register_format(...)`, opens its group with `open_format` (the one place that
checks the attr and runs the cheap checks of pipeline/io/verify.py), and `open_store(path)` returns the right class for any store on disk.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import zarr

from pipeline.errors import StoreError
from pipeline.io.verify import open_verified, read_attrs
from pipeline.registry import Registry

FORMATS: Registry[type] = Registry("store format", error=StoreError)
# The module that registers each format, imported on first use (the experts' store lives above io, in distill).
_MODULES = {"dcq-v1": "pipeline.io.dcq_store", "palette-per-image-v1": "pipeline.io.dcq_store",
            "subset-v1": "pipeline.io.subset_store", "synthetic-v1": "pipeline.io.synthetic_store",
            "expert-trajectories-v1": "pipeline.distill.experts", "codec-v1": "pipeline.io.codec_store",
            "patch-vq-v1": "pipeline.io.patch_store", "dcq-context-v1": "pipeline.io.context_store",
            "luma-chroma-vq-v1": "pipeline.io.luma_chroma_store"}


register_format = FORMATS.register


def format_names() -> list[str]:
    return sorted(_MODULES)


def format_module(fmt: str) -> str:
    """The module that reads (and registers) store format `fmt`."""
    if fmt not in _MODULES:
        raise StoreError(f"unknown store format {fmt!r}; known formats: {format_names()}")
    return _MODULES[fmt]


def open_format(path: str | Path, formats: tuple[str, ...], missing: str) -> tuple[zarr.Group, dict]:
    """The store's group and attrs, read-only, after checking that its `format` is one of `formats`. `missing`
    is the message when there is no Zarr group at `path` at all."""
    path = Path(path)
    if not (path / "zarr.json").is_file():
        raise StoreError(missing)
    attrs = read_attrs(path)
    if not isinstance(attrs.get("format"), str) or attrs.get("format") not in formats:
        raise StoreError(f"{path}: not a {' or '.join(formats)} store (format={attrs.get('format')!r})")
    root = open_verified(path)
    return root, dict(root.attrs)


def store_format(path: str | Path, readable: tuple[str, ...] | None = None, role: str = "store") -> str:
    """The `format` attr of the store at `path`; a clear error when there is no store, no format, or (with
    `readable`) a format this reader does not take, e.g. `role="train-set"`."""
    path = Path(path)
    if not (path / "zarr.json").is_file():
        raise StoreError(f"{path} is not a Zarr store (no zarr.json)")
    fmt = read_attrs(path).get("format")
    if fmt is not None and not isinstance(fmt, str):
        raise StoreError(f"{path}: attr format={fmt!r} is not a format name; known formats: {format_names()}")
    if readable is not None and fmt not in readable:
        raise StoreError(f"{path}: unknown {role} format {fmt!r}; readable: {', '.join(map(repr, readable))}")
    if fmt is None:
        raise StoreError(f"{path}: the store has no 'format' attr; known formats: {format_names()}")
    if fmt not in _MODULES:
        raise StoreError(f"{path}: unknown store format {fmt!r}; known formats: {format_names()}")
    return fmt


def open_store(path: str | Path, readable: tuple[str, ...] | None = None, role: str = "store"):
    """The registered store class for the store at `path`, opened (see `store_format` for `readable`)."""
    fmt = store_format(path, readable, role)
    importlib.import_module(format_module(fmt))
    return FORMATS.get(fmt)(path)


def is_prepared_store(path: Path) -> bool:
    return (path / "train" / "images" / "zarr.json").is_file()


def store_params(path: str | Path) -> dict | None:
    """The resolved params a train-set store was made with (attrs only, no pixels); None if it is gone."""
    path = Path(path)
    if not (path / "zarr.json").is_file():
        return None
    return dict(zarr.open_group(str(path), mode="r").attrs.get("params", {}))
