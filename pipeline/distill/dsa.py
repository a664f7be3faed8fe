"""Differentiable Siamese Augmentation (Zhao & Bilen 2021), as the trajectory-matching papers use it.

Every op is a batched tensor op that is differentiable with respect to the images, so gradients reach
synthetic pixels through the augmentation. "Siamese": the random draws come from a generator seeded per
call, so the same seed augments a real and a synthetic batch identically.

Families (strategy "color_crop_cutout_flip_scale_rotate"): colour = brightness, saturation and contrast
jitter; crop = translation by up to `crop` of the size (zero fill); cutout = a zeroed square of `cutout` of
the size; flip = horizontal flip with probability 0.5; scale = per-axis scaling in [1/scale, scale];
rotate = rotation by up to `rotate` degrees. In single mode (the papers' default) one family is drawn per
call and applied to the whole batch; in multi mode every family is applied in order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from pipeline.config import require

FAMILIES = ("color", "crop", "cutout", "flip", "scale", "rotate")


@dataclass(frozen=True)
class DSAParams:
    strategy: str = "color_crop_cutout_flip_scale_rotate"
    single: bool = True  # one random family per call (the MTT/DC papers); false: all, in order
    brightness: float = 1.0
    saturation: float = 2.0
    contrast: float = 0.5
    crop: float = 0.125
    cutout: float = 0.5
    scale: float = 1.2
    rotate: float = 15.0

    def __post_init__(self):
        unknown = [f for f in self.families if f not in FAMILIES]
        require(not unknown, f"strategy={self.strategy!r}: unknown families {unknown}; known: {list(FAMILIES)}")

    @property
    def families(self) -> list[str]:
        return [f for f in self.strategy.split("_") if f] if self.strategy not in ("", "none") else []


def _rand(n: int, gen: torch.Generator, device) -> torch.Tensor:
    return torch.rand(n, generator=gen).to(device)


def _affine(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=True)
    return F.grid_sample(x, grid, align_corners=True)


def color(x, p: DSAParams, gen):
    n, dev = len(x), x.device
    x = x + (_rand(n, gen, dev) - 0.5).view(n, 1, 1, 1) * p.brightness
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (_rand(n, gen, dev) * p.saturation).view(n, 1, 1, 1) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_rand(n, gen, dev) + p.contrast).view(n, 1, 1, 1) + mean


def crop(x, p: DSAParams, gen):
    n, dev = len(x), x.device
    theta = torch.zeros(n, 2, 3, device=dev)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    theta[:, :, 2] = (torch.rand(n, 2, generator=gen).to(dev) * 2 - 1) * 2 * p.crop  # grid units span 2
    h, w = x.shape[2:]
    shift = torch.round(theta[:, :, 2] * torch.tensor([w - 1, h - 1], device=dev) / 2)  # whole pixels
    theta[:, :, 2] = shift * 2 / torch.tensor([w - 1, h - 1], device=dev)
    return F.grid_sample(x, F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=True),
                         mode="nearest", padding_mode="zeros", align_corners=True)


def cutout(x, p: DSAParams, gen):
    n, _, h, w = x.shape
    dev = x.device
    ch, cw = max(1, int(h * p.cutout + 0.5)), max(1, int(w * p.cutout + 0.5))
    cy = torch.randint(0, h + (1 - ch % 2), (n,), generator=gen).to(dev)
    cx = torch.randint(0, w + (1 - cw % 2), (n,), generator=gen).to(dev)
    top, left = (cy - ch // 2).view(n, 1, 1), (cx - cw // 2).view(n, 1, 1)
    rows = torch.arange(h, device=dev).view(1, h, 1)
    cols = torch.arange(w, device=dev).view(1, 1, w)
    inside = (rows >= top) & (rows < top + ch) & (cols >= left) & (cols < left + cw)
    return x * (~inside).unsqueeze(1).to(x.dtype)


def flip(x, p: DSAParams, gen):
    mask = (_rand(len(x), gen, x.device) < 0.5).view(-1, 1, 1, 1)
    return torch.where(mask, x.flip(3), x)


def scale(x, p: DSAParams, gen):
    n, dev = len(x), x.device
    sx = _rand(n, gen, dev) * (p.scale - 1 / p.scale) + 1 / p.scale
    sy = _rand(n, gen, dev) * (p.scale - 1 / p.scale) + 1 / p.scale
    theta = torch.zeros(n, 2, 3, device=dev)
    theta[:, 0, 0], theta[:, 1, 1] = sx, sy
    return _affine(x, theta)


def rotate(x, p: DSAParams, gen):
    n, dev = len(x), x.device
    angle = (_rand(n, gen, dev) - 0.5) * 2 * p.rotate / 180 * math.pi
    theta = torch.zeros(n, 2, 3, device=dev)
    theta[:, 0, 0], theta[:, 0, 1] = torch.cos(angle), torch.sin(-angle)
    theta[:, 1, 0], theta[:, 1, 1] = torch.sin(angle), torch.cos(angle)
    return _affine(x, theta)


OPS = {"color": color, "crop": crop, "cutout": cutout, "flip": flip, "scale": scale, "rotate": rotate}


def augment(x: torch.Tensor, params: DSAParams, seed: int) -> torch.Tensor:
    """DSA of a float (B,C,H,W) batch; the same `seed` gives the same transformation of any batch."""
    families = params.families
    if not families:
        return x
    gen = torch.Generator().manual_seed(int(seed))
    if params.single:
        families = [families[int(torch.randint(len(families), (1,), generator=gen))]]
    for name in families:
        x = OPS[name](x, params, gen)
    return x
