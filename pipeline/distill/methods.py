"""The distillers, one registered function each: `@register_distiller(name)` with one signature,
`distiller(ctx) -> Distilled`. The distill stage looks the method up here; a new distiller is one more function.

  random       IPC real images per class (seeded), uint8
  mtt          trajectory matching on pixels, initialised from real images; stored as uint8 images
  dm           distribution matching on pixels, initialised from real images; stored as uint8 images
  autopalette  trajectory matching through the palette network (K levels per channel, straight-through
               hard images), max-colour + balance + Median-Cut alignment losses, graph-cut initialisation;
               stored as packed indices + palettes, so floor(budget / per-image bytes) images per class
  mtt_lss      trajectory matching of a low-rank set (shared mappers, per-sample bases, learnable soft labels,
               progressive start epochs), as many samples as fit the budget in float16
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from pipeline.config import require
from pipeline.distill import autopalette as ap
from pipeline.distill import dm, mtt
from pipeline.distill.experts import ExpertStore
from pipeline.distill.params import unflatten
from pipeline.distill.synthetic import LowRankSet, PixelSet, progressive_start
from pipeline.distributed import ONE_PROCESS, World
from pipeline.errors import ParamsError
from pipeline.io.synthetic_store import budget_bytes
from pipeline.io.train_sets import TrainSet
from pipeline.models.registry import create_model
from pipeline.registry import Registry


@dataclass
class DistillContext:
    """Everything a distiller reads: the stage's params (mtt, dm, autopalette, lss, dsa, arch sections), the source
    train set, the expert trajectories, a fresh student network and where to report progress."""

    params: Any
    seed: int
    ipc: int
    source: TrainSet
    store: ExpertStore
    model: torch.nn.Module
    device: torch.device
    progress: Callable[[int, float], None]
    set_total: Callable[[int], None]
    world: World = ONE_PROCESS  # under torchrun: this rank (pipeline/distributed.py)

    @property
    def num_classes(self) -> int:
        return len(self.source.classes)

    @property
    def size(self) -> tuple[int, int]:
        return self.source.image_size


@dataclass
class Distilled:
    representation: str                    # how synthetic_store.write stores it: pixels | palette | low_rank
    arrays: dict[str, np.ndarray]
    losses: list[float] = field(default_factory=list)
    attrs: dict = field(default_factory=dict)


Distiller = Callable[[DistillContext], Distilled]
DISTILLERS: Registry[Distiller] = Registry(
    "distiller", lambda name, names: f"distill --method={name!r} is not one of {names}", sort=False)
register_distiller = DISTILLERS.register
distiller_names = DISTILLERS.names
get_distiller = DISTILLERS.get


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


def _pixel_set(ctx: DistillContext) -> tuple[np.ndarray, PixelSet]:
    rows = real_per_class(ctx.source.labels.numpy(), ctx.ipc, ctx.seed, ctx.num_classes)
    init = ctx.store.preprocess(ctx.source.images[rows]).to(ctx.device)
    return rows, PixelSet(init, ctx.source.labels[rows].to(ctx.device))


def _pixels(ctx: DistillContext, rows: np.ndarray, images: torch.Tensor, losses: list[float], **attrs) -> Distilled:
    return Distilled("pixels", {"images": images.numpy(), "labels": ctx.source.labels.numpy()[rows]}, losses, attrs)


@register_distiller("random")
def distill_random(ctx: DistillContext) -> Distilled:
    rows, _ = _pixel_set(ctx)
    return _pixels(ctx, rows, ctx.source.images[rows], [])


@register_distiller("mtt")
def distill_mtt(ctx: DistillContext) -> Distilled:
    rows, synthetic = _pixel_set(ctx)
    ctx.set_total(ctx.params.mtt.iterations)
    lr, losses = mtt.distill(ctx.store, ctx.model, synthetic, ctx.params.mtt, ctx.params.dsa, ctx.seed,
                             progress=ctx.progress, world=ctx.world)
    return _pixels(ctx, rows, ctx.store.to_uint8(synthetic.images), losses, student_lr=float(lr))


@register_distiller("dm")
def distill_dm(ctx: DistillContext) -> Distilled:
    rows, synthetic = _pixel_set(ctx)
    ctx.set_total(ctx.params.dm.iterations)
    dev = ctx.device
    x_all = ctx.store.preprocess(ctx.source.images).to(dev)
    labels = ctx.source.labels.to(dev)
    by_class = []
    for c in range(ctx.num_classes):
        members = x_all[labels == c]
        first, last = ctx.world.shard(len(members))  # under torchrun each rank matches its share of every class
        by_class.append(members[first:last])

    def make(seed):
        torch.manual_seed(seed)
        return create_model(ctx.params.arch, ctx.num_classes, ctx.size[0]).to(dev)

    losses = dm.distill(make, by_class, synthetic, ctx.params.dm, ctx.params.dsa, ctx.seed, progress=ctx.progress,
                        world=ctx.world)
    return _pixels(ctx, rows, ctx.store.to_uint8(synthetic.images), losses)


@register_distiller("autopalette")
def distill_autopalette(ctx: DistillContext) -> Distilled:
    store, source, dev, p = ctx.store, ctx.source, ctx.device, ctx.params.autopalette
    if store.zca is not None:
        raise ParamsError("distill autopalette quantizes RGB channels: use experts trained without ZCA "
                          "(experts.zca: false)")
    per_class = palette_images_per_class(ctx.ipc, p.colours, ctx.size)
    rows = autopalette_init(p, store, source, per_class, ctx.seed, ctx.num_classes, ctx.model)
    x0 = store.preprocess(source.images[rows]).to(dev)
    net = ap.PaletteNet(3, p.colours, p.hidden).to(dev)
    reference = torch.from_numpy(ap.median_cut_indices(source.images[rows].numpy(), p.colours)).to(dev)
    pixels = torch.from_numpy(np.random.default_rng(ctx.seed).choice(
        ctx.size[0] * ctx.size[1], min(p.alignment_pixels, ctx.size[0] * ctx.size[1]), replace=False)).to(dev)
    synthetic = PaletteSynthetic(x0, source.labels[rows].to(dev), net, p.pixel_gradient)

    def auxiliary(probs):
        return (p.max_colour_weight * ap.max_colour_loss(probs) + p.balance_weight * ap.palette_balance_loss(probs)
                + p.alignment_weight * ap.alignment_loss(probs, reference, pixels))

    # eq. 13-14: the palette losses train the network only; the pixels follow the matching loss alone
    opt_net = torch.optim.Adam(net.parameters(), lr=p.lr_net)
    attrs = {}
    with torch.no_grad():
        attrs["levels_untrained"] = ap.levels_used(net(synthetic.base))
    warm = ap.warm_up(net, synthetic.base, auxiliary, opt_net, p.warmup_steps)
    with torch.no_grad():
        attrs["levels_after_warmup"] = ap.levels_used(net(synthetic.base))
    attrs["warmup_loss"] = [warm[0], warm[-1]] if warm else None
    ctx.set_total(ctx.params.mtt.iterations)
    optimizers = [torch.optim.SGD([synthetic.base], lr=ctx.params.mtt.lr_img, momentum=0.5), opt_net]
    lr, losses = mtt.distill(store, ctx.model, synthetic, ctx.params.mtt, ctx.params.dsa, ctx.seed,
                             extra_loss=lambda: synthetic.palette_loss(auxiliary), progress=ctx.progress,
                             optimizers=optimizers, world=ctx.world)
    attrs["student_lr"] = float(lr)
    with torch.no_grad():
        base_images = store.to_uint8(synthetic.base).permute(0, 3, 1, 2).float()  # stored-space base
        probs = net(synthetic.base)
        palette, idx = ap.palettes_and_indices(base_images, probs)
        attrs["levels_final"] = ap.levels_used(probs)
    arrays = {"indices": idx.cpu().numpy(),
              "palettes": torch.round(palette).clamp(0, 255).to(torch.uint8).cpu().numpy(),
              "labels": source.labels.numpy()[rows]}
    return Distilled("palette", arrays, losses, attrs)


@register_distiller("mtt_lss")
def distill_mtt_lss(ctx: DistillContext) -> Distilled:
    p, mp, source = ctx.params.lss, ctx.params.mtt, ctx.source
    per_class = low_rank_samples(ctx.ipc, ctx.num_classes, p, ctx.size)
    rows = real_per_class(source.labels.numpy(), per_class, ctx.seed, ctx.num_classes, repeat=True)
    x0 = ctx.store.preprocess(source.images[rows]).to(ctx.device)
    synthetic = LowRankSet(x0, source.labels[rows], ctx.num_classes, p.sets, p.rank, p.label_init,
                           seed=ctx.seed).to(ctx.device)
    rng = np.random.default_rng(ctx.seed)
    schedule = None
    if p.progressive:
        def schedule(it):
            return progressive_start(it, mp.iterations, mp.max_start_epoch, p.delta, p.window, rng)
    ctx.set_total(mp.iterations)
    optimizers = [torch.optim.SGD([
        {"params": [synthetic.basis], "lr": mp.lr_img},
        {"params": [synthetic.U, synthetic.V], "lr": mp.lr_img * p.lr_mappers},
        {"params": [synthetic.label_logits], "lr": p.lr_labels}], momentum=0.5)]
    lr, losses = mtt.distill(ctx.store, ctx.model, synthetic, mp, ctx.params.dsa, ctx.seed, progress=ctx.progress,
                             start_epoch=schedule, optimizers=optimizers, world=ctx.world)
    _, soft = synthetic()
    attrs = {"student_lr": float(lr),
             "labels_on_class": float((soft.argmax(1).cpu() == source.labels[rows]).float().mean())}
    arrays = {"U": synthetic.U.detach().cpu().numpy(), "V": synthetic.V.detach().cpu().numpy(),
              "basis": synthetic.basis.detach().cpu().numpy(), "soft_labels": soft.detach().cpu().numpy()}
    return Distilled("low_rank", arrays, losses, attrs)


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
