"""The patch_vq stage on real CIFAR-10: a store of codes into one shared codebook that decodes to every train image
at its size, with its labels, deterministically; it trains like any other train set; bad params name the key."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from pipeline.config import parse_section
from pipeline.errors import ParamsError
from pipeline.io.patch_store import PatchStore
from pipeline.stages import patch_vq
from tests.conftest import BASE

PARAMS = patch_vq.PatchVQParams(bits=(1, 2), patch={1: [4, 4], 2: [4, 2]}, code_bits={1: 6, 2: 7},
                                sample_patches=3000, iterations=5)


def test_store_decodes_every_train_image_with_its_label(small_run, tmp_path):
    out = tmp_path / "q2.zarr"
    result = patch_vq.run(PARAMS, BASE, 2, small_run.prepared, out)
    store = PatchStore(out)
    prep = zarr.open_group(str(small_run.prepared), mode="r")
    originals, labels = prep["train/images"][:], prep["train/labels"][:]
    assert result["images"] == len(store) == len(originals) and store.patch == (4, 2) and store.code_bits == 7
    decoded = store.decode()
    assert decoded.shape == originals.shape and decoded.dtype == np.uint8
    np.testing.assert_array_equal(store.labels, labels)
    assert store.root["codes"].shape == (len(store), (128 * 7 + 7) // 8)
    # a codebook of 128 patches: closer than a flat grey, far from lossless
    err = np.abs(decoded.astype(int) - originals).mean()
    assert 2 < err < np.abs(originals.astype(int) - originals.mean()).mean()
    assert store.attrs["method"] == "patch_vq" and store.attrs["bits"] == 2
    # this q's point only; the sample grows with the codebook (min_patches_per_codeword x 2^code_bits)
    assert store.attrs["params"]["patch_vq"] == {"patch": [4, 2], "code_bits": 7, "sample_patches": 50 * 128,
                                                 "iterations": 5}


def test_a_rerun_writes_the_same_store_whatever_the_other_points_say(small_run, tmp_path):
    from dataclasses import replace

    a, b = tmp_path / "a.zarr", tmp_path / "b.zarr"
    patch_vq.run(PARAMS, BASE, 1, small_run.prepared, a)
    patch_vq.run(replace(PARAMS, patch={1: [4, 4], 2: [2, 2]}, code_bits={1: 6, 2: 9}), BASE, 1, small_run.prepared, b)

    def files(root):
        return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    assert files(a) == files(b)


def test_it_trains_like_any_train_set(small_run, tmp_path):
    from pipeline.stages import train
    from pipeline.train.engine import Recipe

    store = tmp_path / "q1.zarr"
    patch_vq.run(PARAMS, BASE, 1, small_run.prepared, store)
    params = train.TrainParams(recipe=Recipe(epochs=1, batch_size=64, lr=0.05, compile=False))
    record = train.run(params, BASE, "patch_vq", 1, "convnetd3", 0, store, small_run.prepared,
                       tmp_path / "m.pt", tmp_path / "r.json")
    assert record["method"] == "patch_vq" and record["bits"] == 1 and record["train_images"] == 160
    assert record["train_bytes"] == PatchStore(store).stored_bytes


def test_params_name_the_bad_key(small_run, tmp_path):
    with pytest.raises(ParamsError, match="bits 4 needs an entry"):
        parse_section(patch_vq.PatchVQParams, {"bits": [4], "patch": {1: [4, 4]}, "code_bits": {1: 8}}, "patch_vq")
    with pytest.raises(ParamsError, match=r"code_bits\[1\]=17"):
        parse_section(patch_vq.PatchVQParams, {"bits": [1], "patch": {1: [4, 4]}, "code_bits": {1: 17}}, "patch_vq")
    with pytest.raises(ParamsError, match=r"patch\[1\]"):
        parse_section(patch_vq.PatchVQParams, {"bits": [1], "patch": {1: [4]}, "code_bits": {1: 8}}, "patch_vq")
    with pytest.raises(ParamsError, match="whole patches"):
        patch_vq.run(patch_vq.PatchVQParams(bits=(1,), patch={1: [5, 4]}, code_bits={1: 4}), BASE, 1,
                     small_run.prepared, tmp_path / "never.zarr")
    assert not (tmp_path / "never.zarr").exists()
