"""Texture-preserving palette refinement (DCQ eq. 6).

The LAB palettes of all clusters form one learnable (C,K,3) tensor. Every pixel takes its nearest
palette colour (hard assignment in the forward pass, recomputed each step); the straight-through
estimator treats that assignment as constant in the backward pass, so the gradient of the loss w.r.t.
a quantized pixel flows into the palette entry it was assigned to. The loss is

    EL = sum_{i in L,A,B} w_i * MSE(G(I_orig^i), G(I_quant^i)),  G = sqrt((I*Sx)^2 + (I*Sy)^2)

per cluster, minimised with Adam. With `fidelity_weight` f > 0 the loss adds f * sum_{i in L,A,B} MSE(I_orig^i,
I_quant^i): the edge term alone does not care where a flat region's colour lands, the fidelity term does (an
addition of ours, not the paper's; off by default). After each step the palette is projected back into the sRGB gamut
(LAB -> clipped RGB -> LAB) so that what is optimised can be stored. Each cluster keeps the palette
with the lowest loss seen, so refinement never makes a cluster worse.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pipeline.quantize.color import lab_to_rgb, rgb_to_lab
from pipeline.quantize.palette import nearest

_EPS = 1e-6  # keeps sqrt differentiable where an image is flat


def sobel_magnitude(x: torch.Tensor) -> torch.Tensor:
    """Per-channel Sobel gradient magnitude of (B,C,H,W), replicate-padded so borders are not edges.

    Sx = [1,2,1]^T [-1,0,1] and Sy = Sx^T, computed separably with slices (faster than conv2d here)."""
    p = F.pad(x, (1, 1, 1, 1), mode="replicate")
    smooth_v = p[:, :, :-2] + 2 * p[:, :, 1:-1] + p[:, :, 2:]  # (B,C,H,W+2)
    gx = smooth_v[..., 2:] - smooth_v[..., :-2]
    smooth_h = p[..., :-2] + 2 * p[..., 1:-1] + p[..., 2:]  # (B,C,H+2,W)
    gy = smooth_h[:, :, 2:] - smooth_h[:, :, :-2]
    return torch.sqrt(gx**2 + gy**2 + _EPS)


def edge_maps(images_lab: torch.Tensor) -> torch.Tensor:
    """G(I) per channel for groups of images: (G,B,3,H,W) -> (G,B,3,H,W)."""
    g, b, c, h, w = images_lab.shape
    return sobel_magnitude(images_lab.reshape(g * b, c, h, w)).reshape(g, b, c, h, w)


def edge_loss(orig_edges: torch.Tensor, quant_lab: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """EL per group: weighted sum over L,A,B of the per-channel MSE between G(original) (precomputed
    by `edge_maps`, (G,B,3,H,W)) and G(quantized). Returns (G,)."""
    mse = ((orig_edges - edge_maps(quant_lab)) ** 2).mean(dim=(1, 3, 4))  # (G,3)
    return (mse * weights.to(mse.device, mse.dtype)).sum(1)


def quantize(images_lab: torch.Tensor, palettes: torch.Tensor) -> torch.Tensor:
    """(G,B,3,H,W) LAB images -> the same images with every pixel replaced by its nearest palette colour.

    The gather keeps the graph to `palettes` (straight-through w.r.t. the assignment)."""
    g, b, c, h, w = images_lab.shape
    pixels = images_lab.permute(0, 1, 3, 4, 2).reshape(g, b * h * w, c)
    with torch.no_grad():
        idx = nearest(pixels, palettes.detach())
    quant = torch.gather(palettes, 1, idx[..., None].expand(-1, -1, c))
    return quant.reshape(g, b, h, w, c).permute(0, 1, 4, 2, 3)


def project_to_gamut(palettes_lab: torch.Tensor) -> torch.Tensor:
    return rgb_to_lab(lab_to_rgb(palettes_lab))


def refine_loss(images_lab: torch.Tensor, orig_edges: torch.Tensor, quant_lab: torch.Tensor, weights: torch.Tensor,
                fidelity_weight: float = 0.0) -> torch.Tensor:
    """EL per group, plus fidelity_weight times the colour MSE (summed over L, A, B) when it is positive."""
    loss = edge_loss(orig_edges, quant_lab, weights)
    if fidelity_weight > 0:  # skipped at 0, so the default adds no floating-point work and changes no bits
        loss = loss + fidelity_weight * ((images_lab - quant_lab) ** 2).mean(dim=(1, 3, 4)).sum(1)
    return loss


@torch.no_grad()
def evaluate(images_lab: torch.Tensor, palettes: torch.Tensor, weights: torch.Tensor,
             orig_edges: torch.Tensor | None = None, fidelity_weight: float = 0.0) -> torch.Tensor:
    orig_edges = edge_maps(images_lab) if orig_edges is None else orig_edges
    return refine_loss(images_lab, orig_edges, quantize(images_lab, palettes), weights, fidelity_weight)


def refine_palettes(images_lab: torch.Tensor, palettes_lab: torch.Tensor, weights: torch.Tensor, steps: int,
                    lr: float, active: torch.Tensor | None = None, progress=None,
                    fidelity_weight: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Refine (C,K,3) palettes on (C,B,3,H,W) LAB images (B sampled images per cluster).

    Returns (best palettes, loss before, loss after) with losses (C,). `active` (C,) bool marks the
    clusters that have images; the others are returned unchanged.
    """
    palettes_lab = palettes_lab.float()
    active = torch.ones(len(palettes_lab), dtype=torch.bool) if active is None else active
    param = torch.nn.Parameter(palettes_lab.clone())
    opt = torch.optim.Adam([param], lr=lr)
    best = palettes_lab.clone()
    orig_edges = edge_maps(images_lab)
    before = evaluate(images_lab, palettes_lab, weights, orig_edges, fidelity_weight)
    best_loss = before.clone()
    for _ in range(steps):
        loss = refine_loss(images_lab, orig_edges, quantize(images_lab, param), weights, fidelity_weight)
        with torch.no_grad():
            better = (loss < best_loss) & active.to(loss.device)
            best[better] = param.detach()[better]
            best_loss = torch.where(better, loss.detach(), best_loss)
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        opt.step()
        with torch.no_grad():
            param.copy_(project_to_gamut(param))
        if progress is not None:
            progress(1)
    final = evaluate(images_lab, param.detach(), weights, orig_edges, fidelity_weight)
    better = (final < best_loss) & active.to(final.device)
    best[better] = param.detach()[better]
    best_loss = torch.where(better, final, best_loss)
    return best, before, best_loss
