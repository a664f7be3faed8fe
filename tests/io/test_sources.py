import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.errors import DatasetError
from pipeline.io.sources import list_imagefolder, load_image


@pytest.fixture
def tiny_folder(tmp_path, cifar10):
    """A real 2-class ImageFolder tree: 3 train and 2 test CIFAR JPEGs per class."""
    root = tmp_path / "ds"
    for split, n in (("train", 3), ("test", 2)):
        for name in ("cat", "ship"):
            (root / split / name).mkdir(parents=True)
            for src in sorted((cifar10 / split / name).iterdir())[:n]:
                shutil.copy(src, root / split / name / src.name)
    return root


def test_listing_is_sorted_and_labelled(tiny_folder):
    listing = list_imagefolder(tiny_folder, "train")
    assert listing.classes == ["cat", "ship"]
    assert listing.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert [Path(p).parent.name for p in listing.files] == ["cat"] * 3 + ["ship"] * 3


def test_missing_and_empty_folders(tmp_path, tiny_folder):
    with pytest.raises(DatasetError, match="dataset folder not found: .*nowhere"):
        list_imagefolder(tmp_path / "nowhere", "train")
    (tmp_path / "empty" / "train").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"empty/train is empty"):
        list_imagefolder(tmp_path / "empty", "train")
    with pytest.raises(DatasetError, match="no 'test/' split"):
        list_imagefolder(tmp_path / "empty", "test")
    (tiny_folder / "train" / "dog").mkdir()
    with pytest.raises(DatasetError, match="train/dog holds no images"):
        list_imagefolder(tiny_folder, "train")


def test_non_image_file_is_named(tiny_folder):
    (tiny_folder / "train" / "cat" / "notes.txt").write_text("hello")
    with pytest.raises(DatasetError, match=r"notes.txt: not an image file"):
        list_imagefolder(tiny_folder, "train")
    assert len(list_imagefolder(tiny_folder, "train", skip_non_images=True)) == 6


def test_corrupt_image_is_named(tiny_folder):
    bad = tiny_folder / "train" / "cat" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    with pytest.raises(DatasetError, match=r"broken.jpg: corrupt or unreadable image"):
        load_image(bad, 32, "reject")


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK", "I;16"])
def test_other_modes_become_rgb(tmp_path, cifar10, mode):
    src = Image.open(sorted((cifar10 / "train" / "frog").iterdir())[0])
    path = tmp_path / "x.png" if mode != "CMYK" else tmp_path / "x.jpg"
    (src.convert(mode) if mode != "I;16" else src.convert("L").convert("I;16")).save(path)
    out = load_image(path, 32, "reject")
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8


def test_size_rule(tmp_path, cifar10):
    src = Image.open(sorted((cifar10 / "train" / "frog").iterdir())[0]).resize((48, 40))
    path = tmp_path / "big.png"
    src.save(path)
    with pytest.raises(DatasetError, match=r"big.png: image is 48x40, the dataset's size is 32x32"):
        load_image(path, 32, "reject")
    assert load_image(path, 32, "resize").shape == (32, 32, 3)


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "svhn"])
def test_torchvision_source_without_a_copy_says_how_to_point_at_one(tmp_path, name):
    from pipeline.io.sources import list_torchvision

    with pytest.raises(DatasetError, match=rf"{name} train split not found under .* point prepare.root at a torchvision copy"):
        list_torchvision(name, tmp_path, "train", download=False)


def test_params_paths_resolve_against_the_project_even_in_a_dvc_temp_workspace(tmp_path):
    """`dvc exp run --temp` and queued experiments run in <project>/.dvc/tmp/exps/<name>: a relative
    `prepare.root` must still mean the same folder as in the project itself."""
    from pipeline.io.sources import project_path, project_root

    project = tmp_path / "project"
    workspace = project / ".dvc" / "tmp" / "exps" / "tmpabc123"
    workspace.mkdir(parents=True)
    assert project_root(workspace) == project.resolve()
    assert project_root(project) == project.resolve()
    assert project_path("../shared/data", workspace) == project.resolve() / "../shared/data"
    assert project_path("../shared/data", project) == project.resolve() / "../shared/data"
    assert project_path("/abs/data", workspace) == project.__class__("/abs/data")


