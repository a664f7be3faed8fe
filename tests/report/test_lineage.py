"""Run records judged by their lineage in dvc.lock: params, stages and algorithm versions, never files on disk."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml

from pipeline.config import params_hash
from pipeline.report import records
from pipeline.report.lineage import VERSIONS_FILE, Lineage, annotator, same, split

PIPELINE = """\
stages:
  build:
    foreach: ${variants}
    do:
      cmd: dcq ablate --variant ${key} --out stores/${key}.zarr
      params:
        - cluster.k
        - ablate.variants.${key}
        - pipeline/algorithm_versions.yaml:
            - ablate
      outs:
        - stores/${key}.zarr
  train:
    foreach: ${variants}
    do:
      cmd: dcq train --train-set stores/${key}.zarr --record runs/${key}/seed0.json
      deps:
        - stores/${key}.zarr
      params:
        - train.recipe
      outs:
        - runs/${key}/seed0.json:
            cache: false
"""
PARAMS = {"variants": {"k1": {"cluster": {"k": 1}}, "labels": {"cluster": {"source": "labels"}}},
          "cluster": {"k": 20}, "ablate": {"variants": {"k1": {"cluster": {"k": 1}},
                                                         "labels": {"cluster": {"source": "labels"}}}},
          "train": {"recipe": {"epochs": 4, "lr": 1e-05}}}


def store_params(variant: str) -> dict:
    """The params lineage the variant's store carries (its attrs `params`)."""
    return {"cluster": {"k": 20} | PARAMS["ablate"]["variants"][variant]["cluster"]}


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def repo(tmp_path) -> Path:
    """A repository as dvc leaves it after `dvc repro`: records in git, lock entries naming them; no store on disk."""
    from dvc.repo import Repo

    Repo.init(str(tmp_path), no_scm=True)
    (tmp_path / "dvc.yaml").write_text(PIPELINE)
    text = yaml.safe_dump(PARAMS)
    assert "lr: 1.0e-05" in text
    # as a user writes it: PyYAML (YAML 1.1) would read this as a string, dvc (YAML 1.2) reads a float
    (tmp_path / "params.yaml").write_text(text.replace("lr: 1.0e-05", "lr: 1e-05"))
    (tmp_path / "pipeline").mkdir()
    (tmp_path / VERSIONS_FILE).write_text("ablate: 1\ntrain: 1\n")
    stages = {}
    for variant, overrides in PARAMS["ablate"]["variants"].items():
        record = tmp_path / "runs" / variant / "seed0.json"
        record.parent.mkdir(parents=True)
        record.write_text(json.dumps({"method": "dcq", "bits": 1, "compression_ratio": 0.02, "model": "convnetd3w64",
                                      "seed": 0, "test_accuracy": 40.0, "train_bytes": 600000,
                                      "train_set": f"stores/{variant}.zarr",
                                      "train_set_hash": params_hash(store_params(variant))}))
        stages[f"build@{variant}"] = {
            "cmd": f"dcq ablate --variant {variant} --out stores/{variant}.zarr",
            "params": {"params.yaml": {"cluster.k": 20, f"ablate.variants.{variant}": overrides}},
            "outs": [{"path": f"stores/{variant}.zarr", "md5": "0" * 32 + ".dir"}]}
        stages[f"train@{variant}"] = {
            "cmd": f"dcq train --train-set stores/{variant}.zarr --record runs/{variant}/seed0.json",
            "deps": [{"path": f"stores/{variant}.zarr", "md5": "0" * 32 + ".dir"}],
            # what dvc wrote before a key was added to the recipe, with the YAML 1.2 float it writes
            "params": {"params.yaml": {"train.recipe": {"epochs": 4, "lr": 1e-05}}},
            "outs": [{"path": f"runs/{variant}/seed0.json", "md5": md5(record)}]}
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": stages}))
    return tmp_path


def judged(repo: Path) -> tuple[list[dict], list[dict]]:
    return split(records.collect(repo / "runs", annotate=annotator(Lineage.find(repo / "runs"))))


def set_params(repo: Path, change) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text().replace("1e-05", "1.0e-05"))
    change(params)
    (repo / "params.yaml").write_text(yaml.safe_dump(params))


def test_records_are_current_without_their_stores_and_say_what_they_trained_on(repo):
    assert not (repo / "stores").exists()
    current, stale = judged(repo)
    assert len(current) == 2 and not stale
    by_name = {r["ablation"]: r for r in current}
    # recovered from the lineage: the variant, its overrides, and the clusters it shares palettes over
    assert by_name["k1"]["ablation_change"] == "cluster.k=1" and by_name["k1"]["clusters"] == 1
    assert by_name["labels"]["ablation_change"] == "cluster.source=labels" and by_name["labels"]["clusters"] == 20


