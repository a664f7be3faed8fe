"""What the report reads: run records (current or stale), the stores they trained on, stage timings, training
params, the fidelity stage's measurements and the runs' per-class results."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import zarr

from pipeline.config import params_hash
from pipeline.errors import StoreError
from pipeline.io.arrays import array_bytes, uncompressed_bytes
from pipeline.io.dcq_store import DCQStore
from pipeline.io.formats import is_prepared_store, open_store, store_params
from pipeline.io.verify import check_store
from pipeline.report import records

STAGE_ORDER = ["prepare", "teacher", "features", "cluster", "attention", "colour_counts", "palette", "refine", "encode", "fidelity", "train"]


def current(recs: list[dict]) -> tuple[list[dict], list[dict]]:
    """Split records into those whose train set is still the store they were trained on, and stale ones
    (store gone, rebuilt with other params, or failing its open checks, e.g. written before stores were sealed:
    a study not rerun after a change, or not checked out)."""
    keep, stale, sound = [], [], {}
    for rec in recs:
        if "train_set" not in rec or "train_set_hash" not in rec:
            keep.append(rec)  # a record from elsewhere: nothing to check it against
            continue
        params = store_params(rec["train_set"])
        path = rec["train_set"]
        if path not in sound:
            sound[path] = params is not None and _passes_open_checks(Path(path))
        ok = sound[path] and params_hash(params) == rec["train_set_hash"]
        (keep if ok else stale).append(rec)
    return keep, stale


def _passes_open_checks(path: Path) -> bool:
    try:
        check_store(path)
    except StoreError:
        return False
    return True


def ablation_of(rec: dict) -> dict:
    """`ablation` (variant name), `ablation_change` (its overrides, as text) and `clusters` (its palettes) of a run
    whose train set the ablate stage built; `clusters` alone for a main DCQ store; nothing for every other run."""
    path = rec.get("train_set")
    if path is None or not (Path(path) / "zarr.json").is_file():
        return {}
    attrs = dict(zarr.open_group(str(path), mode="r").attrs)
    ablation = attrs.get("ablation")
    chroma = attrs.get("cluster_chromaticity")
    chroma = {"cluster_chromaticity": chroma} if isinstance(chroma, dict) else {}
    if not ablation:  # a main DCQ store: how many palettes it shares (the k sweep's reference point)
        clusters = attrs.get("clusters")
        is_dcq = attrs.get("format") == "dcq-v1" and isinstance(clusters, int)
        return {"clusters": clusters, **chroma} if is_dcq else {}

    def flat(prefix: str, value) -> list[str]:
        if isinstance(value, dict):
            return [item for k, v in value.items() for item in flat(f"{prefix}.{k}" if prefix else k, v)]
        return [f"{prefix}={value}"]

    # DCQ of a coreset at a distillation budget, counted by the IPC table's one rule: the arrays' bytes
    # uncompressed, as every synthetic store holds them; its zstd chunks on disk are reported beside.
    budget = {} if "ipc" not in attrs else {
        "ipc": int(attrs["ipc"]), "budget_bytes": int(attrs["budget_bytes"]),
        "accounted_bytes": uncompressed_bytes(path), "on_disk_bytes": array_bytes(path)}
    return {"ablation": ablation["name"], "clusters": int(attrs.get("clusters", 0)), **chroma,
            "ablation_change": ", ".join(flat("", {k: v for k, v in ablation.items() if k != "name"})) or "none"} | budget


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


def store_description(path: str | Path) -> str:
    """What a train-set store holds, from its attributes only."""
    if is_prepared_store(Path(path)):
        return "full colour images"
    return open_store(path).describe()


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
