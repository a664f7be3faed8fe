"""The codec stage on real CIFAR-10 images: the set fits DCQ's bytes on disk at q, decodes to exactly what the
codec makes of each image at the chosen quality, trains, and a codec that cannot fit is a clear error."""

import numpy as np
import pytest
import zarr

from pipeline.errors import ParamsError
from pipeline.io import codecs
from pipeline.io.arrays import disk_bytes
from pipeline.io.codec_store import CodecStore
from pipeline.io.train_sets import load_train_set
from pipeline.stages import codec
from tests.conftest import BASE

PARAMS = codec.CodecParams(search_images=64)


@pytest.mark.parametrize("name", ["jpeg", "webp"])
def test_a_codec_store_fits_dcq_bytes_and_decodes_exactly(name, small_run, tmp_path):
    out = tmp_path / f"{name}.zarr"
    result = codec.run(PARAMS, BASE, name, 2, small_run.prepared, small_run.dcq(2), out)
    assert disk_bytes(out) <= disk_bytes(small_run.dcq(2)) == result["target"]
    store = CodecStore(out)
    originals = zarr.open_group(str(small_run.prepared), mode="r")["train/images"][:]
    header, payloads = codecs.encode_set(originals, name, result["quality"])
    expected = np.stack([codecs.decode(p, header) for p in payloads])
    np.testing.assert_array_equal(store.decode(), expected)
    assert (name == "jpeg") == (len(store.header) > 0)  # JPEG's tables are stored once
    train_set = load_train_set(out)
    assert train_set.kind == name and train_set.bits == 2 and len(train_set.labels) == 160
    again = tmp_path / "again.zarr"
    codec.run(PARAMS, BASE, name, 2, small_run.prepared, small_run.dcq(2), again)
    np.testing.assert_array_equal(CodecStore(again).decode(), store.decode())  # deterministic


def test_the_search_finds_the_highest_quality_that_fits():
    sizes = {q: 10 * q for q in range(0, 101)}
    assert codecs.search_quality(sizes.__getitem__, "webp", 555) == 55
    assert codecs.search_quality(sizes.__getitem__, "webp", -1) is None


def test_a_codec_that_cannot_fit_and_a_wrong_q_are_clear_errors(small_run, tmp_path):
    with pytest.raises(ParamsError, match=r"avif at its lowest quality 0 needs about .* over DCQ's .* at q=1"):
        codec.run(PARAMS, BASE, "avif", 1, small_run.prepared, small_run.dcq(1), tmp_path / "a.zarr")
    with pytest.raises(ParamsError, match="holds 1-bit DCQ indices"):
        codec.run(PARAMS, BASE, "jpeg", 2, small_run.prepared, small_run.dcq(1), tmp_path / "j.zarr")
    with pytest.raises(ParamsError, match="'png' is not a codec"):
        codec.run(PARAMS, BASE, "png", 2, small_run.prepared, small_run.dcq(2), tmp_path / "p.zarr")
    assert not list(tmp_path.iterdir())


def test_a_set_encoded_shard_by_shard_is_the_store_encoded_at_once(small_run, tmp_path, monkeypatch):
    """Each task encodes a shard of images into a scratch file: cut into blocks of 7 images (23 tasks, the last
    short), the store is byte for byte the one written from a single block, and the scratch folder is gone."""
    whole = tmp_path / "whole.zarr"
    codec.run(PARAMS, BASE, "jpeg", 2, small_run.prepared, small_run.dcq(2), whole)
    tasks = []
    real_map = codec.map_shards
    monkeypatch.setattr(codec, "map_shards", lambda base, task, n, block, desc: tasks.append(
        len(range(0, n, 7))) or real_map(base, task, n, 7, desc))
    cut = tmp_path / "cut.zarr"
    codec.run(PARAMS, BASE, "jpeg", 2, small_run.prepared, small_run.dcq(2), cut)
    assert tasks and tasks[-1] == 23, tasks
    files = sorted(p.relative_to(whole) for p in whole.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(cut) for p in cut.rglob("*") if p.is_file())
    for name in files:
        assert (whole / name).read_bytes() == (cut / name).read_bytes(), name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.zarr", "whole.zarr"]  # no .cut.zarr.work-* left
