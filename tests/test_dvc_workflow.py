"""The user's workflow through the real `dvc` CLI, on a copy of the project with tiny params: `dvc repro`, a params
change that reruns exactly what it affects, `dvc metrics diff`, `dvc plots show`, and one queued experiment."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import CIFAR10, REPO

COPIED = ["pipeline", "dvc.yaml", "paths.yaml", "params.yaml", "pyproject.toml", ".dvcignore", ".gitignore",
          ".dvc/config", ".dvc/plots", "studies/baselines/dvc.yaml", "studies/ablations/dvc.yaml",
          "studies/distillation/dvc.yaml"]
DCQ_RUNS = {"train_dcq@1-convnetd3w64-0", "train_dcq@1-convnetd3w64-1"}
AFTER_K_GRA = {"colour_counts", "palette@1", "refine@1", "encode", "fidelity@1", "report"} | DCQ_RUNS


def tiny_params(project: Path) -> dict:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    recipe = {"epochs": 1, "batch_size": 32, "compile": False}
    # Relative, as in the real params.yaml: a DVC temporary workspace must still find the dataset.
    params["prepare"].update(root=os.path.relpath(CIFAR10, project), train_per_class=10, test_per_class=5)
    params["teacher"]["recipe"].update(recipe)
    params["cluster"].update(k=4, iterations=5, n_init=1)
    params["attention"]["batch_size"] = 50
    params["palette"].update(bits=[1], iterations=5)
    params["refine"].update(steps=3, images_per_cluster=4)
    params["train"].update(bits=[1], seeds=[0, 1])
    params["train"]["recipe"].update(recipe)
    params["report"]["grid_images"] = 4
    return params


def dvc(project: Path, *args: str, check: bool = True, timeout: int = 600) -> subprocess.CompletedProcess:
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
                        "PYTHONPATH": str(project), "TQDM_DISABLE": "1", "COLUMNS": "200"}
    result = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=project, env=env, capture_output=True,
                            text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"dvc {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def git(project: Path, *args: str) -> None:
    env = os.environ | {"GIT_AUTHOR_NAME": "dcq", "GIT_AUTHOR_EMAIL": "dcq@localhost", "GIT_COMMITTER_NAME": "dcq",
                        "GIT_COMMITTER_EMAIL": "dcq@localhost"}
    subprocess.run(["git", *args], cwd=project, env=env, check=True, capture_output=True)


def ran(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")}


@pytest.fixture(scope="module")
def project(tmp_path_factory, cifar10) -> Path:
    root = tmp_path_factory.mktemp("workflow") / "project"
    for name in COPIED:
        src = REPO / name
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, root / name)
    (root / "params.yaml").write_text(yaml.safe_dump(tiny_params(root), sort_keys=False))
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "tiny project")
    first = dvc(root, "repro")
    assert "report" in ran(first.stdout)
    git(root, "add", "-A")
    git(root, "commit", "-qm", "first repro")
    return root


def test_repro_writes_the_report_metrics_and_the_dcq_store(project):
    assert (project / "reports" / "report.html").stat().st_size > 10_000
    assert (project / "data" / "dcq" / "q1.zarr" / "zarr.json").is_file()
    records = json.loads((project / "reports" / "metrics.json").read_text())["records"]
    assert {(r["method"], r["bits"], r["seed"]) for r in records} == {("full", None, 0), ("full", None, 1),
                                                                      ("dcq", 1, 0), ("dcq", 1, 1)}
    summary = json.loads((project / "reports" / "summary.json").read_text())
    assert set(summary) == {"full", "dcq-q1", "written_by"} and set(summary["dcq-q1"]) == {"accuracy", "bytes"}
    md = (project / "reports" / "report.md").read_text()
    assert "| baselines | not run |" in md and "| distillation | not run |" in md


def test_metrics_show_fits_a_terminal(project):
    shown = dvc(project, "metrics", "show").stdout
    assert "dcq-q1.accuracy" in shown
    assert max(len(line) for line in shown.splitlines()) <= 160, shown


def test_a_params_change_reruns_exactly_what_it_affects(project):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["palette"]["k_gra"] = 80.0
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # `dvc status` alone also lists every stage of the studies that were never run; the main job is dvc.yaml. DVC
    # names the stage whose params changed (and the always-changed report); the stages below it show as changed
    # once its outputs do, which `dvc repro` then proves by rerunning exactly them.
    assert set(json.loads(dvc(project, "status", "dvc.yaml", "--json").stdout)) == {"colour_counts", "palette@1",
                                                                                      "report"}
    assert ran(dvc(project, "repro").stdout) == AFTER_K_GRA
    diff = json.loads(dvc(project, "metrics", "diff", "--json").stdout)
    changed = {key for file in diff.values() for key in file}
    assert any(key.startswith("dcq-q1.") for key in changed), diff
    assert not any(key.startswith("full.") for key in changed), diff  # full colour did not rerun
    assert "dcq-q1" in dvc(project, "metrics", "diff").stdout
    plots = dvc(project, "plots", "show", "-o", "plots_out")
    page = (project / "plots_out" / "index.html").read_text()
    assert plots.returncode == 0 and "test_accuracy" in page
    assert all(name in page for name in ("accuracy_vs_ratio.png", "train_images.png", "per_class.png")), page[:2000]
    git(project, "add", "-A")
    git(project, "commit", "-qm", "k_gra 80")


def test_a_study_record_is_judged_by_its_lineage_not_by_its_store(project):
    """A fresh clone has the records and locks but no stores (no DVC remote travels with the repository): its report
    keeps the study records. A param the store was built with, changed, makes exactly those records stale."""
    dvc(project, "repro", "studies/baselines/dvc.yaml:train_baseline@median_cut-1-convnetd3w64-0")
    dvc(project, "repro", "-s", "report")
    metrics = project / "reports" / "metrics.json"
    before = json.loads(metrics.read_text())["records"]
    assert {(r["method"], r["bits"], r["seed"]) for r in before} >= {("median_cut", 1, 0), ("dcq", 1, 0)}
    shutil.rmtree(project / "data" / "baselines" / "median_cut-q1.zarr")
    dvc(project, "repro", "-s", "report")
    assert json.loads(metrics.read_text())["records"] == before
    assert "stale run record" not in (project / "reports" / "report.md").read_text()

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["baseline"]["kmeans_iterations"] += 1
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    dvc(project, "repro", "-s", "report")
    after = json.loads(metrics.read_text())["records"]
    assert [r for r in before if r["method"] != "median_cut"] == after
    md = (project / "reports" / "report.md").read_text()
    assert "Left out: 1 stale run record(s)" in md and "baseline.kmeans_iterations was 20" in md, md[-3000:]
    params["baseline"]["kmeans_iterations"] -= 1
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    dvc(project, "repro", "-s", "report")
    assert json.loads(metrics.read_text())["records"] == before


def recipes() -> list[list[str]]:
    """The `dvc ...` commands of docs/dvc.md's code blocks: the docs are what the test runs."""
    import shlex

    text = (REPO / "docs" / "dvc.md").read_text()
    blocks = text.split("```bash\n")[1:]
    return [shlex.split(line)[1:] for block in blocks for line in block.split("```")[0].splitlines()
            if line.startswith("dvc ")]


