"""Stages on small real data in tmp_path: determinism, subsets, input errors, atomic outputs."""

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import zarr

from pipeline.errors import DatasetError, ParamsError, StoreError
from pipeline.quantize.encode_store import write_dcq
from pipeline.stages import attention, encode, features, prepare, teacher
from tests.conftest import BASE, SMALL, run_pipeline


def arrays(path: Path) -> dict[str, np.ndarray]:
    root = zarr.open_group(str(path), mode="r")
    return {name: arr[:] for name, arr in root.arrays()} | {
        f"{g}/{name}": arr[:] for g, grp in root.groups() for name, arr in grp.arrays()
    }


def test_same_params_and_seed_give_byte_identical_outputs(small_run, tmp_path):
    again = run_pipeline(tmp_path)
    for attr in ("prepared", "features", "clusters", "attention"):
        a, b = arrays(getattr(small_run, attr)), arrays(getattr(again, attr))
        assert a.keys() == b.keys() and a, attr
        for key in a:
            assert a[key].tobytes() == b[key].tobytes(), f"{attr}/{key}"
    for q in (1, 2):
        for store in (small_run.palettes(q), small_run.refined(q), small_run.dcq(q)):
            other = again.root / store.relative_to(small_run.root)
            a, b = arrays(store), arrays(other)
            assert all(a[k].tobytes() == b[k].tobytes() for k in a), store
    # every output on disk, store metadata (zarr.json) and checkpoint included; only the DVC metrics JSON
    # (teacher/metrics.json, refined/q*.json) carry wall-clock seconds
    def outputs(root: Path) -> list[Path]:
        return sorted(p.relative_to(root) for p in root.rglob("*")
                      if p.is_file() and (p.suffix != ".json" or p.name == "zarr.json"))

    files = outputs(small_run.root)
    assert files == outputs(again.root) and Path("teacher/model.pt") in files
    for rel in files:
        assert (small_run.root / rel).read_bytes() == (again.root / rel).read_bytes(), rel


def test_prepare_subset_is_per_class_and_seeded(small_run):
    root = zarr.open_group(str(small_run.prepared), mode="r")
    assert np.bincount(root["train/labels"][:]).tolist() == [16] * 10
    assert np.bincount(root["test/labels"][:]).tolist() == [8] * 10
    assert root["train/images"].shape == (160, 32, 32, 3) and root["train/images"].dtype == np.uint8
    assert root.attrs["classes"][0] == "airplane" and root.attrs["params"]["prepare"]["train_per_class"] == 16


def test_prepare_missing_folder_errors_before_writing(tmp_path):
    params = replace(SMALL["prepare"], root=str(tmp_path / "missing"))
    with pytest.raises(DatasetError, match="dataset folder not found"):
        prepare.run(params, BASE, tmp_path / "out.zarr")
    assert not (tmp_path / "out.zarr").exists()


def test_interrupted_prepare_keeps_previous_output(tmp_path, cifar10):
    root = tmp_path / "ds"
    for split in ("train", "test"):
        for name in ("cat", "dog"):
            shutil.copytree(cifar10 / split / name, root / split / name,
                            ignore=lambda d, files: sorted(files)[4:])
    params = replace(SMALL["prepare"], root=str(root), train_per_class=None, test_per_class=None)
    out = tmp_path / "prepared.zarr"
    prepare.run(params, BASE, out)
    before = arrays(out)
    # A file whose header reads but whose data is truncated fails only while decoding (mid-stage).
    good = sorted((root / "train" / "dog").iterdir())[0]
    (root / "train" / "dog" / "zz_truncated.jpg").write_bytes(good.read_bytes()[:200])
    with pytest.raises(DatasetError, match="zz_truncated.jpg"):
        prepare.run(params, BASE, out)
    after = arrays(out)
    assert before.keys() == after.keys() and all(np.array_equal(before[k], after[k]) for k in before)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_bad_layer_names_are_clear_errors(small_run, tmp_path):
    with pytest.raises(ParamsError, match=r"features.layer='layer9' is not a layer"):
        features.run(replace(SMALL["features"], layer="layer9"), BASE, small_run.prepared, small_run.teacher,
                     tmp_path / "f.zarr")
    with pytest.raises(ParamsError, match=r"attention.layer='layer4.7' is not a layer"):
        attention.run(replace(SMALL["attention"], layer="layer4.7"), BASE, small_run.prepared, small_run.teacher,
                      tmp_path / "a.zarr")
    assert not any(tmp_path.iterdir())


