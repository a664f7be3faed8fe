"""The store-format registry: `open_store` returns the registered class of every format a stage writes, on real
stores, and names the path for a missing store, a missing or unknown format."""

import json

import pytest
import zarr

from pipeline.errors import StoreError
from pipeline.io import formats
from pipeline.io.formats import format_names, open_store


@pytest.fixture(scope="module")
def stores(format_stores) -> dict:
    return format_stores


@pytest.mark.parametrize("fmt", format_names())
def test_open_store_returns_the_registered_class(fmt, stores):
    store = open_store(stores[fmt])
    assert store.attrs["format"] == fmt and type(store) is formats.FORMATS.get(fmt)
    assert store.path == stores[fmt]


@pytest.mark.parametrize("fmt", format_names())
def test_a_store_opened_as_another_format_is_refused_by_name(fmt, stores):
    other = next(f for f in format_names() if formats.FORMATS.get(f) is not formats.FORMATS.get(fmt))
    with pytest.raises(StoreError, match=rf"{stores[fmt].name}: not a .*{other}|{stores[fmt].name}: not a "):
        formats.FORMATS.get(other)(stores[fmt])


def test_missing_unknown_and_absent_formats_are_clear_errors(stores, tmp_path):
    with pytest.raises(StoreError, match="is not a Zarr store"):
        open_store(tmp_path / "nothing.zarr")
    for attrs, message in (({"format": "dcq-v9"}, "unknown store format 'dcq-v9'"), ({}, "has no 'format' attr")):
        path = tmp_path / f"bad{len(attrs)}.zarr"
        zarr.open_group(str(path), mode="w").attrs.update(attrs)
        with pytest.raises(StoreError, match=message):
            open_store(path)
    assert json.loads((stores["dcq-v1"] / "zarr.json").read_text())["attributes"]["format"] == "dcq-v1"


def test_a_format_cannot_be_registered_twice():
    with pytest.raises(ValueError, match="registered twice"):
        formats.register_format("dcq-v1")(type("Other", (), {}))


@pytest.mark.parametrize("fmt", format_names())
def test_every_format_is_rewritten_byte_for_byte(fmt, stores, small_run, expert_store, tmp_path):
    """The same stage, params and seed write the same bytes, store metadata included: DVC's hashes hold on a
    rerun (on the same kind of CPU)."""
    from tests.conftest import write_format_store

    again = write_format_store(fmt, small_run, expert_store, tmp_path / "again")

    def files(root):
        return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())

    assert files(stores[fmt]) == files(again) and files(again)
    for rel in files(again):
        assert (stores[fmt] / rel).read_bytes() == (again / rel).read_bytes(), f"{fmt}: {rel}"
