import json

import yaml
from typer.testing import CliRunner

from pipeline.cli import app

runner = CliRunner()


def test_inspect_prints_the_json_summary(small_run):
    result = runner.invoke(app, ["inspect", str(small_run.dcq(2))])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["bits"] == 2 and summary["images"] == 160 and summary["clusters"] == 4
    assert summary["nominal_ratio"] == 2 / 24 and summary["bytes_raw_rgb24"] == 160 * 32 * 32 * 3


def test_export_command(small_run, tmp_path):
    result = runner.invoke(app, ["export", str(small_run.dcq(1)), str(tmp_path / "png")])
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "png").rglob("*.png"))) == 160


def test_bad_params_exit_2_with_the_culprit(tmp_path, small_run):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"base": {"seed": 0}, "palette": {"k_gra": 140}}))
    result = runner.invoke(app, ["palette", "--params", str(params), "--bits", "1", "--prepared", "x",
                                 "--clusters", "x", "--attention", "x", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "k_gra=140" in result.output


def test_missing_dataset_and_store_exit_2(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"base": {"seed": 0}, "prepare": {"root": str(tmp_path / "gone")}}))
    result = runner.invoke(app, ["prepare", "--params", str(params), "--out", str(tmp_path / "p.zarr")])
    assert result.exit_code == 2 and "dataset folder not found" in result.output
    result = runner.invoke(app, ["inspect", str(tmp_path)])
    assert result.exit_code == 2 and "no DCQ store" in result.output


def test_ablate_command_builds_a_variant_and_names_an_unknown_one(small_run, tmp_path):
    from pipeline.config import to_dict
    from pipeline.stages import ablate
    from tests.conftest import SMALL

    sections = {name: to_dict(SMALL[name]) for name in ablate.SECTIONS}
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"base": {"seed": 0, "device": "cpu"}, **sections,
                                      "ablate": {"bits": [1], "variants": {"k2": {"cluster": {"k": 2}}}}}))
    common = ["--params", str(params), "--bits", "1", "--prepared", str(small_run.prepared),
              "--teacher", str(small_run.teacher)]
    result = runner.invoke(app, ["ablate", "--variant", "k2", *common, "--out", str(tmp_path / "k2.zarr")])
    assert result.exit_code == 0, result.output
    assert json.loads(runner.invoke(app, ["inspect", str(tmp_path / "k2.zarr")]).stdout)["clusters"] == 2
    result = runner.invoke(app, ["ablate", "--variant", "k3", *common, "--out", str(tmp_path / "k3.zarr")])
    assert result.exit_code == 2 and "'k3' is not in ablate.variants ['k2']" in result.output
    assert not (tmp_path / "k3.zarr").exists()


def test_evaluate_synthetic_command_names_a_missing_store(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"base": {"seed": 0}, "evaluate_synthetic": {"seeds": [0]}}))
    result = runner.invoke(app, ["evaluate_synthetic", "--params", str(params), "--seed", "0",
                                 "--synthetic", str(tmp_path / "gone.zarr"), "--experts", str(tmp_path),
                                 "--prepared", str(tmp_path), "--record", str(tmp_path / "r.json")])
    assert result.exit_code == 2 and "no synthetic or DCQ store at" in result.output and "gone.zarr" in result.output
