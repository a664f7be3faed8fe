"""What the report reads besides the run records (report/records.py, judged by report/lineage.py): the main DCQ
stores, stage timings, training params, the fidelity stage's measurements and the runs' per-class results."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from pipeline.errors import StoreError
from pipeline.io.dcq_store import DCQStore
from pipeline.report import records

STAGE_ORDER = ["prepare", "teacher", "features", "cluster", "attention", "colour_counts", "palette", "refine", "encode", "fidelity", "train"]


def load_stores(recs: list[dict]) -> dict[int, DCQStore]:
    """The main DCQ stores the runs trained on (not the ablations'), by bit depth."""
    stores = {}
    for rec in recs:
        if (rec["method"] == "dcq" and rec.get("ablation") is None and rec.get("ipc") is None
                and rec["bits"] not in stores and (Path(rec.get("train_set", "")) / "zarr.json").is_file()):
            if "train_set" not in rec:
                raise StoreError(f"dcq run record {rec['method']}@{rec['bits']} seed {rec['seed']} has no train_set")
            stores[rec["bits"]] = DCQStore(rec["train_set"])
    if not stores:
        raise StoreError("no dcq runs among the run records: nothing to compare with full colour")
    return dict(sorted(stores.items()))


class RequantizedColumn:
    """A per-image quantizer's column of the methods grid, quantized from the grid's own originals: each image's
    palette depends on that image alone, so the column equals its store's rows and needs no store on disk. It
    answers what image_grid asks of a store: `decode(row, row + 1)`, `palettes[clusters[row]]` and `bits`."""

    def __init__(self, quantize: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], bits: int,
                 originals: np.ndarray, rows: np.ndarray):
        self.bits = bits
        self.indices, self.palettes = quantize(originals)
        self.clusters = {int(r): i for i, r in enumerate(rows)}  # each image's own palette

    def decode(self, start: int, stop: int) -> np.ndarray:
        picked = [self.clusters[r] for r in range(start, stop)]
        return np.stack([self.palettes[i][self.indices[i]] for i in picked])


def method_columns(recs: list[dict], dcq_stores: dict[int, DCQStore], originals: np.ndarray, rows: np.ndarray,
                   quantizers: dict[str, Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]]
                   ) -> tuple[int | None, list[tuple[str, DCQStore | RequantizedColumn]]]:
    """For the methods image grid: the bit depth shared by DCQ and the most per-image quantizers with runs, and one
    (method, column) each. `quantizers[method](images, bits)` quantizes as the baseline stage did."""
    indexed: dict[int, set[str]] = {}
    for rec in recs:
        if rec["method"] in quantizers and rec.get("bits") in dcq_stores and rec.get("ipc") is None:
            indexed.setdefault(rec["bits"], set()).add(rec["method"])
    if not indexed:
        return None, []
    # the most methods, then the middle-most depth (both 1 and 4 bits are extremes)
    q = sorted(indexed, key=lambda d: (-len(indexed[d]), abs(d - 2), d))[0]
    columns: list[tuple[str, DCQStore | RequantizedColumn]] = [("dcq", dcq_stores[q])]
    for method in sorted(indexed[q], key=records.method_order):
        columns.append((method, RequantizedColumn(lambda images, m=method: quantizers[m](images, q), q,
                                                  originals, rows)))
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


# Timing files the main job (dvc.yaml) writes; every other timing file is a study's.
MAIN_TIMING = re.compile(r"(prepare|teacher|features|cluster|attention|colour_counts|report|encode|(palette|refine)-q\d+"
                         r"|fidelity-dcq-q\d+|train-(full|dcq-q\d+)-.*)\.json")


def load_timings(timings: Path) -> list[tuple[str, float, bool]]:
    """(stage, seconds, part of the main job) of every timing JSON, main job first, in pipeline order."""
    items = []
    for f in sorted(Path(timings).glob("*.json")) if Path(timings).is_dir() else []:
        data = json.loads(f.read_text())
        items.append((str(data["stage"]), float(data["seconds"]), bool(MAIN_TIMING.fullmatch(f.name))))

    def key(item):
        head = item[0].split(" ")[0].split("@")[0]
        return (not item[2], STAGE_ORDER.index(head) if head in STAGE_ORDER else len(STAGE_ORDER), item[0])

    return sorted(items, key=key)


def run_params(runs: Path) -> dict:
    """The train section and run items of every checkpoint beside the records (first one per params hash); the
    studies that train with their own section (architectures) show theirs in their own table."""
    import torch  # only to read the checkpoints' params: the report runs no model

    found: dict[str, dict] = {}
    for ckpt_path in sorted(Path(runs).rglob("*.pt")):
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)  # plain data only: never unpickle code
        params = ckpt.get("params", {})
        if "train" not in params:
            continue
        found.setdefault(json.dumps(params.get("train"), sort_keys=True), {"base": params.get("base"),
                                                                          "train": params.get("train")})
    return next(iter(found.values()), {}) if len(found) == 1 else {f"variant {i}": v for i, v in
                                                                  enumerate(found.values())}


def load_fidelity(folder: Path) -> dict[str, dict]:
    """The fidelity stage's measurements under `folder` (the main job's and the studies'), by store path."""
    out: dict[str, dict] = {}
    for f in sorted(Path(folder).rglob("*.json")) if Path(folder).is_dir() else []:
        data = json.loads(f.read_text())
        if not isinstance(data, dict) or not isinstance(data.get("store"), str):
            raise StoreError(f"{f}: not a fidelity record (no 'store')")
        if data.get("measured"):
            out[data["store"]] = {k: float(data[k]) for k in ("psnr_db", "ssim", "delta_e2000")}
    return out


def confusion_by_variant(recs: list[dict]) -> tuple[list[str], dict[tuple, np.ndarray]]:
    """Summed confusion matrices over seeds, by (model, method, bits), of the matched-storage runs that carry one."""
    classes: list[str] = []
    out: dict[tuple, np.ndarray] = {}
    for r in recs:
        if "confusion" not in r or r.get("ablation") or r.get("ipc") is not None:
            continue
        classes = classes or list(r["classes"])
        key = (r["model"], r["method"], r["bits"])
        out[key] = out.get(key, 0) + np.asarray(r["confusion"], dtype=np.int64)
    return classes, out
