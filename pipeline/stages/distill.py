"""distill@method-ipc: a synthetic train set at the storage of IPC full-colour images per class.

Reads  `distill:` + `base`; a source train set (any store pipeline/io/train_sets.py reads: full colour or DCQ),
       the expert store (trajectories + the input preprocessing). Method and IPC come from dvc.yaml's matrix.
Writes `OUT`, a synthetic store (pipeline/io/synthetic_store.py) holding exactly what is accounted:
  random       IPC real images per class (seeded), uint8
  mtt          trajectory matching on pixels, initialised from real images; stored as uint8 images
  dm           distribution matching on pixels, initialised from real images; stored as uint8 images
  autopalette  trajectory matching through the palette network (K levels per channel, straight-through
               hard images), max-colour + balance + Median-Cut alignment losses, graph-cut initialisation;
               stored as packed indices + palettes, so floor(budget / per-image bytes) images per class
  mtt_lss      trajectory matching of a low-rank set (shared mappers, per-sample bases, learnable soft labels,
               progressive start epochs), as many samples as fit the budget in float16
The store refuses to exceed its budget (IPC x classes x H x W x 3 bytes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import typer
import zarr
from tqdm import tqdm

from pipeline.config import BaseParams, lineage, params_hash, require
from pipeline.device import resolve_runtime
from pipeline.distill import autopalette as ap
from pipeline.distill import dm, mtt
from pipeline.distill.dsa import DSAParams
from pipeline.distill.experts import ExpertStore
from pipeline.distill.params import unflatten
from pipeline.distill.synthetic import LowRankSet, PixelSet, progressive_start
from pipeline.errors import ParamsError
from pipeline.io.atomic import atomic_output
from pipeline.io.synthetic_store import SyntheticStore, budget_bytes, write
from pipeline.io.train_sets import load_train_set
from pipeline.models.registry import create_model
from pipeline.stages.common import PARAMS_OPTION, TIMING_OPTION, Timer, read_params, stage_command, summary

METHODS = ("random", "mtt", "dm", "autopalette", "mtt_lss")


@dataclass(frozen=True)
class AutoPaletteParams:
    colours: int = 64          # K levels per channel
    hidden: int = 256
    max_colour_weight: float = 1.0   # alpha, eq. 13
    balance_weight: float = 1.0      # beta
    alignment_weight: float = 0.1    # gamma
    alignment_pixels: int = 256      # pixels per image compared by the alignment loss
    lr_net: float = 0.01             # Adam on the palette network (warm-up and matching)
    warmup_steps: int = 50           # Adam steps on the auxiliary losses alone before matching
    init: Literal["graph_cut", "random_real"] = "graph_cut"
    pixel_gradient: Literal["identity", "blend"] = "identity"  # straight-through gradient the base pixels get
    candidates_per_class: int = 200  # real images scored for graph-cut initialisation

    def __post_init__(self):
        require(2 <= self.colours <= 256, f"colours={self.colours} must be in 2..256")
        require(self.warmup_steps >= 0, f"warmup_steps={self.warmup_steps} must be >= 0")
        require(self.lr_net > 0, f"lr_net={self.lr_net} must be > 0")


@dataclass(frozen=True)
class LSSParams:
    rank: int = 8
    sets: int = 1               # groups of samples sharing one pair of dimension mappers
    label_init: Literal["class", "random"] = "class"
    lr_labels: float = 5.0      # SGD (momentum 0.5) on the soft-label logits
    lr_mappers: float = 1e-3    # relative to lr_img for U and V (shared by many samples); the basis takes lr_img
    progressive: bool = True
    delta: int = 2
    window: int = 5

    def __post_init__(self):
        require(self.rank >= 1 and self.sets >= 1, f"rank={self.rank} and sets={self.sets} must be >= 1")


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


def real_per_class(labels: np.ndarray, count: int, seed: int, num_classes: int, repeat: bool = False) -> np.ndarray:
    """`count` random rows of every class (seeded), class by class; distinct unless the class is smaller and
    `repeat` allows reusing images (initialising more synthetic samples than there are real images)."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(num_classes):
        members = np.flatnonzero(labels == c)
        if len(members) < count and not repeat:
            raise ParamsError(f"class {c} has {len(members)} images, fewer than the {count} asked for")
        rows.append(np.sort(rng.choice(members, count, replace=len(members) < count)))
    return np.concatenate(rows)