def test_mismatched_bits_and_checkpoints_are_clear_errors(small_run, tmp_path):
    with pytest.raises(StoreError, match="holds 1-bit palettes, encode was asked for 2 bits"):
        write_dcq(SMALL["encode"], BASE, 2, small_run.prepared, small_run.clusters, small_run.refined(1),
                  tmp_path / "x.zarr")
    with pytest.raises(ParamsError, match="bits=9 is outside 1..8"):
        encode.run(SMALL["encode"], BASE, [1, 9], small_run.prepared, small_run.clusters, small_run.refined(1).parent,
                   tmp_path)
    with pytest.raises(ParamsError, match=r"bits=\[2, 2\] must name each bit depth once"):
        encode.run(SMALL["encode"], BASE, [2, 2], small_run.prepared, small_run.clusters, small_run.refined(1).parent,
                   tmp_path)
    with pytest.raises(FileNotFoundError, match="refined palette store: no Zarr store at .*q3.zarr"):
        encode.run(SMALL["encode"], BASE, [1, 3], small_run.prepared, small_run.clusters, small_run.refined(1).parent,
                   tmp_path)
    with pytest.raises(StoreError, match="checkpoint has arch='resnet18', the params/data need 'resnet34'"):
        teacher.run(replace(SMALL["teacher"], arch="resnet34", checkpoint=str(small_run.teacher)), BASE,
                    small_run.prepared, tmp_path / "t.pt", tmp_path / "t.json")


def test_teacher_loads_a_given_checkpoint(small_run, tmp_path):
    metrics = teacher.run(replace(SMALL["teacher"], checkpoint=str(small_run.teacher)), BASE, small_run.prepared,
                          tmp_path / "t.pt", tmp_path / "t.json")
    assert metrics["epochs"] == 0 and 0 <= metrics["test_accuracy"] <= 100
    assert (tmp_path / "t.json").is_file() and (tmp_path / "t.pt").is_file()


def test_metrics_files_are_flat_and_params_travel_with_the_outputs(small_run):
    import json

    import torch

    metrics = json.loads((small_run.root / "teacher" / "metrics.json").read_text())
    assert all(not isinstance(v, (dict, list)) for v in metrics.values())
    assert metrics["epochs"] == 1 and "final_train_accuracy" in metrics
    ckpt = torch.load(small_run.teacher, weights_only=True)
    assert ckpt["params"]["teacher"]["recipe"]["epochs"] == 1 and len(ckpt["history"]) == 1
    refine_metrics = json.loads((small_run.root / "refined" / "q1.json").read_text())
    assert all(not isinstance(v, (dict, list)) for v in refine_metrics.values())
    assert refine_metrics["edge_loss_after"] < refine_metrics["edge_loss_before"]
    assert zarr.open_group(str(small_run.refined(1)), mode="r").attrs["params"]["refine"]["steps"] == 15


def test_a_streamed_teacher_trains_the_resident_teacher_in_the_window_order(small_run, tmp_path):
    """teacher.stream_window > 0: both splits are read from the store as they are reached; the weights are those of
    the resident train split trained in the same window-shuffled order, and the test accuracy is the same."""
    import torch

    from pipeline.device import resolve_runtime
    from pipeline.io.streamed import WindowShuffle
    from pipeline.io.train_sets import load_split
    from pipeline.models.inputs import Normalization
    from pipeline.models.registry import create_model
    from pipeline.train.engine import accuracy, train

    params = replace(SMALL["teacher"], stream_window=48, stream_block=16)
    metrics = teacher.run(params, BASE, small_run.prepared, tmp_path / "model.pt", tmp_path / "metrics.json")
    saved = torch.load(tmp_path / "model.pt", weights_only=True)
    assert saved["params"]["teacher"]["stream_window"] == 48
    images, labels, _ = load_split(small_run.prepared, "train")
    test_images, test_labels, _ = load_split(small_run.prepared, "test")
    torch.manual_seed(BASE.seed)
    model = create_model(params.arch, 10, 32)
    norm = Normalization.from_images(images.numpy())
    runtime = resolve_runtime("cpu", "auto")
    train(model, images, labels, params.recipe, norm, runtime, BASE.seed, shuffle=WindowShuffle(48, 16))
    assert all(torch.equal(saved["state_dict"][k], v) for k, v in model.state_dict().items())
    assert metrics["test_accuracy"] == round(accuracy(model, test_images, test_labels, norm, runtime,
                                                      params.eval_batch_size), 4)
