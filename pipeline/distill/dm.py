"""Distribution matching (DM, Zhao & Bilen 2023): match per-class mean embeddings of real and synthetic images
under randomly initialised networks, with the same DSA draw on both sides.

Under torchrun every rank draws its own network and real batches (from its share of the real images) each
iteration and the synthetic set's gradients are averaged over ranks; one process is the algorithm as published."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from pipeline.config import require
from pipeline.distill.dsa import DSAParams, augment
from pipeline.distributed import ONE_PROCESS, World, all_sum, average_gradients
from pipeline.errors import finite_loss


@dataclass(frozen=True)
class DMParams:
    iterations: int = 20000
    lr_img: float = 1.0       # SGD (momentum 0.5) on the synthetic pixels
    batch_real: int = 256     # real images per class per iteration

    def __post_init__(self):
        require(self.iterations >= 0, f"iterations={self.iterations} must be >= 0")
        require(self.lr_img > 0, f"lr_img={self.lr_img} must be > 0")
        require(self.batch_real >= 1, f"batch_real={self.batch_real} must be >= 1")


def embed(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The network's features before its classifier."""
    return torch.flatten(model.features(x), 1)


def dm_loss(model: nn.Module, real_by_class: list[torch.Tensor], syn: torch.Tensor, syn_labels: torch.Tensor,
            dsa: DSAParams, seed: int, batch_real: int, gen: torch.Generator) -> torch.Tensor:
    loss = syn.new_zeros(())
    for c, real in enumerate(real_by_class):
        idx = torch.randperm(len(real), generator=gen)[:batch_real].to(real.device)
        s = syn[syn_labels == c]
        if len(s) == 0:
            continue
        with torch.no_grad():
            real_emb = embed(model, augment(real[idx], dsa, seed * 101 + c)).mean(0)
        syn_emb = embed(model, augment(s, dsa, seed * 101 + c)).mean(0)
        loss = loss + ((real_emb - syn_emb) ** 2).sum()
    return loss


def distill(make_model: Callable[[int], nn.Module], real_by_class: list[torch.Tensor], synthetic: nn.Module,
            params: DMParams, dsa: DSAParams, seed: int,
            progress: Callable[[int, float], None] | None = None, world: World = ONE_PROCESS) -> list[float]:
    """Optimise `synthetic` (a module returning (images, labels)) in place; a fresh network per iteration.
    Under torchrun `real_by_class` holds this rank's real images and the loss is the mean over ranks."""
    opt = torch.optim.SGD(synthetic.parameters(), lr=params.lr_img, momentum=0.5)
    offset = 1_000_000_007 * world.rank  # rank 0 draws what one process draws
    gen = torch.Generator().manual_seed(seed + offset)
    losses = []
    for it in range(params.iterations):
        model = make_model(seed * 1_000_003 + it + offset)
        for p in model.parameters():
            p.requires_grad_(False)
        images, labels = synthetic()
        hard = labels if labels.dtype == torch.int64 else labels.argmax(1)
        loss = dm_loss(model, real_by_class, images, hard, dsa, seed * 100_003 + it + offset, params.batch_real,
                       gen)
        finite_loss(float(loss.detach()), "distribution matching", it)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        average_gradients(list(synthetic.parameters()), world)
        opt.step()
        value = float(loss.detach())
        losses.append(value if world.size == 1 else float(all_sum(np.array([value]), world)[0]) / world.size)
        if progress is not None:
            progress(it, losses[-1])
    return losses
