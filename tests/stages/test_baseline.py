"""baseline stage on real images: a per-image-palette store that decodes to the quantizer's output and trains."""

import json

import numpy as np
import pytest
import zarr
from typer.testing import CliRunner

from pipeline.errors import ParamsError, StoreError
from pipeline.io.arrays import disk_bytes
from pipeline.io.dcq_store import DCQStore
from pipeline.io.train_sets import load_split, load_train_set
from pipeline.quantize.per_image import quantize_block
from pipeline.stages import baseline
from tests.conftest import BASE


@pytest.fixture(scope="module")
def median_cut_q2(small_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("baseline") / "median_cut-q2.zarr"
    baseline.run(baseline.BaselineParams(), BASE, "median_cut", 2, small_run.prepared, out)
    return out


def test_store_decodes_to_the_quantizers_output(median_cut_q2, small_run):
    images, labels, _ = load_split(small_run.prepared, "train")
    idx, pal = quantize_block(images.numpy(), "median_cut", 2)
    store = DCQStore(median_cut_q2)
    assert store.per_image and store.method == "median_cut" and store.bits == 2
    assert store.palettes.shape == (len(images), 4, 3)
    np.testing.assert_array_equal(store.indices(), idx)
    expected = np.take_along_axis(pal, idx.reshape(len(idx), -1, 1).astype(np.int64), 1).reshape(images.shape)
    np.testing.assert_array_equal(store.decode(), expected)
    np.testing.assert_array_equal(store.labels, labels.numpy())


def test_train_set_kind_bytes_and_lineage(median_cut_q2):
    ts = load_train_set(median_cut_q2)
    assert ts.kind == "median_cut" and ts.bits == 2 and ts.source_images is None
    assert ts.stored_bytes == disk_bytes(median_cut_q2)
    assert ts.params["baseline"]["methods"] and ts.params["run"] == {"method": "median_cut", "bits": 2}
    assert "prepare" in ts.params


def test_per_image_palettes_cost_more_than_shared_ones(median_cut_q2, small_run):
    """Same images, same q: N palettes instead of k, so the baseline store is larger."""
    dcq_bytes = disk_bytes(small_run.dcq(2))
    zarr_pal = zarr.open_group(str(median_cut_q2), mode="r")["palettes"]
    assert zarr_pal.shape[0] > DCQStore(small_run.dcq(2)).palettes.shape[0]
    assert disk_bytes(median_cut_q2) > dcq_bytes


def test_same_params_give_identical_files(median_cut_q2, small_run, tmp_path):
    again = tmp_path / "again.zarr"
    baseline.run(baseline.BaselineParams(), BASE, "median_cut", 2, small_run.prepared, again)
    files = sorted(p.relative_to(median_cut_q2) for p in median_cut_q2.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for f in files:
        assert (median_cut_q2 / f).read_bytes() == (again / f).read_bytes(), f



@pytest.mark.parametrize("method", ["median_cut", "kmeans_lab"])
def test_a_shard_quantized_in_sub_blocks_gives_the_same_store(method, small_run, tmp_path, monkeypatch):
    """A task reads and quantizes its shard ~2 M pixels at a time; cut into blocks of 7 images (the last short, none
    aligned with the nearest-colour batches), the store is byte for byte the one quantized a whole shard at once."""
    whole = tmp_path / "whole.zarr"
    monkeypatch.setattr(baseline, "SUB_BLOCK_PIXELS", 1 << 40)
    baseline.run(baseline.BaselineParams(kmeans_iterations=3), BASE, method, 2, small_run.prepared, whole)
    monkeypatch.setattr(baseline, "SUB_BLOCK_PIXELS", 7 * 32 * 32)
    assert baseline.sub_block_rows(32, 32) == 7
    cut = tmp_path / "cut.zarr"
    baseline.run(baseline.BaselineParams(kmeans_iterations=3), BASE, method, 2, small_run.prepared, cut)
    files = sorted(p.relative_to(whole) for p in whole.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(cut) for p in cut.rglob("*") if p.is_file())
    for f in files:
        assert (whole / f).read_bytes() == (cut / f).read_bytes(), f

def test_bad_method_or_bits_is_an_error_before_writing(small_run, tmp_path):
    with pytest.raises(ParamsError, match="'dither' is not a per-image quantizer"):
        baseline.run(baseline.BaselineParams(), BASE, "dither", 2, small_run.prepared, tmp_path / "x.zarr")
    with pytest.raises(ParamsError, match="bits"):
        baseline.run(baseline.BaselineParams(), BASE, "octree", 9, small_run.prepared, tmp_path / "x.zarr")
    with pytest.raises(ParamsError, match="methods=\\['popularity'\\]"):
        baseline.BaselineParams(methods=["popularity"])
    assert not (tmp_path / "x.zarr").exists()


def test_train_rejects_a_baseline_store_under_another_method(median_cut_q2, small_run, tmp_path):
    from pipeline.stages import train

    params = train.TrainParams()
    with pytest.raises(StoreError, match="is a median_cut store, but the run is method=dcq"):
        train.run(params, BASE, "dcq", 2, "convnetd3", 0, median_cut_q2, small_run.prepared,
                  tmp_path / "m.pt", tmp_path / "m.json")


def test_cli(small_run, tmp_path):
    from pipeline.cli import app

    out = tmp_path / "octree-q1.zarr"
    result = CliRunner().invoke(app, ["baseline", "--method", "octree", "--bits", "1", "--prepared",
                                      str(small_run.prepared), "--out", str(out), "--timing",
                                      str(tmp_path / "t.json")])
    assert result.exit_code == 0, result.output
    assert DCQStore(out).method == "octree"
    assert json.loads((tmp_path / "t.json").read_text())["stage"] == "baseline octree@1"
    bad = CliRunner().invoke(app, ["baseline", "--method", "nope", "--bits", "1", "--prepared",
                                   str(small_run.prepared), "--out", str(tmp_path / "n.zarr")])
    assert bad.exit_code == 2 and "'nope'" in bad.output
