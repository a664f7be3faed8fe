"""The committed report is what a fresh clone's `dvc repro` writes: every study's table is in it, and no record it
was built from is stale by its lineage (the locks and params.yaml as committed)."""

from __future__ import annotations

import json

import pytest
import yaml

from pipeline.report import lineage, records
from tests.conftest import REPO

RUNS = REPO / "data" / "runs"
REPORT = REPO / "reports" / "report.md"


@pytest.fixture(scope="module")
def shown() -> list[dict]:
    return json.loads((REPO / "reports" / "metrics.json").read_text())["records"]


def test_no_committed_record_is_stale_by_its_lineage():
    judged = records.collect(RUNS, annotate=lineage.annotator(lineage.Lineage.find(RUNS)))
    stale = [(r["run_group"], r["stale_because"]) for r in judged if "stale_because" in r]
    assert not stale, f"{len(stale)} stale records, e.g. {stale[:3]}: rerun their study or remove them"
    assert "stale run record" not in REPORT.read_text()


@pytest.mark.parametrize("method", ["median_cut", "octree", "kmeans_lab", "libimagequant", "jpeg"])
def test_every_quantizer_and_codec_has_its_matched_storage_row(shown, method):
    assert any(r["method"] == method and r.get("bits") for r in shown), method
    table = REPORT.read_text().split("## At matched storage")[1].split("\n## ")[0]
    assert f"\n| {method} |" in table


@pytest.mark.parametrize("coreset", ["random", "ccs"])
def test_every_coreset_has_its_matched_storage_row(shown, coreset):
    assert any(r["method"] == coreset and r.get("bits") for r in shown)
    table = REPORT.read_text().split("## At matched storage")[1].split("\n## ")[0]
    assert f"\n| {coreset} | coreset" in table


@pytest.mark.parametrize("method", ["random", "dm", "mtt", "autopalette", "mtt_lss"])
def test_every_distiller_and_the_real_images_have_their_ipc_row(shown, method):
    assert any(r["method"] == method and r.get("ipc") for r in shown)
    table = REPORT.read_text().split("## Dataset distillation at equal storage")[1].split("\n## ")[0]
    assert f"\n| {method} |" in table


def test_every_ablation_variant_has_its_row():
    """An IPC-budget variant (`coreset.ipc`) is read against the distillers, every other one in the ablations table."""
    variants = yaml.safe_load((REPO / "params.yaml").read_text())["ablate"]["variants"]
    text = REPORT.read_text()
    ablations = text.split("## DCQ ablations")[1].split("\n## ")[0]
    ipc = text.split("## Dataset distillation at equal storage")[1].split("\n## ")[0]
    missing = [name for name, change in variants.items()
               if ("ipc" in (change.get("coreset") or {}) and f"\n| dcq [{name}] (" not in ipc)
               or ("ipc" not in (change.get("coreset") or {}) and f"\n| {name} |" not in ablations)]
    assert not missing, missing
