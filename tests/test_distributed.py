"""The train stage under torchrun: 2 processes with gloo on CPU, each holding half the rows of a real CIFAR-10 DCQ
store and of the test split; one record and one checkpoint, written by rank 0."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
import zarr

from pipeline.distributed import (
    World,
    all_rows,
    average_gradients,
    broadcast_buffers,
    from_environment,
    local_batch,
)
from pipeline.errors import ParamsError
from pipeline.models.checkpoint import load_checkpoint
from tests.conftest import REPO, run_in_world


def test_world_shares_are_contiguous_and_cover_every_row():
    shares = [World(rank, 3).shard(10) for rank in range(3)]
    assert shares == [(0, 3), (3, 6), (6, 10)]
    assert World().shard(7) == (0, 7) and World().main
    with pytest.raises(ParamsError, match="batch_size=30 must divide by the 4 torchrun processes"):
        local_batch(30, World(0, 4))


def test_plain_process_is_a_world_of_one(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    assert from_environment() == World(0, 1, 0)


def torchrun(stage_args: list[str], section: str, recipe: dict | None, tmp_path, **keys) -> subprocess.CompletedProcess:
    """`dcq <stage_args>` under torchrun with 2 CPU processes, with a params file whose `section` recipe is small
    (and whose `section` has these other `keys`)."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["base"]["device"] = "cpu"
    if recipe:
        params[section]["recipe"] |= recipe
    for key, value in keys.items():  # a dict updates the section's sub-section
        params[section][key] = params[section][key] | value if isinstance(value, dict) else value
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "pipeline.cli", *stage_args, "--params", str(tmp_path / "params.yaml")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_torchrun_two_processes_train_one_record(small_run, tmp_path):
    out = tmp_path / "run"
    done = torchrun(["train", "--method", "dcq", "--bits", "2", "--model", "convnetd3w64", "--seed", "0",
                     "--train-set", str(small_run.dcq(2)), "--prepared", str(small_run.prepared),
                     "--checkpoint", str(out / "model.pt"), "--record", str(out / "record.json")],
                    "train", {"epochs": 2, "batch_size": 32, "compile": False}, tmp_path)
    record = json.loads((out / "record.json").read_text())
    assert record["world_size"] == 2 and record["train_images"] == 160 and record["test_images"] == 80
    assert sum(map(sum, record["confusion"])) == 80 and 0 <= record["test_accuracy"] <= 100
    assert record["epochs"] == 2
    # each rank held half of the train rows
    output = done.stdout + done.stderr  # the two ranks' summary lines (they may interleave)
    assert sorted(re.findall(r"rank=(\d/2), rows=(\d+)/160", output)) == [("0/2", "80"), ("1/2", "80")]
    _, _, ckpt = load_checkpoint(out / "model.pt")
    assert ckpt["record"]["test_accuracy"] == record["test_accuracy"]
    assert sorted(p.name for p in out.iterdir()) == ["model.pt", "record.json"]


def test_torchrun_two_processes_stream_their_rows_of_full_colour(small_run, tmp_path):
    out = tmp_path / "run"
    done = torchrun(["train", "--method", "full", "--model", "convnetd3w64", "--seed", "0",
                     "--train-set", str(small_run.prepared), "--prepared", str(small_run.prepared),
                     "--checkpoint", str(out / "model.pt"), "--record", str(out / "record.json")],
                    "train", {"epochs": 1, "batch_size": 32, "compile": False}, tmp_path,
                    stream_window=32, stream_block=16)
    record = json.loads((out / "record.json").read_text())
    assert record["world_size"] == 2 and record["train_images"] == 160 and record["test_images"] == 80
    output = done.stdout + done.stderr
    assert sorted(re.findall(r"rank=(\d/2), rows=(\d+)/160", output)) == [("0/2", "80"), ("1/2", "80")]
    _, _, ckpt = load_checkpoint(out / "model.pt")
    assert ckpt["params"]["train"]["stream_window"] == 32


def test_torchrun_two_processes_train_the_teacher(small_run, tmp_path):
    out = tmp_path / "teacher"
    torchrun(["teacher", "--prepared", str(small_run.prepared), "--checkpoint", str(out / "model.pt"),
              "--metrics", str(out / "metrics.json")], "teacher", {"epochs": 1, "batch_size": 32, "compile": False},
             tmp_path)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["train_images"] == 160 and metrics["test_images"] == 80
    assert metrics["epochs"] == 1 and 0 <= metrics["test_accuracy"] <= 100
    load_checkpoint(out / "model.pt")


