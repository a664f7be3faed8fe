"""experts: expert trajectories for trajectory-matching distillation.

Reads  `experts:` + `base`; a source train set (any store `pipeline/io/train_sets.py` reads: full colour,
       DCQ, ...) and the prepared store's test split (to measure each expert).
Writes `OUT`, an expert store (format in `pipeline/distill/experts.py`): the flat parameters of each of
       `num_experts` networks after every epoch, the preprocessing they saw (normalisation, optional ZCA),
       attrs with the architecture, per-expert test accuracy and the resolved params.

Under `torchrun --nproc_per_node N` the experts are split over the processes (expert e on rank e mod N; each
expert's training is independent and seeded by e, so the store is the one a single process writes): rank 0
creates the store in its temporary path, every rank writes its experts' snapshots (one chunk each), and rank 0
seals and renames it once every rank is done.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import typer
import zarr
from tqdm import tqdm

from pipeline import distributed
from pipeline.config import BaseParams, lineage, params_hash, require
from pipeline.device import resolve_runtime
from pipeline.distill.dsa import DSAParams
from pipeline.distill.evaluate import real_accuracy
from pipeline.distill.experts import FORMAT, ExpertRecipe, preprocess, train_expert
from pipeline.distill.params import param_spec
from pipeline.distill.zca import ZCA
from pipeline.io.arrays import CHECKSUMMED, EVERY_CHUNK, create_small, open_rows
from pipeline.io.atomic import store_output
from pipeline.io.train_sets import load_split, load_train_set
from pipeline.models.inputs import Normalization
from pipeline.models.registry import create_model, model_names
from pipeline.stages.common import PARAMS_OPTION, TIMING_OPTION, StageWiring, Timer, read_params, stage_command, summary


@dataclass(frozen=True)
class ExpertsParams:
    arch: str = "convnetd3"
    num_experts: int = 2
    recipe: ExpertRecipe = field(default_factory=ExpertRecipe)
    dsa: DSAParams = field(default_factory=DSAParams)
    zca: bool = False
    zca_eps: float = 0.1
    eval_batch_size: int = 500

    def __post_init__(self):
        require(self.arch in model_names(), f"arch={self.arch!r} is not in the model registry {model_names()}")
        require(self.num_experts >= 1, f"num_experts={self.num_experts} must be >= 1")
        require(self.zca_eps > 0, f"zca_eps={self.zca_eps} must be > 0")


WIRING = StageWiring(ExpertsParams, "experts")


def run(params: ExpertsParams, base: BaseParams, train_set: Path, prepared: Path, out: Path) -> dict:
    world, runtime = distributed.setup(resolve_runtime(base.device, base.precision))
    dev = runtime.device
    source = load_train_set(train_set)
    test_u8, test_y, _ = load_split(prepared, "test")
    norm = Normalization.from_images(source.images.numpy())
    zca = ZCA.fit(preprocess(source.images, norm, None), params.zca_eps) if params.zca else None
    x = preprocess(source.images, norm, zca).to(dev)
    y = source.labels.to(dev)
    x_test, y_test = preprocess(test_u8, norm, zca).to(dev), test_y.to(dev)
    size = source.image_size[0]
    probe = create_model(params.arch, len(source.classes), size)
    spec = param_spec(probe)
    n_params = sum(int(np.prod(s)) for _, s in spec)
    snapshots = params.recipe.epochs + 1
    mine = [e for e in range(params.num_experts) if e % world.size == world.rank]
    accuracies = np.zeros(params.num_experts)
    used = lineage(source.params, base=base, experts=params)
    with Timer() as timer, (store_output(out) if world.main else contextlib.nullcontext()) as tmp:
        if world.main:
            root = zarr.open_group(str(tmp), mode="w")
            root.create_array("trajectories", shape=(params.num_experts, snapshots, n_params), dtype=np.float32,
                              chunks=(1, 1, n_params), fill_value=0, compressors=CHECKSUMMED, config=EVERY_CHUNK)
        tmp = distributed.shared_path(tmp, world)  # every rank after rank 0 has created the array
        traj = open_rows(tmp, "trajectories")
        with tqdm(total=len(mine) * params.recipe.epochs, desc=f"experts {params.arch}", unit="epoch",
                  leave=False) as bar:
            for e in mine:
                torch.manual_seed(base.seed * 1000 + e)
                model = create_model(params.arch, len(source.classes), size).to(dev)

                def save(t, flat, e=e):
                    traj[e, t] = flat.numpy()
                    if t:
                        bar.update(1)

                train_expert(model, x, y, params.recipe, params.dsa, base.seed * 1000 + e, save)
                accuracies[e] = round(real_accuracy(model, x_test, y_test, params.eval_batch_size), 4)
        accuracies = distributed.all_sum(accuracies, world).tolist()  # also: every rank's snapshots are written
        if world.main:
            if zca is not None:
                create_small(root, "zca_mean", zca.mean.numpy())
                create_small(root, "zca_transform", zca.transform.numpy())
            root.attrs.update({
                "format": FORMAT, "arch": params.arch, "num_classes": len(source.classes), "image_size": size,
                "classes": source.classes, "param_spec": [[name, list(shape)] for name, shape in spec],
                "normalization": norm.to_dict(), "zca": params.zca, "epochs": params.recipe.epochs,
                "num_experts": params.num_experts, "test_accuracy": accuracies, "source": str(train_set),
                "source_kind": source.kind, "source_bits": source.bits, "params": used, "params_hash": params_hash(used),
            })
    distributed.finish(world)
    summary("experts", len(mine) * params.recipe.epochs * len(x), "images", timer.seconds, experts=len(mine),
            test_accuracy=[accuracies[e] for e in mine], runtime=runtime.describe,
            **({"rank": f"{world.rank}/{world.size}"} if world.size > 1 else {}))
    return {"test_accuracy": accuracies, "seconds": timer.seconds}


def command(
    train_set: Path = typer.Option(..., help="source train set (prepared store, DCQ store, ...)"),
    prepared: Path = typer.Option(..., help="prepared store whose test split measures the experts"),
    out: Path = typer.Option(..., help="expert store to write"),
    params_file: Path = PARAMS_OPTION,
    timing: Path | None = TIMING_OPTION,
):
    """Train expert networks with DSA and save their parameters after every epoch."""
    base, params = read_params(params_file, WIRING.section, WIRING.params)
    with stage_command("experts", timing):
        run(params, base, train_set, prepared, out)
