"""Dataset distillation at equal storage: every set stored at an images-per-class budget, against random real
images at that budget."""

from __future__ import annotations

from pipeline.report import document, records
from pipeline.report.context import Report, compared_cell
from pipeline.report.outline import section


@section("distillation", "body", 50)
def distillation(report: Report) -> list[document.Block]:
    return distillation_blocks(report.ipc_rows) if report.ipc_rows else []


def distillation_blocks(ipc_rows: list[dict]) -> list[document.Block]:
    """Every set stored at an IPC budget: accuracy, the change over random real images at that IPC, bytes."""
    blocks: list[document.Block] = [("h2", "Dataset distillation at equal storage (images per class)")]
    blocks.append(("p", ("Each set may store at most IPC full-colour images per class (budget = IPC x classes x "
                        "(H x W x 3 + 1) bytes): pixels as uint8, AutoPalette as packed colour indices plus "
                        "palettes, MTT-LSS as float16 mappers, bases and soft labels, DCQ of a coreset (an `ablate` "
                        "variant with `coreset.ipc`) as many CCS-selected images as fit, as q-bit indices plus "
                        "shared palettes. Rows marked (distillation protocol) are evaluated alike by "
                        "`evaluate_synthetic`: a fresh network trained on the set with DSA for "
                        "`evaluate_synthetic.recipe.epochs`, tested on the original test set (mean ± std over seeds). "
                        "Rows marked (train recipe) are the same DCQ stores trained by `train_ablation` with "
                        "`train.recipe` like every other DCQ run. Bytes: the arrays' data uncompressed (what the budget "
                        "counts, one rule for every method; the DCQ store's zstd-compressed size is shown beside). "
                        "Δ: minus `random` (IPC real images per class) at the same IPC. Distilled from: the train "
                        "set the experts and the distiller read (full colour, or a DCQ store at q bits: "
                        "`distill_sources` in params.yaml); the test set is the original one in every row.")))
    for model in sorted({r["model"] for r in ipc_rows}):
        ipcs = sorted({r["ipc"] for r in ipc_rows if r["model"] == model})
        random = {i: next((r for r in ipc_rows if r["model"] == model and r["method"] == "random" and r["ipc"] == i),
                          None) for i in ipcs}
        table = []
        kinds = sorted({(r["method"], r["ablation"], r.get("protocol"), r.get("source_bits"))
                        for r in ipc_rows if r["model"] == model},
                       key=lambda k: (records.method_order(k[0]), k[1] or "", k[2] or "", -(k[3] or 25)))
        for method, ablation, protocol, source_bits in kinds:
            family = ("real images (baseline)" if method == "random" else
                      "DCQ of a coreset (ablate)" if ablation else records.family(method))
            how = "distillation protocol" if protocol == "distillation" else "train recipe"
            label = records.series_label(method, ablation) + (f" ({how})" if ablation else "")
            source = "full colour" if source_bits is None else f"DCQ q = {source_bits}"
            cells = [label, family, source if method not in ("random", "dcq") else "-"]
            for i in ipcs:
                r = next((r for r in ipc_rows if r["model"] == model and r["method"] == method
                          and r["ablation"] == ablation and r.get("protocol") == protocol
                          and r.get("source_bits") == source_bits and r["ipc"] == i), None)
                if r is not None and r["accounted_bytes"] is not None:
                    r = r | {"train_bytes": r["accounted_bytes"]}
                budget = ""
                if r and r.get("budget_bytes"):
                    if r["accounted_bytes"] is not None:
                        budget = f"{r['train_bytes'] / r['budget_bytes']:.0%} of budget, "
                    if r.get("on_disk_bytes"):
                        budget += f"{r['on_disk_bytes'] / r['budget_bytes']:.0%} as zstd on disk, "
                cells.append(compared_cell(r, None if method == "random" else random[i],
                                           f"{budget}{r['train_images']} samples" if r else ""))
            table.append(cells)
        blocks.append(("h3", f"model `{model}`"))
        blocks.append(("table", ["method", "family", "distilled from"] + [f"IPC {i}" for i in ipcs], table))
    return blocks
