"""prune@method-q: a coreset of the full-colour train set at the storage of q-bit colour indices.

Reads  `prune:` + `base`; the prepared store (train/), the scores store (for score-based methods). The method
       and the matched bit depth come from dvc.yaml's matrix over `prune.methods` x `prune.bits`.
Writes `OUT`, a subset store (`subset-v1`, pipeline/io/subset_store.py): the kept images unchanged, their
       labels and source rows, attrs with the method, keep ratio and resolved params.
Pruning ratio r = 1 - q/24 (what q-bit indices save over 24-bit RGB), so round(q/24 * N) images are kept.
Selection is seeded by base.seed; the training seeds vary the runs on the same coreset.
"""

from __future__ import annotations

from pathlib import Path

import typer

from pipeline.config import BaseParams
from pipeline.prune.coreset import METHODS, PruneParams, write_coreset
from pipeline.stages.common import PARAMS_OPTION, TIMING_OPTION, StageWiring, read_params, stage_command

WIRING = StageWiring(PruneParams, "prune", matrix=("methods", "bits"))


def run(params: PruneParams, base: BaseParams, method: str, bits: int, prepared: Path, scores_path: Path | None,
        out: Path) -> dict:
    return write_coreset(params, base, method, bits, prepared, scores_path, out)


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
    base, params = read_params(params_file, WIRING.section, WIRING.params)
    with stage_command(f"prune {method}@{bits}", timing):
        run(params, base, method, bits, prepared, scores, out)
