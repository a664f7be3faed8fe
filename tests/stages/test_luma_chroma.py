"""The luma_chroma stage on real CIFAR-10: a store of luma and chroma codes that decodes to every train image at its
size, with its labels, deterministically; it trains like any other train set; bad params name the key."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import zarr

from pipeline.config import parse_section
from pipeline.errors import ParamsError
from pipeline.io.luma_chroma_store import LumaChromaStore
from pipeline.stages import luma_chroma
from tests.conftest import BASE

POINT = {"luma_patch": [4, 4], "luma_bits": 6, "chroma_factor": 4, "chroma_patch": [2, 2], "chroma_bits": 5}
PARAMS = luma_chroma.LumaChromaParams(bits=(1, 2), points={1: POINT, 2: POINT | {"luma_patch": [4, 2]}},
                                      sample_vectors=3000, iterations=5)


def test_store_decodes_every_train_image_with_its_label(small_run, tmp_path):
    out = tmp_path / "q2.zarr"
    result = luma_chroma.run(PARAMS, BASE, 2, small_run.prepared, out)
    store = LumaChromaStore(out)
    prep = zarr.open_group(str(small_run.prepared), mode="r")
    originals, labels = prep["train/images"][:], prep["train/labels"][:]
    assert result["images"] == len(store) == len(originals)
    decoded = store.decode()
    assert decoded.shape == originals.shape and decoded.dtype == np.uint8
    np.testing.assert_array_equal(store.labels, labels)
    np.testing.assert_array_equal(store.decode(17, 90), decoded[17:90])
    assert store.root["luma_codes"].shape == (len(store), 128 * 6 // 8)  # 4x2 luma patches, 6 bits
    assert store.root["chroma_codes"].shape == (len(store), (16 * 5 + 7) // 8)  # 8x8 chroma grid, 2x2 patches
    err = np.abs(decoded.astype(int) - originals).mean()
    assert 1 < err < np.abs(originals.astype(int) - originals.mean()).mean() / 2
    assert store.attrs["method"] == "luma_chroma" and store.attrs["bits"] == 2
    assert store.attrs["params"]["luma_chroma"] == POINT | {"luma_patch": [4, 2], "sample_vectors": [3200, 3000],
                                                            "iterations": 5}


def test_a_rerun_writes_the_same_store_whatever_the_other_points_say(small_run, tmp_path):
    a, b = tmp_path / "a.zarr", tmp_path / "b.zarr"
    luma_chroma.run(PARAMS, BASE, 1, small_run.prepared, a)
    luma_chroma.run(replace(PARAMS, points={1: POINT, 2: POINT | {"luma_bits": 9}}), BASE, 1, small_run.prepared, b)

    def files(root):
        return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    assert files(a) == files(b)


def test_it_trains_like_any_train_set(small_run, tmp_path):
    from pipeline.stages import train
    from pipeline.train.engine import Recipe

    store = tmp_path / "q1.zarr"
    luma_chroma.run(PARAMS, BASE, 1, small_run.prepared, store)
    params = train.TrainParams(recipe=Recipe(epochs=1, batch_size=64, lr=0.05, compile=False))
    record = train.run(params, BASE, "luma_chroma", 1, "convnetd3", 0, store, small_run.prepared,
                       tmp_path / "m.pt", tmp_path / "r.json")
    assert record["method"] == "luma_chroma" and record["bits"] == 1 and record["train_images"] == 160
    assert record["train_bytes"] == LumaChromaStore(store).stored_bytes


def test_params_name_the_bad_key(small_run, tmp_path):
    def parse(points, bits=(1,)):
        return parse_section(luma_chroma.LumaChromaParams, {"bits": list(bits), "points": points}, "luma_chroma")

    with pytest.raises(ParamsError, match="bits 4 needs an entry in points"):
        parse({1: POINT}, bits=(4,))
    with pytest.raises(ParamsError, match=r"points\[1\] must have exactly the keys"):
        parse({1: POINT | {"colour": 1}})
    with pytest.raises(ParamsError, match=r"points\[1\].luma_bits=17"):
        parse({1: POINT | {"luma_bits": 17}})
    with pytest.raises(ParamsError, match=r"points\[1\].chroma_patch"):
        parse({1: POINT | {"chroma_patch": [2]}})
    with pytest.raises(ParamsError, match="whole patches"):
        luma_chroma.run(replace(PARAMS, bits=(1,), points={1: POINT | {"chroma_factor": 3}}), BASE, 1, small_run.prepared,
                        tmp_path / "never.zarr")
    assert not (tmp_path / "never.zarr").exists()
