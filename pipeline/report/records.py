"""Run records (one per method, bits, model, seed) and their mean +- std summary.

A record is the flat JSON the train stage writes; `reports/metrics.json` is the list of all of them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

from pipeline.errors import StoreError

REQUIRED = {"method": str, "bits": (int, type(None)), "compression_ratio": (int, float), "model": str,
            "seed": int, "test_accuracy": (int, float), "train_bytes": int}


def validate(record: dict, where: str) -> dict:
    if not isinstance(record, dict):
        raise StoreError(f"{where}: a run record must be a JSON object, got {type(record).__name__}")
    for key, types in REQUIRED.items():
        if key not in record:
            raise StoreError(f"{where}: run record has no {key!r} (required: {sorted(REQUIRED)})")
        if not isinstance(record[key], types) or isinstance(record[key], bool):
            raise StoreError(f"{where}: {key}={record[key]!r} has the wrong type")
    if "train_set" in record:  # a path the report opens: a store named by the run, never a way out of it
        path = record["train_set"]
        if not isinstance(path, str) or not path or "\x00" in path or ".." in Path(path).parts:
            raise StoreError(f"{where}: train_set={path!r} is not a store path (a non-empty path without '..')")
    return record


# Known methods in report order, with the family each belongs to (names as the stages write them: the per-image
# quantizers of pipeline/quantize/per_image.py and the pruning methods of pipeline/prune/coreset.py).
FAMILIES = {
    "full": "full colour (reference)", "dcq": "DCQ (shared cluster palettes)",
    "median_cut": "per-image quantizer", "octree": "per-image quantizer", "kmeans_rgb": "per-image quantizer",
    "kmeans_lab": "per-image quantizer", "libimagequant": "per-image quantizer",
    "jpeg": "standard codec", "webp": "standard codec", "avif": "standard codec",
    "patch_vq": "shared patch codebook", "dcq_context": "DCQ, context-coded indices",
    "luma_chroma": "shared luma + chroma codebooks",
    "random": "coreset (pruning)", "ccs": "coreset (pruning)", "aum": "coreset (pruning)",
    "el2n": "coreset (pruning)", "forgetting": "coreset (pruning)", "entropy": "coreset (pruning)",
    "mtt": "dataset distillation", "dm": "dataset distillation", "autopalette": "dataset distillation",
    "mtt_lss": "dataset distillation",
}
METHOD_ORDER = list(FAMILIES)


def family(method: str) -> str:
    return FAMILIES.get(method, "other")


def method_order(method: str) -> tuple[int, str]:
    return (METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER), method)


def sort_key(record: dict) -> tuple:
    return (record["model"], record.get("ipc") or 0, method_order(record["method"]), record.get("ablation") or "",
            record["bits"] or 0, record["seed"])


# Run groups (folders under `runs`) trained with their own recipe: the same (method, seed, train set) there is another
# run, not a duplicate of the main job's.
OWN_RECIPE = ("architectures", "regime2", "regime3")


def collect(runs: Path, annotate: Callable[[dict, Path], dict] | None = None) -> list[dict]:
    """Every `*.json` record under `runs`, validated and in a stable order. `annotate(record, its file)` may add
    keys (the report adds what the run's train set is, and whether its lineage is current: report/lineage.py)."""
    files = sorted(Path(runs).rglob("*.json"))
    if not files:
        raise StoreError(f"no run records (*.json) under {runs}")
    records = [validate(json.loads(f.read_text()), str(f)) for f in files]
    for f, r in zip(files, records):  # the folder under `runs` a record sits in: main, equal_bytes, a study's variant
        r["run_group"] = f.relative_to(runs).parts[0] if len(f.relative_to(runs).parts) > 1 else ""
    if annotate is not None:
        for f, r in zip(files, records, strict=True):
            r.update(annotate(r, f))
    seen: dict[tuple, str] = {}
    for f, r in zip(files, records):
        # The train set too: two runs of one variant on different stores are different runs, also when the stores
        # are not on disk to say which ablation made them.
        key = (r["method"], r.get("ablation"), r.get("ipc"), r.get("protocol"), r["bits"], r["model"], r["seed"],
               r.get("train_set"), r.get("source_bits"), r["run_group"] if r["run_group"] in OWN_RECIPE else None)
        if key in seen:
            raise StoreError(f"{f} and {seen[key]} are the same run {key[:7]}" + (f" on {key[7]}" if key[7] else "")
                             + (f" from DCQ q={key[8]}" if key[8] else ""))
        seen[key] = str(f)
    return sorted(records, key=sort_key)


def mean_std(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return mean, std


def variant_label(method: str, bits: int | None, ablation: str | None = None, ipc: int | None = None,
                  protocol: str | None = None) -> str:
    name = method if ablation is None else f"ablate-{ablation}"
    name = name if ipc is None or protocol is None else f"distill-{name}-ipc{ipc}"
    return name if bits is None else f"{name}-q{bits}"


def series_label(method: str, ablation: str | None) -> str:
    return method if ablation is None else f"{method} [{ablation}]"


def summarize(records: list[dict]) -> list[dict]:
    """One row per (model, method, ablation, bits): accuracy mean and sample std over seeds, storage, gap to full
    colour."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["model"], r["method"], r.get("ablation"), r.get("ipc"), r.get("protocol"), r["bits"],
                           r.get("source_bits")), []).append(r)
    rows = []
    for (model, method, ablation, ipc, protocol, bits, source_bits), runs in groups.items():
        mean, std = mean_std([r["test_accuracy"] for r in runs])
        rows.append({
            "model": model, "method": method, "ablation": ablation, "ipc": ipc, "protocol": protocol,
            "source_bits": source_bits,  # distilled from the DCQ store at this q (None: from full colour)
            "series": series_label(method, ablation) if ipc is None else
            f"{method}{'' if source_bits is None else f' [from DCQ q={source_bits}]'} (IPC)",
            "bits": bits, "variant": variant_label(method, bits, ablation, ipc, protocol), "budget_bytes": runs[0].get("budget_bytes"),
            # a distilled set's train_bytes are its accounted bytes; a DCQ store's are its zstd bytes on disk, and a
            # DCQ run recorded before runs carried the store's accounting knows only those
            "accounted_bytes": runs[0].get("accounted_bytes", None if ablation else runs[0]["train_bytes"]),
            "on_disk_bytes": runs[0].get("on_disk_bytes", runs[0]["train_bytes"] if ablation else None),
            "seeds": sorted(r["seed"] for r in runs), "n": len(runs),
            "test_accuracy_mean": round(mean, 4), "test_accuracy_std": round(std, 4),
            "train_bytes": round(sum(r["train_bytes"] for r in runs) / len(runs)),
            "raw_bytes": runs[0].get("raw_bytes"),
            "compression_ratio": round(sum(r["compression_ratio"] for r in runs) / len(runs), 6),
            "nominal_ratio": None if bits is None else round(bits / 24, 6),
            "train_images": runs[0].get("train_images"),
        })
    for row in rows:
        full = next((f for f in rows if f["model"] == row["model"] and f["method"] == "full"
                     and f["ablation"] is None and f["ipc"] is None), None)
        row["gap_to_full"] = None if full is None else round(row["test_accuracy_mean"] - full["test_accuracy_mean"], 4)
    return sorted(rows, key=lambda r: (r["model"], r["ipc"] or 0, method_order(r["method"]), r["ablation"] or "",
                                       r["bits"] or 0, -(r["source_bits"] or 25)))


def accuracy_text(row: dict) -> str:
    """'mean ± std' over seeds; a single run says so instead of showing a zero spread."""
    if row["n"] == 1:
        return f"{row['test_accuracy_mean']:.2f} (1 seed)"
    return f"{row['test_accuracy_mean']:.2f} ± {row['test_accuracy_std']:.2f}"


def dvc_summary(rows: list[dict]) -> dict:
    """What `dvc metrics show/diff` compares across experiments: for the main job's train sets (full colour and DCQ
    at each q), the mean test accuracy and the stored bytes. Keyed by variant; by model too when there are several.
    The studies' rows stay in reports/metrics.json and the report (DVC ignores lists)."""
    main = [r for r in rows if r["method"] in ("full", "dcq") and r["ablation"] is None and r["ipc"] is None]
    models = sorted({r["model"] for r in main})
    out: dict = {}
    for row in main:
        entry = {"accuracy": row["test_accuracy_mean"], "bytes": row["train_bytes"]}
        (out.setdefault(row["model"], {}) if len(models) > 1 else out)[row["variant"]] = entry
    return out
