"""colour_counts on real images: the counts every palette@q fits from, and the errors of a wrong store."""

import shutil
from dataclasses import replace

import numpy as np
import pytest
import zarr

from pipeline.errors import StoreError
from pipeline.quantize.attention import image_size_maps, top_pixels
from pipeline.quantize.palette_store import ClusterCountSlices, read_colour_counts
from pipeline.stages import palette
from tests.conftest import BASE, SMALL, seal_attrs, unsealed


def test_counts_are_the_selected_pixels_of_every_cluster_and_serve_every_q(small_run, tmp_path):
    root = zarr.open_group(str(small_run.colour_counts), mode="r")
    images = zarr.open_group(str(small_run.prepared), mode="r")["train/images"][:]
    owner = zarr.open_group(str(small_run.clusters), mode="r")["assignments"][:]
    maps = image_size_maps(zarr.open_group(str(small_run.attention), mode="r"), small_run.attention, 0, len(images))
    mask = top_pixels(maps, SMALL["palette"].k_gra).numpy()
    for c in range(SMALL["cluster"].k):  # recounted here from the pixels themselves
        pixels = images[owner == c][mask[owner == c]]
        codes, counts = np.unique((pixels[:, 0].astype(np.int64) << 16) | (pixels[:, 1].astype(np.int64) << 8)
                                  | pixels[:, 2], return_counts=True)
        keys = root["keys"][:]
        mine = (keys >> 24) == c
        assert np.array_equal(keys[mine] & 0xFFFFFF, codes) and np.array_equal(root["counts"][:][mine], counts)
    assert root.attrs["k_gra"] == SMALL["palette"].k_gra and root.attrs["images"] == len(images)
    for q in (1, 2):  # both bit depths of the shared run fitted from this one store
        pooled = zarr.open_group(str(small_run.palettes(q)), mode="r")["pixels"][:]
        assert pooled.sum() == root["counts"][:].sum()


def test_a_palette_of_another_k_gra_or_a_forged_store_is_refused(small_run, tmp_path):
    with pytest.raises(StoreError, match=r"counted with k_gra=50.0, but palette.k_gra=80.0; rerun"):
        palette.run(replace(SMALL["palette"], k_gra=80.0), BASE, 1, small_run.colour_counts, tmp_path / "p.zarr")
    assert not (tmp_path / "p.zarr").exists()
    forged = tmp_path / "forged.zarr"
    shutil.copytree(small_run.colour_counts, forged)
    seal_attrs(forged, clusters=1)  # fewer clusters than the keys name, in a store whose manifest vouches for it
    with pytest.raises(StoreError, match="keys are not sorted distinct .* of 1 clusters"):
        read_colour_counts(forged, SMALL["palette"].k_gra)
    with pytest.raises(StoreError, match="is not 'colour-counts-v1'"):
        palette.run(SMALL["palette"], BASE, 1, small_run.attention, tmp_path / "p.zarr")


def test_cli_names_the_culprit(small_run, tmp_path):
    from typer.testing import CliRunner

    from pipeline.cli import app

    params = tmp_path / "params.yaml"
    params.write_text("base: {seed: 0, device: cpu}\npalette: {k_gra: 50.0, surprise: 1}\n")
    result = CliRunner().invoke(app, ["colour_counts", "--prepared", str(small_run.prepared), "--clusters",
                                      str(small_run.clusters), "--attention", str(small_run.attention), "--out",
                                      str(tmp_path / "c.zarr"), "--params", str(params)])
    assert result.exit_code == 2 and "surprise" in result.output
    assert not (tmp_path / "c.zarr").exists()


def test_palette_reads_one_cluster_at_a_time_block_by_block_and_gets_the_whole_split(small_run):
    root = zarr.open_group(str(small_run.colour_counts), mode="r")
    keys, counts = root["keys"][:], root["counts"][:]
    k = SMALL["cluster"].k
    slices = ClusterCountSlices(root, small_run.colour_counts, k, block=257)  # many blocks; clusters span them
    assert len(keys) > 10 * 257 and len(slices) == k
    for c, one in enumerate(slices):
        mine = (keys >> 24) == c
        assert np.array_equal(one.codes, (keys[mine] & 0xFFFFFF).astype(np.int32))
        assert np.array_equal(one.counts, counts[mine]) and slices.pixels[c] == counts[mine].sum()
    assert slices.pixels.dtype == np.int64 and slices.pixels.sum() == counts.sum()


def test_keys_out_of_order_across_a_block_boundary_are_refused(small_run, tmp_path):
    forged = tmp_path / "forged.zarr"
    shutil.copytree(small_run.colour_counts, forged)
    root = zarr.open_group(str(forged), mode="r+")
    keys = root["keys"][:]
    root["keys"][256:258] = keys[[257, 256]]  # each block of 257 still sorted; the boundary is not
    with pytest.raises(StoreError, match="keys are not sorted distinct"):
        ClusterCountSlices(zarr.open_group(str(forged), mode="r"), forged, SMALL["cluster"].k, block=257)


def test_many_spilled_runs_merge_into_the_one_block_store(small_run, tmp_path, monkeypatch):
    """One counting task per 8 images (20 runs), merged 3 runs at a time in passes on disk, 64 keys per round, and
    written 1,000 rows per chunk: the same keys and counts as the main fixture's one-task store, and the spilled
    runs are gone."""
    from pipeline.stages import colour_counts

    monkeypatch.setattr("pipeline.quantize.palette_store.FAN_IN", 3)
    monkeypatch.setattr("pipeline.quantize.palette_store.MERGE_KEYS", 64)
    monkeypatch.setattr("pipeline.quantize.palette_store.COUNT_CHUNK", 1000)
    monkeypatch.setattr("pipeline.quantize.palette_store.POOL_PIXELS", 3 * 32 * 32)
    monkeypatch.setattr("pipeline.quantize.palette_store.write_block_size", lambda arr: 8)
    out = tmp_path / "counts.zarr"
    summary = colour_counts.run(SMALL["palette"], BASE, small_run.prepared, small_run.clusters, small_run.attention, out)
    want, got = zarr.open_group(str(small_run.colour_counts), mode="r"), zarr.open_group(str(out), mode="r")
    for name in ("keys", "counts"):
        assert got[name].chunks == (1000,) and got[name].dtype == np.int64
        np.testing.assert_array_equal(got[name][:], want[name][:])
    assert unsealed(got.attrs) == unsealed(want.attrs) and summary["distinct"] == want["keys"].shape[0]
    assert summary["runs"] == zarr.open_group(str(small_run.prepared), mode="r")["train/images"].shape[0] // 8 == 20
    assert sorted(p.name for p in tmp_path.iterdir()) == ["counts.zarr"]  # no spill directory left behind


def test_a_spilled_run_is_read_a_slice_at_a_time_and_a_torn_one_is_refused(tmp_path):
    from pipeline.quantize.palette_store import SpilledRun

    np.arange(10, dtype="<i8").tofile(tmp_path / "ok.i64")
    run = SpilledRun(tmp_path / "ok.i64")
    assert len(run) == 10 and run[3] == 3 and list(run[8:20]) == [8, 9] and len(run[10:12]) == 0
    (tmp_path / "torn.i64").write_bytes(np.arange(10, dtype="<i8").tobytes()[:-3])
    with pytest.raises(StoreError, match=r"torn.i64: a spilled run must hold whole int64 values, not 77 bytes"):
        SpilledRun(tmp_path / "torn.i64")
