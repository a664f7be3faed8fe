"""prepare's image-size rules on a real ImageFolder copy: one number or [H, W]; with null every image must have
the same size (two that differ are named); `resize: resize` needs an explicit size."""

import shutil

import pytest
import zarr
from PIL import Image

from pipeline.errors import DatasetError, ParamsError, StoreError
from pipeline.stages import prepare
from tests.conftest import BASE


@pytest.fixture
def mixed_folder(tmp_path, cifar10):
    """2 classes x (4 train, 2 test) real CIFAR JPEGs; the first train image of 'cat' is 48x40, non-square."""
    root = tmp_path / "ds"
    for split, n in (("train", 4), ("test", 2)):
        for name in ("cat", "ship"):
            (root / split / name).mkdir(parents=True)
            for src in sorted((cifar10 / split / name).iterdir())[:n]:
                shutil.copy(src, root / split / name / src.name)
    first = sorted((root / "train" / "cat").iterdir())[0]
    Image.open(first).resize((48, 40)).save(first.with_suffix(".png"))
    first.unlink()
    return root


def test_null_size_rejects_images_of_different_sizes_naming_two(mixed_folder, tmp_path):
    params = prepare.PrepareParams(root=str(mixed_folder))
    with pytest.raises(DatasetError, match=r"images differ in size: (.*\.jpg is 32x32, .*\.png is 48x40|.*\.png is 48x40, .*\.jpg is 32x32)"):
        prepare.run(params, BASE, tmp_path / "p.zarr")
    assert not (tmp_path / "p.zarr").exists()


def test_resize_needs_an_explicit_size():
    with pytest.raises(ParamsError, match="resize: resize needs an explicit image_size"):
        prepare.PrepareParams(resize="resize")
    with pytest.raises(ParamsError, match=r"image_size=\[24\] must be one integer >= 8 or \[H, W\]"):
        prepare.PrepareParams(image_size=[24], resize="resize")


@pytest.mark.parametrize("size, shape, attr", [(24, (24, 24), 24), ([24, 24], (24, 24), 24),
                                               ([24, 40], (24, 40), [24, 40])])
def test_one_number_or_height_width(size, shape, attr, mixed_folder, tmp_path):
    out = tmp_path / "p.zarr"
    prepare.run(prepare.PrepareParams(root=str(mixed_folder), image_size=size, resize="resize"), BASE, out)
    root = zarr.open_group(str(out), mode="r")
    assert root["train/images"].shape == (8, *shape, 3) and root["test/images"].shape == (4, *shape, 3)
    assert root.attrs["image_size"] == attr


def test_a_non_square_set_is_refused_by_the_teacher_by_name(mixed_folder, tmp_path):
    from pipeline.stages import teacher

    out = tmp_path / "p.zarr"
    prepare.run(prepare.PrepareParams(root=str(mixed_folder), image_size=[24, 40], resize="resize"), BASE, out)
    with pytest.raises(StoreError, match="images are 24x40; the model registry builds square-input models"):
        teacher.run(teacher.TeacherParams(), BASE, out, tmp_path / "t.pt", tmp_path / "t.json")


@pytest.mark.parametrize("block", [1, 3, 4096])
def test_sizes_are_checked_block_by_block_across_blocks(block, mixed_folder):
    from pipeline.io.sources import check_file_sizes, list_imagefolder

    listing = list_imagefolder(mixed_folder, "train")
    files = {"train": list(reversed(listing.files))}  # the odd 48x40 file comes last, in a later block
    with pytest.raises(DatasetError, match=r"images differ in size: .*\.jpg is 32x32, .*\.png is 48x40"):
        check_file_sizes(files, None, "resize", block=block)
    assert check_file_sizes({"train": listing.files[1:]}, None, "reject", block=block) == (32, 32)
    with pytest.raises(DatasetError, match=r"\.png: image is 48x40, the dataset's size is 32x32"):
        check_file_sizes(files, (32, 32), "reject", block=block)
