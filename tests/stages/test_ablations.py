"""DCQ ablations switched in params, on real images."""

from dataclasses import replace

import numpy as np
import zarr

from pipeline.stages import attention, colour_counts, palette
from tests.conftest import BASE, SMALL


def test_attention_none_keeps_every_pixel_whatever_k_gra(small_run, tmp_path):
    flat = tmp_path / "attention-none.zarr"
    attention.run(replace(SMALL["attention"], method="none"), BASE, small_run.prepared, small_run.teacher, flat)
    root = zarr.open_group(str(flat), mode="r")
    cams = root["cams"][:]
    assert (cams == 1).all() and cams.shape[1:] == (1, 1)  # one value per image: nothing to rank
    n, (h, w) = len(cams), root.attrs["image_size"]
    params = replace(SMALL["palette"], k_gra=10.0)
    for name, maps in (("none", flat), ("cam", small_run.attention)):
        colour_counts.run(params, BASE, small_run.prepared, small_run.clusters, maps, tmp_path / f"{name}-counts.zarr")
        palette.run(params, BASE, 1, tmp_path / f"{name}-counts.zarr", tmp_path / f"{name}.zarr")
    pooled_all = zarr.open_group(str(tmp_path / "none.zarr"), mode="r")["pixels"][:].sum()
    pooled_top = zarr.open_group(str(tmp_path / "cam.zarr"), mode="r")["pixels"][:].sum()
    assert pooled_all == n * h * w
    assert pooled_top == n * round(0.10 * h * w)
    a = zarr.open_group(str(tmp_path / "none.zarr"), mode="r")["palettes"][:]
    b = zarr.open_group(str(tmp_path / "cam.zarr"), mode="r")["palettes"][:]
    assert not np.allclose(a, b)  # the attention-selected pixels give other palettes


# --- clustering-feature sources -------------------------------------------------------------------------------

def test_cluster_source_labels_is_one_cluster_per_class(small_run, tmp_path):
    import pytest

    from pipeline.errors import ParamsError
    from pipeline.stages import cluster

    labels = zarr.open_group(str(small_run.prepared), mode="r")["train/labels"][:]
    out = tmp_path / "labels.zarr"
    cluster.run(replace(SMALL["cluster"], source="labels", k=10), BASE, small_run.features, out, small_run.prepared)
    root = zarr.open_group(str(out), mode="r")
    assert (root["assignments"][:] == labels).all()
    assert root.attrs["params"]["cluster"]["source"] == "labels"
    with pytest.raises(ParamsError, match="cluster.k=4 .* set cluster.k to 10"):
        cluster.run(replace(SMALL["cluster"], source="labels"), BASE, small_run.features, tmp_path / "x.zarr",
                    small_run.prepared)
    with pytest.raises(ParamsError, match="needs the prepared store"):
        cluster.run(replace(SMALL["cluster"], source="labels", k=10), BASE, small_run.features, tmp_path / "y.zarr")
    assert not (tmp_path / "x.zarr").exists() and not (tmp_path / "y.zarr").exists()


def test_cluster_source_random_is_balanced_and_seeded(small_run, tmp_path):
    from pipeline.config import BaseParams
    from pipeline.stages import cluster

    params = replace(SMALL["cluster"], source="random", k=3)
    cluster.run(params, BASE, small_run.features, tmp_path / "a.zarr")
    cluster.run(params, BASE, small_run.features, tmp_path / "b.zarr")
    cluster.run(params, BaseParams(seed=1, device="cpu"), small_run.features, tmp_path / "c.zarr")
    a, b, c = (zarr.open_group(str(tmp_path / f"{x}.zarr"), mode="r")["assignments"][:] for x in "abc")
    n = len(a)
    sizes = np.bincount(a, minlength=3)
    assert sizes.max() - sizes.min() <= 1 and sizes.sum() == n
    assert (a == b).all() and not (a == c).all()


