"""report: the compression-vs-accuracy report a researcher reads after `dvc repro`.

Reads  `report:` + `base` (seed of the images shown); every run record under RUNS (train stage), the DCQ
       stores those runs trained on (measured bytes, palettes for the image grid), the prepared store
       (full-colour images, dataset facts), the stage timing JSONs under TIMINGS and the teacher metrics.
Writes RECORDS (reports/metrics.json: the list of run records), SUMMARY (mean/std per model and variant, a
       DVC metric), PLOT_DATA (CSV for `dvc plots show/diff`), PLOT_PNG, GRID_PNG, MARKDOWN and HTML (the
       same report, self-contained with embedded images).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import typer
import yaml
import zarr

from pipeline.config import BaseParams, params_hash, require
from pipeline.errors import StoreError
from pipeline.io.arrays import array_bytes, disk_bytes, open_group, uncompressed_bytes, write_json
from pipeline.io.atomic import atomic_output
from pipeline.io.dcq_store import DCQStore
from pipeline.io.train_sets import store_params
from pipeline.report import document, figures, records
from pipeline.stages.common import PARAMS_OPTION, TIMING_OPTION, Timer, read_params, stage_command, summary

STAGE_ORDER = ["prepare", "teacher", "features", "cluster", "attention", "palette", "refine", "encode", "train"]


@dataclass(frozen=True)
class ReportParams:
    grid_images: int = 8   # train images shown in the grid (one per class first, chosen with base.seed)
    title: str = "dcq: dataset colour quantization, compression vs accuracy"

    def __post_init__(self):
        require(1 <= self.grid_images <= 64, f"grid_images={self.grid_images} must be in 1..64")


def current(recs: list[dict]) -> tuple[list[dict], list[dict]]:
    """Split records into those whose train set is still the store they were trained on, and stale ones
    (store gone or rebuilt with other params: a run whose stage left dvc.yaml keeps its old files)."""
    keep, stale = [], []
    for rec in recs:
        if "train_set" not in rec or "train_set_hash" not in rec:
            keep.append(rec)  # a record from elsewhere: nothing to check it against
            continue
        params = store_params(rec["train_set"])
        (keep if params is not None and params_hash(params) == rec["train_set_hash"] else stale).append(rec)
    return keep, stale


def ablation_of(rec: dict) -> dict:
    """`ablation` (variant name) and `ablation_change` (its overrides, as text) of a run whose train set the
    ablate stage built; nothing for every other run."""
    path = rec.get("train_set")
    if path is None or not (Path(path) / "zarr.json").is_file():
        return {}
    ablation = zarr.open_group(str(path), mode="r").attrs.get("ablation")
    if not ablation:
        return {}

    def flat(prefix: str, value) -> list[str]:
        if isinstance(value, dict):
            return [item for k, v in value.items() for item in flat(f"{prefix}.{k}" if prefix else k, v)]
        return [f"{prefix}={value}"]

    attrs = zarr.open_group(str(path), mode="r").attrs
    # DCQ of a coreset at a distillation budget, counted by the IPC table's one rule: the arrays' bytes
    # uncompressed, as every synthetic store holds them; its zstd chunks on disk are reported beside.
    budget = {} if "ipc" not in attrs else {
        "ipc": int(attrs["ipc"]), "budget_bytes": int(attrs["budget_bytes"]),
        "accounted_bytes": uncompressed_bytes(path), "on_disk_bytes": array_bytes(path)}
    return {"ablation": ablation["name"],
            "ablation_change": ", ".join(flat("", {k: v for k, v in ablation.items() if k != "name"})) or "none"} | budget


def load_stores(recs: list[dict]) -> dict[int, DCQStore]:
    """The main DCQ stores the runs trained on (not the ablations'), by bit depth."""
    stores = {}
    for rec in recs:
        if rec["method"] == "dcq" and rec.get("ablation") is None and rec["bits"] not in stores:
            if "train_set" not in rec:
                raise StoreError(f"dcq run record {rec['method']}@{rec['bits']} seed {rec['seed']} has no train_set")
            stores[rec["bits"]] = DCQStore(rec["train_set"])
    if not stores:
        raise StoreError("no dcq runs among the run records: nothing to compare with full colour")
    return dict(sorted(stores.items()))


def store_description(path: str | Path) -> str:
    """What a train-set store holds, from its attributes only."""
    attrs = dict(zarr.open_group(str(path), mode="r").attrs)
    fmt, bits = attrs.get("format"), attrs.get("bits")
    if fmt == "dcq-v1":
        palettes = f"{attrs['clusters']} shared palettes x {2 ** bits} colours"
        if attrs.get("source_images"):  # DCQ of a coreset (ablate stage)
            return f"{attrs['num_images']:,} of {attrs['source_images']:,} images, {palettes}"
        return palettes
    if fmt == "palette-per-image-v1":
        return f"{attrs['num_images']:,} per-image palettes x {2 ** bits} colours"
    if fmt == "subset-v1":
        return f"{attrs['num_images']:,} of {attrs['source_images']:,} images, full colour"
    return "full colour images" if "train" in zarr.open_group(str(path), mode="r") else str(fmt)


def method_columns(recs: list[dict], dcq_stores: dict[int, DCQStore]) -> tuple[int | None, list[tuple[str, DCQStore]]]:
    """For the methods image grid: the bit depth shared by DCQ and the most per-image quantizers, and one
    (method, store) column each."""
    indexed = {}
    for rec in recs:
        if rec["method"] not in ("full", "dcq") and "train_set" in rec and rec["bits"] in dcq_stores:
            attrs = store_params(rec["train_set"])
            if attrs is not None and (Path(rec["train_set"]) / "indices").exists():
                indexed.setdefault(rec["bits"], {}).setdefault(rec["method"], rec["train_set"])
    if not indexed:
        return None, []
    # the most methods, then the middle-most depth (both 1 and 4 bits are extremes)
    depths = sorted(indexed, key=lambda q: (-len(indexed[q]), abs(q - 2), q))
    q = depths[0]
    columns = [("dcq", dcq_stores[q])] + [(m, DCQStore(indexed[q][m])) for m in sorted(indexed[q], key=records.method_order)]
    return q, columns


def grid_rows(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """n train rows: one random image per class in class order, then more classes round-robin."""
    rng = np.random.default_rng(seed)
    per_class = [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    picked = []
    for depth in range(max(len(p) for p in per_class)):
        for rows in per_class:
            if depth < len(rows) and len(picked) < n:
                picked.append(rows[depth])
    return np.array(picked)


def load_timings(timings: Path) -> list[tuple[str, float]]:
    items = []
    for f in sorted(Path(timings).glob("*.json")) if Path(timings).is_dir() else []:
        data = json.loads(f.read_text())
        items.append((str(data["stage"]), float(data["seconds"])))

    def key(item):
        head = item[0].split(" ")[0].split("@")[0]
        return (STAGE_ORDER.index(head) if head in STAGE_ORDER else len(STAGE_ORDER), item[0])

    return sorted(items, key=key)


def run_params(runs: Path) -> dict:
    """The train section and run items of every checkpoint beside the records (first one per params hash)."""
    found: dict[str, dict] = {}
    for ckpt_path in sorted(Path(runs).rglob("*.pt")):
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        params = ckpt.get("params", {})
        found.setdefault(json.dumps(params.get("train"), sort_keys=True), {"base": params.get("base"),
                                                                          "train": params.get("train")})
    return next(iter(found.values()), {}) if len(found) == 1 else {f"variant {i}": v for i, v in
                                                                  enumerate(found.values())}


def fmt_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"


def build(params: ReportParams, base: BaseParams, rows: list[dict], recs: list[dict], stores: dict[int, DCQStore],
          prepared_attrs: dict, test_images: int, full_bytes: int, timings: list[tuple[str, float]],
          train_params: dict, teacher: dict, plot_png: Path, grid_png: Path,
          stale: list[dict], methods_q: int | None = None, methods_png: Path | None = None) -> list[document.Block]:
    prep = prepared_attrs.get("params", {}).get("prepare", {})
    any_store = stores[max(stores)]
    ablation_rows = [r for r in rows if r["ablation"] is not None and r["ipc"] is None]
    ablation_recs = [r for r in recs if r.get("ablation") is not None and r.get("ipc") is None]
    ipc_rows = [r for r in rows if r["ipc"] is not None]
    rows = [r for r in rows if r["ablation"] is None and r["ipc"] is None]
    all_recs, recs = recs, [r for r in recs if r.get("ablation") is None and r.get("ipc") is None]
    blocks: list[document.Block] = [("h1", params.title)]
    blocks.append(("p", (f"Dataset `{prep.get('source', '?')}` from `{prep.get('root', '?')}`: "
                        f"{len(any_store):,} train images ({prep.get('train_per_class') or 'all'} per class), "
                        f"{test_images:,} test images (never quantized), {any_store.image_size[0]}x"
                        f"{any_store.image_size[1]} px, {len(any_store.classes)} classes. Teacher "
                        f"`{teacher.get('arch', '?')}`: {teacher.get('test_accuracy', '?')}% test accuracy. "
                        f"{len(recs)} training runs; accuracy is the mean ± sample std over seeds.")))
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
                          f"**{r['test_accuracy_mean']:.2f}** ± {r['test_accuracy_std']:.2f}",
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
    if ablation_rows:
        blocks += ablation_blocks(rows, ablation_rows, ablation_recs)
    if ipc_rows:
        blocks += distillation_blocks(ipc_rows)
    blocks.append(("h2", "Accuracy vs compression ratio"))
    blocks.append(("img", plot_png, "test accuracy against compression ratio"))
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
                             "epochs", "train s"],
                   [[records.series_label(r["method"], r.get("ablation")), "-" if r["bits"] is None else r["bits"],
                     r["model"], r["seed"], f"{r['test_accuracy']:.2f}", r.get("final_train_accuracy", "-"),
                     r.get("epochs", "-"), r.get("train_seconds", "-")] for r in all_recs]))
    if stale:
        blocks.append(("p", (f"Left out: {len(stale)} stale run record(s) whose train set is gone or was rebuilt "
                             "since: " + ", ".join(f"`{r['method']}` bits {r['bits']} {r['model']} seed {r['seed']}"
                                                   for r in stale) + ". Delete them from the runs folder.")))
    blocks.append(("h2", "Stage timings"))
    if timings:
        blocks.append(("table", ["stage", "seconds"], [[s, f"{t:.1f}"] for s, t in timings]
                       + [["**total**", f"**{sum(t for _, t in timings):.1f}**"]]))
        blocks.append(("p", "Wall time of each stage's last run (what `dvc repro` skipped keeps its earlier time)."))
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


