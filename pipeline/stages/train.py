"""train: one network trained on one dataset variant, evaluated on the original test set.

Reads  `train:` (recipe, eval batch size; `--section architectures`, `regime2` or `regime3`: that section, same
       keys, for the architectures study and the equal-bytes study's second and paper-size regimes) + `base` (device, precision); a train set (any store
       `pipeline/io/train_sets.py` reads: the prepared store's full-colour train split, a DCQ store, ...)
       and the prepared store's test split (never quantized). The run's model and seed come from
       dvc.yaml's matrix over `train.models` x `train.seeds` (and `train.bits` for DCQ).
Writes `CHECKPOINT` (weights, normalisation, resolved params of the whole lineage, per-epoch history, the record
       less its wall-clock times: a rerun writes the same bytes) and
       `RECORD`: one flat JSON record (method, bits, compression_ratio, model, seed, test_accuracy,
       train_bytes, ...) that is a DVC metric and one row of reports/metrics.json.
Under `torchrun --nproc_per_node N` it trains data-parallel (pipeline/distributed.py): each rank holds its
share of the train and test rows, rank 0 writes both outputs, the record gains `world_size`.
"""

from __future__ import annotations

from pathlib import Path

import torch
import typer

from pipeline import distributed
from pipeline.config import BaseParams, lineage, params_hash
from pipeline.device import resolve_runtime
from pipeline.errors import ParamsError
from pipeline.io.arrays import write_json
from pipeline.io.atomic import atomic_output
from pipeline.io.bitpack import check_bits
from pipeline.io.packed import PackedImages
from pipeline.io.streamed import StreamedImages, window_shuffle
from pipeline.io.train_set_info import train_set_info
from pipeline.io.train_sets import load_split, load_train_set
from pipeline.models.checkpoint import save_checkpoint
from pipeline.models.inputs import Normalization
from pipeline.models.registry import create_model, model_names
from pipeline.stages.common import (
    PARAMS_OPTION,
    TIMING_OPTION,
    StageWiring,
    Timer,
    read_params,
    stage_command,
    summary,
    user_errors,
)
from pipeline.train.engine import evaluate, train
from pipeline.train.params import TrainParams

# DVC builds one stage per (variant, model, seed) from these lists; each run reads only its own item.
MATRIX_KEYS = ("models", "seeds", "bits")
# The params sections a run may read: the main job's and every study's, all parsed as TrainParams.
SECTIONS = ("train", "architectures", "regime2", "regime3")
# The record's wall-clock fields stay out of the checkpoint (a cached output), so a rerun writes the same bytes.
# Left out of the checkpoint's copy of the record: wall-clock times, and what the record says about its train set
# (the store's own attrs say it).
NOT_IN_CHECKPOINT = ("seconds", "train_seconds", "train_set_info")


WIRING = StageWiring(TrainParams, "train", base=("device", "precision"), matrix=MATRIX_KEYS)


def check_section(section: str) -> None:
    if section not in SECTIONS:
        raise ParamsError(f"--section {section!r} is not one of the training sections {list(SECTIONS)}")


