"""prepare on a set whose first shard is all black images (every pixel the fill value): the store keeps that shard,
so it opens and verifies; real CIFAR-10 JPEGs fill the rest."""

import shutil

import numpy as np
import zarr
from PIL import Image

from pipeline.io.arrays import open_group
from pipeline.io.verify import verify_store
from pipeline.stages import prepare
from tests.conftest import BASE

SHARD_ROWS = 5440  # 32 px RGB rows per ~16 MiB shard (tests/io/test_arrays.py)


def test_a_shard_of_black_images_is_stored_and_verifies(tmp_path, cifar10):
    root = tmp_path / "ds"
    for split, n_black, n_real in (("train", SHARD_ROWS, 20), ("test", 3, 5)):
        (root / split / "a_black").mkdir(parents=True)  # sorts first: its images fill the first train shard
        for i in range(n_black):
            Image.new("RGB", (32, 32)).save(root / split / "a_black" / f"{i:05d}.png")
        (root / split / "ship").mkdir()
        for src in sorted((cifar10 / split / "ship").iterdir())[:n_real]:
            shutil.copy(src, root / split / "ship" / src.name)
    out = tmp_path / "p.zarr"
    counts = prepare.run(prepare.PrepareParams(root=str(root)), BASE, out)
    assert counts["train"] == SHARD_ROWS + 20
    images = open_group(out, "prepared store")["train/images"]
    assert images.shards[0] == SHARD_ROWS
    assert not images[:SHARD_ROWS].any() and images[SHARD_ROWS:].any()
    assert (out / "train" / "images" / "c" / "0" / "0" / "0" / "0").is_file()
    verify_store(out)
    labels = zarr.open_group(str(out), mode="r")["train/labels"][:]
    assert np.array_equal(np.bincount(labels), [SHARD_ROWS, 20])
