"""The distillation papers' evaluation protocol: train a fresh network on the synthetic set with DSA, test on
the real test set (same preprocessing as the experts)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from pipeline.config import require
from pipeline.distill.dsa import DSAParams, augment
from pipeline.errors import finite_loss


@dataclass(frozen=True)
class EvalRecipe:
    epochs: int = 1000        # the papers: 1000 epochs, lr x0.1 at half
    lr: float = 0.01          # MTT uses its learned student lr when the method has one
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 256
    max_steps: int | None = None  # stop after this many SGD steps (null: all epochs)

    def __post_init__(self):
        require(self.epochs >= 1, f"epochs={self.epochs} must be >= 1")
        require(self.lr > 0, f"lr={self.lr} must be > 0")
        require(self.max_steps is None or self.max_steps >= 1, f"max_steps={self.max_steps} must be >= 1 or null")

    def total_steps(self, n: int) -> int:
        """SGD steps on a set of n samples: `epochs` passes, capped at `max_steps`. A set of at most one batch
        (IPC-sized pixel sets) takes one step per epoch either way; the cap gives larger sets (low-rank samples,
        DCQ of a coreset) the same number of updates rather than the same number of passes."""
        per_epoch = -(-n // self.batch_size)
        return self.epochs * per_epoch if self.max_steps is None else min(self.epochs * per_epoch, self.max_steps)


def train_on_synthetic(model: nn.Module, x: torch.Tensor, targets: torch.Tensor, recipe: EvalRecipe,
                       dsa: DSAParams, seed: int, lr: float | None = None) -> int:
    """x: float (N,C,H,W) preprocessed synthetic images; targets: class ids or soft labels. The lr drops x0.1
    half way through the steps. Returns the number of steps taken."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr or recipe.lr, momentum=recipe.momentum,
                          weight_decay=recipe.weight_decay)
    n = len(x)
    total = recipe.total_steps(n)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [total // 2], 0.1)
    model.train()
    step = 0
    bar = tqdm(total=total, desc=f"evaluate on {n} samples", unit="step", leave=False)
    while step < total:
        order = torch.randperm(n, generator=gen).to(x.device)
        for start in range(0, n, recipe.batch_size):
            if step == total:
                break
            idx = order[start:start + recipe.batch_size]
            loss = F.cross_entropy(model(augment(x[idx], dsa, seed * 1_000_003 + step)), targets[idx])
            finite_loss(float(loss.detach()), "evaluation training", step)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            bar.update(1)
    bar.close()
    model.eval()
    return total


@torch.no_grad()
def real_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 500) -> float:
    model.eval()
    correct = sum(int((model(x[s:s + batch]).argmax(1) == y[s:s + batch]).sum()) for s in range(0, len(x), batch))
    return 100.0 * correct / max(1, len(x))