def accuracy_text(row: dict) -> str:
    """'mean ± std' over seeds; a single run says so instead of showing a zero spread."""
    if row["n"] == 1:
        return f"{row['test_accuracy_mean']:.2f} (1 seed)"
    return f"{row['test_accuracy_mean']:.2f} ± {row['test_accuracy_std']:.2f}"


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
                        "Δ: minus `random` (IPC real images per class) at the same IPC.")))
    for model in sorted({r["model"] for r in ipc_rows}):
        ipcs = sorted({r["ipc"] for r in ipc_rows if r["model"] == model})
        random = {i: next((r for r in ipc_rows if r["model"] == model and r["method"] == "random" and r["ipc"] == i),
                          None) for i in ipcs}
        table = []
        kinds = sorted({(r["method"], r["ablation"], r.get("protocol")) for r in ipc_rows if r["model"] == model},
                       key=lambda k: (records.method_order(k[0]), k[1] or "", k[2] or ""))
        for method, ablation, protocol in kinds:
            family = ("real images (baseline)" if method == "random" else
                      "DCQ of a coreset (ablate)" if ablation else records.family(method))
            how = "distillation protocol" if protocol == "distillation" else "train recipe"
            label = records.series_label(method, ablation) + (f" ({how})" if ablation else "")
            cells = [label, family]
            for i in ipcs:
                r = next((r for r in ipc_rows if r["model"] == model and r["method"] == method
                          and r["ablation"] == ablation and r.get("protocol") == protocol and r["ipc"] == i), None)
                if r is not None:
                    r = r | {"train_bytes": r["accounted_bytes"]}
                budget = f"{r['train_bytes'] / r['budget_bytes']:.0%} of budget, " if r and r.get("budget_bytes") else ""
                if r and r.get("on_disk_bytes") and r.get("budget_bytes"):
                    budget += f"{r['on_disk_bytes'] / r['budget_bytes']:.0%} as zstd on disk, "
                cells.append(compared_cell(r, None if method == "random" else random[i],
                                           f"{budget}{r['train_images']} samples" if r else ""))
            table.append(cells)
        blocks.append(("h3", f"model `{model}`"))
        blocks.append(("table", ["method", "family"] + [f"IPC {i}" for i in ipcs], table))
    return blocks