def _grey_and_source(cifar10):
    src = Image.open(sorted((cifar10 / "train" / "frog").iterdir())[0]).convert("RGB")
    return np.asarray(src.convert("L")), src


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_a_real_16_bit_greyscale_image_keeps_its_tones(tmp_path, cifar10, suffix):
    """A full-range 16-bit image is scaled to 8 bits (Pillow's own convert saturates it to white)."""
    grey, _ = _grey_and_source(cifar10)
    path = tmp_path / f"x16{suffix}"
    Image.fromarray(grey.astype(np.uint16) * 257).save(path)
    assert Image.open(path).mode.startswith("I")
    out = load_image(path, 32, "reject")
    assert out.shape == (32, 32, 3) and np.abs(out[..., 0].astype(int) - grey).max() <= 1
    assert (out[..., 0] == out[..., 1]).all() and out.std() > 10  # not a solid image


@pytest.mark.parametrize("mode", ["CMYK", "LA", "P-transparency"])
def test_other_modes_keep_their_colours(tmp_path, cifar10, mode):
    grey, src = _grey_and_source(cifar10)
    rgb = np.asarray(src).astype(int)
    if mode == "CMYK":
        path = tmp_path / "x.jpg"
        src.convert("CMYK").save(path, quality=95)
        assert np.abs(load_image(path, 32, "reject").astype(int) - rgb).mean() < 6
        return
    path = tmp_path / "x.png"
    if mode == "LA":
        src.convert("LA").save(path)
        assert (load_image(path, 32, "reject")[..., 0] == grey).all()
        return
    pal = src.quantize(16)
    pal.info["transparency"] = 0
    pal.save(path)
    expected = np.asarray(src.quantize(16).convert("RGB")).astype(int)
    assert np.abs(load_image(path, 32, "reject").astype(int) - expected).max() == 0


def test_a_float_image_is_refused_by_name(tmp_path, cifar10):
    grey, _ = _grey_and_source(cifar10)
    path = tmp_path / "x.tif"
    Image.fromarray(grey.astype(np.float32) / 255).save(path)
    with pytest.raises(DatasetError, match=r"x.tif: 32-bit float image"):
        load_image(path, 32, "reject")


def test_a_decompression_bomb_is_refused_from_its_header(tmp_path):
    from pipeline.io.sources import check_readable

    path = tmp_path / "bomb.png"
    Image.new("1", (10_000, 10_000)).save(path)  # 100 M pixels in a few kB
    assert path.stat().st_size < 100_000
    with pytest.raises(DatasetError, match=r"bomb.png: 10000x10000 = 100,000,000 pixels, over "
                                           r"prepare.max_image_pixels=89478485"):
        check_readable(path)
    with pytest.raises(DatasetError, match="over prepare.max_image_pixels=1000"):
        load_image(path, 32, "resize", max_pixels=1000)
    assert check_readable(path, max_pixels=100_000_000) == (10_000, 10_000)


@pytest.mark.parametrize("name", ["..z", ".hidden", ".ipynb_checkpoints"])
def test_a_class_folder_starting_with_a_dot_is_refused_or_skipped_with_a_warning(tiny_folder, name):
    hidden = tiny_folder / "train" / name
    hidden.mkdir()
    shutil.copy(next((tiny_folder / "train" / "cat").iterdir()), hidden / "img.jpg")
    with pytest.raises(DatasetError, match=rf"{name}: a class folder whose name starts with a dot"):
        list_imagefolder(tiny_folder, "train")
    with pytest.warns(UserWarning, match=r"skipped 1 entries"):
        assert list_imagefolder(tiny_folder, "train", skip_non_images=True).classes == ["cat", "ship"]


def test_a_hidden_image_inside_a_class_is_not_dropped_silently(tiny_folder):
    (tiny_folder / "train" / "cat" / "._img.jpg").write_bytes(b"resource fork")
    with pytest.raises(DatasetError, match=r"\._img.jpg: a file whose name starts with a dot"):
        list_imagefolder(tiny_folder, "train")


def test_images_smaller_than_the_models_accept_are_refused_at_prepare(tmp_path, cifar10):
    from pipeline.io.sources import check_file_sizes

    files = []
    for i in range(3):
        path = tmp_path / f"px{i}.png"
        Image.new("RGB", (1, 1), (i, i, i)).save(path)
        files.append(str(path))
    with pytest.raises(DatasetError, match=r"px0.png: images are 1x1, smaller than the 8x8 the models need"):
        check_file_sizes({"train": files}, None, "reject")
