"""prepare's held-out split: ImageNet-style `val/` instead of `test/` (prepare.test_split), on real CIFAR-10 JPEGs."""

import shutil

import numpy as np
import pytest
import zarr

from pipeline.config import to_dict
from pipeline.errors import DatasetError, ParamsError
from pipeline.stages import prepare
from tests.conftest import BASE


@pytest.fixture
def small_copy(tmp_path, cifar10):
    """3 classes x (6 train, 3 held-out) real CIFAR JPEGs, in train/ and test/."""
    root = tmp_path / "ds"
    for split, n in (("train", 6), ("test", 3)):
        for name in ("cat", "frog", "ship"):
            (root / split / name).mkdir(parents=True)
            for src in sorted((cifar10 / split / name).iterdir())[:n]:
                shutil.copy(src, root / split / name / src.name)
    return root


def test_val_split_reads_the_val_folder_into_the_test_group(small_copy, tmp_path):
    with_test = prepare.run(prepare.PrepareParams(root=str(small_copy)), BASE, tmp_path / "t.zarr")
    (small_copy / "test").rename(small_copy / "val")
    params = prepare.PrepareParams(root=str(small_copy), test_split="val")
    with_val = prepare.run(params, BASE, tmp_path / "v.zarr")
    assert with_val["test"] == with_test["test"] == 9
    a, b = (zarr.open_group(str(tmp_path / f"{x}.zarr"), mode="r") for x in "tv")
    for name in ("train/images", "train/labels", "test/images", "test/labels"):
        assert np.array_equal(a[name][:], b[name][:]), name
    assert b.attrs["params"]["prepare"]["test_split"] == "val"
    assert "test_split" not in a.attrs["params"]["prepare"]  # the default leaves earlier outputs' params as they were
    with pytest.raises(DatasetError, match=r"has no 'test/' split folder"):
        prepare.run(prepare.PrepareParams(root=str(small_copy)), BASE, tmp_path / "x.zarr")
    assert not (tmp_path / "x.zarr").exists()


def test_test_split_is_checked():
    with pytest.raises(ParamsError, match="test_split='valid' must be test or val"):
        prepare.PrepareParams(test_split="valid")
    with pytest.raises(ParamsError, match="only an imagefolder source has a choice"):
        prepare.PrepareParams(source="cifar10", test_split="val")
    assert "test_split" not in to_dict(prepare.PrepareParams())
