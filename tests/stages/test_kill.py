"""SIGKILL at seeded random points during prepare, encode and train (the real `dcq` CLI in a subprocess): the
previous output stays intact, and the next run succeeds and leaves no `.NAME.tmp-PID` behind."""

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import CIFAR10, REPO

POINTS = 2  # kill points per stage


def tree_digest(path: Path) -> str:
    digest = hashlib.sha256()
    for p in sorted(path.rglob("*")) if path.is_dir() else [path]:
        if p.is_file():
            digest.update(str(p.relative_to(path.parent)).encode() + p.read_bytes())
    return digest.hexdigest()


def leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))


def command(stage: str, small_run, tmp_path: Path, out: Path) -> list[str]:
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({
        "base": {"seed": 0, "device": "cpu", "precision": "auto"},
        "prepare": {"root": str(CIFAR10), "train_per_class": 40, "test_per_class": 10},
        "encode": {"batch_size": 64},
        "train": {"recipe": {"epochs": 3, "batch_size": 32, "lr": 0.05, "compile": False}, "eval_batch_size": 100},
    }))
    args = {"prepare": ["prepare", "--out", str(out)],
            "encode": ["encode", "--bits", "2", "--prepared", str(small_run.prepared), "--clusters",
                       str(small_run.clusters), "--refined", str(small_run.refined(2).parent), "--out", str(out.parent)],
            "train": ["train", "--method", "dcq", "--bits", "1", "--model", "convnetd3", "--seed", "0",
                      "--train-set", str(small_run.dcq(1)), "--prepared", str(small_run.prepared),
                      "--checkpoint", str(out), "--record", str(out.with_suffix(".json"))]}[stage]
    return [sys.executable, "-m", "pipeline.cli", *args, "--params", str(params)]


def run(cmd: list[str], kill_after: float | None = None) -> int:
    env = os.environ | {"PYTHONPATH": str(REPO), "TQDM_DISABLE": "1"}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if kill_after is None:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err.decode()[-2000:]
        return proc.returncode
    time.sleep(kill_after)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    return proc.returncode


def complete(out: Path) -> None:
    from pipeline.io.verify import verify_store
    from pipeline.models.checkpoint import load_checkpoint

    load_checkpoint(out) if out.suffix == ".pt" else verify_store(out)


@pytest.mark.parametrize("stage", ["prepare", "encode", "train"])
def test_a_killed_stage_keeps_the_previous_output_and_the_next_run_cleans_up(stage, small_run, tmp_path):
    out = tmp_path / "out" / {"prepare": "prepared.zarr", "encode": "q2.zarr", "train": "model.pt"}[stage]
    cmd = command(stage, small_run, tmp_path, out)
    start = time.perf_counter()
    run(cmd)
    duration = time.perf_counter() - start
    before = tree_digest(out)
    rng = np.random.default_rng(sum(map(ord, stage)))
    killed = 0
    for point in sorted(rng.uniform(0.3, 0.8, POINTS) * duration):
        # a run that finishes first leaves a complete new output, also fine; the timing run may have been slowed by
        # other work on the cores, so the point is halved and the run tried again, up to 4 times
        for _ in range(4):
            if run(cmd, kill_after=float(point)) != 0:
                break
            before = tree_digest(out)
            point /= 2
        else:
            continue
        killed += 1
        if tree_digest(out) != before:  # killed between its rename and its exit: the new output must be whole
            complete(out)
            before = tree_digest(out)
    assert killed >= 1, f"every {stage} run finished before its kill point"
    run(cmd)
    assert tree_digest(out) == before if stage != "train" else out.is_file()
    assert leftovers(out) == [], leftovers(out)
