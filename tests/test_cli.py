import json

import pytest
import yaml
from typer.testing import CliRunner

from pipeline.cli import app
from tests.conftest import REPO

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
    result = runner.invoke(app, ["palette", "--params", str(params), "--bits", "1", "--colour-counts", "x",
                                 "--out", str(tmp_path / "o")])
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
    shown = runner.invoke(app, ["inspect", str(tmp_path / "k2.zarr")])
    assert json.loads(shown.stdout)["clusters"] == 2, (shown.output, shown.exception)
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


def _one_line_error(result) -> str:
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def test_broken_yaml_is_one_line_naming_the_file_and_line(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("base:\n  seed: 0\nprepare: [unclosed\n")
    line = _one_line_error(runner.invoke(app, ["prepare", "--params", str(params), "--out", str(tmp_path / "p")]))
    assert "params.yaml" in line and "not valid YAML" in line and "line" in line


def test_cuda_on_a_machine_without_cuda_is_one_line(tmp_path, small_run, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"base": {"seed": 0, "device": "cuda"}, "features": {}}))
    line = _one_line_error(runner.invoke(app, ["features", "--params", str(params), "--prepared",
                                               str(small_run.prepared), "--teacher", str(small_run.teacher),
                                               "--out", str(tmp_path / "f.zarr")]))
    assert "base.device is 'cuda'" in line and not (tmp_path / "f.zarr").exists()


def test_a_file_that_is_not_a_checkpoint_is_one_line_naming_it(tmp_path, small_run):
    bogus = tmp_path / "teacher.pt"
    bogus.write_text("not a checkpoint")
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"base": {"seed": 0}, "attention": {}}))
    line = _one_line_error(runner.invoke(app, ["attention", "--params", str(params), "--prepared",
                                               str(small_run.prepared), "--teacher", str(bogus),
                                               "--out", str(tmp_path / "a.zarr")]))
    assert str(bogus) in line and "not a dcq checkpoint" in line


def test_a_truncated_shard_is_one_line_naming_the_store(tmp_path, small_run):
    import shutil

    prepared = tmp_path / "prepared.zarr"
    shutil.copytree(small_run.prepared, prepared)
    shard = max((p for p in (prepared / "train" / "images").rglob("*") if p.is_file() and p.name != "zarr.json"),
                key=lambda p: p.stat().st_size)
    shard.write_bytes(shard.read_bytes()[:1000])
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"base": {"seed": 0}, "features": {}}))
    line = _one_line_error(runner.invoke(app, ["features", "--params", str(params), "--prepared", str(prepared),
                                               "--teacher", str(small_run.teacher), "--out", str(tmp_path / "f")]))
    assert str(prepared) in line and "truncated" in line


def test_verify_reports_every_store_it_checked(small_run):
    result = runner.invoke(app, ["verify", str(small_run.prepared), str(small_run.dcq(1))])
    assert result.exit_code == 0, result.output
    assert result.output.count("ok ") == 2 and "train/images[160]" in result.output


def test_help_lists_every_command_with_its_docstring_and_imports_no_heavy_library():
    import ast
    import subprocess
    import sys

    from pipeline.cli import SHORT_HELP, STAGES, TOOLS, inspect_store

    tools = {"inspect": inspect_store.__doc__, "export": None, "verify": None}
    for name in [*STAGES, *TOOLS]:
        if name in STAGES:
            tree = ast.parse((REPO / "pipeline" / "stages" / f"{name}.py").read_text())
            doc = ast.get_docstring(next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "command"))
        else:
            import pipeline.cli as cli

            doc = tools.get(name) or cli.TOOLS[name].__doc__  # "inspect" is inspect_store (the name is a module)
        assert SHORT_HELP[name] == doc.strip().splitlines()[0], name
    code = ("import sys; from pipeline.cli import main; sys.argv = ['dcq', '--help']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print('HEAVY', sorted(m for m in ('torch', 'zarr', 'numpy', 'rich') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO).stdout
    assert "HEAVY []" in out, out
    assert all(name in out for name in [*STAGES, *TOOLS])


def test_version_option_and_attribute_agree():
    from importlib.metadata import version

    import pipeline

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"dcq {pipeline.__version__}"
    assert pipeline.__version__ == version("dcq")


def test_preset_prints_dvc_overrides_or_the_merged_params():
    from pipeline.config import preset_overrides, preset_params

    shown = runner.invoke(app, ["preset", "paper", "--params", str(REPO / "params.yaml")])
    assert shown.exit_code == 0 and shown.output.split() == [w for v in preset_overrides("paper") for w in ("-S", v)]
    merged = runner.invoke(app, ["preset", "imagenet", "--merged", "--params", str(REPO / "params.yaml")])
    assert yaml.safe_load(merged.output) == preset_params("imagenet", REPO / "params.yaml")
    missing = runner.invoke(app, ["preset", "nope", "--params", str(REPO / "params.yaml")])
    assert missing.exit_code == 2 and missing.output.strip() == "error: no preset 'nope'; presets: imagenet, paper"


@pytest.mark.parametrize("stage", ["prepare", "cluster", "fidelity", "codec", "report"])
def test_a_stage_that_runs_no_model_starts_without_torch(stage):
    """Each `dvc repro` stage is its own process: a stage that runs no model must not pay torch's import (seconds
    on a small CPU) to start. benchmarks/bench_startup.py measures what it saves."""
    import subprocess
    import sys

    code = f"import sys; import pipeline.stages.{stage}; print(sorted(m for m in ('torch',) if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True).stdout
    assert out.strip() == "[]", f"{stage} imports torch at start-up"


def test_prepare_all_train_keeps_every_train_image_and_says_so(tmp_path, cifar10):
    """The paper-size regime's prepared store: `--all-train` overrides prepare.train_per_class, and the store's
    params (which every downstream lineage carries) record the override."""
    import shutil

    import zarr

    root = tmp_path / "tree"
    for split, per_class in (("train", 5), ("test", 2)):
        for cls in ("airplane", "cat"):
            (root / split / cls).mkdir(parents=True)
            for f in sorted((cifar10 / split / cls).iterdir())[:per_class]:
                shutil.copy(f, root / split / cls / f.name)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"base": {"seed": 0}, "prepare": {"root": str(root), "train_per_class": 2}}))
    for flag, expected in (([], 4), (["--all-train"], 10)):
        out = tmp_path / f"p{len(flag)}.zarr"
        result = runner.invoke(app, ["prepare", "--params", str(params), "--out", str(out), *flag])
        assert result.exit_code == 0, result.output
        store = zarr.open_group(str(out), mode="r")
        assert store["train/labels"].shape == (expected,) and store["test/labels"].shape == (4,)
        assert store.attrs["params"]["prepare"]["train_per_class"] == (None if flag else 2)
