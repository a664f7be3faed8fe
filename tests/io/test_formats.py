"""The store-format registry: `open_store` returns the registered class of every format a stage writes, on real
stores, and names the path for a missing store, a missing or unknown format."""

import json

import pytest
import zarr

from pipeline.errors import StoreError
from pipeline.io import formats
from pipeline.io.formats import format_names, open_store
from tests.conftest import BASE


@pytest.fixture(scope="module")
def stores(small_run, scores_store, expert_store, tmp_path_factory) -> dict:
    """One real store of every registered format, written by the stage that writes it."""
    from pipeline.stages import baseline, distill, prune

    root = tmp_path_factory.mktemp("formats")
    baseline.run(baseline.BaselineParams(), BASE, "median_cut", 1, small_run.prepared, root / "median_cut.zarr")
    prune.run(prune.PruneParams(), BASE, "random", 2, small_run.prepared, None, root / "random.zarr")
    distill.run(distill.DistillParams(), BASE, "random", 1, small_run.prepared, expert_store, root / "syn.zarr")
    return {"dcq-v1": small_run.dcq(1), "palette-per-image-v1": root / "median_cut.zarr",
            "subset-v1": root / "random.zarr", "synthetic-v1": root / "syn.zarr",
            "expert-trajectories-v1": expert_store}


@pytest.mark.parametrize("fmt", format_names())
def test_open_store_returns_the_registered_class(fmt, stores):
    store = open_store(stores[fmt])
    assert store.attrs["format"] == fmt and type(store) is formats._FORMATS[fmt]
    assert store.path == stores[fmt]


@pytest.mark.parametrize("fmt", format_names())
def test_a_store_opened_as_another_format_is_refused_by_name(fmt, stores):
    other = next(f for f in format_names() if formats._FORMATS.get(f) is not formats._FORMATS[fmt])
    with pytest.raises(StoreError, match=rf"{stores[fmt].name}: not a .*{other}|{stores[fmt].name}: not a "):
        formats._FORMATS[other](stores[fmt])


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
