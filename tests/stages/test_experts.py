"""The experts stage under torchrun: 2 gloo processes split the experts (expert e on rank e mod 2) and write one
store, byte for byte the one a single process writes with the same thread count (real CIFAR-10 images)."""

import os
import re
import subprocess
import sys

import yaml

from pipeline.distill.experts import ExpertStore
from tests.conftest import REPO
from tests.test_executor import same_store


def test_two_torchrun_processes_write_the_single_process_store(small_run, tmp_path):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["base"]["device"] = "cpu"
    params["experts"] |= {"num_experts": 3, "eval_batch_size": 100}  # 3: rank 0 trains two, rank 1 one
    params["experts"]["recipe"] |= {"epochs": 2, "batch_size": 32}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    stage = ["-m", "pipeline.cli", "experts", "--train-set", str(small_run.prepared), "--prepared",
             str(small_run.prepared), "--params", str(tmp_path / "params.yaml")]
    # one thread per process in both, so every expert's arithmetic is the same
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1", "PYTHONPATH": str(REPO)}
    runs = {"torchrun": [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"],
            "single": [sys.executable]}
    output = {}
    for name, launcher in runs.items():
        done = subprocess.run([*launcher, *stage, "--out", str(tmp_path / f"{name}.zarr")], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=600, check=False)
        assert done.returncode == 0, done.stderr[-3000:]
        output[name] = done.stdout + done.stderr
    # the two ranks' summary lines may share a line of the captured output: match each line's own fields
    summaries = re.findall(r"experts=(\d), test_accuracy=\[[^\]]*\], runtime=[^,\s]*, rank=(\d/2)", output["torchrun"])
    assert sorted(summaries) == [("1", "1/2"), ("2", "0/2")], output["torchrun"][-3000:]
    same_store(tmp_path / "torchrun.zarr", tmp_path / "single.zarr")
    store = ExpertStore(tmp_path / "torchrun.zarr")
    assert store.num_experts == 3 and store.num_snapshots == 3
    assert len(store.attrs["test_accuracy"]) == 3 and all(a > 0 for a in store.attrs["test_accuracy"])
    assert not list(tmp_path.glob(".torchrun.zarr.*"))  # no temporary store left behind
