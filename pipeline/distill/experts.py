"""Expert trajectories: networks trained on a source train set, their parameters saved after every epoch.

An expert store (format `expert-trajectories-v1`) is a Zarr v3 group:
  trajectories   float32 (E, T+1, P)   flat parameters of expert e after epoch t (t=0: initialisation),
                                       one chunk per snapshot so a distiller reads only what it samples
  zca_mean, zca_transform              float32 (D,), (D,D) when the experts trained on ZCA-whitened images
  attrs          format, arch, num_classes, image_size, classes, param_spec [[name, shape], ...],
                 normalization {mean, std}, zca, epochs, num_experts, test_accuracy per expert, params

`ExpertStore.preprocess` gives exactly the input the experts saw (normalisation, then ZCA if used), so a
distiller's student and the evaluation networks see the same space.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.config import require
from pipeline.distill.dsa import DSAParams, augment
from pipeline.distill.params import flatten, param_spec
from pipeline.distill.zca import ZCA
from pipeline.errors import StoreError, finite_loss
from pipeline.io.formats import open_format, register_format
from pipeline.io.verify import check, parsing_attrs, reading
from pipeline.models.inputs import Normalization, to_input

FORMAT = "expert-trajectories-v1"


@dataclass(frozen=True)
class ExpertRecipe:
    """The MTT experts' recipe: plain SGD (no momentum), constant lr, DSA on every batch."""

    epochs: int = 50
    lr: float = 0.01
    momentum: float = 0.0
    weight_decay: float = 0.0
    batch_size: int = 256

    def __post_init__(self):
        require(self.epochs >= 1, f"epochs={self.epochs} must be >= 1")
        require(self.lr > 0, f"lr={self.lr} must be > 0")
        require(self.batch_size >= 1, f"batch_size={self.batch_size} must be >= 1")


def preprocess(images_u8: torch.Tensor, norm: Normalization, zca: ZCA | None) -> torch.Tensor:
    """uint8 (N,H,W,3) -> float (N,3,H,W): normalised, then ZCA-whitened if given (contiguous NCHW)."""
    x = to_input(images_u8, norm).contiguous()
    return zca(x) if zca is not None else x


def train_expert(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, recipe: ExpertRecipe, dsa: DSAParams,
                 seed: int, on_epoch) -> None:
    """SGD on preprocessed float images `x` with DSA; `on_epoch(t, flat_params)` after init and each epoch."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                          weight_decay=recipe.weight_decay)
    model.train()
    on_epoch(0, flatten(model))
    n = len(x)
    batch = min(recipe.batch_size, n)
    step = 0
    for epoch in range(1, recipe.epochs + 1):
        order = torch.randperm(n, generator=gen).to(x.device)
        for start in range(0, n, batch):  # the last, smaller batch too: the papers' experts see every image
            idx = order[start:start + batch]
            xb = augment(x[idx], dsa, seed * 1_000_003 + step)
            loss = F.cross_entropy(model(xb), labels[idx])
            finite_loss(float(loss.detach()), "experts", step)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
        on_epoch(epoch, flatten(model))


@register_format(FORMAT)
class ExpertStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.root, self.attrs = open_format(self.path, (FORMAT,),
                                            f"no expert store at {self.path} (run the experts stage first)")
        self.trajectories = self.root["trajectories"]
        self.num_experts, self.num_snapshots, self.num_params = self.trajectories.shape
        with parsing_attrs(self.path), reading(self.path):
            self.spec = [(str(name), tuple(int(v) for v in shape)) for name, shape in self.attrs["param_spec"]]
            spec_params = sum(int(np.prod(shape)) for _, shape in self.spec)
            check(self.path, spec_params == self.num_params, f"attr param_spec holds {spec_params} parameters, "
                  f"array 'trajectories' {self.num_params}")
            mean, std = self.attrs["normalization"]["mean"], self.attrs["normalization"]["std"]
            check(self.path, len(mean) == len(std) == 3 and all(float(v) > 0 for v in std),
                  f"attr normalization={self.attrs['normalization']!r} must hold 3 means and 3 positive stds")
            self.norm = Normalization(tuple(float(v) for v in mean), tuple(float(v) for v in std))
            check(self.path, isinstance(self.attrs.get("zca", False), bool), f"attr zca={self.attrs.get('zca')!r} "
                  "must be true or false")
            self.zca = (ZCA(torch.from_numpy(self.root["zca_mean"][:]),
                            torch.from_numpy(self.root["zca_transform"][:])) if self.attrs.get("zca") else None)

    def check_model(self, arch: str, num_classes: int, image_size: int, model: nn.Module | None = None) -> None:
        """Fail clearly when the experts were trained on another network than the one asked for."""
        want = {"arch": arch, "num_classes": num_classes, "image_size": image_size}
        have = {k: self.attrs[k] for k in want}
        if have != want:
            diff = ", ".join(f"{k}={have[k]!r} (asked: {want[k]!r})" for k in want if have[k] != want[k])
            raise StoreError(f"{self.path}: the experts are a different network: {diff}")
        if model is not None and param_spec(model) != self.spec:
            raise StoreError(f"{self.path}: the experts' parameter shapes differ from {arch}'s")

    def snapshot(self, expert: int, epoch: int) -> torch.Tensor:
        if not (0 <= expert < self.num_experts and 0 <= epoch < self.num_snapshots):
            raise IndexError(f"snapshot ({expert}, {epoch}) outside {self.num_experts} experts x "
                             f"{self.num_snapshots} snapshots")
        with reading(self.path):
            return torch.from_numpy(np.asarray(self.trajectories[expert, epoch]))

    def preprocess(self, images_u8: torch.Tensor) -> torch.Tensor:
        return preprocess(images_u8, self.norm, self.zca)

    def to_uint8(self, x: torch.Tensor) -> torch.Tensor:
        """Synthetic images in the experts' input space -> uint8 (N,H,W,3) RGB, the form they are stored in."""
        return to_uint8(x, self.norm, self.zca)


def to_uint8(x: torch.Tensor, norm: Normalization, zca: ZCA | None) -> torch.Tensor:
    x = x.detach().float()
    if zca is not None:
        x = zca.invert(x)
    mean = torch.tensor(norm.mean, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(norm.std, device=x.device).view(1, 3, 1, 1)
    rgb = (x * std + mean).clamp(0, 1) * 255.0
    return torch.round(rgb).to(torch.uint8).permute(0, 2, 3, 1).contiguous().cpu()
