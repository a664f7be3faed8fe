"""evaluate_synthetic@method-ipc-seed: the distillation papers' protocol on one synthetic set and one seed.

Reads  `evaluate_synthetic:` + `base` (device); the set to evaluate: a synthetic store (distill stage) or a DCQ
       store of a coreset at a distillation budget (an `ablate` variant with `coreset.ipc`, so DCQ is trained
       exactly like the distilled sets it is compared with); the expert store (the input preprocessing the sets
       were distilled in: normalisation, optional ZCA) and the prepared store's test split.
Writes `RECORD`, a run record with the train stage's schema plus `ipc`, `budget_bytes`, `representation`,
       `protocol: distillation` (the train stage's records have no protocol: they use `train.recipe`) and, for a
       set distilled from a DCQ store instead of full colour, `source_bits` (that store's q):
       a fresh network trained on the synthetic set with DSA (soft labels where the set has them; the learned
       student lr where the distiller learned one), tested on the original test set. `train_bytes` is what the
       synthetic store holds (everything needed to rebuild it), `compression_ratio` is that over the source
       train set as raw 24-bit RGB, like every other run.
Under `torchrun --nproc_per_node N` the test split is divided: every rank trains the same network (a synthetic set
is a few batches at most, and the protocol's training is replicated, seeded alike), tests its share of the test
rows, the correct counts are summed and rank 0 writes the record (with `world_size`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import typer

from pipeline import distributed
from pipeline.config import BaseParams, lineage, params_hash, require
from pipeline.device import resolve_runtime
from pipeline.distill.budgeted import open_budgeted
from pipeline.distill.dsa import DSAParams
from pipeline.distill.evaluate import EvalRecipe, real_accuracy, train_on_synthetic
from pipeline.distill.experts import ExpertStore
from pipeline.errors import StoreError
from pipeline.io.arrays import write_json
from pipeline.io.train_set_info import train_set_info
from pipeline.io.train_sets import load_split
from pipeline.models.registry import create_model, model_names
from pipeline.stages.common import PARAMS_OPTION, TIMING_OPTION, StageWiring, read_params, stage_command, summary

MATRIX_KEYS = ("seeds", "dcq_variants")


@dataclass(frozen=True)
class EvaluateSyntheticParams:
    arch: str = "convnetd3"
    seeds: list[int] = field(default_factory=lambda: [0, 1])  # read by dvc.yaml's matrix
    dcq_variants: list[str] = field(default_factory=list)  # ablate variants with coreset.ipc (dvc.yaml's matrix)
    recipe: EvalRecipe = field(default_factory=EvalRecipe)
    dsa: DSAParams = field(default_factory=DSAParams)
    learned_lr: bool = True   # train with the distiller's learned student lr when it has one (MTT's protocol)
    eval_batch_size: int = 500

    def __post_init__(self):
        require(self.arch in model_names(), f"arch={self.arch!r} is not in the model registry {model_names()}")
        require(self.eval_batch_size >= 1, f"eval_batch_size={self.eval_batch_size} must be >= 1")


WIRING = StageWiring(EvaluateSyntheticParams, "evaluate_synthetic", base=("device", "precision"), matrix=MATRIX_KEYS)


def run(params: EvaluateSyntheticParams, base: BaseParams, seed: int, synthetic: Path, experts: Path,
        prepared: Path, record_out: Path) -> dict:
    world, runtime = distributed.setup(resolve_runtime(base.device, base.precision))
    dev = runtime.device
    budgeted = open_budgeted(Path(synthetic))
    expert_store = ExpertStore(experts)
    if budgeted.normalization is not None and expert_store.attrs.get("normalization") != budgeted.normalization:
        raise StoreError(f"{synthetic} was distilled with other experts than {experts} (input normalisation differs)")
    test_u8, test_y, prep_attrs = load_split(prepared, "test", (world.rank, world.size))
    if list(prep_attrs["classes"]) != budgeted.classes:
        raise StoreError(f"{synthetic} classes {budgeted.classes} differ from the test set's {prep_attrs['classes']}")
    h, w = budgeted.image_size
    if tuple(test_u8.shape[1:3]) != (h, w):
        raise StoreError(f"{synthetic} holds {h}x{w} images, the test set {tuple(test_u8.shape[1:3])}")
    x, targets = budgeted.inputs(expert_store)
    lr = budgeted.student_lr if params.learned_lr else None
    start = time.perf_counter()
    torch.manual_seed(seed)
    model = create_model(params.arch, len(budgeted.classes), h).to(dev)
    steps = train_on_synthetic(model, x.to(dev), targets.to(dev), params.recipe, params.dsa, seed, lr)
    train_seconds = time.perf_counter() - start
    x_test = expert_store.preprocess(test_u8).to(dev)
    test_acc = real_accuracy(model, x_test, test_y.to(dev), params.eval_batch_size)
    test_images = len(test_y)
    if world.size > 1:  # the percentage of this rank's rows is an exact count over its rows
        correct, test_images = (int(v) for v in distributed.all_sum(
            np.array([round(test_acc * len(test_y) / 100), len(test_y)], np.int64), world))
        test_acc = 100.0 * correct / max(1, test_images)
    raw = budgeted.source_images * h * w * 3
    used = lineage(budgeted.params, base=base, evaluate_synthetic=params) | {
        "run": {"method": budgeted.method, "ipc": budgeted.ipc, "seed": seed}}
    record = {
        "method": budgeted.method, "ipc": budgeted.ipc, "bits": budgeted.bits, "model": params.arch, "seed": seed,
        "protocol": "distillation",
        "test_accuracy": round(test_acc, 4), "test_images": int(test_images),
        "train_images": budgeted.num_images, "representation": budgeted.representation,
        "train_bytes": int(budgeted.stored_bytes), "budget_bytes": int(budgeted.budget_bytes), "raw_bytes": raw,
        "compression_ratio": round(budgeted.stored_bytes / raw, 6), "epochs": params.recipe.epochs, "steps": steps,
        "lr": lr or params.recipe.lr, "train_seconds": round(train_seconds, 1),
        "seconds": round(time.perf_counter() - start, 1), "runtime": runtime.describe,
        "train_set": str(synthetic), "train_set_hash": params_hash(budgeted.params),
        "params_hash": params_hash(used), "train_set_info": train_set_info(synthetic),
    }
    if budgeted.source_bits is not None:  # distilled from a DCQ store, not from full colour
        record["source_bits"] = budgeted.source_bits
    if world.size > 1:
        record["world_size"] = world.size
    if world.main:
        write_json(record_out, record)
    distributed.finish(world)
    summary("evaluate_synthetic", record["train_images"], "training images", record["seconds"],
            method=budgeted.method, ipc=record["ipc"], seed=seed, test_accuracy=f"{test_acc:.2f}%",
            bytes=budgeted.stored_bytes, budget=record["budget_bytes"],
            **({} if world.size == 1 else {"rank": f"{world.rank}/{world.size}", "rows": f"{len(test_y)}/{test_images}"}))
    return record


def command(
    seed: int = typer.Option(..., help="training seed"),
    synthetic: Path = typer.Option(..., help="synthetic store (distill stage), or a DCQ store at an IPC budget (ablate)"),
    experts: Path = typer.Option(..., help="expert store the set was distilled with"),
    prepared: Path = typer.Option(..., help="prepared store (its test split)"),
    record: Path = typer.Option(..., help="run record JSON to write"),
    params_file: Path = PARAMS_OPTION,
    timing: Path | None = TIMING_OPTION,
):
    """Train a fresh network on a synthetic set (with DSA) and test it on the original test set."""
    base, params = read_params(params_file, WIRING.section, WIRING.params)
    with stage_command(f"evaluate_synthetic {synthetic.name} seed {seed}", timing):
        run(params, base, seed, synthetic, experts, prepared, record)
