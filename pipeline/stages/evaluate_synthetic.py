"""evaluate_synthetic@method-ipc-seed: the distillation papers' protocol on one synthetic set and one seed.

Reads  `evaluate_synthetic:` + `base` (device); the synthetic store (distill stage), the expert store (the input
       preprocessing the set was distilled in: normalisation, optional ZCA) and the prepared store's test split.
Writes `RECORD`, a run record with the train stage's schema plus `ipc`, `budget_bytes` and `representation`:
       a fresh network trained on the synthetic set with DSA (soft labels where the set has them; the learned
       student lr where the distiller learned one), tested on the original test set. `train_bytes` is what the
       synthetic store holds (everything needed to rebuild it), `compression_ratio` is that over the source
       train set as raw 24-bit RGB, like every other run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import typer

from pipeline.config import BaseParams, lineage, params_hash, require
from pipeline.device import resolve_runtime
from pipeline.distill.dsa import DSAParams
from pipeline.distill.evaluate import EvalRecipe, real_accuracy, train_on_synthetic
from pipeline.distill.experts import ExpertStore
from pipeline.errors import StoreError
from pipeline.io.arrays import write_json
from pipeline.io.synthetic_store import SyntheticStore
from pipeline.io.train_sets import load_split
from pipeline.models.registry import create_model, model_names
from pipeline.stages.common import PARAMS_OPTION, TIMING_OPTION, read_params, stage_command, summary

MATRIX_KEYS = ("seeds",)


@dataclass(frozen=True)
class EvaluateSyntheticParams:
    arch: str = "convnetd3"
    seeds: list[int] = field(default_factory=lambda: [0, 1])  # read by dvc.yaml's matrix
    recipe: EvalRecipe = field(default_factory=EvalRecipe)
    dsa: DSAParams = field(default_factory=DSAParams)
    learned_lr: bool = True   # train with the distiller's learned student lr when it has one (MTT's protocol)
    eval_batch_size: int = 500

    def __post_init__(self):
        require(self.arch in model_names(), f"arch={self.arch!r} is not in the model registry {model_names()}")
        require(self.eval_batch_size >= 1, f"eval_batch_size={self.eval_batch_size} must be >= 1")


def synthetic_inputs(store: SyntheticStore, experts: ExpertStore) -> tuple[torch.Tensor, torch.Tensor]:
    """(x float (N,C,H,W) in the experts' input space, targets: class ids or soft labels)."""
    if store.representation == "low_rank":
        return store.low_rank_images(), store.labels()
    return experts.preprocess(store.images_u8()), store.labels()


def run(params: EvaluateSyntheticParams, base: BaseParams, seed: int, synthetic: Path, experts: Path,
        prepared: Path, record_out: Path) -> dict:
    runtime = resolve_runtime(base.device, base.precision)
    dev = runtime.device
    store = SyntheticStore(synthetic)
    expert_store = ExpertStore(experts)
    if expert_store.attrs.get("normalization") != store.attrs.get("normalization"):
        raise StoreError(f"{synthetic} was distilled with other experts than {experts} (input normalisation differs)")
    test_u8, test_y, prep_attrs = load_split(prepared, "test")
    if list(prep_attrs["classes"]) != store.classes:
        raise StoreError(f"{synthetic} classes {store.classes} differ from the test set's {prep_attrs['classes']}")
    h, w = store.attrs["image_size"]
    if tuple(test_u8.shape[1:3]) != (h, w):
        raise StoreError(f"{synthetic} holds {h}x{w} images, the test set {tuple(test_u8.shape[1:3])}")
    x, targets = synthetic_inputs(store, expert_store)
    lr = store.attrs.get("student_lr") if params.learned_lr else None
    start = time.perf_counter()
    torch.manual_seed(seed)
    model = create_model(params.arch, len(store.classes), h).to(dev)
    train_on_synthetic(model, x.to(dev), targets.to(dev), params.recipe, params.dsa, seed, lr)
    train_seconds = time.perf_counter() - start
    x_test = expert_store.preprocess(test_u8).to(dev)
    test_acc = real_accuracy(model, x_test, test_y.to(dev), params.eval_batch_size)
    stored = store.stored_bytes
    raw = int(store.attrs["source_images"]) * h * w * 3
    used = lineage(store.attrs.get("params", {}), base=base, evaluate_synthetic=params) | {
        "run": {"method": store.method, "ipc": int(store.attrs["ipc"]), "seed": seed}}
    record = {
        "method": store.method, "ipc": int(store.attrs["ipc"]), "bits": None, "model": params.arch, "seed": seed,
        "test_accuracy": round(test_acc, 4), "test_images": int(len(test_y)),
        "train_images": int(store.attrs["num_images"]), "representation": store.representation,
        "train_bytes": int(stored), "budget_bytes": int(store.budget), "raw_bytes": raw,
        "compression_ratio": round(stored / raw, 6), "epochs": params.recipe.epochs,
        "lr": lr or params.recipe.lr, "train_seconds": round(train_seconds, 1),
        "seconds": round(time.perf_counter() - start, 1), "runtime": runtime.describe,
        "train_set": str(synthetic), "train_set_hash": params_hash(store.attrs.get("params", {})),
        "params_hash": params_hash(used),
    }
    write_json(record_out, record)
    summary("evaluate_synthetic", record["train_images"], "synthetic images", record["seconds"],
            method=store.method, ipc=record["ipc"], seed=seed, test_accuracy=f"{test_acc:.2f}%",
            bytes=stored, budget=record["budget_bytes"])
    return record


def command(
    seed: int = typer.Option(..., help="training seed"),
    synthetic: Path = typer.Option(..., help="synthetic store (distill stage)"),
    experts: Path = typer.Option(..., help="expert store the set was distilled with"),
    prepared: Path = typer.Option(..., help="prepared store (its test split)"),
    record: Path = typer.Option(..., help="run record JSON to write"),
    params_file: Path = PARAMS_OPTION,
    timing: Path | None = TIMING_OPTION,
):
    """Train a fresh network on a synthetic set (with DSA) and test it on the original test set."""
    base, params = read_params(params_file, "evaluate_synthetic", EvaluateSyntheticParams)
    with stage_command(f"evaluate_synthetic {synthetic.name} seed {seed}", timing):
        run(params, base, seed, synthetic, experts, prepared, record)
