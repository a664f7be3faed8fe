import numpy as np
import pytest
import torch
import zarr
from PIL import Image

from pipeline.errors import StoreError
from pipeline.io.dcq_store import DCQStore, export_imagefolder
from pipeline.io.verify import seal


@pytest.mark.parametrize("q", [1, 2])
def test_decoded_images_use_only_their_cluster_palette(small_run, q):
    store = DCQStore(small_run.dcq(q))
    images = store.decode()
    assert images.shape == (len(store), 32, 32, 3) and images.dtype == np.uint8
    assert store.palettes.shape == (4, 2**q, 3)
    for img, c in zip(images, store.clusters):
        colours = np.unique(img.reshape(-1, 3), axis=0)
        allowed = {tuple(p) for p in store.palettes[c]}
        assert len(colours) <= 2**q
        assert {tuple(p) for p in colours} <= allowed


def test_labels_and_clusters_match_the_inputs(small_run):
    store = DCQStore(small_run.dcq(1))
    prep = zarr.open_group(str(small_run.prepared), mode="r")
    np.testing.assert_array_equal(store.labels, prep["train/labels"][:])
    np.testing.assert_array_equal(store.clusters, zarr.open_group(str(small_run.clusters), mode="r")["assignments"][:])
    assert store.attrs["bits"] == 1 and store.attrs["num_images"] == len(store)
    assert "params_hash" in store.attrs and store.attrs["params"]["refine"]["steps"] == 15
    assert set(store.attrs["params"]) == {"base", "prepare", "teacher", "features", "cluster", "attention", "palette", "refine", "encode"}


def test_each_pixel_takes_its_nearest_palette_colour_in_lab(small_run):
    from pipeline.quantize.color import rgb_to_lab

    store = DCQStore(small_run.dcq(2))
    orig = zarr.open_group(str(small_run.prepared), mode="r")["train/images"][:20]
    lab = rgb_to_lab(torch.from_numpy(orig)).reshape(20, -1, 1, 3)
    pal = rgb_to_lab(torch.from_numpy(store.palettes[store.clusters[:20]])).reshape(20, 1, -1, 3)
    dist = ((lab - pal) ** 2).sum(-1)
    chosen = torch.from_numpy(store.indices(0, 20).reshape(20, -1).astype(np.int64))
    best = dist.min(-1).values
    assert torch.all(dist.gather(-1, chosen[..., None])[..., 0] <= best + 1e-2)


def test_decode_tensor_and_slices_agree(small_run):
    store = DCQStore(small_run.dcq(2))
    full = store.decode()
    np.testing.assert_array_equal(store.decode(5, 17), full[5:17])
    assert torch.equal(store.tensor(0, 4), torch.from_numpy(full[:4]))
    streamed = np.concatenate([block for _, block in store.iter_decoded(block=50)])
    np.testing.assert_array_equal(streamed, full)


def test_export_writes_palette_pngs_that_read_back_exactly(small_run, tmp_path):
    store = DCQStore(small_run.dcq(1))
    out = tmp_path / "export"
    assert export_imagefolder(store, out) == len(store)
    files = sorted(out.rglob("*.png"))
    assert len(files) == len(store)
    row = 7
    path = out / store.classes[store.labels[row]] / f"{row:03d}.png"
    with Image.open(path) as im:
        assert im.mode == "P"
        np.testing.assert_array_equal(np.asarray(im.convert("RGB")), store.decode(row, row + 1)[0])


def test_summary_counts_bytes(small_run):
    s = DCQStore(small_run.dcq(1)).summary()
    assert s["bytes_raw_rgb24"] == s["images"] * 32 * 32 * 3
    assert 0 < s["bytes_on_disk"] and s["nominal_ratio"] == 1 / 24
    assert s["measured_ratio"] == s["bytes_on_disk"] / s["bytes_raw_rgb24"]


def test_not_a_store(tmp_path, small_run):
    with pytest.raises(StoreError, match="no DCQ store"):
        DCQStore(tmp_path)
    with pytest.raises(StoreError, match="not a dcq-v1 or palette-per-image-v1 store"):
        DCQStore(small_run.prepared)


