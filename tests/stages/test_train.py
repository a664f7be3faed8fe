"""The train stage on small real CIFAR-10 subsets: what it feeds the model, its record, learning, errors."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from pipeline.errors import ParamsError, StoreError
from pipeline.io.dcq_store import DCQStore
from pipeline.stages import prepare, train
from pipeline.train.engine import Recipe
from tests.conftest import BASE, SMALL

QUICK = train.TrainParams(recipe=Recipe(epochs=1, batch_size=64, lr=0.05))
SCHEMA = {"method": str, "bits": (int, type(None)), "compression_ratio": float, "model": str, "seed": int,
          "test_accuracy": float, "train_bytes": int}


def run_quick(small_run, tmp_path, method="dcq", bits=1, model="convnetd3", seed=0, train_set=None, params=QUICK):
    train_set = train_set or (small_run.prepared if method == "full" else small_run.dcq(bits))
    return train.run(params, BASE, method, bits, model, seed, train_set, small_run.prepared,
                     tmp_path / f"{method}{bits}-{seed}.pt", tmp_path / f"{method}{bits}-{seed}.json")


def test_training_is_fed_exactly_the_decoded_store(small_run, tmp_path, monkeypatch):
    seen = {}

    def spy(model, images, labels, recipe, norm, runtime, seed, desc="", total_steps=None, world=None, shuffle=None):
        # every row as the trainer indexes it (a tensor, or a packed set decoded per batch)
        seen["images"], seen["labels"] = images[torch.arange(len(images))], labels.clone()
        return [{"epoch": 1, "loss": 0.0, "train_accuracy": 0.0}]

    monkeypatch.setattr(train, "train", spy)
    run_quick(small_run, tmp_path, bits=2)
    store = DCQStore(small_run.dcq(2))
    assert seen["images"].dtype == torch.uint8
    assert np.array_equal(seen["images"].numpy(), store.decode())
    assert np.array_equal(seen["labels"].numpy(), store.labels)


def test_record_has_the_documented_schema_and_params_travel(small_run, tmp_path):
    record = run_quick(small_run, tmp_path, bits=1)
    on_disk = json.loads((tmp_path / "dcq1-0.json").read_text())
    assert on_disk == {**record, "written_by": "dcq"}  # the marker that lets a rerun replace it
    for key, types in SCHEMA.items():
        assert isinstance(record[key], types), key
    assert record["method"] == "dcq" and record["bits"] == 1 and record["seed"] == 0
    # which kernels ran: the CPU ISA torch dispatched to (the bits of a run differ between AVX2 and AVX-512)
    assert record["hardware"] == f"cpu {torch.backends.cpu.get_cpu_capability()}"
    assert record["train_bytes"] == DCQStore(small_run.dcq(1)).summary()["bytes_on_disk"]
    assert record["compression_ratio"] == pytest.approx(record["train_bytes"] / (160 * 32 * 32 * 3), abs=1e-6)
    assert record["test_images"] == 80 and record["train_images"] == 160
    ckpt = torch.load(tmp_path / "dcq1-0.pt", map_location="cpu", weights_only=True)
    assert ckpt["params"]["train"]["recipe"]["epochs"] == 1 and ckpt["params"]["run"]["bits"] == 1
    assert ckpt["params"]["cluster"]["k"] == SMALL["cluster"].k  # the store's lineage comes along
    assert ckpt["record"] == {k: v for k, v in record.items() if k not in train.NOT_IN_CHECKPOINT}
    # what the report needs of the store travels in the record, so the report does not need the store
    info = record["train_set_info"]
    assert info["clusters"] == SMALL["cluster"].k and set(info["cluster_chromaticity"]) == {"ab", "L"}
    assert "ablation" not in info


def test_full_colour_run_and_bits_null(small_run, tmp_path):
    record = run_quick(small_run, tmp_path, method="full", bits=None)
    assert record["bits"] is None and record["nominal_ratio"] is None
    assert record["train_set_info"] == {}  # no clusters, no ablation: nothing beyond the bytes
    assert 0.5 < record["compression_ratio"] <= 1.05  # zstd on uint8 pixels barely compresses


@pytest.mark.parametrize("method", ["full", "dcq"])
def test_a_streamed_run_trains_the_resident_sets_weights_in_the_window_order(small_run, tmp_path, method):
    """stream_window > 0: full colour is read from the store as training reaches it (a DCQ store stays packed), both
    in the window-shuffled order; the weights are those of the resident images trained in that order."""
    from pipeline.device import resolve_runtime
    from pipeline.io.streamed import WindowShuffle
    from pipeline.io.train_sets import load_train_set
    from pipeline.models.inputs import Normalization
    from pipeline.models.registry import create_model
    from pipeline.train.engine import train as train_engine

    bits = None if method == "full" else 2
    params = replace(QUICK, stream_window=48, stream_block=16)
    record = run_quick(small_run, tmp_path, method=method, bits=bits, params=params)
    assert record["train_images"] == 160 and record["test_images"] == 80
    saved = torch.load(tmp_path / f"{method}{bits}-0.pt", weights_only=True)
    assert saved["params"]["train"]["stream_window"] == 48 and saved["params"]["train"]["stream_block"] == 16
    resident = load_train_set(small_run.prepared if method == "full" else small_run.dcq(2))
    torch.manual_seed(0)
    model = create_model("convnetd3", 10, 32)
    train_engine(model, resident.images, resident.labels, params.recipe,
                 Normalization.from_images(resident.images.numpy()), resolve_runtime("cpu", "auto"), 0,
                 shuffle=WindowShuffle(48, 16))
    assert all(torch.equal(saved["state_dict"][k], v) for k, v in model.state_dict().items())
    run_quick(small_run, tmp_path / "plain")
    plain = torch.load(tmp_path / "plain" / "dcq1-0.pt", weights_only=True)["params"]["train"]
    assert "stream_window" not in plain  # off: not in the lineage, so outputs made before it keep their params hash


def test_same_seed_is_identical_and_another_seed_differs(small_run, tmp_path):
    a = run_quick(small_run, tmp_path / "a", seed=0)
    b = run_quick(small_run, tmp_path / "b", seed=0)
    c = run_quick(small_run, tmp_path / "c", seed=1)
    # the checkpoint (a cached DVC output) byte for byte, its wall-clock times left out
    assert (tmp_path / "a" / "dcq1-0.pt").read_bytes() == (tmp_path / "b" / "dcq1-0.pt").read_bytes()
    assert "seconds" not in torch.load(tmp_path / "a" / "dcq1-0.pt", weights_only=True)["record"]
    assert a["final_train_loss"] == b["final_train_loss"] and a["test_accuracy"] == b["test_accuracy"]
    assert c["final_train_loss"] != a["final_train_loss"]


def test_short_training_on_real_images_learns(tmp_path, cifar10):
    prepared = tmp_path / "prepared.zarr"
    prepare.run(replace(SMALL["prepare"], train_per_class=60, test_per_class=30), BASE, prepared)
    params = train.TrainParams(recipe=Recipe(epochs=12, batch_size=64, lr=0.05, weight_decay=5e-4, nesterov=True))
    record = train.run(params, BASE, "full", None, "convnetd3", 0, prepared, prepared, tmp_path / "m.pt",
                       tmp_path / "r.json")
    assert record["final_train_accuracy"] > 40.0
    assert record["test_accuracy"] > 25.0  # chance is 10% on the 300 real test images


def test_unknown_model_is_a_clear_error(small_run, tmp_path):
    with pytest.raises(ParamsError, match="model 'resnet9' is not in the model registry"):
        run_quick(small_run, tmp_path, model="resnet9")
    with pytest.raises(ParamsError, match=r"models=\['vgg'\] not in the model registry"):
        train.TrainParams(models=["vgg"])
    assert not (tmp_path / "dcq1-0.pt").exists()


def test_store_that_does_not_match_the_run_is_a_clear_error(small_run, tmp_path):
    with pytest.raises(StoreError, match=r"holds 1-bit indices, but the run asks for bits=2"):
        run_quick(small_run, tmp_path, bits=2, train_set=small_run.dcq(1))
    with pytest.raises(StoreError, match="is a dcq store, but the run is method=full"):
        run_quick(small_run, tmp_path, method="full", bits=None, train_set=small_run.dcq(1))
    with pytest.raises(StoreError, match="is a full-colour store, but the run is method=dcq"):
        run_quick(small_run, tmp_path, bits=1, train_set=small_run.prepared)
    other = tmp_path / "other24.zarr"  # the same images at 24 px as the test set
    prepare.run(replace(SMALL["prepare"], train_per_class=1, test_per_class=1, image_size=24, resize="resize"),
                BASE, other)
    with pytest.raises(StoreError, match=r"has 32x32 images, the test set 24x24"):
        train.run(QUICK, BASE, "dcq", 1, "convnetd3", 0, small_run.dcq(1), other, tmp_path / "m.pt",
                  tmp_path / "r.json")
    assert not (tmp_path / "m.pt").exists() and not (tmp_path / "r.json").exists()


def test_cli_train_exits_2_naming_the_culprit(small_run, tmp_path):
    from pipeline.cli import app

    params = tmp_path / "params.yaml"
    params.write_text("base: {seed: 0, device: cpu}\ntrain: {recipe: {epochs: 1, batch_size: 64}}\n")
    args = ["train", "--method", "dcq", "--bits", "2", "--model", "convnetd3", "--seed", "0", "--train-set",
            str(small_run.dcq(1)), "--prepared", str(small_run.prepared), "--checkpoint", str(tmp_path / "m.pt"),
            "--record", str(tmp_path / "r.json"), "--params", str(params)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert "holds 1-bit indices, but the run asks for bits=2" in result.output
    result = CliRunner().invoke(app, [*args[:4], "1", args[5], "mlp", *args[7:]])
    assert result.exit_code == 2 and "model 'mlp' is not in the model registry" in result.output


def test_cli_reads_the_architectures_section_and_records_it_under_its_name(small_run, tmp_path):
    """The architectures study trains with its own recipe: `--section architectures` reads that section (same keys),
    and the checkpoint's lineage names it, so a reader never mistakes it for the main job's `train` recipe."""
    from pipeline.cli import app

    params = tmp_path / "params.yaml"
    params.write_text("base: {seed: 0, device: cpu}\ntrain: {recipe: {epochs: 3, batch_size: 64}}\n"
                      "architectures: {models: [mobilenetv2], recipe: {epochs: 1, batch_size: 32, compile: false}}\n")
    args = ["train", "--section", "architectures", "--method", "dcq", "--bits", "1", "--model", "mobilenetv2",
            "--seed", "0", "--train-set", str(small_run.dcq(1)), "--prepared", str(small_run.prepared),
            "--checkpoint", str(tmp_path / "m.pt"), "--record", str(tmp_path / "r.json"), "--params", str(params)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    ckpt = torch.load(tmp_path / "m.pt", map_location="cpu", weights_only=True)
    assert "train" not in ckpt["params"]
    assert ckpt["params"]["architectures"]["recipe"]["batch_size"] == 32
    record = json.loads((tmp_path / "r.json").read_text())
    assert record["model"] == "mobilenetv2" and record["epochs"] == 1 and record["bits"] == 1
    bad = CliRunner().invoke(app, [args[0], "--section", "scores", *args[3:]])
    assert bad.exit_code == 2
    assert "error: --section 'scores' is not one of the training sections ['train', 'architectures', 'regime2', 'regime3']" in bad.output
    with pytest.raises(ParamsError, match="section 'teacher' is not one of the training sections"):
        train.run(QUICK, BASE, "dcq", 1, "convnetd3", 0, small_run.dcq(1), small_run.prepared, tmp_path / "x.pt",
                  tmp_path / "x.json", section="teacher")
