"""sRGB <-> CIE LAB (D65, 2 degree observer) in torch, with scikit-image's constants, batched on any device."""

from __future__ import annotations

import torch

_XYZ_FROM_RGB = torch.tensor(
    [[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]],
    dtype=torch.float64,
)
_RGB_FROM_XYZ = torch.linalg.inv(_XYZ_FROM_RGB)
_D65 = torch.tensor([0.95047, 1.0, 1.08883], dtype=torch.float64)


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """rgb (...,3) in [0,1] (or uint8 in [0,255]) -> LAB (...,3) float32: L in [0,100], a/b ~[-128,127]."""
    if rgb.dtype == torch.uint8:
        rgb = rgb.float() / 255.0
    dtype = rgb.dtype if rgb.dtype in (torch.float32, torch.float64) else torch.float32
    rgb = rgb.to(dtype)
    linear = torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    xyz = linear @ (_XYZ_FROM_RGB.T / _D65).to(rgb.device, dtype)  # divides each column by the white point
    f = torch.where(xyz > 0.008856, torch.pow(xyz.clamp_min(1e-12), 1.0 / 3.0), 7.787 * xyz + 16.0 / 116.0)
    fx, fy, fz = f.unbind(-1)
    return torch.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], dim=-1)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """LAB (...,3) -> rgb (...,3) in [0,1], out-of-gamut values clipped (as scikit-image does)."""
    L, a, b = lab.unbind(-1)
    fy = (L + 16.0) / 116.0
    fx = a / 500.0 + fy
    fz = (fy - b / 200.0).clamp_min(0.0)
    f = torch.stack([fx, fy, fz], dim=-1)
    xyz = torch.where(f > 0.2068966, f**3, (f - 16.0 / 116.0) / 7.787) * _D65.to(lab.device, lab.dtype)
    linear = xyz @ _RGB_FROM_XYZ.T.to(lab.device, lab.dtype)
    rgb = torch.where(linear > 0.0031308, 1.055 * torch.pow(linear.clamp_min(1e-12), 1.0 / 2.4) - 0.055, linear * 12.92)
    return rgb.clamp(0.0, 1.0)


def lab_to_rgb_u8(lab: torch.Tensor) -> torch.Tensor:
    return (lab_to_rgb(lab.double()) * 255.0).round().to(torch.uint8)