def test_export_refuses_a_non_empty_folder_and_overwrite_keeps_what_it_did_not_write(small_run, tmp_path):
    store = DCQStore(small_run.dcq(1))
    out = tmp_path / "export"
    out.mkdir()
    (out / "my_notes.txt").write_text("keep me")
    (out / store.classes[0]).mkdir()
    (out / store.classes[0] / "mine.png").write_bytes(b"not ours")
    with pytest.raises(StoreError, match="is not empty"):
        export_imagefolder(store, out)
    assert sorted(p.name for p in out.rglob("*")) == sorted([store.classes[0], "mine.png", "my_notes.txt"])
    assert export_imagefolder(store, out, overwrite=True) == len(store)
    assert (out / "my_notes.txt").read_text() == "keep me"
    assert (out / store.classes[0] / "mine.png").read_bytes() == b"not ours"
    assert len(list(out.rglob("*.png"))) == len(store) + 1
    assert [p.name for p in tmp_path.iterdir()] == ["export"]  # no temporary left behind


@pytest.mark.parametrize("bad", ["../../escape", "/abs/path", "a/b", "..", ".", "", "c:\\x", "nul\0"])
def test_export_refuses_a_class_name_that_is_not_one_folder(bad, small_run, tmp_path):
    import shutil

    store_path = tmp_path / "q1.zarr"
    shutil.copytree(small_run.dcq(1), store_path)
    root = zarr.open_group(str(store_path), mode="r+")
    root.attrs["classes"] = [bad, *root.attrs["classes"][1:]]
    seal(root)  # a crafted store whose manifest vouches for the name: the name itself is still checked
    with pytest.raises(StoreError, match="cannot be a folder name"):
        export_imagefolder(DCQStore(store_path), tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "escape").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q1.zarr"]


def _tree(root):
    return sorted((str(p.relative_to(root)), p.is_symlink()) for p in root.rglob("*"))


def test_export_never_writes_through_a_symlink_planted_in_its_target(small_run, tmp_path):
    store = DCQStore(small_run.dcq(1))
    out, elsewhere = tmp_path / "export", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / store.classes[1]).symlink_to(elsewhere, target_is_directory=True)
    before = _tree(tmp_path)
    with pytest.raises(StoreError, match=rf"export: .*{store.classes[1]} is a symbolic link"):
        export_imagefolder(store, out, overwrite=True)
    assert _tree(tmp_path) == before and not any(elsewhere.iterdir())
    (out / store.classes[1]).unlink()
    first = out / store.classes[store.labels[0]]
    first.mkdir()
    (first / f"{0:0{len(str(len(store) - 1))}d}.png").symlink_to(tmp_path / "victim.txt")
    with pytest.raises(StoreError, match="is a symbolic link"):
        export_imagefolder(store, out, overwrite=True)
    assert not (tmp_path / "victim.txt").exists()


def test_export_to_another_filesystem_copies_where_it_cannot_rename(small_run, tmp_path, small_filesystem):
    store = DCQStore(small_run.dcq(1))
    out = small_filesystem("mnt", "64m")  # OUT is itself the mount point: its hidden sibling is on another device
    assert export_imagefolder(store, out, overwrite=True) == len(store)
    reference = tmp_path / "reference"
    export_imagefolder(store, reference)
    assert sorted(p.relative_to(out) for p in out.rglob("*.png")) == sorted(
        p.relative_to(reference) for p in reference.rglob("*.png"))
    for png in reference.rglob("*.png"):
        assert (out / png.relative_to(reference)).read_bytes() == png.read_bytes()
    assert not [p for p in out.rglob(".*")] and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_full_disk_is_a_one_line_error_and_leaves_no_partial_output(small_run, tmp_path, small_filesystem):
    from typer.testing import CliRunner

    from pipeline.cli import app

    disk = small_filesystem("disk", "40k")
    result = CliRunner().invoke(app, ["export", str(small_run.dcq(1)), str(disk / "export")])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error")]  # (tqdm shares stderr)
    assert lines == [f"error: No space left on device: {disk / 'export'} (nothing was replaced)"], result.output
    assert list(disk.iterdir()) == []
    # a stage's output too: the previous output stays, no temporary is left
    from pipeline.stages import prepare
    from tests.conftest import BASE, SMALL

    prepared = disk / "prepared.zarr"
    result = CliRunner().invoke(app, ["prepare", "--out", str(prepared), "--params", str(_small_params(tmp_path))])
    lines = [line for line in result.output.splitlines() if line.startswith("error")]
    assert result.exit_code == 2 and len(lines) == 1 and "No space left on device" in lines[0], result.output
    assert list(disk.iterdir()) == []
    del prepare, BASE, SMALL


def _small_params(tmp_path):
    import yaml

    from tests.conftest import CIFAR10, REPO

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["prepare"].update(root=str(CIFAR10), train_per_class=16, test_per_class=8)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path
