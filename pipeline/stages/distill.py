"""distill@method-ipc: a synthetic train set at the storage of IPC full-colour images per class.

Reads  `distill:` + `base`; a source train set (any store pipeline/io/train_sets.py reads: full colour or DCQ),
       the expert store (trajectories + the input preprocessing). Method and IPC come from dvc.yaml's matrix.
Writes `OUT`, a synthetic store (pipeline/io/synthetic_store.py) holding exactly what is accounted (attribute
       `source_bits`: the source DCQ store's q, when the source is one), made by the method's registered distiller (pipeline/distill/methods.py: random, mtt, dm, autopalette, mtt_lss).
The store refuses to exceed its budget (IPC x classes x H x W x 3 bytes).
Under `torchrun --nproc_per_node N` every rank matches its own trajectory segments (MTT, AutoPalette, MTT-LSS) or
networks and real batches (DM) and the synthetic set's gradients are averaged; rank 0 writes the store (attrs gain
`world_size`). One process distils as before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import typer
import zarr
from tqdm import tqdm

from pipeline import distributed
from pipeline.config import BaseParams, lineage, params_hash, require
from pipeline.device import resolve_runtime
from pipeline.distill import dm, mtt
from pipeline.distill.dsa import DSAParams
from pipeline.distill.experts import ExpertStore
from pipeline.distill.methods import (
    AutoPaletteParams,
    DistillContext,
    LSSParams,
    distiller_names,
    get_distiller,
)
from pipeline.errors import ParamsError
from pipeline.io.atomic import store_output
from pipeline.io.synthetic_store import SyntheticStore, write
from pipeline.io.train_sets import load_train_set
from pipeline.models.registry import create_model
from pipeline.stages.common import PARAMS_OPTION, TIMING_OPTION, StageWiring, Timer, read_params, stage_command, summary

METHODS = tuple(distiller_names())


@dataclass(frozen=True)
class DistillParams:
    methods: list[str] = field(default_factory=lambda: list(METHODS))
    ipcs: list[int] = field(default_factory=lambda: [1, 10])
    arch: str = "convnetd3"
    mtt: mtt.MTTParams = field(default_factory=mtt.MTTParams)
    dm: dm.DMParams = field(default_factory=dm.DMParams)
    autopalette: AutoPaletteParams = field(default_factory=AutoPaletteParams)
    lss: LSSParams = field(default_factory=LSSParams)
    dsa: DSAParams = field(default_factory=DSAParams)

    def __post_init__(self):
        unknown = [m for m in self.methods if m not in METHODS]
        require(not unknown, f"methods={unknown} are not distillers {list(METHODS)}")
        require(all(i >= 1 for i in self.ipcs), f"ipcs={self.ipcs} must each be >= 1")


WIRING = StageWiring(DistillParams, "distill", matrix=("methods", "ipcs"))


def run(params: DistillParams, base: BaseParams, method: str, ipc: int, train_set: Path, experts: Path,
        out: Path) -> dict:
    distiller = get_distiller(method)
    if ipc < 1:
        raise ParamsError(f"distill --ipc={ipc} must be >= 1")
    world, runtime = distributed.setup(resolve_runtime(base.device, base.precision))
    source = load_train_set(train_set)
    num_classes, size = len(source.classes), source.image_size
    store = ExpertStore(experts)
    model = create_model(params.arch, num_classes, size[0])
    store.check_model(params.arch, num_classes, size[0], model)
    torch.manual_seed(base.seed)
    attrs = {"method": method, "ipc": ipc, "classes": source.classes, "image_size": list(size),
             "normalization": store.attrs["normalization"], "zca": bool(store.attrs.get("zca")),
             "experts": str(experts), "source_images": len(source.labels)}
    if source.bits is not None:  # distilled from a DCQ store (full-colour sources keep the attributes they had)
        attrs["source_bits"] = int(source.bits)
    with Timer() as timer:
        bar = tqdm(desc=f"distill {method} ipc={ipc}", unit="it", leave=False)

        def progress(it, loss):
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}")

        def set_total(total):
            bar.total = total

        made = distiller(DistillContext(params, base.seed, ipc, source, store, model, runtime.device, progress,
                                        set_total, world))
        bar.close()
    used = lineage(source.params, store.attrs.get("params", {}), base=base, distill=params) | {
        "run": {"method": method, "ipc": ipc}}
    samples = made.arrays["labels"] if "labels" in made.arrays else made.arrays["soft_labels"]  # low_rank: soft
    attrs |= made.attrs | {"num_images": len(samples), "final_loss": made.losses[-1] if made.losses else None,
                           "params": used, "params_hash": params_hash(used)}
    if world.size > 1:
        attrs["world_size"] = world.size
    if world.main:
        with store_output(out) as tmp:
            write(zarr.open_group(str(tmp), mode="w"), made.representation, attrs, **made.arrays)
            SyntheticStore(tmp).check_budget()
    distributed.finish(world)
    summary("distill", attrs["num_images"], "synthetic images", timer.seconds, method=method, ipc=ipc,
            iterations=len(made.losses), runtime=runtime.describe,
            **({} if world.size == 1 else {"rank": f"{world.rank}/{world.size}"}))
    return {"method": method, "ipc": ipc, "images": attrs["num_images"], "losses": made.losses,
            "seconds": timer.seconds}


def command(
    method: str = typer.Option(..., help=f"distiller: {' | '.join(distiller_names())}"),
    ipc: int = typer.Option(..., help="storage budget: full-colour images per class"),
    train_set: Path = typer.Option(..., help="source train set (prepared store, DCQ store, ...)"),
    experts: Path = typer.Option(..., help="expert store (from the experts stage)"),
    out: Path = typer.Option(..., help="synthetic store to write"),
    params_file: Path = PARAMS_OPTION,
    timing: Path | None = TIMING_OPTION,
):
    """Distill a synthetic train set at the storage of IPC images per class."""
    base, params = read_params(params_file, WIRING.section, WIRING.params)
    with stage_command(f"distill {method}@ipc{ipc}", timing):
        run(params, base, method, ipc, train_set, experts, out)
