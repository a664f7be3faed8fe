"""Every train-set variant reads into the same shape, with exactly the pixels its store rebuilds."""

import numpy as np
import pytest
import zarr

from pipeline.errors import StoreError
from pipeline.io.dcq_store import DCQStore
from pipeline.io.train_sets import load_train_set


def test_dcq_store_decodes_to_exactly_its_stored_images(small_run):
    store = DCQStore(small_run.dcq(2))
    ts = load_train_set(small_run.dcq(2))
    assert ts.kind == "dcq" and ts.bits == 2
    assert ts.images.dtype.is_floating_point is False and ts.images.shape == (160, 32, 32, 3)
    assert np.array_equal(ts.images.numpy(), store.decode())
    assert np.array_equal(ts.labels.numpy(), store.labels)
    # every pixel is one of its cluster's 4 palette colours
    for i in range(0, 160, 37):
        colours = {tuple(c) for c in ts.images[i].reshape(-1, 3).tolist()}
        assert colours <= {tuple(c) for c in store.palettes[store.clusters[i]].tolist()}
    assert ts.stored_bytes == store.summary()["bytes_on_disk"]
    assert ts.raw_bytes == 160 * 32 * 32 * 3 and 0 < ts.compression_ratio < 2 / 24 + 0.02


def test_prepared_store_is_the_full_colour_train_split(small_run):
    ts = load_train_set(small_run.prepared)
    root = zarr.open_group(str(small_run.prepared), mode="r")
    assert ts.kind == "full" and ts.bits is None
    assert np.array_equal(ts.images.numpy(), root["train/images"][:])
    assert ts.params["prepare"]["train_per_class"] == 16


def test_unknown_or_missing_train_sets_are_clear_errors(small_run, tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        load_train_set(tmp_path / "nope.zarr")
    (tmp_path / "plain").mkdir()
    with pytest.raises(StoreError, match="not a Zarr store"):
        load_train_set(tmp_path / "plain")
    zarr.open_group(str(tmp_path / "other.zarr"), mode="w").attrs["format"] = "mystery-v9"
    with pytest.raises(StoreError, match="unknown train-set format 'mystery-v9'"):
        load_train_set(tmp_path / "other.zarr")


def test_train_set_formats_are_the_readers_own_names():
    """train_sets names the formats without importing their readers; the names must be the readers' own."""
    from pipeline.io import codec_store, dcq_store, formats, subset_store, train_sets

    assert train_sets.INDEXED_FORMATS == dcq_store.FORMATS
    assert train_sets.SUBSET_FORMAT == subset_store.FORMAT and train_sets.CODEC_FORMAT == codec_store.FORMAT
    assert set(train_sets.TRAIN_SET_FORMATS) <= set(formats.format_names())
