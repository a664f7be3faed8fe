"""The architectures study in the report: each registry model trained on full colour and on DCQ at each q with one
recipe and the same seeds (records under `runs/architectures/`), beside the main job's model and recipe."""

from __future__ import annotations

from pipeline.report import document, records
from pipeline.report.context import Report
from pipeline.report.outline import section

RUN_GROUP = "architectures"  # the folder under the runs folder that holds the study's records


def is_architecture_run(record: dict) -> bool:
    return record.get("run_group") == RUN_GROUP


def _cell(row: dict | None) -> str:
    if row is None:
        return "-"
    acc = records.accuracy_text(row)
    gap = "" if row["method"] == "full" or row["gap_to_full"] is None else f" ({row['gap_to_full']:+.2f})"
    return acc + gap


def _budget(recs: list[dict], model: str) -> str:
    """Epochs and measured training rate of a model's runs (images/s over the runs' train seconds)."""
    runs = [r for r in recs if r["model"] == model and r.get("train_seconds") and r.get("train_images")]
    if not runs:
        return "-"
    epochs = sorted({r.get("epochs") for r in runs if r.get("epochs") is not None})
    images = sum(r["train_images"] * r.get("epochs", 1) for r in runs)
    rate = images / sum(r["train_seconds"] for r in runs)
    return f"{'/'.join(str(e) for e in epochs)} epoch(s), {rate:.0f} img/s"


def ranking(rows: list[dict], model: str) -> str:
    """The model's train sets from best to worst mean accuracy, e.g. `full > q2 > q1`."""
    mine = [r for r in rows if r["model"] == model]
    ordered = sorted(mine, key=lambda r: -r["test_accuracy_mean"])
    return " > ".join("full" if r["method"] == "full" else f"q{r['bits']}" for r in ordered)


def architecture_blocks(arch_rows: list[dict], arch_recs: list[dict], reference_rows: list[dict],
                        reference_recs: list[dict]) -> list[document.Block]:
    """One row per model: accuracy on full colour and on DCQ at each q (gap to full colour in brackets), the ranking of
    the train sets, the budget. The main job's model(s) at the main recipe close the table as the reference."""
    bits = sorted({r["bits"] for r in arch_rows if r["method"] == "dcq"})
    reference_rows = [r for r in reference_rows if r["method"] in ("full", "dcq") and r["ablation"] is None
                      and r["ipc"] is None and (r["method"] == "full" or r["bits"] in bits)]
    table = []
    for rows, recs, recipe in ((arch_rows, arch_recs, "architectures.recipe"),
                               (reference_rows, reference_recs, "train.recipe (main job)")):
        for model in sorted({r["model"] for r in rows}):
            full = next((r for r in rows if r["model"] == model and r["method"] == "full"), None)
            cells = [f"`{model}`", recipe, _cell(full)]
            for q in bits:
                cells.append(_cell(next((r for r in rows if r["model"] == model and r["method"] == "dcq"
                                         and r["bits"] == q), None)))
            seeds = sorted({s for r in rows if r["model"] == model for s in r["seeds"]})
            cells += [ranking(rows, model), ", ".join(str(s) for s in seeds),
                      _budget([r for r in recs if r["method"] in ("full", "dcq") and r.get("ablation") is None
                               and r.get("ipc") is None], model)]
            table.append(cells)
    return [
        ("h2", "Architectures: full colour and DCQ per model"),
        ("p", ("Each model of `architectures.models` (`dvc repro studies/architectures/dvc.yaml`) trained with one "
               "recipe and the same seeds on full colour and on the main job's DCQ stores, tested on the original "
               "test set: mean ± std over seeds, in brackets the gap to the same model on full colour. The last "
               "rows are the main job's model with its own recipe (more epochs), for the ranking. Rate: training "
               "images/s over the runs' train seconds (on a shared machine, only indicative).")),
        ("table", ["model", "recipe", "full colour"] + [f"DCQ q = {q}" for q in bits] +
         ["ranking", "seeds", "budget"], table)]


@section("architectures", "body", 60)
def architectures_section(report: Report) -> list[document.Block]:
    inputs = report.inputs
    if not inputs.architecture_rows:
        return []
    return architecture_blocks(inputs.architecture_rows, inputs.architecture_recs, report.rows, report.recs)