def run(params: TrainParams, base: BaseParams, method: str, bits: int | None, model_name: str, seed: int,
        train_path: Path, prepared: Path, checkpoint_out: Path, record_out: Path, section: str = "train") -> dict:
    check_section(section)
    if model_name not in model_names():
        raise ParamsError(f"model {model_name!r} is not in the model registry {model_names()}")
    if bits is not None:
        check_bits(bits)
    runtime = resolve_runtime(base.device, base.precision)
    world, runtime = distributed.setup(runtime)  # one process, or this rank of a torchrun job (its rows only)
    part = (world.rank, world.size)
    shuffle = window_shuffle(params.stream_window, params.stream_block)
    with Timer() as timer:
        test_x, test_y, test_attrs = load_split(prepared, "test", part, stream=shuffle is not None)
        train_set = load_train_set(train_path, packed=True, part=part,  # indexed sets stay packed: 24/q x less
                                   stream=shuffle is not None)
        train_set.check_matches(method, bits, (int(test_x.shape[1]), int(test_x.shape[2])),
                                list(test_attrs["classes"]), test_attrs.get("params", {}).get("prepare"))
        torch.manual_seed(seed)
        model = create_model(model_name, len(train_set.classes), train_set.image_size[0])
        images = train_set.images if isinstance(train_set.images, PackedImages | StreamedImages) \
            else train_set.images.numpy()
        norm = Normalization.from_totals(distributed.all_sum(Normalization.totals(images), world))
        total_steps = None
        if train_set.source_images and params.coreset_budget == "iterations":
            total_steps = params.recipe.epochs * (train_set.source_images // min(params.recipe.batch_size,
                                                                                 train_set.source_images))
        with Timer() as train_timer:
            history = train(model, train_set.images, train_set.labels, params.recipe, norm, runtime, seed,
                            desc=f"{method}{'' if bits is None else f'@{bits}'} {model_name} seed {seed}",
                            total_steps=total_steps, world=world, shuffle=shuffle)
        test_acc, confusion = evaluate(model, test_x, test_y, norm, runtime, len(train_set.classes),
                                       params.eval_batch_size, world)
    used = lineage(train_set.params, base=base, **{section: params}) | {"run": {"method": method, "bits": bits,
                                                                         "model": model_name, "seed": seed}}
    h = train_set.image_size[0]
    record = {
        "method": method, "bits": bits, "model": model_name, "seed": seed,
        "test_accuracy": round(test_acc, 4),
        "compression_ratio": round(train_set.compression_ratio, 6),
        "nominal_ratio": None if bits is None else round(bits / 24, 6),
        "train_bytes": train_set.stored_bytes, "raw_bytes": train_set.raw_bytes,
        "train_images": train_set.num_images, "test_images": int(confusion.sum()), "image_size": h,
        "epochs": len(history), "final_train_loss": round(history[-1]["loss"], 4),
        "final_train_accuracy": round(history[-1]["train_accuracy"], 4),
        "train_seconds": round(train_timer.seconds, 1), "seconds": round(timer.seconds, 1),
        "runtime": runtime.describe, "hardware": runtime.hardware,
        "train_set": str(train_path), "train_set_hash": params_hash(train_set.params),
        "params_hash": params_hash(used),
        # Per-class view of the same test predictions (rows: true class, columns: predicted, in `classes` order).
        "classes": list(train_set.classes), "confusion": confusion.tolist(),
        "train_set_info": train_set_info(train_path),
    }
    if world.size > 1:
        record["world_size"] = world.size
    if world.main:
        with atomic_output(checkpoint_out) as tmp:
            save_checkpoint(tmp, model.cpu(), model_name, len(train_set.classes), h, norm,
                            {"classes": train_set.classes, "params": used, "history": history,
                             "record": {k: v for k, v in record.items() if k not in NOT_IN_CHECKPOINT}})
        write_json(record_out, record)
    distributed.finish(world)
    batch = min(params.recipe.batch_size, train_set.num_images)
    steps = total_steps or params.recipe.epochs * (train_set.num_images // batch)
    summary("train", steps * batch, "images", timer.seconds,
            method=method, bits=bits, model=model_name, seed=seed, test_accuracy=f"{test_acc:.2f}%",
            runtime=runtime.describe, **({} if world.size == 1 else {"rank": f"{world.rank}/{world.size}",
                                          "rows": f"{len(train_set.labels)}/{train_set.num_images}"}))
    return record


def command(
    method: str = typer.Option(..., help="what the train set is: full | dcq | any variant name"),
    bits: int = typer.Option(None, help="bit depth of the train set's colour indices (omit for full colour)"),
    model: str = typer.Option(..., help="model name from the registry"),
    seed: int = typer.Option(..., help="seed of the initialisation and the batch order"),
    train_set: Path = typer.Option(..., help="train-set store (prepared store or DCQ store)"),
    prepared: Path = typer.Option(..., help="prepared store whose test split is the evaluation set"),
    checkpoint_out: Path = typer.Option(..., "--checkpoint", help="where to write the trained model"),
    record_out: Path = typer.Option(..., "--record", help="where to write the run's metrics record (JSON)"),
    section: str = typer.Option("train", help=f"params section with the recipe: {' | '.join(SECTIONS)}"),
    params_file: Path = PARAMS_OPTION,
    timing: Path | None = TIMING_OPTION,
):
    """Train one model on one dataset variant and test it on the original test set."""
    with user_errors():
        check_section(section)
    base, params = read_params(params_file, section, TrainParams)
    with stage_command(f"train {method}{'' if bits is None else f'@{bits}'} {model} seed {seed}", timing):
        run(params, base, method, bits, model, seed, train_set, prepared, checkpoint_out, record_out, section)
