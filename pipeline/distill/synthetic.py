"""Learnable synthetic sets. `forward()` returns (images in the experts' input space, targets)."""

from __future__ import annotations

import torch
from torch import nn


class PixelSet(nn.Module):
    """Every synthetic pixel is a parameter (MTT, DM); hard labels."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        super().__init__()
        self.images = nn.Parameter(images.detach().clone())
        self.register_buffer("labels", labels.detach().clone())

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images, self.labels


class LowRankSet(nn.Module):
    """MTT-LSS: image i of mapper set j is, per channel, U_j @ S_i @ V_j^T with shared dimension mappers
    U_j (H x r), V_j (W x r) and a per-sample basis S_i (r x r); labels are learnable soft labels.

    More samples fit the same storage: a sample costs C*r*r numbers instead of C*H*W, plus its share of the
    mappers. Stored (and counted) as float16.
    """

    def __init__(self, real: torch.Tensor, classes: torch.Tensor, num_classes: int, sets: int, rank: int,
                 label_init: str = "class", label_scale: float = 3.0, seed: int = 0):
        """real: (sets*m, C, H, W) preprocessed real images to start from (consecutive blocks of m per set);
        classes: their labels (for `label_init: class`; `random` draws the soft labels at random)."""
        super().__init__()
        n, c, h, w = real.shape
        if n % sets:
            raise ValueError(f"{n} samples do not split into {sets} mapper sets")
        per_set = n // sets
        us, vs, basis = [], [], []
        for j in range(sets):
            block = real[j * per_set:(j + 1) * per_set].double()
            u, v = shared_subspaces(block, rank)
            us.append(u)
            vs.append(v)
            basis.append(u.transpose(-1, -2).unsqueeze(0) @ block @ v.unsqueeze(0))  # projections (m,C,r,r)
        self.per_set = per_set
        self.U = nn.Parameter(torch.stack(us).float())        # (sets, C, H, r)
        self.V = nn.Parameter(torch.stack(vs).float())        # (sets, C, W, r)
        self.basis = nn.Parameter(torch.cat(basis).float())   # (n, C, r, r)
        gen = torch.Generator().manual_seed(seed)
        if label_init == "class":
            logits = torch.nn.functional.one_hot(classes, num_classes).float() * label_scale
        elif label_init == "random":
            logits = torch.randn(n, num_classes, generator=gen)
        else:
            raise ValueError(f"label_init={label_init!r} must be 'class' or 'random'")
        self.label_logits = nn.Parameter(logits)

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        set_of = torch.arange(len(self.basis), device=self.basis.device) // self.per_set
        images = self.U[set_of] @ self.basis @ self.V[set_of].transpose(-1, -2)  # (n, C, H, W)
        return images, torch.softmax(self.label_logits, dim=1)

    def stored_values(self) -> int:
        return self.U.numel() + self.V.numel() + self.basis.numel() + self.label_logits.numel()


def shared_subspaces(block: torch.Tensor, rank: int, sweeps: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Per channel, the rank-r row and column spaces (U: (C,H,r), V: (C,W,r)) that best reconstruct every image
    of `block` (m,C,H,W) as U @ (U^T X V) @ V^T: alternating eigen-decompositions of the summed covariances
    (generalized low-rank approximation of matrices, Ye 2005). The whole set shares them, so they start from
    all its images, not from one average image (whose top singular vectors are only smooth blobs)."""
    def top(cov: torch.Tensor) -> torch.Tensor:
        return torch.linalg.eigh(cov)[1].flip(-1)[..., :rank]  # eigenvalues ascending -> largest first

    v = top(torch.einsum("mchw,mchv->cwv", block, block))
    for _ in range(sweeps):
        xv = block @ v.unsqueeze(0)                                   # (m,C,H,r)
        u = top(torch.einsum("mchr,mcgr->chg", xv, xv))
        xu = block.transpose(-1, -2) @ u.unsqueeze(0)                 # (m,C,W,r)
        v = top(torch.einsum("mcwr,mcvr->cwv", xu, xu))
    return u, v


def progressive_start(it: int, iterations: int, max_start: int, delta: int, window: int,
                      rng) -> int:
    """MTT-LSS eqs. 9-10: the largest start epoch grows with the iteration, MaxStart_it = it/its * MaxStart +
    delta, and the start is drawn from [MaxStart_it - window, MaxStart_it) (clipped to [0, max_start))."""
    top = int(it / max(1, iterations) * max_start + delta)
    top = max(1, min(top, max_start))
    low = max(0, top - window)
    return int(rng.integers(low, top))
