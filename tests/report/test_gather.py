"""What a run record says about its train set, read from the store when the run trains (io/train_set_info.py)."""

import shutil

import zarr

from pipeline.io.train_set_info import flat_change, train_set_info


def test_a_dcq_store_gives_its_clusters_and_chromaticity_and_an_ablation_its_change(small_run, tmp_path):
    info = train_set_info(small_run.dcq(1))
    assert set(info) == {"clusters", "cluster_chromaticity"} and info["clusters"] >= 1
    assert 0.0 <= info["cluster_chromaticity"]["ab"] <= 1.0
    store = tmp_path / "k1-q1.zarr"
    shutil.copytree(small_run.dcq(1), store)
    zarr.open_group(str(store), mode="r+").attrs["ablation"] = {"name": "k1", "cluster": {"k": 1}}
    info = train_set_info(store)
    assert info["ablation"] == "k1" and info["ablation_change"] == "cluster.k=1"


def test_other_train_sets_and_a_missing_store_give_nothing(small_run, tmp_path):
    assert train_set_info(small_run.prepared) == {}
    assert train_set_info(tmp_path / "gone.zarr") == {}
    assert flat_change({"refine": {"enabled": False}, "encode": {"assign": "best_palette"}}) == [
        "refine.enabled=False", "encode.assign=best_palette"]
