"""encode writes every bit depth in one pass over the images, and each store is byte for byte the one a single-q
encode writes (real CIFAR-10 images of the session's small pipeline run)."""

from dataclasses import replace

import pytest
import yaml
import zarr
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.quantize.encode_store import encode_passes, write_dcq
from pipeline.stages import encode
from tests.conftest import BASE, SMALL
from tests.test_executor import same_store


@pytest.mark.parametrize("assign", ["cluster", "best_palette"])
@pytest.mark.parametrize("small_shards", [False, True])
def test_one_pass_writes_what_one_encode_per_q_writes(small_run, tmp_path, monkeypatch, assign, small_shards):
    if small_shards:  # 160 images in shards of 8 to 32 rows: several tasks, each filling shards of every q
        monkeypatch.setattr("pipeline.io.arrays.CHUNK_BYTES", 1024)
        monkeypatch.setattr("pipeline.io.arrays.SHARD_BYTES", 4096)
    params = replace(SMALL["encode"], assign=assign)
    result = encode.run(params, BASE, [2, 1], small_run.prepared, small_run.clusters, small_run.refined(1).parent,
                        tmp_path / "one_pass")
    assert result["passes"] == 1 and result["bits"] == [2, 1]
    shards = {q: zarr.open_group(str(tmp_path / "one_pass" / f"q{q}.zarr"), mode="r")["indices"].shards[0]
              for q in (1, 2)}
    if small_shards:  # q=2's rows are twice q=1's: its shards hold half as many, and the pass fills both
        assert shards[2] < shards[1] < 160
    else:
        assert shards[1] == shards[2] == 160
    for q in (1, 2):
        write_dcq(params, BASE, q, small_run.prepared, small_run.clusters, small_run.refined(q),
                  tmp_path / "single" / f"q{q}.zarr")
        same_store(tmp_path / "one_pass" / f"q{q}.zarr", tmp_path / "single" / f"q{q}.zarr")


def test_passes_group_bit_depths_whose_shards_nest():
    assert encode_passes({1: 131072, 2: 65536, 4: 32768}, 50_000) == [[1, 2, 4]]
    assert encode_passes({1: 2672, 3: 880, 2: 1336}, 1_281_167) == [[1, 2], [3]]  # lcm(2672, 880) = 146,960
    assert encode_passes({1: 2672, 3: 880}, 2000) == [[1, 3]]  # one block of every row: nothing to align


def test_the_command_encodes_palette_bits_by_default(small_run, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"base": {"seed": 0, "device": "cpu"}, "palette": {"bits": [1, 2]},
                                      "encode": {"batch_size": 64}}))
    args = ["encode", "--prepared", str(small_run.prepared), "--clusters", str(small_run.clusters),
            "--refined", str(small_run.refined(1).parent), "--out", str(tmp_path / "dcq"), "--params", str(params)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    for q in (1, 2):
        same_store(tmp_path / "dcq" / f"q{q}.zarr", small_run.dcq(q))
    result = CliRunner().invoke(app, [*args[:-4], "--out", str(tmp_path / "other"), "--bits", "4", "--params",
                                      str(params)])
    assert result.exit_code == 2 and "refined palette store: no Zarr store at" in result.output
    assert "q4.zarr" in result.output and not (tmp_path / "other" / "q4.zarr").exists()