def plotted(rows: list[dict], recs: list[dict]) -> list[dict]:
    """Rows on the accuracy-vs-ratio plot: every method, and of the ablations only those that change the storage
    (a coreset then DCQ); the others share the DCQ point's bytes and are compared in the ablation table."""
    coreset_ablations = {r["ablation"] for r in recs if r.get("ablation") and "coreset" in r["ablation_change"]}
    return [r for r in rows if r["ablation"] is None or r["ablation"] in coreset_ablations]


def plot_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    fields = ["series", "method", "model", "bits", "compression_ratio", "nominal_ratio", "test_accuracy",
              "test_accuracy_std", "seeds"]
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({"series": f"{r['series']} ({r['model']})", "method": r["method"], "model": r["model"],
                         "bits": "" if r["bits"] is None else r["bits"], "compression_ratio": r["compression_ratio"],
                         "nominal_ratio": "" if r["nominal_ratio"] is None else r["nominal_ratio"],
                         "test_accuracy": r["test_accuracy_mean"], "test_accuracy_std": r["test_accuracy_std"],
                         "seeds": r["n"]})
    return buf.getvalue()


def run(params: ReportParams, base: BaseParams, runs: Path, prepared: Path, timings: Path,
        teacher_metrics: Path, records_out: Path, summary_out: Path, plot_data_out: Path, plot_png_out: Path,
        grid_png_out: Path, methods_png_out: Path, markdown_out: Path, html_out: Path) -> dict:
    with Timer() as timer:
        recs, stale = current(records.collect(runs, annotate=ablation_of))
        if not recs:
            raise StoreError(f"every run record under {runs} is stale (its train set is gone or was rebuilt)")
        rows = records.summarize(recs)
        stores = load_stores(recs)
        root = open_group(prepared, "prepared store")
        attrs = dict(root.attrs)
        labels = root["train"]["labels"][:]
        picked = grid_rows(labels, params.grid_images, base.seed)
        originals = np.stack([root["train"]["images"][int(r)] for r in picked])
        names = [attrs["classes"][int(labels[r])] for r in picked]
        teacher = json.loads(Path(teacher_metrics).read_text()) if Path(teacher_metrics).is_file() else {}
        for path in (plot_png_out, grid_png_out, methods_png_out):
            path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(plot_png_out) as tmp:
            figures.accuracy_plot(plotted(rows, recs), tmp)
        with atomic_output(grid_png_out) as tmp:
            figures.image_grid(originals, names, picked, [(f"{q} bit", st) for q, st in stores.items()], tmp)
        methods_q, columns = method_columns(recs, stores)
        with atomic_output(methods_png_out) as tmp:
            if columns:
                figures.image_grid(originals, names, picked, columns, tmp)
            else:  # no per-image quantizer runs: an explicit placeholder keeps the declared output
                figures.placeholder("no per-image quantizer runs at a DCQ bit depth", tmp)
        blocks = build(params, base, rows, recs, stores, attrs, int(root["test"]["labels"].shape[0]),
                       disk_bytes(Path(prepared) / "train"), load_timings(timings), run_params(runs), teacher,
                       plot_png_out, grid_png_out, stale, methods_q, methods_png_out)
        write_json(records_out, recs)
        write_json(summary_out, records.dvc_summary(rows))
        with atomic_output(plot_data_out) as tmp:
            tmp.write_text(plot_csv(plotted(rows, recs)))
        with atomic_output(markdown_out) as tmp:
            tmp.write_text(document.to_markdown(blocks, markdown_out))
        with atomic_output(html_out) as tmp:
            tmp.write_text(document.to_html(blocks, params.title))
    summary("report", len(recs), "runs", timer.seconds, variants=len(rows), stale=len(stale),
            markdown=str(markdown_out))
    return {"records": recs, "rows": rows, "stale": stale}


