"""The accuracy-against-storage data: which summary rows the figure and `dvc plots` show, and their CSV."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from pipeline.report.context import variant_names


def plotted(rows: list[dict], recs: list[dict]) -> list[dict]:
    """Rows on the accuracy-vs-ratio plot: every method, the DCQ variants of the equal-bytes study, and of the
    ablations only those that change the storage (a coreset then DCQ); the others share the DCQ point's bytes and
    are compared in the ablation table."""
    shown = {r["ablation"] for r in recs if r.get("ablation") and "coreset" in r["ablation_change"]}
    return [r for r in rows if r["ablation"] is None or r["ablation"] in shown | variant_names(recs)]


PLOT_CSV_FIELDS = ["series", "method", "model", "bits", "compression_ratio", "nominal_ratio", "test_accuracy",
                   "test_accuracy_std", "seeds"]


def is_plot_csv(path: Path) -> bool:
    """The plot data CSV this module writes (its header line): a file a rerun may replace (pipeline/io/atomic.py)."""
    with open(path, "rb") as fh:
        return fh.readline().decode("utf-8", "replace").rstrip("\n") == ",".join(PLOT_CSV_FIELDS)


def plot_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    fields = PLOT_CSV_FIELDS
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({"series": f"{r['series']} ({r['model']})", "method": r["method"], "model": r["model"],
                         "bits": "" if r["bits"] is None else r["bits"], "compression_ratio": r["compression_ratio"],
                         "nominal_ratio": "" if r["nominal_ratio"] is None else r["nominal_ratio"],
                         "test_accuracy": r["test_accuracy_mean"], "test_accuracy_std": r["test_accuracy_std"],
                         "seeds": r["n"]})
    return buf.getvalue()
