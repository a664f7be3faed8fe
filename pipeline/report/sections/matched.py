"""The answer: each method at matched storage, its difference to DCQ with the 95% interval, and accuracy against
bytes on disk; then every matched-storage variant's accuracy, seeds and ratios."""

from __future__ import annotations

from pipeline.report import document, records, stats
from pipeline.report.context import Report, accuracy_text, fmt_bytes, is_ablation
from pipeline.report.outline import section


def _model_table(report: Report, model: str) -> list[document.Block]:
    rows = report.rows
    by_bits = sorted({r["bits"] for r in rows if r["model"] == model and r["bits"] is not None})
    best = {q: max(r["test_accuracy_mean"] for r in rows if r["model"] == model and r["bits"] == q) for q in by_bits}
    table = []
    for method in sorted({r["method"] for r in rows if r["model"] == model}, key=records.method_order):
        cells = [method, records.family(method)]
        for q in by_bits:
            r = next((r for r in rows if r["model"] == model and r["method"] == method and r["bits"] == q), None)
            if r is None:
                cells.append("-" if method != "full" else "")
                continue
            acc = accuracy_text(r)
            cells.append(f"{'**' + acc + '**' if r['test_accuracy_mean'] == best[q] else acc} "
                         f"({fmt_bytes(r['train_bytes'])})")
        if method == "full":
            r = next(r for r in rows if r["model"] == model and r["method"] == "full")
            cells[2:] = [f"{accuracy_text(r)} ({fmt_bytes(r['train_bytes'])})"] + [""] * (len(by_bits) - 1)
        table.append(cells)
    return [("h3", f"model `{model}`"),
            ("table", ["method", "family"] + [f"q = {q} ({q / 24:.1%} of 24-bit)" for q in by_bits], table)]


@section("matched storage", "answer", 10)
def matched_storage(report: Report) -> list[document.Block]:
    blocks: list[document.Block] = [("h2", "At matched storage"), ("p", (
        "Test accuracy (%) by method at each bit depth q, mean ± std over seeds, with the train set's bytes on disk. "
        "Quantizers store q-bit indices plus palettes; coresets keep round(q/24 x N) full-colour images (pruning "
        "ratio 1 - q/24). **Bold**: best at that q."))]
    for model in sorted({r["model"] for r in report.rows}):
        blocks += _model_table(report, model)
    return blocks


def _by_seed(recs: list[dict], method: str, bits: int | None, model: str) -> dict[int, float]:
    """Test accuracy by seed of a method's matched-storage runs at q (no ablation, no IPC budget)."""
    return {r["seed"]: r["test_accuracy"] for r in recs if r["method"] == method and r["bits"] == bits
            and r["model"] == model and not is_ablation(r) and r.get("ipc") is None}


def _difference_cells(diff: dict | None) -> list[str]:
    """'mean ± sd', its 95% interval and the verdict of a stats.difference."""
    if diff is None:
        return ["-", "-", stats.verdict(diff)]
    return [f"{diff['mean']:+.2f} ± {diff['sd']:.2f}",
            f"[{diff['low']:+.2f}, {diff['high']:+.2f}] ({diff['kind']}, n={diff['n']})", stats.verdict(diff)]


@section("differences to DCQ", "answer", 20)
def differences(report: Report) -> list[document.Block]:
    """Each method at a DCQ bit depth against DCQ at that q: accuracy difference with its 95% interval."""
    rows, recs = report.rows, report.recs
    table = []
    for dcq in (r for r in rows if r["method"] == "dcq"):
        reference = _by_seed(recs, "dcq", dcq["bits"], dcq["model"])
        others = [r for r in rows if r["model"] == dcq["model"] and r["method"] != "dcq"
                  and (r["bits"] == dcq["bits"] or r["method"] == "full")]
        for other in sorted(others, key=lambda r: records.method_order(r["method"])):
            diff = stats.difference(_by_seed(recs, other["method"], other["bits"], other["model"]), reference)
            table.append([dcq["model"], str(dcq["bits"]), other["method"],
                          f"{other['train_bytes'] / dcq['train_bytes']:.2f}x", *_difference_cells(diff)])
    if not table:
        return []
    return [("h2", "Differences to DCQ at each bit depth"),
            ("p", ("Each method's test accuracy minus DCQ's at the same q (full colour: at any q), in points: mean "
                   "± std of the per-seed differences where the runs share seeds (paired t), else Welch's. The "
                   f"95% interval decides: a difference is established only when it excludes 0 and each side has "
                   f"at least {stats.MIN_SEEDS} seeds. Bytes: the method's stored bytes over DCQ's.")),
            ("table", ["model", "q", "method", "bytes vs DCQ", "difference (points)", "95% interval", "verdict"],
             table)]


