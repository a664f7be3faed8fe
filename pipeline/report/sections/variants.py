"""The DCQ variants of the equal-bytes study: each against the params.yaml DCQ and the strongest other method, with
paired 95% intervals, and the k sweep (how many images share a palette) as a figure."""

from __future__ import annotations

from pipeline.report import document, records, stats
from pipeline.report.context import Report, accuracy_text, figure_or_reason, fmt_bytes, is_ablation, variant_names
from pipeline.report.outline import section

# A variant on the sharing axis changes only how many images share a palette (and how refinement samples them).
SHARING_KEYS = ("cluster.k=", "cluster.source=images", "refine.images_per_cluster=")


def sharing_points(rows: list[dict], recs: list[dict], model: str, bits: int) -> list[tuple[int, dict]]:
    """(palettes k, summary row) along the sharing axis at q: the params.yaml DCQ and every equal-bytes variant
    that changes only cluster.k / cluster.source=images, sorted by k."""
    change = {r["ablation"]: r.get("ablation_change", "") for r in recs if r.get("ablation")}
    k_of = {r["ablation"]: r.get("clusters") for r in recs if r.get("ablation")}
    main_k = next((r.get("clusters") for r in recs if r["method"] == "dcq" and not r.get("ablation")
                   and r["bits"] == bits and r["model"] == model), None)
    points = []
    for row in rows:
        if row["model"] != model or row["bits"] != bits or row["ipc"] is not None:
            continue
        if row["method"] == "dcq" and row["ablation"] is None and main_k:
            points.append((main_k, row))
        elif row["ablation"] in variant_names(recs) and k_of.get(row["ablation"]) and all(
                part.strip().startswith(SHARING_KEYS) for part in change[row["ablation"]].split(",")):
            points.append((k_of[row["ablation"]], row))
    return sorted(points, key=lambda p: p[0])


def sharing_panels(rows: list[dict], recs: list[dict]) -> list[dict]:
    """What the sharing figure draws, per (model, q) with at least two points on the axis: (k, mean, 95% half
    interval, bytes) per point, the train-set size N, and the strongest per-image quantizer and codec as lines."""
    panels = []
    for model, q in sorted({(r["model"], r["bits"]) for r in rows if r["ablation"] in variant_names(recs)}):
        points = sharing_points(rows, recs, model, q)
        if len(points) < 2:
            continue
        references = []
        for family in ("per-image quantizer", "standard codec"):
            found = [r for r in rows if r["model"] == model and r["bits"] == q and r["ablation"] is None
                     and r["ipc"] is None and records.family(r["method"]) == family]
            if found:
                best = max(found, key=lambda r: r["test_accuracy_mean"])
                references.append({"label": f"{best['method']} ({fmt_bytes(best['train_bytes'])})",
                                   "mean": best["test_accuracy_mean"]})
        panels.append({"model": model, "bits": q, "images": points[0][1]["train_images"], "references": references,
                       "points": [{"k": k, "mean": r["test_accuracy_mean"], "bytes": fmt_bytes(r["train_bytes"]),
                                   "half": stats.half_interval(r["test_accuracy_std"], r["n"]), "n": r["n"]}
                                  for k, r in points]})
    return panels


def _by_seed(recs: list[dict], method: str, bits: int, model: str, ablation: str | None) -> dict[int, float]:
    return {r["seed"]: r["test_accuracy"] for r in recs if r["method"] == method and r["bits"] == bits
            and r["model"] == model and r.get("ablation") == ablation and r.get("ipc") is None
            and (ablation is not None or not is_ablation(r))}


def _cell(diff: dict | None) -> str:
    if diff is None:
        return "-"
    return f"{diff['mean']:+.2f} [{diff['low']:+.2f}, {diff['high']:+.2f}], {stats.verdict(diff)}"


def _variant_row(report: Report, row: dict, change: dict[str, str]) -> list:
    rows, recs = report.rows, report.main_recs
    model, q = row["model"], row["bits"]
    dcq = next((r for r in rows if r["model"] == model and r["method"] == "dcq" and r["bits"] == q), None)
    rivals = [r for r in rows if r["model"] == model and r["bits"] == q and r["method"] not in ("dcq", "full")]
    rival = max(rivals, key=lambda r: r["test_accuracy_mean"], default=None)
    mine = _by_seed(recs, "dcq", q, model, row["ablation"])
    return [row["ablation"], change.get(row["ablation"], "-"), q, model,
            "-" if dcq is None else f"{row['train_bytes'] / dcq['train_bytes']:.2f}x", accuracy_text(row),
            "-" if dcq is None else _cell(stats.difference(mine, _by_seed(recs, "dcq", q, model, None))),
            "-" if rival is None else f"{rival['method']}: " + _cell(stats.difference(
                mine, _by_seed(recs, rival["method"], q, model, None)))]


@section("dcq variants", "body", 30)
def variants(report: Report) -> list[document.Block]:
    if not report.variant_rows:
        return []
    change = {r["ablation"]: r.get("ablation_change", "") for r in report.main_recs if r.get("ablation")}
    table = [_variant_row(report, row, change)
             for row in sorted(report.variant_rows, key=lambda r: (r["model"], r["bits"], r["ablation"]))]
    return [
        ("h2", "DCQ variants at equal bytes"),
        ("p", ("Each variant (`dcq_variants` in params.yaml, `dvc repro studies/equal_bytes/dvc.yaml`) reruns the "
               "DCQ chain with the listed params changed and is trained with the same recipe and seeds. Differences "
               "in points, paired by seed, with the 95% interval and the verdict (established only with at least "
               f"{stats.MIN_SEEDS} seeds and an interval that excludes 0): against the params.yaml DCQ at the same "
               "q, and against the strongest other method at that q (the highest mean among the per-image "
               "quantizers, codecs and coresets). Bytes: the variant's stored bytes over DCQ's.")),
        ("table", ["variant", "changed params", "q", "model", "bytes vs DCQ", "accuracy (%)",
                   "vs DCQ (params.yaml)", "vs the strongest other method"], table),
        ("h3", "Sharing a palette across images: the k sweep"),
        ("p", ("DCQ with everything fixed but the number of shared palettes k, from one palette for the "
               "whole train set to one per image (k = N: DCQ's attention-weighted LAB K-means and Sobel "
               "refinement applied to each image alone). Bars: 95% interval of the mean over seeds; "
               "labels: bytes on disk. Lines: the strongest per-image quantizer and codec at that q.")),
        *figure_or_reason(report.inputs.sharing_png, "test accuracy against the number of shared palettes k",
                          report.inputs.absent, "sharing")]
