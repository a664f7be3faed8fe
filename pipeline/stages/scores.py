"""scores: per-sample importance scores from a proxy model's training dynamics (for dataset pruning).

Reads  `scores:` + `base`; the prepared store (train/).
Writes `OUT` (Zarr group): `aum`, `el2n`, `forgetting`, `entropy` float32 (N,), one value per train image in
       prepared-store order (definitions in pipeline/prune/dynamics.py); attrs hold the resolved params and
       the proxy's per-epoch history.
The proxy is trained by the pipeline itself with the same engine as every other run, seeded by base.seed.
Under `torchrun --nproc_per_node N` the proxy trains data-parallel (pipeline/distributed.py): each rank
holds its share of the rows and records the dynamics of its own rows, the scores are gathered, and rank 0 writes
the store (attrs gain `world_size`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import typer
import zarr

from pipeline import distributed
from pipeline.config import BaseParams, lineage, params_hash, require
from pipeline.device import resolve_runtime
from pipeline.io.arrays import create_rows
from pipeline.io.atomic import store_output
from pipeline.io.train_sets import load_split
from pipeline.models.inputs import Normalization
from pipeline.models.registry import create_model, model_names
from pipeline.prune.dynamics import SCORES, TrainingDynamics
from pipeline.stages.common import PARAMS_OPTION, TIMING_OPTION, StageWiring, Timer, read_params, stage_command, summary
from pipeline.train.engine import Recipe, predict, train


@dataclass(frozen=True)
class ScoresParams:
    arch: str = "convnetd3"
    recipe: Recipe = field(default_factory=lambda: Recipe(epochs=10))
    el2n_epochs: int = 10  # EL2N averages the error vectors of the first this-many epochs
    eval_batch_size: int = 500

    def __post_init__(self):
        require(self.arch in model_names(), f"arch={self.arch!r} is not in the model registry {model_names()}")
        require(1 <= self.el2n_epochs <= self.recipe.epochs,
                f"el2n_epochs={self.el2n_epochs} must be in 1..recipe.epochs ({self.recipe.epochs})")
        require(self.eval_batch_size >= 1, f"eval_batch_size={self.eval_batch_size} must be >= 1")


WIRING = StageWiring(ScoresParams, "scores")


def run(params: ScoresParams, base: BaseParams, prepared: Path, out: Path) -> dict:
    world, runtime = distributed.setup(resolve_runtime(base.device, base.precision))
    with Timer() as timer:
        images, labels, attrs = load_split(prepared, "train", (world.rank, world.size))
        num_images = int(distributed.all_sum(np.array([len(labels)], np.int64), world)[0])
        torch.manual_seed(base.seed)
        model = create_model(params.arch, len(attrs["classes"]), int(images.shape[1]))
        norm = Normalization.from_totals(distributed.all_sum(Normalization.totals(images.numpy()), world))
        dynamics = TrainingDynamics(labels.to(runtime.device), params.recipe.epochs, params.el2n_epochs)
        history = train(model, images, labels, params.recipe, norm, runtime, base.seed,
                        desc=f"scores proxy {params.arch}", on_batch=dynamics, world=world)
        mine = dynamics.scores(predict(model, images, norm, runtime, params.eval_batch_size))
        scores = {name: distributed.all_rows(mine[name], world, num_images) for name in SCORES}
    used = lineage(attrs["params"], base=base, scores=params)
    if world.main:
        with store_output(out) as tmp:
            root = zarr.open_group(str(tmp), mode="w")
            root.attrs.update({"params": used, "params_hash": params_hash(used), "history": history,
                               "num_images": num_images} | ({"world_size": world.size} if world.size > 1 else {}))
            for name in SCORES:
                create_rows(root, name, (num_images,), np.float32)[:] = scores[name]
    distributed.finish(world)
    summary("scores", params.recipe.epochs * len(labels), "images", timer.seconds, arch=params.arch,
            final_train_accuracy=f"{history[-1]['train_accuracy']:.1f}%", runtime=runtime.describe,
            **({} if world.size == 1 else {"rank": f"{world.rank}/{world.size}", "rows": f"{len(labels)}/{num_images}"}))
    return {"images": num_images, "seconds": timer.seconds, "history": history}


def command(
    prepared: Path = typer.Option(..., help="prepared Zarr store"),
    out: Path = typer.Option(..., help="scores Zarr store to write"),
    params_file: Path = PARAMS_OPTION,
    timing: Path | None = TIMING_OPTION,
):
    """Train a proxy model and record per-sample AUM, EL2N, forgetting and entropy scores."""
    base, params = read_params(params_file, WIRING.section, WIRING.params)
    with stage_command("scores", timing):
        run(params, base, prepared, out)
