"""Trajectory matching (MTT, Cazenavette et al. 2022) over any learnable synthetic set.

One iteration: pick an expert e and a start epoch t < max_start_epoch; start a student at the expert's
parameters theta_t, take `syn_steps` SGD steps on (DSA-augmented) synthetic batches with a learnable
learning rate, and measure how far the student ends from the expert `expert_epochs` later:

    loss = ||theta_student - theta_{t+M}||^2 / ||theta_t - theta_{t+M}||^2

(so a student that does not move scores exactly 1). The loss is backpropagated through the unrolled steps
into the synthetic set's parameters (pixels, palette network, low-rank factors, soft labels) and the lr.
The synthetic set is any `nn.Module` whose `forward()` returns (images, targets): images float (N,C,H,W) in
the experts' input space, targets int64 (N,) class ids or float (N,classes) soft labels.

Under torchrun each iteration matches one trajectory segment per rank: every rank draws the same N (expert, start)
pairs from the seeded generator and takes its own, and the gradients of the synthetic set and of the lr are
averaged over ranks, so the N copies of the synthetic set stay equal. One process is exactly the algorithm above.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from pipeline.config import require
from pipeline.distill.dsa import DSAParams, augment
from pipeline.distill.experts import ExpertStore
from pipeline.distill.params import unflatten
from pipeline.distributed import ONE_PROCESS, World, all_sum, average_gradients
from pipeline.errors import finite_loss


@dataclass(frozen=True)
class MTTParams:
    iterations: int = 5000
    syn_steps: int = 20          # student steps per iteration (N)
    expert_epochs: int = 2       # how far along the expert trajectory the target is (M)
    max_start_epoch: int = 20    # start epochs are drawn from [0, max_start_epoch)
    batch_syn: int | None = None  # synthetic images per student step; null = all of them
    lr_img: float = 1000.0       # SGD (momentum 0.5) on the synthetic set's parameters
    lr_lr: float = 1e-5          # SGD (momentum 0.5) on the learnable student lr
    lr_init: float = 0.01        # the student lr to start from (the experts' lr)

    def __post_init__(self):
        require(self.iterations >= 0, f"iterations={self.iterations} must be >= 0")
        require(self.syn_steps >= 0, f"syn_steps={self.syn_steps} must be >= 0")
        require(self.expert_epochs >= 1, f"expert_epochs={self.expert_epochs} must be >= 1")
        require(self.max_start_epoch >= 1, f"max_start_epoch={self.max_start_epoch} must be >= 1")
        require(self.batch_syn is None or self.batch_syn >= 1, f"batch_syn={self.batch_syn} must be >= 1 or null")


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Hard (int64 class ids) or soft (float, one distribution per row) targets."""
    return F.cross_entropy(logits, targets)


def match_loss(model: nn.Module, spec, start: torch.Tensor, target: torch.Tensor, images: torch.Tensor,
               targets: torch.Tensor, student_lr: torch.Tensor, syn_steps: int, batch_syn: int | None,
               dsa: DSAParams, seed: int) -> torch.Tensor:
    """Normalised parameter distance after `syn_steps` unrolled student steps from `start`."""
    gen = torch.Generator().manual_seed(seed)
    n = len(images)
    batch = n if batch_syn is None else min(batch_syn, n)
    current = start.detach().clone().requires_grad_(True)
    order = torch.randperm(n, generator=gen)
    for step in range(syn_steps):
        lo = (step * batch) % n
        if lo + batch > n:
            order, lo = torch.randperm(n, generator=gen), 0
        idx = order[lo:lo + batch].to(images.device)
        x = augment(images[idx], dsa, seed * 7919 + step)
        logits = functional_call(model, unflatten(current, spec), (x,))
        ce = soft_cross_entropy(logits, targets[idx])
        grad = torch.autograd.grad(ce, current, create_graph=True)[0]
        current = current - student_lr * grad
    return ((current - target) ** 2).sum() / ((start - target) ** 2).sum().clamp_min(1e-12)


def distill(store: ExpertStore, model: nn.Module, synthetic: nn.Module, params: MTTParams, dsa: DSAParams,
            seed: int, extra_loss: Callable[[], torch.Tensor] | None = None,
            progress: Callable[[int, float], None] | None = None,
            start_epoch: Callable[[int], int] | None = None,
            optimizers: list[torch.optim.Optimizer] | None = None,
            world: World = ONE_PROCESS) -> tuple[torch.Tensor, list[float]]:
    """Optimise `synthetic` in place; returns the learned student lr and the matching loss per iteration (under
    torchrun: the mean over the ranks' segments).
    `start_epoch(it)` replaces the uniform draw from [0, max_start_epoch) (MTT-LSS's progressive schedule);
    `extra_loss()` is added after the forward pass (AutoPalette's palette losses). `optimizers` update the
    synthetic set's parameters (default: SGD, momentum 0.5, at lr_img for all of them); every trainable
    parameter must belong to one of them."""
    if params.max_start_epoch + params.expert_epochs >= store.num_snapshots + 1:
        raise ValueError(f"max_start_epoch {params.max_start_epoch} + expert_epochs {params.expert_epochs} needs "
                         f"{params.max_start_epoch + params.expert_epochs} epochs, the experts have "
                         f"{store.num_snapshots - 1}")
    device = next(synthetic.parameters()).device
    model = model.to(device)
    for p in model.parameters():
        p.requires_grad_(False)
    spec = store.spec
    student_lr = torch.tensor(params.lr_init, device=device, requires_grad=True)
    if optimizers is None:
        optimizers = [torch.optim.SGD(synthetic.parameters(), lr=params.lr_img, momentum=0.5)]
    covered = {id(p) for opt in optimizers for group in opt.param_groups for p in group["params"]}
    missing = [name for name, p in synthetic.named_parameters() if p.requires_grad and id(p) not in covered]
    if missing:
        raise ValueError(f"synthetic parameters {missing} are in no optimizer")
    opt_lr = torch.optim.SGD([student_lr], lr=params.lr_lr, momentum=0.5)
    rng = np.random.default_rng(seed)
    losses = []
    learned = [p for opt in (*optimizers, opt_lr) for group in opt.param_groups for p in group["params"]]
    for it in range(params.iterations):
        draws = [(int(rng.integers(store.num_experts)),
                  int(rng.integers(params.max_start_epoch)) if start_epoch is None else int(start_epoch(it)))
                 for _ in range(world.size)]
        expert, t = draws[world.rank]
        start = store.snapshot(expert, t).to(device)
        target = store.snapshot(expert, t + params.expert_epochs).to(device)
        images, targets = synthetic()
        loss = match_loss(model, spec, start, target, images, targets, student_lr, params.syn_steps,
                          params.batch_syn, dsa, seed * 100_003 + it + 1_000_000_007 * world.rank)
        total = loss + (extra_loss() if extra_loss is not None else 0.0)
        finite_loss(float(total.detach()), "trajectory matching", it)
        for opt in (*optimizers, opt_lr):
            opt.zero_grad(set_to_none=True)
        total.backward()
        average_gradients(learned, world)
        for opt in (*optimizers, opt_lr):
            opt.step()
        with torch.no_grad():
            student_lr.clamp_(min=1e-6)  # a negative lr would make the student ascend
        value = float(loss.detach())
        losses.append(value if world.size == 1 else float(all_sum(np.array([value]), world)[0]) / world.size)
        if progress is not None:
            progress(it, losses[-1])
    return student_lr.detach(), losses
