"""Which opt-in studies the report holds, how many of their records are stale, and the command that refreshes each."""

from __future__ import annotations

from pipeline.report import document
from pipeline.report.context import Report, is_ablation
from pipeline.report.outline import section
from pipeline.report.sections import architectures, regimes

# The opt-in studies, the command that runs each, and how to tell its runs among the records.
STUDIES = {
    "baselines": ("dvc repro studies/baselines/dvc.yaml",
                  lambda r: not is_ablation(r) and r.get("ipc") is None and r["method"] not in ("full", "dcq")
                  and r.get("run_group") not in ("equal_bytes", *regimes.RUN_GROUPS)),
    "equal_bytes": ("dvc repro studies/equal_bytes/dvc.yaml",
                    lambda r: r.get("run_group") == "equal_bytes"),
    "ablations": ("dvc repro studies/ablations/dvc.yaml",
                  lambda r: is_ablation(r) and r.get("ipc") is None
                  and r.get("run_group") not in ("equal_bytes", *regimes.RUN_GROUPS)),
    "distillation": ("dvc repro studies/distillation/dvc.yaml", lambda r: r.get("ipc") is not None),
    "architectures": ("dvc repro studies/architectures/dvc.yaml", architectures.is_architecture_run),
    "second regime": ("dvc repro studies/equal_bytes/dvc.yaml", regimes.is_regime_run),
    "paper-size regime": ("dvc repro studies/equal_bytes/dvc.yaml", regimes.is_paper_size_run),
}


@section("studies", "body", 10)
def studies(report: Report) -> list[document.Block]:
    table = []
    for name, (command, belongs) in STUDIES.items():
        count = sum(1 for r in report.all_recs if belongs(r))
        old = sum(1 for r in report.inputs.stale if belongs(r))
        state = f"{count} runs" if count else "not run"
        table.append([name, state + (f" ({old} stale records left out)" if old else ""), f"`{command}`"])
    return [("h2", "Studies"),
            ("p", "Opt-in studies, each its own DVC pipeline (`dvc repro` afterwards refreshes this report). A record is "
                  "stale when a stage of its lineage in dvc.lock ran with other params, at another algorithm version "
                  "(pipeline/algorithm_versions.yaml), or is no longer in the pipeline: rerun the study."),
            ("table", ["study", "in this report", "command"], table)]