def test_features_from_pixels_are_the_input_colour_statistics(small_run, tmp_path):
    import torch

    from pipeline.models.checkpoint import load_checkpoint
    from pipeline.models.inputs import to_input
    from pipeline.stages import features

    out = tmp_path / "pixels.zarr"
    features.run(replace(SMALL["features"], layer="pixels"), BASE, small_run.prepared, small_run.teacher, out)
    feats = zarr.open_group(str(out), mode="r")["features"][:]
    images = zarr.open_group(str(small_run.prepared), mode="r")["train/images"][:]
    _, norm, _ = load_checkpoint(small_run.teacher)
    x = to_input(torch.from_numpy(images), norm).float()
    expected = torch.cat([x.mean((2, 3)), x.std((2, 3), unbiased=False)], 1).numpy()
    assert feats.shape == (len(images), 6)
    np.testing.assert_allclose(feats, expected, rtol=1e-4, atol=1e-4)


# --- the ablate stage ----------------------------------------------------------------------------------------

def _ablate_params(**variants):
    from pipeline.stages import ablate

    return ablate.AblateParams(bits=(1,), variants=ablate.parse_variants(variants, "test"))


def test_ablate_without_overrides_rebuilds_the_main_store(small_run, tmp_path):
    from pipeline.io.dcq_store import DCQStore
    from pipeline.stages import ablate

    out = tmp_path / "same-q1.zarr"
    ablate.run(_ablate_params(same={}), BASE, SMALL, "same", 1, small_run.prepared, small_run.teacher, None, out)
    mine, main = DCQStore(out), DCQStore(small_run.dcq(1))
    assert (mine.decode() == main.decode()).all()
    assert (mine.labels == main.labels).all()
    assert mine.attrs["ablation"] == {"name": "same"}
    assert mine.attrs["params"]["ablate"] == {"name": "same"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # scratch and tmp folders removed
    # no variant at all: the main store itself, with the main store's lineage and no ablation attrs
    plain = tmp_path / "plain-q1.zarr"
    ablate.run(_ablate_params(), BASE, SMALL, None, 1, small_run.prepared, small_run.teacher, None, plain)
    plain_store = DCQStore(plain)
    assert (plain_store.decode() == main.decode()).all()
    assert "ablation" not in plain_store.attrs and plain_store.attrs["params"] == main.attrs["params"]


def test_ablate_variant_changes_only_its_keys_and_trains(small_run, tmp_path):
    from pipeline.io.dcq_store import DCQStore
    from pipeline.io.train_sets import load_train_set
    from pipeline.stages import ablate

    params = _ablate_params(two={"cluster": {"k": 2}, "refine": {"enabled": False}})
    out = tmp_path / "two-q1.zarr"
    ablate.run(params, BASE, SMALL, "two", 1, small_run.prepared, small_run.teacher, None, out)
    store = DCQStore(out)
    assert store.attrs["clusters"] == 2
    lineage = store.attrs["params"]
    assert lineage["cluster"]["k"] == 2 and lineage["refine"]["enabled"] is False
    assert lineage["palette"]["k_gra"] == SMALL["palette"].k_gra  # untouched keys keep the params.yaml value
    assert store.attrs["ablation"] == {"name": "two", "cluster": {"k": 2}, "refine": {"enabled": False}}
    ts = load_train_set(out)
    assert ts.kind == "dcq" and ts.bits == 1 and ts.source_images is None


def test_ablate_coreset_then_dcq(small_run, scores_store, tmp_path):
    import pytest

    from pipeline.errors import ParamsError
    from pipeline.io.train_sets import load_train_set
    from pipeline.stages import ablate

    n = zarr.open_group(str(small_run.prepared), mode="r")["train/labels"].shape[0]
    params = _ablate_params(ccs={"coreset": {"method": "ccs", "keep": 0.5}})
    out = tmp_path / "ccs-q1.zarr"
    with pytest.raises(ParamsError, match="needs the scores store"):
        ablate.run(params, BASE, SMALL, "ccs", 1, small_run.prepared, small_run.teacher, None, out)
    assert not out.exists()
    ablate.run(params, BASE, SMALL, "ccs", 1, small_run.prepared, small_run.teacher, scores_store, out)
    ts = load_train_set(out)
    assert len(ts.images) == round(0.5 * n) and ts.source_images == n
    assert ts.raw_bytes == n * 32 * 32 * 3  # compared with the whole train set, like a coreset
    assert len(np.unique(ts.images.numpy().reshape(-1, 3), axis=0)) <= 4 * 2  # 4 clusters x 2 colours


def test_ablate_params_errors_name_the_variant(tmp_path):
    import pytest

    from pipeline.errors import ParamsError
    from pipeline.stages import ablate

    with pytest.raises(ParamsError, match=r"variants.bad.cluster: unknown key\(s\) \['kk'\]"):
        ablate.resolve(SMALL, ablate.parse_variants({"bad": {"cluster": {"kk": 3}}}, "variants")["bad"],
                       "variants.bad")
    with pytest.raises(ParamsError, match="palette.bits is not a variant key"):
        ablate.parse_variants({"b": {"palette": {"bits": [2]}}}, "variants")
    with pytest.raises(ParamsError, match=r"variants.c: unknown key\(s\) \['clusters'\]"):
        ablate.parse_variants({"c": {"clusters": {"k": 3}}}, "variants")
    with pytest.raises(ParamsError, match="'nope' is not in ablate.variants"):
        ablate.run(_ablate_params(a={}), BASE, SMALL, "nope", 1, tmp_path, tmp_path, None, tmp_path / "o.zarr")


def test_repo_params_parse_every_ablation():
    from pipeline.stages import ablate
    from tests.conftest import REPO

    params = ablate.load_params(REPO / "params.yaml")
    defaults = ablate.read_defaults(REPO / "params.yaml")
    assert params.variants
    for name, variant in params.variants.items():
        ablate.resolve(defaults, variant, name)


def test_ablate_coreset_at_an_ipc_budget_fits_it(small_run, scores_store, tmp_path, monkeypatch):
    """coreset.ipc keeps as many images as fit IPC full-colour images per class as q-bit indices; a store over
    the budget is an error and nothing is written."""
    import pytest

    from pipeline.errors import StoreError
    from pipeline.io.arrays import array_bytes
    from pipeline.io.train_sets import load_train_set
    from pipeline.stages import ablate

    params = _ablate_params(ipc1={"coreset": {"method": "ccs", "ipc": 1}})
    out = tmp_path / "ipc1-q2.zarr"
    ablate.run(params, BASE, SMALL, "ipc1", 2, small_run.prepared, small_run.teacher, scores_store, out)
    budget = 10 * (32 * 32 * 3 + 1)
    store = zarr.open_group(str(out), mode="r")
    assert store.attrs["ipc"] == 1 and store.attrs["budget_bytes"] == budget
    assert store.attrs["num_images"] == (budget - 4 * 4 * 3) // (256 + 2) == 118
    assert array_bytes(out) <= budget
    assert store.attrs["ablation"]["coreset"] == {"method": "ccs", "ipc": 1, "ccs_score": "aum", "ccs_strata": 50,
                                                   "ccs_hard_prune": 0.3}
    assert load_train_set(out).source_images == 160
    # a budget the chosen coreset cannot meet (all 160 images kept for a 10,000-byte budget)
    from pipeline.prune import coreset

    monkeypatch.setattr(coreset, "images_within", lambda *a: 160)
    monkeypatch.setattr(coreset, "ipc_budget", lambda *a: 10_000)
    with pytest.raises(StoreError, match="over the IPC 1 budget of 10,000"):
        ablate.run(params, BASE, SMALL, "ipc1", 2, small_run.prepared, small_run.teacher, scores_store,
                   tmp_path / "over.zarr")
    assert not (tmp_path / "over.zarr").exists()


def test_coreset_spec_takes_exactly_one_size():
    import pytest

    from pipeline.errors import ParamsError
    from pipeline.stages import ablate

    for bad in ({"method": "ccs"}, {"method": "ccs", "keep": 0.5, "ipc": 1}):
        with pytest.raises(ParamsError, match="exactly one of keep and ipc"):
            ablate.parse_variants({"v": {"coreset": bad}}, "variants")
