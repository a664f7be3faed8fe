"""How close each stored train set decodes to the originals (PSNR, SSIM, CIEDE2000), beside its accuracy."""

from __future__ import annotations

from pipeline.report import document, records
from pipeline.report.context import Report, ReportInputs, accuracy_text, figure_or_reason
from pipeline.report.outline import section


def fidelity_rows(inputs: ReportInputs, rows: list[dict]) -> list[dict]:
    """Summary rows joined with the fidelity of the store they trained on (rows without one are left out)."""
    store_of = {}
    for r in inputs.recs:
        if r.get("train_set") in inputs.fidelity:
            store_of[(r["model"], r["method"], r.get("ablation"), r["bits"])] = inputs.fidelity[r["train_set"]]
    out = []
    for row in rows:
        found = store_of.get((row["model"], row["method"], row["ablation"], row["bits"]))
        if found is not None:
            out.append(row | found)
    return out


@section("fidelity", "body", 80)
def fidelity(report: Report) -> list[document.Block]:
    inputs = report.inputs
    joined = fidelity_rows(inputs, report.rows + report.ablation_rows)
    if not joined:
        return []
    table = [[records.series_label(r["method"], r["ablation"]), r["bits"], r["model"], f"{r['psnr_db']:.2f}",
              f"{r['ssim']:.4f}", f"{r['delta_e2000']:.2f}", accuracy_text(r)]
             for r in sorted(joined, key=lambda r: (r["model"], r["delta_e2000"]))]
    blocks: list[document.Block] = [("h2", "Fidelity of every quantized train set")]
    blocks.append(("p", ("How close each stored train set decodes to the original images, over all its images "
                        "(scikit-image: PSNR and SSIM per image, then the mean; CIEDE2000 ΔE per pixel in CIE LAB, "
                        "then the mean), beside the accuracy of the runs trained on it. Sorted by ΔE.")))
    blocks.append(("table", ["train set", "bits", "model", "PSNR (dB)", "SSIM", "mean ΔE2000", "test accuracy (%)"],
                   table))
    if inputs.fidelity_png is not None:
        blocks += figure_or_reason(inputs.fidelity_png, "test accuracy against mean CIEDE2000 colour difference",
                                   inputs.absent, "fidelity")
    return blocks