def command(
    runs: Path = typer.Option(..., help="folder of run records (*.json) and checkpoints from the train stage"),
    prepared: Path = typer.Option(..., help="prepared store"),
    timings: Path = typer.Option(..., help="folder of stage timing JSONs"),
    teacher_metrics: Path = typer.Option(..., help="teacher metrics JSON"),
    records_out: Path = typer.Option(..., "--records", help="reports/metrics.json: the list of run records"),
    summary_out: Path = typer.Option(..., "--summary", help="mean/std summary JSON (DVC metric)"),
    plot_data_out: Path = typer.Option(..., "--plot-data", help="CSV for dvc plots"),
    plot_png_out: Path = typer.Option(..., "--plot", help="accuracy vs compression PNG"),
    grid_png_out: Path = typer.Option(..., "--grid", help="image grid PNG: full colour and DCQ at each q"),
    methods_png_out: Path = typer.Option(..., "--methods-grid", help="image grid PNG: DCQ vs per-image quantizers"),
    markdown_out: Path = typer.Option(..., "--markdown", help="Markdown report"),
    html_out: Path = typer.Option(..., "--html", help="self-contained HTML report"),
    params_file: Path = PARAMS_OPTION,
    timing: Path | None = TIMING_OPTION,
):
    """Aggregate the runs into reports/: metrics list, summary, plot, image grid, Markdown and HTML."""
    base, params = read_params(params_file, "report", ReportParams)
    with stage_command("report", timing):
        run(params, base, runs, prepared, timings, teacher_metrics, records_out, summary_out, plot_data_out,
            plot_png_out, grid_png_out, methods_png_out, markdown_out, html_out)
