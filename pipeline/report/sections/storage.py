"""What each train set costs on disk, and what its images look like: full colour and DCQ at each q, and DCQ beside
the per-image quantizers."""

from __future__ import annotations

from pipeline.report import document, records
from pipeline.report.context import Report, figure_or_reason, fmt_bytes
from pipeline.report.outline import section


def stored(r: dict, full_images: int) -> str:
    """What a run's train set holds, from its record alone (the store need not be on disk)."""
    n, family = r.get("train_images"), records.family(r["method"])
    of = f"{n:,} of {full_images:,} images, " if isinstance(n, int) and n < full_images else ""
    if family == "per-image quantizer" and isinstance(n, int):
        return f"{n:,} per-image palettes x {2 ** r['bits']} colours"
    if r["method"] == "dcq" and isinstance(r.get("clusters"), int):
        return f"{of}{r['clusters']} shared palettes x {2 ** r['bits']} colours"
    if family == "coreset (pruning)" and of:
        return of + "full colour"
    if family == "standard codec" and isinstance(n, int):
        return f"{n:,} {r['method'].upper()} files"
    return "-"


@section("stored size", "body", 100)
def stored_size(report: Report) -> list[document.Block]:
    store, full_bytes = report.any_store, report.inputs.full_bytes
    h, w = store.image_size
    raw_bytes = len(store) * h * w * 3
    table = [["full colour (prepared, zstd)", "-", "full colour images", fmt_bytes(full_bytes),
              f"{full_bytes / raw_bytes:.2%}", "100.00%", f"{full_bytes / len(store):.0f}"]]
    seen = set()
    for r in sorted(report.all_recs, key=lambda r: (records.method_order(r["method"]), r.get("ablation") or "",
                                                    r["bits"] or 0)):
        name = records.series_label(r["method"], r.get("ablation"))
        if r["method"] == "full" or (name, r["bits"]) in seen or "train_set" not in r or r.get("ipc"):
            continue
        seen.add((name, r["bits"]))
        table.append([f"{name} q={r['bits']}", r["bits"], stored(r, len(store)),
                      fmt_bytes(r["train_bytes"]), f"{r['train_bytes'] / raw_bytes:.2%}", f"{r['bits'] / 24:.2%}",
                      f"{r['train_bytes'] / len(store):.0f}"])
    return [("h2", "Stored size of every train set"),
            ("table", ["train set", "bits", "what is stored", "bytes on disk", "measured ratio", "nominal q/24",
                       "bytes per original image"], table),
            ("p", (f"Raw 24-bit RGB of the train set: {fmt_bytes(raw_bytes)}. The measured ratio is below "
                   "q/24 where zstd compresses the packed indices further."))]


@section("training images", "body", 110)
def training_images(report: Report) -> list[document.Block]:
    return [("h2", "Training images: full colour and at each bit depth"),
            ("p", ("Each row is one training image; beside each reconstruction is the palette of the image's "
                   "cluster, the only colours it can use (shared by every image in that cluster).")),
            ("img", report.inputs.grid_png, "full colour and reconstructed training images with their palettes")]


@section("training images by method", "body", 120)
def training_images_by_method(report: Report) -> list[document.Block]:
    inputs = report.inputs
    if inputs.methods_q is None:
        return []
    return [("h2", f"Training images at q = {inputs.methods_q}: DCQ and the per-image quantizers"),
            ("p", ("The same images quantized by each method at the same bit depth, each beside the palette it "
                   "uses: DCQ's is shared by the image's whole cluster, a per-image quantizer's is the image's own "
                   "(and is stored once per image).")),
            *figure_or_reason(inputs.methods_png, f"training images at q={inputs.methods_q} by method, with palettes",
                              inputs.absent, "methods")]
