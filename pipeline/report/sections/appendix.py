"""The appendix: every run, the stage timings and the resolved params."""

from __future__ import annotations

import yaml

from pipeline.report import document, records
from pipeline.report.context import Report
from pipeline.report.outline import section


@section("runs", "appendix", 10)
def runs(report: Report) -> list[document.Block]:
    table = [[records.series_label(r["method"], r.get("ablation")), "-" if r["bits"] is None else r["bits"],
              r["model"], r["seed"], f"{r['test_accuracy']:.2f}", r.get("final_train_accuracy", "-"),
              r.get("epochs", "-"), r.get("train_seconds", "-"), r.get("hardware", "-")] for r in report.all_recs]
    blocks: list[document.Block] = [
        ("h2", "Runs"),
        ("table", ["method", "bits", "model", "seed", "test accuracy (%)", "final train acc. (%)", "epochs",
                   "train s", "hardware"], table)]
    if report.inputs.stale:  # one line per reason, not per record: the studies table counts them per study
        reasons: dict[str, int] = {}
        for r in report.inputs.stale:
            reasons[r["stale_because"]] = reasons.get(r["stale_because"], 0) + 1
        blocks.append(("p", f"Left out: {len(report.inputs.stale)} stale run record(s), whose lineage in dvc.lock "
                            "differs from today's params, stages or algorithm versions; the table of studies counts "
                            "them per study, and its command refreshes them. The first reason of each:"))
        blocks.append(("table", ["records", "stale because"],
                       [[n, f"`{why}`"] for why, n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))[:20]]))
    return blocks


@section("stage timings", "appendix", 20)
def stage_timings(report: Report) -> list[document.Block]:
    timings = report.inputs.timings
    if not timings:
        return [("h2", "Stage timings"), ("p", "No stage timings recorded.")]
    main = sum(t for _, t, in_main in timings if in_main)
    studies = sum(t for _, t, in_main in timings if not in_main)
    rows = [[s, f"{t:.1f}", "main job" if in_main else "study"] for s, t, in_main in timings]
    rows.append(["**main job total**", f"**{main:.1f}**", ""])
    if studies:
        rows.append(["studies total", f"{studies:.1f}", ""])
    return [("h2", "Stage timings"), ("table", ["stage", "seconds", "pipeline"], rows),
            ("p", ("Wall time of each stage's last run (what `dvc repro` skipped keeps its earlier time; a "
                   "study's stages keep the time of the run that made their records)."))]


@section("params", "appendix", 30)
def params(report: Report) -> list[document.Block]:
    lineage = dict(report.any_store.attrs.get("params", {}))
    return [("h2", "Params"),
            ("p", "Resolved params of the DCQ stores (their whole lineage, from the store attributes):"),
            ("pre", yaml.safe_dump(lineage, sort_keys=False, default_flow_style=None)),
            ("p", "Training (from the run checkpoints):"),
            ("pre", yaml.safe_dump(report.inputs.train_params, sort_keys=False, default_flow_style=None))]
