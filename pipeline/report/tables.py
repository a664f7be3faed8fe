"""The report as a document: every table and section, built from one `ReportInputs`."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from pipeline.io.dcq_store import DCQStore
from pipeline.report import architectures, document, records, regimes, stats
from pipeline.report.gather import store_description


# The opt-in studies, the command that runs each, and how to tell its runs among the records.
def _ablation(r: dict) -> bool:
    # a stale record has no `ablation` annotation (its store is gone), but its train set's path still says
    return r.get("ablation") is not None or "ablations" in Path(str(r.get("train_set", ""))).parts


STUDIES = {
    "baselines": ("dvc repro studies/baselines/dvc.yaml",
                  lambda r: not _ablation(r) and r.get("ipc") is None and r["method"] not in ("full", "dcq")
                  and r.get("run_group") not in ("equal_bytes", regimes.RUN_GROUP)),
    "equal_bytes": ("dvc repro studies/equal_bytes/dvc.yaml",
                    lambda r: r.get("run_group") == "equal_bytes"),
    "ablations": ("dvc repro studies/ablations/dvc.yaml",
                  lambda r: _ablation(r) and r.get("ipc") is None
                  and r.get("run_group") not in ("equal_bytes", regimes.RUN_GROUP)),
    "distillation": ("dvc repro studies/distillation/dvc.yaml", lambda r: r.get("ipc") is not None),
    "architectures": ("dvc repro studies/architectures/dvc.yaml", architectures.is_architecture_run),
    "second regime": ("dvc repro studies/equal_bytes/dvc.yaml", regimes.is_regime_run),
}


@dataclass(frozen=True)
class ReportInputs:
    title: str
    recs: list[dict]                  # current run records (stale ones left out)
    rows: list[dict]                  # their summary: one row per variant
    stale: list[dict]
    stores: dict[int, DCQStore]       # the main DCQ stores, by bit depth
    prepared_attrs: dict
    test_images: int
    full_bytes: int
    timings: list[tuple[str, float, bool]]   # (stage, seconds, in the main job)
    train_params: dict
    teacher: dict
    plot_png: Path
    grid_png: Path
    fidelity: dict[str, dict] = field(default_factory=dict)   # store path -> PSNR/SSIM/ΔE
    fidelity_png: Path | None = None
    classes: list[str] = field(default_factory=list)
    confusion: dict[tuple, np.ndarray] = field(default_factory=dict)
    confusion_png: Path | None = None
    methods_q: int | None = None
    methods_png: Path | None = None
    sharing_png: Path | None = None
    architecture_recs: list[dict] = field(default_factory=list)  # the architectures study's (not in recs)
    architecture_rows: list[dict] = field(default_factory=list)  # their summary
    regime_recs: list[dict] = field(default_factory=list)  # the second regime's (regime2.recipe; not in recs)
    regime_rows: list[dict] = field(default_factory=list)


def fmt_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"


def build(inputs: ReportInputs) -> list[document.Block]:
    rows, recs, stores, stale = inputs.rows, inputs.recs, inputs.stores, inputs.stale
    prepared_attrs, test_images, full_bytes = inputs.prepared_attrs, inputs.test_images, inputs.full_bytes
    timings, train_params, teacher = inputs.timings, inputs.train_params, inputs.teacher
    plot_png, grid_png, methods_q, methods_png = inputs.plot_png, inputs.grid_png, inputs.methods_q, inputs.methods_png
    prep = prepared_attrs.get("params", {}).get("prepare", {})
    any_store = stores[max(stores)]
    variants = variant_names(recs)
    variant_rows = [r for r in rows if r["ablation"] in variants and r["ipc"] is None]
    ablation_rows = [r for r in rows if r["ablation"] is not None and r["ablation"] not in variants
                     and r["ipc"] is None]
    ablation_recs = [r for r in recs if r.get("ablation") is not None and r.get("ipc") is None]
    ipc_rows = [r for r in rows if r["ipc"] is not None]
    rows = [r for r in rows if r["ablation"] is None and r["ipc"] is None]
    main_recs = recs
    all_recs, recs = recs + inputs.architecture_recs + inputs.regime_recs, [r for r in recs if r.get("ablation") is None
                                                       and r.get("ipc") is None]
    blocks: list[document.Block] = [("h1", inputs.title)]
    blocks.append(("p", (f"Dataset `{prep.get('source', '?')}` from `{prep.get('root', '?')}`: "
                        f"{len(any_store):,} train images ({prep.get('train_per_class') or 'all'} per class), "
                        f"{test_images:,} test images (never quantized), {any_store.image_size[0]}x"
                        f"{any_store.image_size[1]} px, {len(any_store.classes)} classes. Teacher "
                        f"`{teacher.get('arch', '?')}`: {teacher.get('test_accuracy', '?')}% test accuracy. "
                        f"{len(all_recs)} run records: {len(recs)} at matched storage, {len(ablation_recs)} DCQ variant or "
                        f"ablation runs, {len(main_recs) - len(recs) - len(ablation_recs)} distillation evaluations, "
                        f"{len(inputs.architecture_recs)} of the architectures study, {len(inputs.regime_recs)} of "
                        "the second regime"
                        f"{f'; {len(stale)} stale left out' if stale else ''}. Accuracy is the mean ± sample std over "
                        "seeds.")))
    blocks += studies_blocks(all_recs, stale)
    blocks.append(("h2", "At matched storage"))
    blocks.append(("p", ("Test accuracy (%) by method at each bit depth q, mean ± std over seeds, with the train "
                        "set's bytes on disk. Quantizers store q-bit indices plus palettes; coresets keep "
                        "round(q/24 x N) full-colour images (pruning ratio 1 - q/24). **Bold**: best at that q.")))
    for model in sorted({r["model"] for r in rows}):
        by_bits = sorted({r["bits"] for r in rows if r["model"] == model and r["bits"] is not None})
        best = {q: max(r["test_accuracy_mean"] for r in rows if r["model"] == model and r["bits"] == q)
                for q in by_bits}
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
        blocks.append(("h3", f"model `{model}`"))
        blocks.append(("table", ["method", "family"] + [f"q = {q} ({q / 24:.1%} of 24-bit)" for q in by_bits],
                       table))
    blocks.append(("h2", "Accuracy by method and bit depth"))
    for model in sorted({r["model"] for r in rows}):
        table = []
        for r in (r for r in rows if r["model"] == model):
            table.append([r["method"], "-" if r["bits"] is None else r["bits"],
                          accuracy_text(r),
                          ", ".join(str(s) for s in r["seeds"]),
                          "-" if r["gap_to_full"] is None or r["method"] == "full" else f"{r['gap_to_full']:+.2f}",
                          f"{r['compression_ratio']:.2%}",
                          "-" if r["nominal_ratio"] is None else f"{r['nominal_ratio']:.2%}",
                          fmt_bytes(r["train_bytes"])])
        blocks.append(("h3", f"model `{model}`"))
        blocks.append(("table", ["method", "bits", "test accuracy (%)", "seeds", "vs full colour",
                                 "measured ratio", "nominal q/24", "stored bytes"], table))
    blocks.append(("p", ("Measured ratio: bytes on disk of everything needed to rebuild the train set (indices, "
                        "palettes, cluster ids, labels; for full colour and coresets the zstd-compressed uint8 "
                        "images and labels) divided by the whole train set as raw 24-bit RGB. Nominal ratio: q/24 "
                        "bits per pixel; a coreset at q keeps q/24 of the images.")))
    blocks += difference_blocks(rows, recs)
    if variant_rows:
        blocks += variant_blocks(rows, variant_rows, main_recs, inputs.sharing_png)
    if ablation_rows:
        blocks += ablation_blocks(rows, ablation_rows, [r for r in ablation_recs if r["ablation"] not in variants])
    if ipc_rows:
        blocks += distillation_blocks(ipc_rows)
    if inputs.architecture_rows:
        blocks += architectures.architecture_blocks(inputs.architecture_rows, inputs.architecture_recs, rows, recs)
    if inputs.regime_rows:
        blocks += regimes.regime_blocks(inputs.regime_rows, inputs.regime_recs,
                                        records.summarize(main_recs), main_recs)
    blocks.append(("h2", "Accuracy vs storage"))
    blocks.append(("p", ("Left: every quantizer and coreset at matched storage, by bytes on disk (dashed: full colour). "
                        "Right: the distillers and DCQ of a coreset by images-per-class budget. Bars: std over seeds.")))
    blocks.append(("img", plot_png, "test accuracy against compression ratio"))
    blocks += fidelity_blocks(inputs, rows + ablation_rows)
    blocks += per_class_blocks(inputs)
    blocks.append(("h2", "Stored size of every train set"))
    h, w = any_store.image_size
    raw_bytes = len(any_store) * h * w * 3
    storage = [["full colour (prepared, zstd)", "-", "full colour images", fmt_bytes(full_bytes),
                f"{full_bytes / raw_bytes:.2%}", "100.00%", f"{full_bytes / len(any_store):.0f}"]]
    seen_sets = set()
    for r in sorted(all_recs, key=lambda r: (records.method_order(r["method"]), r.get("ablation") or "", r["bits"] or 0)):
        name = records.series_label(r["method"], r.get("ablation"))
        if r["method"] == "full" or (name, r["bits"]) in seen_sets or "train_set" not in r or r.get("ipc"):
            continue
        seen_sets.add((name, r["bits"]))
        storage.append([f"{name} q={r['bits']}", r["bits"], store_description(r["train_set"]),
                        fmt_bytes(r["train_bytes"]), f"{r['train_bytes'] / raw_bytes:.2%}", f"{r['bits'] / 24:.2%}",
                        f"{r['train_bytes'] / len(any_store):.0f}"])
    blocks.append(("table", ["train set", "bits", "what is stored", "bytes on disk", "measured ratio",
                             "nominal q/24", "bytes per original image"], storage))
    blocks.append(("p", (f"Raw 24-bit RGB of the train set: {fmt_bytes(raw_bytes)}. The measured ratio is below "
                        "q/24 where zstd compresses the packed indices further.")))
    blocks.append(("h2", "Training images: full colour and at each bit depth"))
    blocks.append(("p", ("Each row is one training image; beside each reconstruction is the palette of the image's "
                        "cluster, the only colours it can use (shared by every image in that cluster).")))
    blocks.append(("img", grid_png, "full colour and reconstructed training images with their palettes"))
    if methods_q is not None:
        blocks.append(("h2", f"Training images at q = {methods_q}: DCQ and the per-image quantizers"))
        blocks.append(("p", ("The same images quantized by each method at the same bit depth, each beside the "
                            "palette it uses: DCQ's is shared by the image's whole cluster, a per-image "
                            "quantizer's is the image's own (and is stored once per image).")))
        blocks.append(("img", methods_png, f"training images at q={methods_q} by method, with palettes"))
    blocks.append(("h2", "Runs"))
    blocks.append(("table", ["method", "bits", "model", "seed", "test accuracy (%)", "final train acc. (%)",
                             "epochs", "train s", "hardware"],
                   [[records.series_label(r["method"], r.get("ablation")), "-" if r["bits"] is None else r["bits"],
                     r["model"], r["seed"], f"{r['test_accuracy']:.2f}", r.get("final_train_accuracy", "-"),
                     r.get("epochs", "-"), r.get("train_seconds", "-"), r.get("hardware", "-")] for r in all_recs]))
    if stale:  # one count, not one line per record: the studies table counts them per study, with its command
        blocks.append(("p", f"Left out: {len(stale)} stale run record(s), whose train set is not on disk or was "
                            "rebuilt since; the table of studies counts them per study, and its command refreshes "
                            "them."))
    blocks.append(("h2", "Stage timings"))
    if timings:
        main = sum(t for _, t, in_main in timings if in_main)
        studies = sum(t for _, t, in_main in timings if not in_main)
        rows = [[s, f"{t:.1f}", "main job" if in_main else "study"] for s, t, in_main in timings]
        rows.append(["**main job total**", f"**{main:.1f}**", ""])
        if studies:
            rows.append(["studies total", f"{studies:.1f}", ""])
        blocks.append(("table", ["stage", "seconds", "pipeline"], rows))
        blocks.append(("p", ("Wall time of each stage's last run (what `dvc repro` skipped keeps its earlier time; a "
                            "study's stages keep the time of the run that made their records).")))
    else:
        blocks.append(("p", "No stage timings recorded."))
    blocks.append(("h2", "Params"))
    blocks.append(("p", "Resolved params of the DCQ stores (their whole lineage, from the store attributes):"))
    lineage = {k: v for k, v in any_store.attrs.get("params", {}).items()}
    blocks.append(("pre", yaml.safe_dump(lineage, sort_keys=False, default_flow_style=None)))
    blocks.append(("p", "Training (from the run checkpoints):"))
    blocks.append(("pre", yaml.safe_dump(train_params, sort_keys=False, default_flow_style=None)))
    return blocks


def ablation_blocks(rows: list[dict], ablation_rows: list[dict], ablation_recs: list[dict]) -> list[document.Block]:
    """Each DCQ ablation beside the params.yaml DCQ at the same q: mean ± std, the change in points, bytes."""
    blocks: list[document.Block] = [("h2", "DCQ ablations")]
    blocks.append(("p", ("Each variant reruns the DCQ chain with the listed params changed (`ablate.variants` in "
                        "params.yaml) and is trained with the same recipe and seeds. Δ: mean accuracy minus the "
                        "params.yaml DCQ's at the same q; seeds of one setting differ by up to a few points, so "
                        "read a Δ against both stds.")))
    change = {(r["ablation"]): r["ablation_change"] for r in ablation_recs}
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


def compared_cell(row: dict | None, reference: dict | None, extra: str) -> str:
    """'mean ± std, Δ change over the reference (bytes, extra)', or '-' where the run is missing."""
    if row is None:
        return "-"
    delta = "" if reference is None else f", Δ {row['test_accuracy_mean'] - reference['test_accuracy_mean']:+.2f}"
    return f"{accuracy_text(row)}{delta} ({fmt_bytes(row['train_bytes'])}, {extra})"


accuracy_text = records.accuracy_text


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
                if r is not None:
                    r = r | {"train_bytes": r["accounted_bytes"]}
                budget = f"{r['train_bytes'] / r['budget_bytes']:.0%} of budget, " if r and r.get("budget_bytes") else ""
                if r and r.get("on_disk_bytes") and r.get("budget_bytes"):
                    budget += f"{r['on_disk_bytes'] / r['budget_bytes']:.0%} as zstd on disk, "
                cells.append(compared_cell(r, None if method == "random" else random[i],
                                           f"{budget}{r['train_images']} samples" if r else ""))
            table.append(cells)
        blocks.append(("h3", f"model `{model}`"))
        blocks.append(("table", ["method", "family", "distilled from"] + [f"IPC {i}" for i in ipcs], table))
    return blocks


def plotted(rows: list[dict], recs: list[dict]) -> list[dict]:
    """Rows on the accuracy-vs-ratio plot: every method, the DCQ variants of the equal-bytes study, and of the
    ablations only those that change the storage (a coreset then DCQ); the others share the DCQ point's bytes and
    are compared in the ablation table."""
    shown = {r["ablation"] for r in recs if r.get("ablation") and "coreset" in r["ablation_change"]}
    return [r for r in rows if r["ablation"] is None or r["ablation"] in shown | variant_names(recs)]


def variant_names(recs: list[dict]) -> set[str]:
    """The DCQ variants of the equal-bytes study (dcq_variants in params.yaml): ablate-built stores whose runs sit
    in the equal_bytes run group."""
    return {r["ablation"] for r in recs if r.get("ablation") and r.get("run_group") == "equal_bytes"}


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


def variant_blocks(rows: list[dict], variant_rows: list[dict], recs: list[dict],
                   sharing_png: Path | None) -> list[document.Block]:
    """The DCQ variants at equal bytes: each against the params.yaml DCQ and against the strongest other method
    at its q (by mean), with paired 95% intervals; then the sharing sweep figure."""
    def by_seed(method: str, bits: int, model: str, ablation: str | None) -> dict[int, float]:
        return {r["seed"]: r["test_accuracy"] for r in recs if r["method"] == method and r["bits"] == bits
                and r["model"] == model and r.get("ablation") == ablation and r.get("ipc") is None
                and (ablation is not None or not _ablation(r))}

    def cell(diff: dict | None) -> str:
        if diff is None:
            return "-"
        return f"{diff['mean']:+.2f} [{diff['low']:+.2f}, {diff['high']:+.2f}], {stats.verdict(diff)}"

    change = {r["ablation"]: r.get("ablation_change", "") for r in recs if r.get("ablation")}
    table = []
    for row in sorted(variant_rows, key=lambda r: (r["model"], r["bits"], r["ablation"])):
        model, q = row["model"], row["bits"]
        dcq = next((r for r in rows if r["model"] == model and r["method"] == "dcq" and r["ablation"] is None
                    and r["ipc"] is None and r["bits"] == q), None)
        rivals = [r for r in rows if r["model"] == model and r["bits"] == q and r["ablation"] is None
                  and r["ipc"] is None and r["method"] not in ("dcq", "full")]
        rival = max(rivals, key=lambda r: r["test_accuracy_mean"], default=None)
        mine = by_seed("dcq", q, model, row["ablation"])
        table.append([
            row["ablation"], change.get(row["ablation"], "-"), q, model,
            "-" if dcq is None else f"{row['train_bytes'] / dcq['train_bytes']:.2f}x", accuracy_text(row),
            "-" if dcq is None else cell(stats.difference(mine, by_seed("dcq", q, model, None))),
            "-" if rival is None else f"{rival['method']}: " + cell(stats.difference(
                mine, by_seed(rival["method"], q, model, None)))])
    blocks: list[document.Block] = [
        ("h2", "DCQ variants at equal bytes"),
        ("p", ("Each variant (`dcq_variants` in params.yaml, `dvc repro studies/equal_bytes/dvc.yaml`) reruns the "
               "DCQ chain with the listed params changed and is trained with the same recipe and seeds. Differences "
               "in points, paired by seed, with the 95% interval and the verdict (established only with at least "
               f"{stats.MIN_SEEDS} seeds and an interval that excludes 0): against the params.yaml DCQ at the same "
               "q, and against the strongest other method at that q (the highest mean among the per-image "
               "quantizers, codecs and coresets). Bytes: the variant's stored bytes over DCQ's.")),
        ("table", ["variant", "changed params", "q", "model", "bytes vs DCQ", "accuracy (%)",
                   "vs DCQ (params.yaml)", "vs the strongest other method"], table)]
    if sharing_png is not None:
        blocks += [("h3", "Sharing a palette across images: the k sweep"),
                   ("p", ("DCQ with everything fixed but the number of shared palettes k, from one palette for the "
                          "whole train set to one per image (k = N: DCQ's attention-weighted LAB K-means and Sobel "
                          "refinement applied to each image alone). Bars: 95% interval of the mean over seeds; "
                          "labels: bytes on disk. Lines: the strongest per-image quantizer and codec at that q.")),
                   ("img", sharing_png, "test accuracy against the number of shared palettes k")]
    return blocks


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


def studies_blocks(recs: list[dict], stale: list[dict]) -> list[document.Block]:
    """Which opt-in studies have runs in the report, which have only stale records, and the command of each."""
    table = []
    for name, (command, belongs) in STUDIES.items():
        count, old = sum(1 for r in recs if belongs(r)), sum(1 for r in stale if belongs(r))
        state = f"{count} runs" if count else "not run"
        table.append([name, state + (f" ({old} stale records left out)" if old else ""), f"`{command}`"])
    return [("p", "Opt-in studies, each its own DVC pipeline (`dvc repro` afterwards refreshes this report). A stale "
                  "record's train set is not on disk or was rebuilt since: rerun the study."),
            ("table", ["study", "in this report", "command"], table)]


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


def fidelity_blocks(inputs: ReportInputs, rows: list[dict]) -> list[document.Block]:
    joined = fidelity_rows(inputs, rows)
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
        blocks.append(("img", inputs.fidelity_png, "test accuracy against mean CIEDE2000 colour difference"))
    return blocks


def per_class_blocks(inputs: ReportInputs) -> list[document.Block]:
    """Per-class test accuracy of every matched-storage train set that has confusion matrices, against full colour."""
    if not inputs.confusion:
        return []
    blocks: list[document.Block] = [("h2", "Per-class test accuracy")]
    for model in sorted({k[0] for k in inputs.confusion}):
        keys = sorted((k for k in inputs.confusion if k[0] == model),
                      key=lambda k: (records.method_order(k[1]), k[2] or 0))
        acc = {k: 100.0 * np.diag(inputs.confusion[k]) / np.maximum(inputs.confusion[k].sum(1), 1) for k in keys}
        full = next((k for k in keys if k[1] == "full"), None)
        names = [k[1] if k[2] is None else f"{k[1]} q={k[2]}" for k in keys]
        table = []
        for c, cls in enumerate(inputs.classes):
            cells = [cls]
            for k in keys:
                delta = "" if full is None or k == full else f" ({acc[k][c] - acc[full][c]:+.1f})"
                cells.append(f"{acc[k][c]:.1f}{delta}")
            table.append(cells)
        blocks.append(("h3", f"model `{model}`"))
        text = ("Test accuracy (%) on each class, over all seeds' predictions; in brackets the change against full "
                "colour.")
        if full is not None and len(keys) > 1:
            lowest = min((k for k in keys if k != full), key=lambda k: k[2] or 0)
            drop = acc[lowest] - acc[full]
            worst = np.argsort(drop)[:3]
            text += (f" At {names[keys.index(lowest)]}, colour quantization costs most on "
                     + ", ".join(f"{inputs.classes[i]} ({drop[i]:+.1f})" for i in worst)
                     + f", least on {inputs.classes[int(np.argmax(drop))]} ({drop.max():+.1f}).")
        blocks.append(("p", text))
        blocks.append(("table", ["class"] + names, table))
    if inputs.confusion_png is not None:
        blocks.append(("p", ("Confusion matrices (rows: true class): full colour as % of each true class, each quantized "
                            "train set as its difference to full colour.")))
        blocks.append(("img", inputs.confusion_png, "confusion matrices against full colour"))
    return blocks


def confusion_order(confusion: dict[tuple, np.ndarray]) -> list[tuple]:
    """Full colour first, then the other train sets by method and bit depth (first model only)."""
    if not confusion:
        return []
    model = min(k[0] for k in confusion)
    return sorted((k for k in confusion if k[0] == model), key=lambda k: (records.method_order(k[1]), k[2] or 0))


def variant_title(key: tuple) -> str:
    _, method, bits = key
    return "full colour" if method == "full" else f"{method} q={bits}"


def difference_blocks(rows: list[dict], recs: list[dict]) -> list[document.Block]:
    """Each method at a DCQ bit depth against DCQ at that q: accuracy difference with its 95% interval."""
    def by_seed(method: str, bits: int | None, model: str) -> dict[int, float]:
        return {r["seed"]: r["test_accuracy"] for r in recs if r["method"] == method and r["bits"] == bits
                and r["model"] == model and not _ablation(r) and r.get("ipc") is None}

    table = []
    for dcq in (r for r in rows if r["method"] == "dcq" and r["ablation"] is None and r["ipc"] is None):
        reference = by_seed("dcq", dcq["bits"], dcq["model"])
        others = [r for r in rows if r["model"] == dcq["model"] and r["ablation"] is None and r["ipc"] is None
                  and r["method"] != "dcq" and (r["bits"] == dcq["bits"] or r["method"] == "full")]
        for other in sorted(others, key=lambda r: records.method_order(r["method"])):
            diff = stats.difference(by_seed(other["method"], other["bits"], other["model"]), reference)
            interval = "-" if diff is None else f"[{diff['low']:+.2f}, {diff['high']:+.2f}] ({diff['kind']}, n={diff['n']})"
            table.append([dcq["model"], str(dcq["bits"]), other["method"],
                          f"{other['train_bytes'] / dcq['train_bytes']:.2f}x",
                          "-" if diff is None else f"{diff['mean']:+.2f} ± {diff['sd']:.2f}", interval,
                          stats.verdict(diff)])
    if not table:
        return []
    return [("h2", "Differences to DCQ at each bit depth"),
            ("p", ("Each method's test accuracy minus DCQ's at the same q (full colour: at any q), in points: mean "
                   "± std of the per-seed differences where the runs share seeds (paired t), else Welch's. The "
                   f"95% interval decides: a difference is established only when it excludes 0 and each side has "
                   f"at least {stats.MIN_SEEDS} seeds. Bytes: the method's stored bytes over DCQ's.")),
            ("table", ["model", "q", "method", "bytes vs DCQ", "difference (points)", "95% interval", "verdict"],
             table)]
