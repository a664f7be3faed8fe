"""teacher: the task-specific pre-trained model that DCQ's features and attention come from.

Reads  `teacher:` + `base`; the prepared store (train/ to train on, test/ to measure). Under `torchrun` it trains
       data-parallel like the train stage (pipeline/distributed.py): rank 0 writes.
Writes `CHECKPOINT` (weights, arch, normalisation, resolved params, per-epoch history) and `METRICS`
       (flat JSON for DVC: test accuracy, final train loss/accuracy, seconds, params hash). With `teacher.checkpoint` set, that checkpoint is loaded and
       re-measured instead of training.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import typer

from pipeline import distributed
from pipeline.config import BaseParams, lineage, off_switch, params_hash, require
from pipeline.device import resolve_runtime
from pipeline.errors import StoreError
from pipeline.io.arrays import write_json
from pipeline.io.atomic import atomic_output
from pipeline.io.streamed import window_shuffle
from pipeline.io.train_sets import load_split
from pipeline.models.checkpoint import load_checkpoint, save_checkpoint
from pipeline.models.inputs import Normalization
from pipeline.models.registry import create_model, model_names
from pipeline.stages.common import PARAMS_OPTION, TIMING_OPTION, StageWiring, Timer, read_params, stage_command, summary
from pipeline.train.engine import Recipe, accuracy, evaluate, train


@dataclass(frozen=True)
class TeacherParams:
    arch: str = "resnet18"
    checkpoint: str | None = None  # a dcq checkpoint to load instead of training
    recipe: Recipe = field(default_factory=Recipe)
    eval_batch_size: int = 512
    # > 0: window-shuffled epochs and both splits streamed from the store (as train.stream_window)
    stream_window: int = off_switch(0)
    stream_block: int = off_switch(256)

    def __post_init__(self):
        require(self.arch in model_names(), f"arch={self.arch!r} is not in the model registry {model_names()}")
        require(self.eval_batch_size >= 1, f"eval_batch_size={self.eval_batch_size} must be >= 1")
        window_shuffle(self.stream_window, self.stream_block)  # its range checks


WIRING = StageWiring(TeacherParams, "teacher")


def run(params: TeacherParams, base: BaseParams, prepared: Path, checkpoint_out: Path, metrics_out: Path) -> dict:
    runtime = resolve_runtime(base.device, base.precision)
    world, runtime = distributed.setup(runtime)  # one process, or this rank of a torchrun job (its rows only)
    part = (world.rank, world.size)
    shuffle = window_shuffle(params.stream_window, params.stream_block)
    with Timer() as timer:
        train_x, train_y, attrs = load_split(prepared, "train", part, stream=shuffle is not None)
        test_x, test_y, _ = load_split(prepared, "test", part, stream=shuffle is not None)
        num_classes, size = len(attrs["classes"]), attrs["image_size"]
        if not isinstance(size, int):
            raise StoreError(f"{prepared}: images are {size[0]}x{size[1]}; the model registry builds square-input "
                             "models only, so prepare.image_size must be one number to train on them")
        history: list[dict] = []
        if params.checkpoint:
            model, norm, _ = load_checkpoint(Path(params.checkpoint), params.arch, num_classes, size)
        else:
            torch.manual_seed(base.seed)
            model = create_model(params.arch, num_classes, size)
            images = train_x if shuffle else train_x.numpy()
            norm = Normalization.from_totals(distributed.all_sum(Normalization.totals(images), world))
            history = train(model, train_x, train_y, params.recipe, norm, runtime, base.seed,
                            desc=f"teacher {params.arch}", world=world, shuffle=shuffle)
        if world.size == 1:
            test_acc = accuracy(model, test_x, test_y, norm, runtime, params.eval_batch_size)
        else:
            test_acc, _ = evaluate(model, test_x, test_y, norm, runtime, num_classes, params.eval_batch_size, world)
    n_train, n_test = (int(v) for v in distributed.all_sum(np.array([len(train_x), len(test_x)], np.int64), world))
    used = lineage(attrs["params"], base=base, teacher=params)
    # DVC metrics: flat numbers (and a few labels); the full params and history live in the checkpoint.
    metrics = {
        "arch": params.arch, "test_accuracy": round(test_acc, 4), "train_images": n_train,
        "test_images": n_test, "epochs": len(history), "seconds": round(timer.seconds, 1),
        "runtime": runtime.describe, "loaded_checkpoint": params.checkpoint, "params_hash": params_hash(used),
    }
    if history:
        metrics |= {"final_train_loss": round(history[-1]["loss"], 4),
                    "final_train_accuracy": round(history[-1]["train_accuracy"], 4)}
    if world.size > 1:
        metrics["world_size"] = world.size
    if world.main:
        with atomic_output(checkpoint_out) as tmp:
            save_checkpoint(tmp, model.cpu(), params.arch, num_classes, size, norm,
                            {"classes": attrs["classes"], "params": used, "test_accuracy": test_acc, "history": history})
        write_json(metrics_out, metrics)
    distributed.finish(world)
    trained = sum(1 for _ in history) * n_train
    summary("teacher", trained or n_test, "images" if trained else "test images", timer.seconds,
            test_accuracy=f"{test_acc:.2f}%", runtime=runtime.describe)
    return metrics


def command(
    prepared: Path = typer.Option(..., help="prepared Zarr store (from prepare)"),
    checkpoint_out: Path = typer.Option(..., "--checkpoint", help="where to write the teacher checkpoint"),
    metrics_out: Path = typer.Option(..., "--metrics", help="where to write the teacher metrics JSON"),
    params_file: Path = PARAMS_OPTION,
    timing: Path | None = TIMING_OPTION,
):
    """Train (or load) the teacher and measure its test accuracy."""
    base, params = read_params(params_file, WIRING.section, WIRING.params)
    with stage_command("teacher", timing):
        run(params, base, prepared, checkpoint_out, metrics_out)