def test_the_docs_recipes_run_and_fit_a_terminal(project):
    found = recipes()
    assert {cmd[0] for cmd in found} >= {"status", "exp", "dag", "plots"}, found
    for cmd in found:
        if cmd[:2] == ["plots", "diff"]:
            continue  # needs an earlier revision with plots: run by test_a_params_change_... through `plots show`
        out = dvc(project, *cmd, *(["--no-pager"] if cmd[:2] == ["exp", "show"] else []))
        width = max((len(line) for line in out.stdout.splitlines()), default=0)
        assert width < 160, (cmd, out.stdout)
        if cmd[:2] == ["exp", "show"]:
            assert "dcq-q1.accuracy" in out.stdout and "palette.k_gra" in out.stdout, out.stdout
        if cmd[0] == "dag":
            assert out.stdout.startswith("```mermaid") and "report" in out.stdout and "baseline" not in out.stdout
    assert "dvc_plots/" in (REPO / ".gitignore").read_text().splitlines()


def test_a_queued_experiment_runs_in_a_temporary_workspace(project):
    """A prepare change, so the dataset is read again from inside <project>/.dvc/tmp/exps/ (a relative root). The
    experiment targets the prepare stage: what the temporary workspace must get right is the dataset path, and the
    stages below it would only retrain the tiny job (5 minutes of the suite)."""
    dvc(project, "exp", "run", "--queue", "-S", "prepare.test_per_class=4", "-n", "fewer-steps", "dvc.yaml:prepare")
    dvc(project, "queue", "start", "-j", "1")
    deadline = time.time() + 600
    while time.time() < deadline:
        status = dvc(project, "queue", "status").stdout
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(3)
    assert "Success" in status, status + dvc(project, "queue", "logs", "fewer-steps", check=False).stdout
    shown = json.loads(dvc(project, "exp", "show", "--json").stdout)
    names = [run.get("name") for rev in shown for exp in (rev.get("experiments") or []) for run in exp["revs"]]
    assert "fewer-steps" in names, shown
    dvc(project, "queue", "stop", check=False)