def test_a_changed_upstream_param_makes_exactly_its_records_stale(repo):
    set_params(repo, lambda p: p["ablate"]["variants"]["k1"]["cluster"].update(k=2))
    current, stale = judged(repo)
    assert [r["ablation"] for r in current] == ["labels"]
    assert stale[0]["stale_because"] == "build@k1: ablate.variants.k1 was {'cluster': {'k': 1}}, is {'cluster': {'k': 2}}"


def test_a_key_added_to_a_section_leaves_records_current_but_a_changed_one_does_not(repo):
    set_params(repo, lambda p: p["train"]["recipe"].update(compile=True))  # new since the runs: not compared
    assert len(judged(repo)[0]) == 2
    set_params(repo, lambda p: p["train"]["recipe"].update(epochs=5))
    current, stale = judged(repo)
    assert not current and all("train.recipe was" in r["stale_because"] for r in stale)


def test_an_algorithm_version_bump_makes_its_records_stale(repo):
    (repo / VERSIONS_FILE).write_text("ablate: 2\ntrain: 1\n")  # entries without a recorded version ran at 1
    current, stale = judged(repo)
    assert not current
    assert stale[0]["stale_because"] == "build@k1: dcq ablate ran at algorithm version 1, is 2"


def test_a_removed_stage_and_an_edited_record_are_stale(repo):
    set_params(repo, lambda p: p["variants"].pop("labels"))
    record = repo / "runs" / "k1" / "seed0.json"
    record.write_text(record.read_text().replace("40.0", "41.0"))
    current, stale = judged(repo)
    assert not current
    reasons = {r.get("ablation"): r["stale_because"] for r in stale}
    assert reasons["labels"] == "dvc.yaml no longer has the stage train@labels"
    assert reasons["k1"] == "runs/k1/seed0.json is not the record its stage train@k1 last wrote (dvc.lock)"


def test_a_record_no_lock_names_is_kept_and_its_own_train_set_info_wins(repo, tmp_path_factory):
    extra = repo / "runs" / "mine" / "seed0.json"
    extra.parent.mkdir()
    extra.write_text(json.dumps({"method": "dcq", "bits": 1, "compression_ratio": 0.02, "model": "m", "seed": 0,
                                 "test_accuracy": 1.0, "train_bytes": 1, "train_set": "stores/k1.zarr",
                                 "train_set_info": {"clusters": 7}}))
    current, _ = judged(repo)
    assert len(current) == 3 and next(r for r in current if r["model"] == "m")["clusters"] == 7
    outside = tmp_path_factory.mktemp("elsewhere")
    assert Lineage.find(outside) is None  # no repository: nothing to judge by, every record is kept


def test_numbers_compare_as_yaml_1_2_and_mappings_by_their_recorded_keys():
    assert same({"lr": 1e-05}, {"lr": 1e-05, "new": 1}) and same(5, 5.0)
    assert not same({"lr": 1e-05}, {}) and not same(True, 1) and not same("1e-05", 1e-05)
    assert not same([1, 2], [1, 2, 3])


def write_store(repo: Path, variant: str, params: dict) -> Path:
    import zarr

    path = repo / "stores" / f"{variant}.zarr"
    zarr.open_group(str(path), mode="w").attrs["params"] = params
    return path


def test_a_train_set_rebuilt_with_other_params_makes_the_runs_that_read_the_old_one_stale(repo):
    for variant in ("k1", "labels"):
        write_store(repo, variant, store_params(variant))
    assert len(judged(repo)[0]) == 2  # the stores on disk are the ones the runs read
    # rebuilt after an upstream default changed: the lock's entries would show only today's params
    write_store(repo, "k1", store_params("k1") | {"features": {"layer": "features.0"}})
    current, stale = judged(repo)
    assert [r["ablation"] for r in current] == ["labels"]
    assert stale[0]["stale_because"].startswith("stores/k1.zarr was rebuilt with other params since this run read it")


def test_an_unreadable_train_set_store_is_named_in_the_verdict(repo):
    path = write_store(repo, "k1", store_params("k1"))
    (path / "zarr.json").write_text("{not json")
    current, stale = judged(repo)
    assert [r["ablation"] for r in current] == ["labels"]
    assert "stores/k1.zarr" in stale[0]["stale_because"] and "unreadable" in stale[0]["stale_because"]
