"""The context_code stage on real CIFAR-10 DCQ stores: a store that decodes to exactly the DCQ store's indices and
images in fewer bytes, read by any row range, the same bytes on a rerun; it trains like any train set; bad input
is refused with one line naming it."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.config import parse_section
from pipeline.errors import ParamsError, StoreError
from pipeline.io.arrays import disk_bytes
from pipeline.io.context_store import ContextStore
from pipeline.io.dcq_store import DCQStore
from pipeline.stages import context_code

PARAMS = context_code.ContextCodeParams(block_images=64)


@pytest.mark.parametrize("q", [1, 2])
def test_store_decodes_to_the_dcq_store_exactly_in_fewer_bytes(small_run, tmp_path, q):
    out = tmp_path / f"q{q}.zarr"
    result = context_code.run(PARAMS, small_run.dcq(q), out)
    store, source = ContextStore(out), DCQStore(small_run.dcq(q))
    np.testing.assert_array_equal(store.indices(), source.indices())
    np.testing.assert_array_equal(store.decode(), source.decode())
    np.testing.assert_array_equal(store.labels, source.labels)
    assert store.bits == q and store.attrs["method"] == "dcq_context" and store.neighbours == result["neighbours"]
    assert store.stored_bytes < disk_bytes(small_run.dcq(q))
    # its lineage is the DCQ store's plus this stage's point
    assert store.attrs["params"] == source.attrs["params"] | {"context_code": {
        "max_neighbours": 6, "cluster_context": True, "block_images": 64}}


def test_any_row_range_reads_the_same_rows(small_run, tmp_path):
    out = tmp_path / "q2.zarr"
    context_code.run(PARAMS, small_run.dcq(2), out)
    whole = ContextStore(out).decode()
    for start, stop in ((0, 1), (63, 65), (100, 160), (10, 150), (159, 160), (5, 5)):
        np.testing.assert_array_equal(ContextStore(out).decode(start, stop), whole[start:stop])


def test_a_rerun_writes_the_same_bytes(small_run, tmp_path):
    a, b = tmp_path / "a.zarr", tmp_path / "b.zarr"
    context_code.run(PARAMS, small_run.dcq(1), a)
    context_code.run(PARAMS, small_run.dcq(1), b)

    def files(root):
        return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    assert files(a) == files(b)


def test_it_trains_like_any_train_set(small_run, tmp_path):
    from pipeline.stages import train
    from pipeline.train.engine import Recipe
    from tests.conftest import BASE

    store = tmp_path / "q1.zarr"
    context_code.run(PARAMS, small_run.dcq(1), store)
    params = train.TrainParams(recipe=Recipe(epochs=1, batch_size=64, lr=0.05, compile=False))
    record = train.run(params, BASE, "dcq_context", 1, "convnetd3", 0, store, small_run.prepared,
                       tmp_path / "m.pt", tmp_path / "r.json")
    assert record["method"] == "dcq_context" and record["bits"] == 1 and record["train_images"] == 160
    assert record["train_bytes"] == ContextStore(store).stored_bytes


def test_bad_input_is_refused_naming_it(small_run, tmp_path, format_stores):
    with pytest.raises(ParamsError, match="max_neighbours=7"):
        parse_section(context_code.ContextCodeParams, {"max_neighbours": 7}, "context_code")
    with pytest.raises(ParamsError, match="block_images=0"):
        parse_section(context_code.ContextCodeParams, {"block_images": 0}, "context_code")
    per_image = format_stores["palette-per-image-v1"]
    with pytest.raises(ParamsError, match="per-image palette store"):
        context_code.run(PARAMS, per_image, tmp_path / "never.zarr")
    with pytest.raises(StoreError, match="not a dcq-v1"):
        context_code.run(PARAMS, format_stores["codec-v1"], tmp_path / "never.zarr")
    assert not (tmp_path / "never.zarr").exists()
