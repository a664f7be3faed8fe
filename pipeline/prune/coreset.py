"""Coreset stores: the rows a pruning method keeps, written as a subset store (the prune stage), and the
coreset an ablation quantizes, sized by a keep fraction or by the storage of IPC full-colour images per class."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import zarr

from pipeline.config import BaseParams, lineage, params_hash, require
from pipeline.errors import ParamsError, StoreError
from pipeline.io.arrays import array_bytes, open_group
from pipeline.io.atomic import store_output
from pipeline.io.bitpack import check_bits, packed_bytes
from pipeline.io.subset_store import write_subset
from pipeline.io.synthetic_store import budget_bytes
from pipeline.io.verify import seal
from pipeline.prune.dynamics import SCORES, importance
from pipeline.prune.select import ccs, hardest, kept_count, random_stratified
from pipeline.timing import Timer, summary

METHODS = ("random", "ccs") + SCORES


@dataclass(frozen=True)
class PruneParams:
    methods: list[str] = field(default_factory=lambda: ["random", "ccs"])
    bits: list[int] = field(default_factory=lambda: [1, 2, 4])  # matched storage: keep q/24 of the images
    ccs_score: Literal["aum", "el2n", "forgetting", "entropy"] = "aum"
    ccs_strata: int = 50
    ccs_hard_prune: float = 0.3  # CCS's mislabel cut-off (the paper's CIFAR-10 setting at 90% pruning)

    def __post_init__(self):
        unknown = [m for m in self.methods if m not in METHODS]
        require(not unknown, f"methods={unknown} are not pruning methods {list(METHODS)}")
        for q in self.bits:
            check_bits(q)
        require(self.ccs_strata >= 1, f"ccs_strata={self.ccs_strata} must be >= 1")
        require(0 <= self.ccs_hard_prune < 1, f"ccs_hard_prune={self.ccs_hard_prune} must be in [0, 1)")


def select(params: PruneParams, method: str, labels: np.ndarray, keep: int, seed: int,
           scores: dict[str, np.ndarray] | None) -> np.ndarray:
    if method == "random":
        return random_stratified(labels, keep, seed)
    if scores is None:
        raise ParamsError(f"prune method {method!r} needs the scores store (--scores)")
    if method == "ccs":
        return ccs(importance(params.ccs_score, scores), keep, seed, params.ccs_strata, params.ccs_hard_prune)
    return hardest(importance(method, scores), keep)


def read_scores(method: str, scores_path: Path | None, n: int, prepared: Path) -> tuple[dict[str, np.ndarray], dict]:
    """Every per-sample score of the scores store, and the params that made it."""
    if scores_path is None:
        raise ParamsError(f"prune method {method!r} needs the scores store (--scores)")
    root = open_group(scores_path, "scores store")
    scores = {name: root[name][:] for name in SCORES}
    if len(scores["aum"]) != n:
        raise StoreError(f"{scores_path} scores {len(scores['aum'])} images, {prepared} holds {n} train images")
    return scores, dict(root.attrs["params"])


def write_coreset(params: PruneParams, base: BaseParams, method: str, bits: int, prepared: Path, scores_path: Path | None,
        out: Path) -> dict:
    if method not in METHODS:
        raise ParamsError(f"prune --method={method!r} is not a pruning method {list(METHODS)}")
    bits = check_bits(bits, "prune --bits")
    prep = open_group(prepared, "prepared store")
    images, labels = prep["train/images"], prep["train/labels"][:].astype(np.int64)
    n = len(labels)
    ratio = 1.0 - bits / 24
    keep = kept_count(ratio, n)
    if keep < 1:
        raise ParamsError(f"prune at q={bits} keeps round({bits}/24 * {n}) = 0 images")
    scores, upstream = None, [prep.attrs["params"]]
    if method != "random":
        scores, scores_params = read_scores(method, scores_path, n, prepared)
        upstream.append(scores_params)
    with Timer() as timer:
        kept = select(params, method, labels, keep, base.seed, scores)
        used = lineage(*upstream, base=base, prune=params) | {"run": {"method": method, "bits": bits}}
        attrs = {"method": method, "bits": bits, "keep_ratio": keep / n, "pruning_ratio": ratio, "source_images": n,
                 "image_size": list(images.shape[1:3]), "classes": prep.attrs["classes"],
                 "source": {"dataset": prep.attrs["source"], "root": prep.attrs["root"]}, "params": used,
                 "params_hash": params_hash(used)}
        with store_output(out) as tmp:
            write_subset(zarr.open_group(str(tmp), mode="w"), images, labels, kept, attrs)
    summary("prune", len(kept), "images kept", timer.seconds, method=method, bits=bits, of=n, out=out)
    return {"kept": len(kept), "method": method, "bits": bits, "seconds": timer.seconds}


@dataclass(frozen=True)
class CoresetSpec:
    method: str = "ccs"
    keep: float | None = None  # fraction of the train images kept (pruning ratio 1 - keep), or
    ipc: int | None = None     # as many images as fit IPC full-colour images per class as q-bit indices
    ccs_score: Literal["aum", "el2n", "forgetting", "entropy"] = "aum"
    ccs_strata: int = 50
    ccs_hard_prune: float = 0.3

    def __post_init__(self):
        require(self.method in METHODS, f"method={self.method!r} is not a pruning method {list(METHODS)}")
        require((self.keep is None) != (self.ipc is None), "give exactly one of keep and ipc")
        require(self.keep is None or 0 < self.keep <= 1, f"keep={self.keep} must be in (0, 1]")
        require(self.ipc is None or self.ipc >= 1, f"ipc={self.ipc} must be >= 1")

    def prune_params(self) -> PruneParams:
        return PruneParams(methods=[self.method], ccs_score=self.ccs_score, ccs_strata=self.ccs_strata,
                           ccs_hard_prune=self.ccs_hard_prune)


def ipc_budget(ipc: int, num_classes: int, image_size: tuple[int, int]) -> int:
    """Bytes of IPC full-colour images per class with their labels: the distillation budget."""
    return budget_bytes(ipc, num_classes, image_size)


def images_within(budget: int, bits: int, clusters: int, image_size: tuple[int, int]) -> int:
    """How many images fit `budget` bytes as DCQ stores them, uncompressed: packed q-bit indices, a one-byte
    label and cluster id each, plus the shared palettes (zstd only makes the store smaller)."""
    per_image = packed_bytes(image_size[0] * image_size[1], bits) + 2
    return max(0, (budget - clusters * 2 ** bits * 3) // per_image)


def coreset_prepared(prepared: Path, scores_path: Path | None, spec: CoresetSpec, seed: int, out: Path,
                     bits: int, clusters: int) -> int:
    """A prepared-layout store (train/images, train/labels) of the coreset; returns the full train-set size."""
    prep = open_group(prepared, "prepared store")
    images, labels = prep["train/images"], prep["train/labels"][:].astype(np.int64)
    n = len(labels)
    if spec.ipc is not None:
        budget = ipc_budget(spec.ipc, len(prep.attrs["classes"]), tuple(images.shape[1:3]))
        keep = min(n, images_within(budget, bits, clusters, tuple(images.shape[1:3])))
        what = f"coreset ipc={spec.ipc} ({budget:,} bytes at q={bits})"
    else:
        keep, what = kept_count(1.0 - spec.keep, n), f"coreset keep={spec.keep} of {n} images"
    if keep < clusters:
        raise ParamsError(f"{what} keeps {keep} images, fewer than the {clusters} clusters")
    scores = None if spec.method == "random" else read_scores(spec.method, scores_path, n, prepared)[0]
    kept = select(spec.prune_params(), spec.method, labels, keep, seed, scores)
    root = zarr.open_group(str(out), mode="w")
    root.attrs.update(dict(prep.attrs))
    write_subset(root.create_group("train"), images, labels, kept, {"method": spec.method})
    seal(out)
    return n


def within_ipc_budget(store: Path, ipc: int, what: str) -> dict:
    """Check that a written DCQ store's array bytes fit the storage of IPC full-colour images per class; the
    attrs that record the budget."""
    attrs = zarr.open_group(str(store), mode="r").attrs
    budget = ipc_budget(ipc, len(attrs["classes"]), tuple(attrs["image_size"]))
    used = array_bytes(store)
    if used > budget:
        raise StoreError(f"{what}: the DCQ store holds {used:,} bytes, over the IPC {ipc} budget of {budget:,}")
    return {"ipc": ipc, "budget_bytes": budget}
