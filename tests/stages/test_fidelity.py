"""The fidelity stage through its typer command: a JSON per store, and a coreset store named unmeasured."""

import json

from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.stages import fidelity
from tests.conftest import BASE


def test_fidelity_command_writes_the_measurements(small_run, tmp_path):
    out = tmp_path / "fidelity" / "dcq-q1.json"
    params = tmp_path / "params.yaml"
    params.write_text("fidelity:\n  block_size: 50\n")
    result = CliRunner().invoke(app, ["fidelity", "--store", str(small_run.dcq(1)), "--prepared",
                                      str(small_run.prepared), "--out", str(out), "--params", str(params)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["measured"] and data["images"] == 160 and data["bits"] == 1 and data["method"] == "dcq"
    assert 5 < data["psnr_db"] < 40 and 0 < data["ssim"] < 1 and data["delta_e2000"] > 0
    again = fidelity.run(fidelity.FidelityParams(block_size=1000), small_run.dcq(1), small_run.prepared,
                         tmp_path / "again.json")
    assert again["delta_e2000"] == data["delta_e2000"] and again["psnr_db"] == data["psnr_db"]


def test_a_coreset_store_is_named_unmeasured(small_run, scores_store, tmp_path):
    from pipeline.stages import ablate
    from tests.conftest import SMALL

    params = ablate.AblateParams(bits=(1,), variants=ablate.parse_variants(
        {"half": {"coreset": {"method": "random", "keep": 0.5}}}, "test"))
    store = tmp_path / "half-q1.zarr"
    ablate.run(params, BASE, SMALL, "half", 1, small_run.prepared, small_run.teacher, scores_store, store)
    data = fidelity.run(fidelity.FidelityParams(), store, small_run.prepared, tmp_path / "half.json")
    assert data["measured"] is False and "80 rows selected from 160" in data["why"]


def test_a_missing_store_is_one_clear_line(small_run, tmp_path):
    result = CliRunner().invoke(app, ["fidelity", "--store", str(tmp_path / "nope.zarr"), "--prepared",
                                      str(small_run.prepared), "--out", str(tmp_path / "x.json")])
    assert result.exit_code == 2 and "no DCQ store at" in result.output
    assert not (tmp_path / "x.json").exists()