def _collectives(world):
    learned = torch.nn.Parameter(torch.zeros(3))
    learned.grad = torch.full((3,), float(world.rank + 1))
    untouched = torch.nn.Parameter(torch.zeros(2))  # no gradient on any rank
    average_gradients([learned, untouched], world)
    start, stop = world.shard(5)
    rows = all_rows(np.arange(start, stop, dtype=np.float32) * 10, world, 5)
    norm = torch.nn.BatchNorm1d(2)
    norm.running_mean.fill_(float(world.rank + 7))
    broadcast_buffers(norm, world)
    return {"grad": learned.grad, "untouched": torch.tensor(untouched.grad is None), "rows": torch.from_numpy(rows),
            "running_mean": norm.running_mean}


def test_collectives_average_gather_and_broadcast(tmp_path):
    for rank, got in enumerate(run_in_world(_collectives, 2, tmp_path)):
        assert torch.equal(got["grad"], torch.full((3,), 1.5)), rank  # (1 + 2) / 2
        assert bool(got["untouched"])
        assert got["rows"].dtype == torch.float32 and got["rows"].tolist() == [0, 10, 20, 30, 40]
        assert got["running_mean"].tolist() == [7.0, 7.0]  # rank 0's statistics everywhere


def test_torchrun_scores_gather_every_rows_dynamics(small_run, tmp_path):
    import zarr

    out = tmp_path / "scores.zarr"
    done = torchrun(["scores", "--prepared", str(small_run.prepared), "--out", str(out)], "scores",
                    {"epochs": 3, "batch_size": 32, "compile": False}, tmp_path, el2n_epochs=2)
    output = done.stdout + done.stderr
    assert sorted(re.findall(r"rank=(\d/2), rows=(\d+)/160", output)) == [("0/2", "80"), ("1/2", "80")]
    root = zarr.open_group(str(out), mode="r")
    assert root.attrs["world_size"] == 2 and root.attrs["num_images"] == 160 and len(root.attrs["history"]) == 3
    scores = {name: root[name][:] for name in ("aum", "el2n", "forgetting", "entropy")}
    for name, values in scores.items():
        assert values.shape == (160,) and values.dtype == np.float32 and np.isfinite(values).all(), name
    for half in (slice(0, 80), slice(80, 160)):  # both ranks' rows were scored (a missing share would be zeros)
        assert np.unique(scores["aum"][half]).size > 40 and (scores["el2n"][half] > 0).all()
    assert ((0 <= scores["forgetting"]) & (scores["forgetting"] <= 4)).all()
    assert ((scores["entropy"] >= 0) & (scores["entropy"] <= np.log(10) + 1e-5)).all()


@pytest.mark.parametrize("method", ["mtt", "dm"])
def test_torchrun_distill_writes_one_store(method, small_run, expert_store, tmp_path):
    from pipeline.io.synthetic_store import SyntheticStore

    out = tmp_path / f"{method}.zarr"
    done = torchrun(["distill", "--method", method, "--ipc", "1", "--train-set", str(small_run.prepared),
                     "--experts", str(expert_store), "--out", str(out)], "distill", None, tmp_path,
                    mtt={"iterations": 2, "syn_steps": 2, "expert_epochs": 1, "max_start_epoch": 2},
                    dm={"iterations": 2, "batch_real": 8})
    output = done.stdout + done.stderr
    assert sorted(re.findall(r"rank=(\d/2)", output)) == ["0/2", "1/2"]
    store = SyntheticStore(out)
    assert store.attrs["world_size"] == 2 and store.method == method
    assert store.images_u8().shape == (10, 32, 32, 3) and np.isfinite(store.attrs["final_loss"])
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(method)) == [f"{method}.zarr"]