def _strongest_codec(rows: list[dict], model: str, q: int) -> dict | None:
    codecs = [r for r in rows if r["model"] == model and r["bits"] == q
              and records.family(r["method"]) == "standard codec"]
    return max(codecs, key=lambda r: r["test_accuracy_mean"]) if codecs else None


EQUAL_BYTES = 0.10  # a store at a q without a codec meets the codec whose bytes are within this share of its own


def _codec_for(rows: list[dict], row: dict) -> tuple[dict | None, str]:
    """The codec a row is compared with, and how its q is shown: the strongest codec at the row's q; at a q without
    one (a store sized to another q's bytes), the strongest codec of the budget nearest its bytes, within 10%."""
    codec = _strongest_codec(rows, row["model"], row["bits"])
    if codec is not None:
        return codec, str(row["bits"])
    budgets = sorted((abs(r["train_bytes"] / row["train_bytes"] - 1), r["bits"]) for r in rows
                     if r["model"] == row["model"] and records.family(r["method"]) == "standard codec")
    if not budgets or budgets[0][0] > EQUAL_BYTES:
        return None, str(row["bits"])
    return _strongest_codec(rows, row["model"], budgets[0][1]), f"{row['bits']} (at q = {budgets[0][1]}'s bytes)"


@section("differences to the codec", "answer", 25)
def codec_differences(report: Report) -> list[document.Block]:
    """Each method at a bit depth against the strongest standard codec there (the one to beat at equal bytes)."""
    rows, recs = report.rows, report.recs
    table = []
    for other in sorted((r for r in rows if r["bits"] is not None), key=lambda r: (
            r["model"], r["bits"], records.method_order(r["method"]))):
        codec, shown_q = _codec_for(rows, other)
        if codec is None or codec is other:
            continue
        diff = stats.difference(_by_seed(recs, other["method"], other["bits"], other["model"]),
                                _by_seed(recs, codec["method"], codec["bits"], codec["model"]))
        table.append([other["model"], shown_q, other["method"], records.family(other["method"]), codec["method"],
                      f"{other['train_bytes'] / codec['train_bytes']:.2f}x", *_difference_cells(diff)])
    if not table:
        return []
    return [("h2", "Differences to the standard codec at each bit depth"),
            ("p", ("The store to beat at equal bytes: each method's test accuracy minus the strongest standard codec's "
                   "at the same q (its bytes are searched to fit DCQ's there), in points, paired by seed where the "
                   "runs share seeds; established only when the 95% interval excludes 0 and each side has at least "
                   f"{stats.MIN_SEEDS} seeds. A store at a q without a codec (one sized to another q's bytes) is "
                   f"compared with the codec whose bytes are nearest its own, within {EQUAL_BYTES:.0%}. Bytes: the "
                   "method's stored bytes over the codec's.")),
            ("table", ["model", "q", "method", "family", "codec", "bytes vs codec", "difference (points)",
                       "95% interval", "verdict"], table)]


@section("accuracy vs storage", "answer", 30)
def accuracy_figure(report: Report) -> list[document.Block]:
    return [("h2", "Accuracy vs storage"),
            ("p", ("Left: every quantizer and coreset at matched storage, by bytes on disk (dashed: full colour). "
                   "Right: the distillers and DCQ of a coreset by images-per-class budget. Bars: std over seeds.")),
            ("img", report.inputs.plot_png, "test accuracy against compression ratio")]


@section("accuracy by method", "body", 20)
def accuracy_by_method(report: Report) -> list[document.Block]:
    blocks: list[document.Block] = [("h2", "Accuracy by method and bit depth")]
    for model in sorted({r["model"] for r in report.rows}):
        table = [[r["method"], "-" if r["bits"] is None else r["bits"], accuracy_text(r),
                  ", ".join(str(s) for s in r["seeds"]),
                  "-" if r["gap_to_full"] is None or r["method"] == "full" else f"{r['gap_to_full']:+.2f}",
                  f"{r['compression_ratio']:.2%}", "-" if r["nominal_ratio"] is None else f"{r['nominal_ratio']:.2%}",
                  fmt_bytes(r["train_bytes"])] for r in report.rows if r["model"] == model]
        blocks += [("h3", f"model `{model}`"),
                   ("table", ["method", "bits", "test accuracy (%)", "seeds", "vs full colour", "measured ratio",
                              "nominal q/24", "stored bytes"], table)]
    blocks.append(("p", ("Measured ratio: bytes on disk of everything needed to rebuild the train set (indices, "
                         "palettes, cluster ids, labels; for full colour and coresets the zstd-compressed uint8 "
                         "images and labels) divided by the whole train set as raw 24-bit RGB. Nominal ratio: q/24 "
                         "bits per pixel; a coreset at q keeps q/24 of the images.")))
    return blocks
