"""The Dataset over train-set stores: the same images and labels as the pipeline's own loader for every readable
format, through DataLoader workers, and the same as torchvision's ImageFolder on the exported PNGs."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from pipeline.data import READABLE, StoreDataset
from pipeline.errors import StoreError
from pipeline.io.formats import format_names
from pipeline.io.train_sets import load_train_set

TRAIN_SET_FORMATS = [fmt for fmt in format_names() if fmt in READABLE]


def _store(fmt, format_stores, small_run):
    return small_run.prepared if fmt == "prepared" else format_stores[fmt]


@pytest.mark.parametrize("fmt", [*TRAIN_SET_FORMATS, "prepared"])
def test_every_item_is_what_the_pipeline_trains_on(fmt, format_stores, small_run):
    path = _store(fmt, format_stores, small_run)
    dataset = StoreDataset(path, block=7)  # blocks that do not divide the set
    reference = load_train_set(path)
    assert len(dataset) == len(reference.labels) and dataset.classes == reference.classes
    for i in range(len(dataset)):
        image, label = dataset[i]
        assert image.dtype == torch.uint8 and image.shape[0] == 3
        assert torch.equal(image.permute(1, 2, 0), reference.images[i]) and label == int(reference.labels[i])
    with pytest.raises(IndexError):
        dataset[len(dataset)]


@pytest.mark.parametrize("fmt", ["dcq-v1", "prepared"])
def test_a_dataloader_with_workers_yields_the_same_batches(fmt, format_stores, small_run):
    dataset = StoreDataset(_store(fmt, format_stores, small_run), transform=lambda x: x.float() / 255, block=16)
    direct = torch.stack([dataset[i][0] for i in range(len(dataset))])
    loader = DataLoader(dataset, batch_size=20, shuffle=False, num_workers=2)
    images, labels = zip(*loader)
    assert torch.equal(torch.cat(images), direct)
    assert torch.equal(torch.cat(labels), dataset.labels)


def test_imagefolder_on_the_exported_pngs_reads_the_same_images_and_labels(small_run, tmp_path):
    from torchvision.datasets import ImageFolder

    from pipeline.io.dcq_store import DCQStore, export_imagefolder

    export_imagefolder(DCQStore(small_run.dcq(2)), tmp_path / "png")
    folder = ImageFolder(str(tmp_path / "png"))
    dataset = StoreDataset(small_run.dcq(2))
    assert len(folder) == len(dataset)
    for path, target in folder.samples:
        row = int(path.rsplit("/", 1)[1].split(".")[0])
        image, label = dataset[row]
        assert dataset.classes[label] == folder.classes[target]
        assert np.array_equal(np.asarray(folder.loader(path)), image.permute(1, 2, 0).numpy())


def test_what_is_not_a_train_set_is_refused_by_name(format_stores, tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        StoreDataset(tmp_path / "nowhere.zarr")
    with pytest.raises(StoreError, match="unknown train-set format 'expert-trajectories-v1'"):
        StoreDataset(format_stores["expert-trajectories-v1"])


def test_the_docs_example_trains_a_torchvision_resnet_on_a_store(small_run):
    """docs/api.md's training loop, run as written on a small store (one epoch, no workers)."""
    from tests.conftest import REPO

    text = (REPO / "docs" / "api.md").read_text()
    code = next(code for code in (block.split("```")[0] for block in text.split("```python\n")[1:])
                if "StoreDataset(" in code)
    assert len(code.strip().splitlines()) <= 20
    code = (code.replace('"data/dcq/q2.zarr"', repr(str(small_run.dcq(2))))
            .replace("range(10)", "range(1)").replace("num_workers=2", "num_workers=0"))
    scope: dict = {}
    exec(compile(code, "docs/api.md", "exec"), scope)
    assert scope["loss"].isfinite() and len(scope["train"]) == len(StoreDataset(small_run.dcq(2)))
