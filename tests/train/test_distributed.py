"""The train stage under torchrun: 2 processes with gloo on CPU, each holding half the rows of a real CIFAR-10 DCQ
store and of the test split; one record and one checkpoint, written by rank 0."""

import json
import os
import re
import subprocess
import sys

import pytest
import yaml

from pipeline.errors import ParamsError
from pipeline.models.checkpoint import load_checkpoint
from pipeline.train.distributed import World, from_environment, local_batch
from tests.conftest import REPO


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


def torchrun(stage_args: list[str], section: str, recipe: dict, tmp_path, **keys) -> subprocess.CompletedProcess:
    """`dcq <stage_args>` under torchrun with 2 CPU processes, with a params file whose `section` recipe is small
    (and whose `section` has these other `keys`)."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["base"]["device"] = "cpu"
    params[section]["recipe"] |= recipe
    params[section] |= keys
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