def palette_images_per_class(ipc: int, colours: int, image_size, channels: int = 3) -> int:
    bits = max(1, int(np.ceil(np.log2(colours))))
    per_image = channels * ((image_size[0] * image_size[1] * bits + 7) // 8) + channels * colours + 1  # + label
    return budget_bytes(ipc, 1, image_size, channels) // per_image


def low_rank_samples(ipc: int, num_classes: int, p: LSSParams, image_size, channels: int = 3) -> int:
    """Samples per class that fit the budget in float16: mappers + per-sample basis + soft label."""
    values = budget_bytes(ipc, num_classes, image_size, channels) // 2
    mappers = p.sets * channels * (image_size[0] + image_size[1]) * p.rank
    per_sample = channels * p.rank * p.rank + num_classes
    per_class = (values - mappers) // per_sample // num_classes
    while per_class > 0 and (per_class * num_classes) % p.sets:  # the sets split the samples evenly
        per_class -= 1
    if per_class < 1:
        raise ParamsError(f"distill.lss rank={p.rank}, sets={p.sets}: not one sample per class fits IPC {ipc}")
    return int(per_class)


def run(params: DistillParams, base: BaseParams, method: str, ipc: int, train_set: Path, experts: Path,
        out: Path) -> dict:
    if method not in METHODS:
        raise ParamsError(f"distill --method={method!r} is not one of {list(METHODS)}")
    if ipc < 1:
        raise ParamsError(f"distill --ipc={ipc} must be >= 1")
    runtime = resolve_runtime(base.device, base.precision)
    dev = runtime.device
    source = load_train_set(train_set)
    num_classes, size = len(source.classes), source.image_size
    store = ExpertStore(experts)
    model = create_model(params.arch, num_classes, size[0])
    store.check_model(params.arch, num_classes, size[0], model)
    labels_np = source.labels.numpy()
    torch.manual_seed(base.seed)
    attrs = {"method": method, "ipc": ipc, "classes": source.classes, "image_size": list(size),
             "normalization": store.attrs["normalization"], "zca": bool(store.attrs.get("zca")),
             "experts": str(experts), "source_images": len(labels_np)}
    arrays: dict[str, np.ndarray] = {}
    losses: list[float] = []
    with Timer() as timer:
        bar = tqdm(desc=f"distill {method} ipc={ipc}", unit="it", leave=False)

        def progress(it, loss):
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}")

        if method in ("random", "mtt", "dm"):
            rows = real_per_class(labels_np, ipc, base.seed, num_classes)
            init = store.preprocess(source.images[rows]).to(dev)
            synthetic = PixelSet(init, source.labels[rows].to(dev))
            if method == "mtt":
                bar.total = params.mtt.iterations
                lr, losses = mtt.distill(store, model, synthetic, params.mtt, params.dsa, base.seed, progress=progress)
                attrs["student_lr"] = float(lr)
            elif method == "dm":
                bar.total = params.dm.iterations
                x_all = store.preprocess(source.images).to(dev)
                by_class = [x_all[source.labels.to(dev) == c] for c in range(num_classes)]

                def make(seed):
                    torch.manual_seed(seed)
                    return create_model(params.arch, num_classes, size[0]).to(dev)

                losses = dm.distill(make, by_class, synthetic, params.dm, params.dsa, base.seed, progress=progress)
            images = source.images[rows] if method == "random" else store.to_uint8(synthetic.images)
            representation = "pixels"
            arrays = {"images": images.numpy(), "labels": labels_np[rows]}
        elif method == "autopalette":
            if store.zca is not None:
                raise ParamsError("distill autopalette quantizes RGB channels: use experts trained without ZCA "
                                  "(experts.zca: false)")
            per_class = palette_images_per_class(ipc, params.autopalette.colours, size)
            rows = autopalette_init(params.autopalette, store, source, per_class, base.seed, num_classes, model)
            x0 = store.preprocess(source.images[rows]).to(dev)
            net = ap.PaletteNet(3, params.autopalette.colours, params.autopalette.hidden).to(dev)
            reference = torch.from_numpy(ap.median_cut_indices(source.images[rows].numpy(),
                                                               params.autopalette.colours)).to(dev)
            pixels = torch.from_numpy(np.random.default_rng(base.seed).choice(
                size[0] * size[1], min(params.autopalette.alignment_pixels, size[0] * size[1]), replace=False)).to(dev)
            synthetic = PaletteSynthetic(x0, source.labels[rows].to(dev), net, params.autopalette.pixel_gradient)
            p = params.autopalette

            def auxiliary(probs):
                return (p.max_colour_weight * ap.max_colour_loss(probs) + p.balance_weight * ap.palette_balance_loss(probs)
                        + p.alignment_weight * ap.alignment_loss(probs, reference, pixels))

            # eq. 13-14: the palette losses train the network only; the pixels follow the matching loss alone
            opt_net = torch.optim.Adam(net.parameters(), lr=p.lr_net)
            with torch.no_grad():
                attrs["levels_untrained"] = ap.levels_used(net(synthetic.base))
            warm = ap.warm_up(net, synthetic.base, auxiliary, opt_net, p.warmup_steps)
            with torch.no_grad():
                attrs["levels_after_warmup"] = ap.levels_used(net(synthetic.base))
            attrs["warmup_loss"] = [warm[0], warm[-1]] if warm else None
            bar.total = params.mtt.iterations
            optimizers = [torch.optim.SGD([synthetic.base], lr=params.mtt.lr_img, momentum=0.5), opt_net]
            lr, losses = mtt.distill(store, model, synthetic, params.mtt, params.dsa, base.seed,
                                     extra_loss=lambda: synthetic.palette_loss(auxiliary), progress=progress,
                                     optimizers=optimizers)
            attrs["student_lr"] = float(lr)
            with torch.no_grad():
                base_images = store.to_uint8(synthetic.base).permute(0, 3, 1, 2).float()  # stored-space base
                probs = net(synthetic.base)
                palette, idx = ap.palettes_and_indices(base_images, probs)
                attrs["levels_final"] = ap.levels_used(probs)
            representation = "palette"
            arrays = {"indices": idx.cpu().numpy(), "palettes": torch.round(palette).clamp(0, 255).to(torch.uint8).cpu().numpy(),
                      "labels": labels_np[rows]}
        else:  # mtt_lss
            per_class = low_rank_samples(ipc, num_classes, params.lss, size)
            rows = real_per_class(labels_np, per_class, base.seed, num_classes, repeat=True)
            x0 = store.preprocess(source.images[rows]).to(dev)
            synthetic = LowRankSet(x0, source.labels[rows], num_classes, params.lss.sets, params.lss.rank,
                                   params.lss.label_init, seed=base.seed).to(dev)
            rng = np.random.default_rng(base.seed)
            schedule = None
            if params.lss.progressive:
                def schedule(it):
                    return progressive_start(it, params.mtt.iterations, params.mtt.max_start_epoch, params.lss.delta,
                                             params.lss.window, rng)
            bar.total = params.mtt.iterations
            optimizers = [torch.optim.SGD([
                {"params": [synthetic.basis], "lr": params.mtt.lr_img},
                {"params": [synthetic.U, synthetic.V], "lr": params.mtt.lr_img * params.lss.lr_mappers},
                {"params": [synthetic.label_logits], "lr": params.lss.lr_labels}], momentum=0.5)]
            lr, losses = mtt.distill(store, model, synthetic, params.mtt, params.dsa, base.seed, progress=progress,
                                     start_epoch=schedule, optimizers=optimizers)
            attrs["student_lr"] = float(lr)
            representation = "low_rank"
            _, soft = synthetic()
            attrs["labels_on_class"] = float((soft.argmax(1).cpu() == source.labels[rows]).float().mean())
            arrays = {"U": synthetic.U.detach().cpu().numpy(), "V": synthetic.V.detach().cpu().numpy(),
                      "basis": synthetic.basis.detach().cpu().numpy(), "soft_labels": soft.detach().cpu().numpy()}
        bar.close()
    used = lineage(source.params, store.attrs.get("params", {}), base=base, distill=params) | {
        "run": {"method": method, "ipc": ipc}}
    samples = arrays["labels"] if "labels" in arrays else arrays["soft_labels"]  # low_rank: one soft label each
    attrs |= {"num_images": len(samples), "final_loss": losses[-1] if losses else None,
              "params": used, "params_hash": params_hash(used)}
    with atomic_output(out) as tmp:
        write(zarr.open_group(str(tmp), mode="w"), representation, attrs, **arrays)
        SyntheticStore(tmp).check_budget()
    summary("distill", attrs["num_images"], "synthetic images", timer.seconds, method=method, ipc=ipc,
            iterations=len(losses), runtime=runtime.describe)
    return {"method": method, "ipc": ipc, "images": attrs["num_images"], "losses": losses, "seconds": timer.seconds}


