"""The equal-bytes study's other regimes in the report, each beside the main regime: the second regime (full colour,
DCQ and the strongest contenders trained with `regime2.recipe`, 4x the main recipe's epochs; records under
`runs/regime2/`) and the paper-size regime (every train image, the main recipe; `regime3`, records under
`runs/regime3/`). Per train set: its difference to DCQ at the same q in each regime, and the rankings side by side."""

from __future__ import annotations

from pipeline.report import document, records, stats
from pipeline.report.context import Report
from pipeline.report.outline import section

RUN_GROUP = "regime2"  # the folder under the runs folder that holds the regime's records
PAPER_SIZE_GROUP = "regime3"
RUN_GROUPS = (RUN_GROUP, PAPER_SIZE_GROUP)


def is_regime_run(record: dict) -> bool:
    return record.get("run_group") == RUN_GROUP


def is_paper_size_run(record: dict) -> bool:
    return record.get("run_group") == PAPER_SIZE_GROUP


def _key(r: dict) -> tuple:
    return (r["model"], r["method"], r.get("ablation"), r["bits"])


def _by_seed(recs: list[dict], key: tuple) -> dict[int, float]:
    return {r["seed"]: r["test_accuracy"] for r in recs if _key(r) == key and r.get("ipc") is None}


def _name(row: dict) -> str:
    label = "full colour" if row["method"] == "full" else (
        "DCQ" if row["method"] == "dcq" and row["ablation"] is None else
        f"DCQ `{row['ablation']}`" if row["method"] == "dcq" else f"`{row['method']}`")
    return label


def _epochs(recs: list[dict], key: tuple) -> str:
    epochs = sorted({r.get("epochs") for r in recs if _key(r) == key and r.get("epochs") is not None})
    return "/".join(str(e) for e in epochs) or "-"


def _accuracy(row: dict, recs: list[dict]) -> str:
    """'mean ± std (n seeds, e epochs)'."""
    spread = "" if row["n"] == 1 else f" ± {row['test_accuracy_std']:.2f}"
    seeds = "1 seed" if row["n"] == 1 else f"{row['n']} seeds"
    return f"{row['test_accuracy_mean']:.2f}{spread} ({seeds}, {_epochs(recs, _key(row))} epochs)"


def _bytes(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB" if n >= 1e3 else f"{n} B"


def ranking(rows: list[dict], keys: list[tuple]) -> str:
    """The train sets named by `keys` from best to worst mean accuracy, e.g. `jpeg > DCQ > random`."""
    mine = sorted((r for r in rows if _key(r) in keys), key=lambda r: -r["test_accuracy_mean"])
    return " > ".join(_name(r) for r in mine)


SECOND_INTRO = (
    "The headline comparison retrained with `regime2.recipe` (`dvc repro studies/equal_bytes/dvc.yaml`, stages "
    "`train_r2_*`): full colour, DCQ at each q of `regime2.bits`, and the contenders of `equal_bytes.regime2_*` "
    "(DCQ's best variant, the best per-image quantizer, the random coreset, the standard codec, and the paper's "
    "random-clusters ablation), each beside the same train set in the main regime.")
PAPER_SIZE_INTRO = (
    "The headline comparison at the paper's data size (`dvc repro studies/equal_bytes/dvc.yaml`, stages `*_r3`): "
    "every train image, so 20 clusters hold about 2,500 images each where the main job's hold 500, trained with "
    "the main job's recipe and model (`regime3`). Each train set is built again from the whole train set at each q "
    "of `regime3.bits`: full colour, DCQ, and the contenders of `equal_bytes.regime3_*` (DCQ's best variant, the best "
    "per-image quantizer, the standard codec at this DCQ's bytes, the random coreset). The main-regime column is "
    "the same method on the main job's 10,000-image subset.")


def regime_blocks(regime_rows: list[dict], regime_recs: list[dict], main_rows: list[dict],
                  main_recs: list[dict], title: str = "Second regime: 4x the training steps",
                  intro: str = SECOND_INTRO, label: str = "second regime") -> list[document.Block]:
    """One row per train set of a regime: its accuracy in the main regime and in this one, the difference to DCQ at
    the same q in each (paired by seed, 95% t interval), and per q the ranking in both regimes."""
    def diff_cell(recs: list[dict], key: tuple) -> str:
        model, method, ablation, bits = key
        if method == "full" or (method == "dcq" and ablation is None):
            return ""
        diff = stats.difference(_by_seed(recs, key), _by_seed(recs, (model, "dcq", None, bits)))
        if diff is None:
            return "-"
        return f"{diff['mean']:+.2f} [{diff['low']:+.2f}, {diff['high']:+.2f}] ({stats.verdict(diff)})"

    main_by_key = {_key(r): r for r in main_rows if r["ipc"] is None}
    table, rankings = [], []
    ordered = sorted(regime_rows, key=lambda r: (r["model"], r["bits"] or 0, records.method_order(r["method"]),
                                                 r["ablation"] or ""))
    for row in ordered:
        key = _key(row)
        before = main_by_key.get(key)
        table.append([
            _name(row), "-" if row["bits"] is None else row["bits"], row["model"],
            _bytes(row["train_bytes"]),
            "-" if before is None else _accuracy(before, main_recs), _accuracy(row, regime_recs),
            "" if before is None else diff_cell(main_recs, key), diff_cell(regime_recs, key)])
    for model in sorted({r["model"] for r in regime_rows}):
        for q in sorted({r["bits"] for r in regime_rows if r["model"] == model and r["bits"] is not None}):
            keys = [_key(r) for r in regime_rows if r["model"] == model and r["bits"] in (q, None)
                    and _key(r) in main_by_key]
            if len(keys) >= 2:
                before, after = ranking(main_rows, keys), ranking(regime_rows, keys)
                rankings.append(("p", f"q = {q} ({model}): main regime {before}; {label} {after}: the ranking "
                                      f"{'holds' if before == after else 'changes'} (by means; a pair's order is only "
                                      "a finding where its difference is established)."))
    return [
        ("h2", title),
        ("p", f"{intro} Differences to DCQ at the same q in points, paired by seed, 95% t interval; established "
              f"only with at least {stats.MIN_SEEDS} seeds and an interval that excludes 0."),
        ("table", ["train set", "q", "model", "bytes", "main regime (%)", f"{label} (%)",
                   "minus DCQ, main regime", f"minus DCQ, {label}"], table)] + rankings


@section("second regime", "body", 70)
def regime_section(report: Report) -> list[document.Block]:
    inputs = report.inputs
    if not inputs.regime_rows:
        return []
    return regime_blocks(inputs.regime_rows, inputs.regime_recs, records.summarize(report.main_recs),
                         report.main_recs)


@section("paper-size regime", "body", 71)
def paper_size_section(report: Report) -> list[document.Block]:
    inputs = report.inputs
    if not inputs.paper_size_rows:
        return []
    return regime_blocks(inputs.paper_size_rows, inputs.paper_size_recs, records.summarize(report.main_recs),
                         report.main_recs, "The paper's data size: every train image", PAPER_SIZE_INTRO,
                         "paper size")
