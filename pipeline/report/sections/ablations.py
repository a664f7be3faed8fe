"""The DCQ ablations (`ablate.variants`): each beside the params.yaml DCQ at the same q."""

from __future__ import annotations

from pipeline.report import document
from pipeline.report.context import Report, accuracy_text, compared_cell, fmt_bytes
from pipeline.report.outline import section


@section("ablations", "body", 40)
def ablations(report: Report) -> list[document.Block]:
    """Each DCQ ablation beside the params.yaml DCQ at the same q: mean ± std, the change in points, bytes."""
    rows, ablation_rows = report.rows, report.ablation_rows
    if not ablation_rows:
        return []
    blocks: list[document.Block] = [("h2", "DCQ ablations")]
    blocks.append(("p", ("Each variant reruns the DCQ chain with the listed params changed (`ablate.variants` in "
                        "params.yaml) and is trained with the same recipe and seeds. Δ: mean accuracy minus the "
                        "params.yaml DCQ's at the same q; seeds of one setting differ by up to a few points, so "
                        "read a Δ against both stds.")))
    change = {r["ablation"]: r["ablation_change"] for r in report.ablation_recs if r["ablation"] not in report.variants}
    for model in sorted({r["model"] for r in ablation_rows}):
        by_bits = sorted({r["bits"] for r in ablation_rows if r["model"] == model})
        default = {q: next((r for r in rows if r["model"] == model and r["method"] == "dcq" and r["bits"] == q), None)
                   for q in by_bits}
        table = [["dcq (params.yaml)", "-"] + [
            "-" if default[q] is None else f"{accuracy_text(default[q])} ({fmt_bytes(default[q]['train_bytes'])})"
            for q in by_bits]]
        for name in sorted({r["ablation"] for r in ablation_rows if r["model"] == model}):
            cells = [name, change.get(name, "-")]
            for q in by_bits:
                r = next((r for r in ablation_rows if r["model"] == model and r["ablation"] == name
                          and r["bits"] == q), None)
                cells.append(compared_cell(r, default[q], f"{r['compression_ratio']:.2%}" if r else ""))
            table.append(cells)
        blocks.append(("h3", f"model `{model}`"))
        blocks.append(("table", ["variant", "changed params"] + [f"q = {q}" for q in by_bits], table))
    return blocks