class PaletteSynthetic(torch.nn.Module):
    """Learnable base images seen through the palette network: the hard K-level image (straight-through)."""

    def __init__(self, base: torch.Tensor, labels: torch.Tensor, net: ap.PaletteNet, pixel_gradient: str = "identity"):
        super().__init__()
        self.pixel_gradient = pixel_gradient
        self.base = torch.nn.Parameter(base.detach().clone())
        self.register_buffer("labels", labels.detach().clone())
        self.net = net

    def forward(self):
        image, _, _ = ap.quantize(self.base, self.net(self.base), self.pixel_gradient)
        return image, self.labels

    def palette_loss(self, auxiliary) -> torch.Tensor:
        """The palette losses of the current assignment, with the pixels detached: eqs. 13-14 train the network
        on them and the pixels on the matching loss alone."""
        return auxiliary(self.net(self.base.detach()))


def autopalette_init(p: AutoPaletteParams, store: ExpertStore, source, per_class: int, seed: int, num_classes: int,
                     model) -> np.ndarray:
    """Rows of the source to start from: graph-cut selection (eqs. 8-11) among Median-Cut-quantized candidates,
    similarity = cosine of last-layer gradients under the first expert's final network; or random real images."""
    labels = source.labels.numpy()
    if p.init == "random_real":
        return real_per_class(labels, per_class, seed, num_classes)
    model.load_state_dict(unflatten(store.snapshot(0, store.num_snapshots - 1), store.spec))
    rng = np.random.default_rng(seed)
    chosen = []
    for c in range(num_classes):
        members = np.flatnonzero(labels == c)
        members = np.sort(rng.choice(members, min(p.candidates_per_class, len(members)), replace=False))
        if len(members) < per_class:
            raise ParamsError(f"class {c} has {len(members)} candidates, fewer than the {per_class} to select")
        quantized = ap.median_cut_images(source.images[members].numpy(), p.colours)
        x = store.preprocess(torch.from_numpy(quantized))
        sim = ap.gradient_similarity(model, x, torch.full((len(x),), c, dtype=torch.int64))
        chosen.append(members[ap.graph_cut_select(sim, per_class)])
    return np.concatenate(chosen)


def command(
    method: str = typer.Option(..., help=f"distiller: {' | '.join(METHODS)}"),
    ipc: int = typer.Option(..., help="storage budget: full-colour images per class"),
    train_set: Path = typer.Option(..., help="source train set (prepared store, DCQ store, ...)"),
    experts: Path = typer.Option(..., help="expert store (from the experts stage)"),
    out: Path = typer.Option(..., help="synthetic store to write"),
    params_file: Path = PARAMS_OPTION,
    timing: Path | None = TIMING_OPTION,
):
    """Distill a synthetic train set at the storage of IPC images per class."""
    base, params = read_params(params_file, "distill", DistillParams)
    with stage_command(f"distill {method}@ipc{ipc}", timing):
        run(params, base, method, ipc, train_set, experts, out)
