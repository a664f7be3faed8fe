"""prune@method-q: a coreset of the full-colour train set at the storage of q-bit colour indices.

Reads  `prune:` + `base`; the prepared store (train/), the scores store (for score-based methods). The method
       and the matched bit depth come from dvc.yaml's matrix over `prune.methods` x `prune.bits`.
Writes `OUT`, a subset store (`subset-v1`, pipeline/io/subset_store.py): the kept images unchanged, their
       labels and source rows, attrs with the method, keep ratio and resolved params.
Pruning ratio r = 1 - q/24 (what q-bit indices save over 24-bit RGB), so round(q/24 * N) images are kept.
Selection is seeded by base.seed; the training seeds vary the runs on the same coreset.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import typer
import zarr

from pipeline.config import BaseParams, lineage, params_hash, require
from pipeline.errors import ParamsError, StoreError
from pipeline.io.arrays import open_group
from pipeline.io.atomic import atomic_output
from pipeline.io.subset_store import write_subset
from pipeline.prune.dynamics import SCORES, importance
from pipeline.prune.select import ccs, hardest, kept_count, random_stratified
from pipeline.quantize.bitpack import check_bits
from pipeline.stages.common import PARAMS_OPTION, TIMING_OPTION, Timer, read_params, stage_command, summary

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


def run(params: PruneParams, base: BaseParams, method: str, bits: int, prepared: Path, scores_path: Path | None,
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
        with atomic_output(out) as tmp:
            write_subset(zarr.open_group(str(tmp), mode="w"), images, labels, kept, attrs)
    summary("prune", len(kept), "images kept", timer.seconds, method=method, bits=bits, of=n, out=out)
    return {"kept": len(kept), "method": method, "bits": bits, "seconds": timer.seconds}


def command(
    method: str = typer.Option(..., help=f"pruning method: {' | '.join(METHODS)}"),
    bits: int = typer.Option(..., help="matched bit depth q: keep round(q/24 * N) images"),
    prepared: Path = typer.Option(..., help="prepared Zarr store"),
    scores: Path | None = typer.Option(None, help="scores Zarr store (from the scores stage)"),
    out: Path = typer.Option(..., help="subset store to write"),
    params_file: Path = PARAMS_OPTION,
    timing: Path | None = TIMING_OPTION,
):
    """Keep the coreset a pruning method selects, at the storage of q-bit colour indices."""
    base, params = read_params(params_file, "prune", PruneParams)
    with stage_command(f"prune {method}@{bits}", timing):
        run(params, base, method, bits, prepared, scores, out)