def test_torchrun_evaluate_synthetic_splits_the_test_rows(small_run, expert_store, tmp_path):
    from pipeline.distill.mtt import MTTParams
    from pipeline.stages import distill
    from tests.conftest import BASE

    synthetic = tmp_path / "random.zarr"
    distill.run(distill.DistillParams(mtt=MTTParams(iterations=0)), BASE, "random", 2, small_run.prepared,
                expert_store, synthetic)
    args = ["evaluate_synthetic", "--seed", "0", "--synthetic", str(synthetic), "--experts", str(expert_store),
            "--prepared", str(small_run.prepared)]
    done = torchrun([*args, "--record", str(tmp_path / "two.json")], "evaluate_synthetic",
                    {"epochs": 3, "max_steps": 3}, tmp_path)
    assert sorted(re.findall(r"rank=(\d/2), rows=(\d+)/80", done.stdout + done.stderr)) == [("0/2", "40"), ("1/2", "40")]
    # one process, one thread, same params: the replicated training and the summed counts give its record
    one = subprocess.run([sys.executable, "-m", "pipeline.cli", *args, "--record", str(tmp_path / "one.json"),
                          "--params", str(tmp_path / "params.yaml")], cwd=REPO, capture_output=True, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}, timeout=600, check=False)
    assert one.returncode == 0, one.stderr[-3000:]
    two, single = (json.loads((tmp_path / f"{name}.json").read_text()) for name in ("two", "one"))
    assert two.pop("world_size") == 2 and two["test_images"] == single["test_images"] == 80
    assert two["test_accuracy"] == single["test_accuracy"]


def test_torchrun_two_processes_refine_the_palettes_of_one_process(small_run, tmp_path):
    """Refinement under torchrun: each rank holds half of every cluster's sampled real images, the squared errors and
    gradients are summed over the two, and rank 0 writes the store one process writes, up to float rounding."""
    stage = ["refine", "--bits", "2", "--prepared", str(small_run.prepared), "--clusters", str(small_run.clusters),
             "--palettes", str(small_run.palettes(2))]
    two = tmp_path / "two"
    done = torchrun([*stage, "--out", str(two / "q2.zarr"), "--metrics", str(two / "q2.json")], "refine", None,
                    tmp_path, steps=20, images_per_cluster=16)
    assert "rank=0/2" in done.stdout + done.stderr and "rank=1/2" in done.stdout + done.stderr
    one = tmp_path / "one"
    env = {**os.environ, "TQDM_DISABLE": "1", "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-m", "pipeline.cli", *stage, "--out", str(one / "q2.zarr"), "--metrics",
                    str(one / "q2.json"), "--params", str(tmp_path / "params.yaml")], cwd=REPO, env=env, check=True,
                   capture_output=True)
    a, b = (zarr.open_group(str(d / "q2.zarr"), mode="r") for d in (one, two))
    assert a.attrs["params"] == b.attrs["params"]  # same lineage, nothing about the world in it
    np.testing.assert_allclose(b["loss_before"][:], a["loss_before"][:], rtol=1e-5)
    np.testing.assert_allclose(b["loss_after"][:], a["loss_after"][:], rtol=1e-3)
    assert np.all(b["loss_after"][:] <= b["loss_before"][:]) and b["loss_after"][:].mean() < b["loss_before"][:].mean()
    # stored as uint8 sRGB: a palette colour within float rounding of a rounding boundary may land one step apart
    diff = np.abs(b["palettes"][:] - a["palettes"][:])
    assert diff.max() < 2.0 and (diff > 1e-4).mean() < 0.1, (diff.max(), (diff > 1e-4).mean())
    assert json.loads((two / "q2.json").read_text())["clusters"] == json.loads((one / "q2.json").read_text())["clusters"]


def test_torchrun_refine_with_fewer_images_than_processes(small_run, tmp_path):
    """One image per cluster and 2 processes: rank 0 holds none, still joins every sum, and the losses are one
    process's."""
    stage = ["refine", "--bits", "1", "--prepared", str(small_run.prepared), "--clusters", str(small_run.clusters),
             "--palettes", str(small_run.palettes(1))]
    torchrun([*stage, "--out", str(tmp_path / "two.zarr"), "--metrics", str(tmp_path / "two.json")], "refine", None,
             tmp_path, steps=3, images_per_cluster=1)
    env = {**os.environ, "TQDM_DISABLE": "1", "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-m", "pipeline.cli", *stage, "--out", str(tmp_path / "one.zarr"), "--metrics",
                    str(tmp_path / "one.json"), "--params", str(tmp_path / "params.yaml")], cwd=REPO, env=env,
                   check=True, capture_output=True)
    one, two = (zarr.open_group(str(tmp_path / f"{n}.zarr"), mode="r") for n in ("one", "two"))
    np.testing.assert_allclose(two["loss_before"][:], one["loss_before"][:], rtol=1e-5)
    np.testing.assert_allclose(two["loss_after"][:], one["loss_after"][:], rtol=1e-3)
