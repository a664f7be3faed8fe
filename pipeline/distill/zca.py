"""ZCA whitening of normalised images (the MTT papers' optional preprocessing, regularised by eps)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ZCA:
    mean: torch.Tensor       # (D,)
    transform: torch.Tensor  # (D,D) symmetric: U diag(1/sqrt(s + eps)) U^T
    inverse: torch.Tensor | None = None  # (D,D) U diag(sqrt(s + eps)) U^T, to map whitened images back

    @staticmethod
    def fit(x: torch.Tensor, eps: float = 0.1, block: int = 4096) -> ZCA:
        """x: float (N,C,H,W) normalised images. Covariance accumulated in float64 blocks."""
        flat = x.reshape(len(x), -1)
        d = flat.shape[1]
        mean = flat.double().mean(0)
        cov = torch.zeros(d, d, dtype=torch.float64)
        for start in range(0, len(flat), block):
            centred = flat[start:start + block].double() - mean
            cov += centred.T @ centred
        cov /= len(flat)
        s, u = torch.linalg.eigh(cov)
        transform = (u * (1.0 / torch.sqrt(s.clamp_min(0) + eps))) @ u.T
        inverse = (u * torch.sqrt(s.clamp_min(0) + eps)) @ u.T
        return ZCA(mean.float(), transform.float(), inverse.float())

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(len(x), -1) - self.mean.to(x.device)
        return (flat @ self.transform.to(x.device)).reshape(shape)

    def invert(self, x: torch.Tensor) -> torch.Tensor:
        if self.inverse is None:
            self.inverse = torch.linalg.inv(self.transform.double()).float()
        shape = x.shape
        return (x.reshape(len(x), -1) @ self.inverse.to(x.device) + self.mean.to(x.device)).reshape(shape)
