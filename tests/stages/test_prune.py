"""prune stage on real images: exact coreset sizes, unchanged pixels, and training for the full set's steps."""

import numpy as np
import pytest
from typer.testing import CliRunner

from pipeline.errors import ParamsError
from pipeline.io.arrays import disk_bytes
from pipeline.io.subset_store import SubsetStore
from pipeline.io.train_sets import load_split, load_train_set
from pipeline.stages import prune, train
from pipeline.train.engine import Recipe
from tests.conftest import BASE


@pytest.mark.parametrize("method", prune.METHODS)
@pytest.mark.parametrize("bits", [1, 4])
def test_coreset_has_exact_size_and_original_pixels(method, bits, small_run, scores_store, tmp_path):
    out = tmp_path / f"{method}-q{bits}.zarr"
    prune.run(prune.PruneParams(ccs_strata=5), BASE, method, bits, small_run.prepared, scores_store, out)
    images, labels, _ = load_split(small_run.prepared, "train")
    store = SubsetStore(out)
    n = len(labels)
    assert len(store) == round(bits / 24 * n) == round((1 - (1 - bits / 24)) * n)
    rows = store.source_index
    assert len(np.unique(rows)) == len(rows)
    np.testing.assert_array_equal(store.images(), images.numpy()[rows])
    np.testing.assert_array_equal(store.labels, labels.numpy()[rows])
    if method == "random":
        counts = np.bincount(store.labels, minlength=10)
        assert counts.max() - counts.min() <= 1
    ts = load_train_set(out)
    assert ts.kind == method and ts.bits == bits and ts.source_images == n
    assert ts.stored_bytes == disk_bytes(out / "images") + disk_bytes(out / "labels") < disk_bytes(out)
    # compared with the whole set it replaces: about q/24 of the full set's raw bytes, not ~100% of its own
    assert ts.raw_bytes == images.numel() and ts.compression_ratio < 1.25 * len(store) / n


def test_score_methods_need_the_scores_store(small_run, tmp_path):
    with pytest.raises(ParamsError, match="needs the scores store"):
        prune.run(prune.PruneParams(), BASE, "ccs", 2, small_run.prepared, None, tmp_path / "x.zarr")
    with pytest.raises(ParamsError, match="not a pruning method"):
        prune.run(prune.PruneParams(), BASE, "herding", 2, small_run.prepared, None, tmp_path / "x.zarr")
    with pytest.raises(ParamsError, match="ccs_hard_prune"):
        prune.PruneParams(ccs_hard_prune=1.0)
    assert not (tmp_path / "x.zarr").exists()


@pytest.mark.parametrize("budget,expected_epochs", [("iterations", 20), ("epochs", 2)])
def test_coreset_trains_for_the_full_sets_steps(budget, expected_epochs, small_run, scores_store, tmp_path):
    """160 images at batch 16: the full set takes 2 x 10 steps; the 4-bit coreset (27 images, 1 step per
    epoch) gets those 20 steps as 20 epochs under `iterations`, or just 2 under `epochs`."""
    out = tmp_path / "random-q4.zarr"
    prune.run(prune.PruneParams(), BASE, "random", 4, small_run.prepared, scores_store, out)
    params = train.TrainParams(recipe=Recipe(epochs=2, batch_size=16), coreset_budget=budget)
    record = train.run(params, BASE, "random", 4, "convnetd3", 0, out, small_run.prepared, tmp_path / "m.pt",
                       tmp_path / "m.json")
    assert record["epochs"] == expected_epochs and record["train_images"] == 27 and record["bits"] == 4


def test_cli(small_run, scores_store, tmp_path):
    from pipeline.cli import app

    out = tmp_path / "ccs-q2.zarr"
    result = CliRunner().invoke(app, ["prune", "--method", "ccs", "--bits", "2", "--prepared",
                                      str(small_run.prepared), "--scores", str(scores_store), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert SubsetStore(out).method == "ccs" and len(SubsetStore(out)) == round(2 / 24 * 160)
