"""The torchvision sources (CIFAR-10/100, SVHN) go through prepare's in-memory array path. Nothing can
be downloaded here, so torchvision's dataset classes are replaced by stand-ins holding real CIFAR-10
pixels in each dataset's own layout (CIFAR: NHWC + targets, SVHN: NCHW + labels)."""

import numpy as np
import pytest
import torchvision.datasets as tvd
import zarr

from pipeline.io.sources import list_imagefolder, load_image
from pipeline.stages import prepare
from tests.conftest import BASE


@pytest.fixture(scope="module")
def real_arrays(cifar10):
    out = {}
    for split in ("train", "test"):
        listing = list_imagefolder(cifar10, split)
        rows = np.concatenate([np.flatnonzero(listing.labels == c)[:6] for c in range(10)])
        out[split] = (np.stack([load_image(listing.files[r], 32, "reject") for r in rows]), listing.labels[rows])
    return out


@pytest.mark.parametrize("source", ["cifar10", "cifar100", "svhn"])
def test_torchvision_sources_become_the_same_zarr_layout(monkeypatch, tmp_path, real_arrays, source):
    class CifarLike:
        def __init__(self, root, train=True, download=False):
            self.data, targets = real_arrays["train" if train else "test"]
            self.targets = targets.tolist()
            self.classes = [f"c{i}" for i in range(10)]

    class SvhnLike:
        def __init__(self, root, split="train", download=False):
            data, self.labels = real_arrays[split]
            self.data = np.ascontiguousarray(data.transpose(0, 3, 1, 2))

    monkeypatch.setattr(tvd, "CIFAR10", CifarLike)
    monkeypatch.setattr(tvd, "CIFAR100", CifarLike)
    monkeypatch.setattr(tvd, "SVHN", SvhnLike)
    params = prepare.PrepareParams(source=source, root=str(tmp_path / "tv"), train_per_class=4, test_per_class=2)
    prepare.run(params, BASE, tmp_path / "p.zarr")
    root = zarr.open_group(str(tmp_path / "p.zarr"), mode="r")
    assert root["train/images"].shape == (40, 32, 32, 3) and root["test/images"].shape == (20, 32, 32, 3)
    assert np.bincount(root["train/labels"][:]).tolist() == [4] * 10
    images, labels = real_arrays["train"]
    first = np.flatnonzero(labels == 0)
    stored = root["train/images"][:4]
    assert all(any(np.array_equal(s, images[r]) for r in first) for s in stored)  # pixels survive unchanged
    assert root.attrs["source"] == source and root.attrs["image_size"] == 32
