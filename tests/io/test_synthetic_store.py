"""Synthetic-set stores: round trips of every representation and the one storage rule."""

import numpy as np
import pytest
import torch
import zarr

from pipeline.errors import StoreError
from pipeline.io.synthetic_store import SyntheticStore, budget_bytes, write
from pipeline.io.train_sets import load_split

CLASSES = [f"c{i}" for i in range(10)]


def attrs(method, ipc=1):
    return {"method": method, "ipc": ipc, "classes": CLASSES, "image_size": [32, 32], "num_images": 10 * ipc}


def make(tmp_path, name, representation, attr, **arrays):
    path = tmp_path / name
    write(zarr.open_group(str(path), mode="w"), representation, attr, **arrays)
    return SyntheticStore(path)


def test_pixels_round_trip_and_fit_the_budget(tmp_path, small_run):
    images, labels, _ = load_split(small_run.prepared, "train")
    rows = np.concatenate([np.flatnonzero(labels.numpy() == c)[:1] for c in range(10)])
    store = make(tmp_path, "px.zarr", "pixels", attrs("random"), images=images[rows].numpy(),
                 labels=labels[rows].numpy())
    assert torch.equal(store.images_u8(), images[rows]) and torch.equal(store.labels(), labels[rows])
    assert store.budget == budget_bytes(1, 10, (32, 32)) == 30730
    assert store.stored_bytes == store.budget  # uncompressed: exactly the images and labels
    store.check_budget()


@pytest.mark.parametrize("k", [2, 4, 64])
def test_palette_round_trip(tmp_path, k):
    rng = np.random.default_rng(0)
    idx = rng.integers(0, k, size=(10, 3, 32, 32))
    palettes = rng.integers(0, 256, size=(10, 3, k)).astype(np.uint8)
    store = make(tmp_path, f"pal{k}.zarr", "palette", attrs("autopalette"), indices=idx, palettes=palettes,
                 labels=np.arange(10))
    out = store.images_u8().numpy()  # (N,H,W,C)
    expected = np.take_along_axis(palettes, idx.reshape(10, 3, -1), 2).reshape(10, 3, 32, 32).transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(out, expected)
    assert store.attrs["index_bits"] == int(np.log2(k))


def test_low_rank_round_trip_and_over_budget_is_an_error(tmp_path):
    rng = np.random.default_rng(0)
    u = rng.normal(size=(2, 3, 32, 4))
    v = rng.normal(size=(2, 3, 32, 4))
    basis = rng.normal(size=(20, 3, 4, 4))
    soft = rng.dirichlet(np.ones(10), size=20)
    store = make(tmp_path, "lr.zarr", "low_rank", attrs("mtt_lss"), U=u, V=v, basis=basis, soft_labels=soft)
    images = store.low_rank_images()
    assert images.shape == (20, 3, 32, 32)
    ref = torch.from_numpy(u.astype(np.float16).astype(np.float32))[0] @ torch.from_numpy(
        basis.astype(np.float16).astype(np.float32))[0] @ torch.from_numpy(v.astype(np.float16).astype(np.float32))[0].transpose(-1, -2)
    torch.testing.assert_close(images[0], ref)
    assert store.labels().shape == (20, 10)
    big = make(tmp_path, "big.zarr", "low_rank", attrs("mtt_lss"), U=rng.normal(size=(2, 3, 32, 32)),
               V=rng.normal(size=(2, 3, 32, 32)), basis=rng.normal(size=(40, 3, 32, 32)),
               soft_labels=rng.dirichlet(np.ones(10), size=40))
    with pytest.raises(StoreError, match="over its budget of 30,730"):
        big.check_budget()


def test_not_a_synthetic_store(tmp_path, small_run):
    with pytest.raises(StoreError, match="no synthetic store"):
        SyntheticStore(tmp_path / "missing")
    with pytest.raises(StoreError, match="not a synthetic-v1 store"):
        SyntheticStore(small_run.prepared)
