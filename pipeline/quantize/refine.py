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

A step's autograd graph holds about ten float tensors the size of the sampled images. Up to STEP_PIXELS pixels (all
clusters' sampled images together: every CIFAR-10 setting, 1.3-10 M) the step runs on all images at once, as it always
has. Above it (the ImageNet preset: 20 x 256 images at 224 px, 257 M pixels, ~35 GB at once; measured by
benchmarks/bench_refine_memory.py) the images are split into chunks of at
most STEP_PIXELS pixels and each chunk's share of the loss is backpropagated in turn, summing the same gradient
(up to float rounding) in memory set by the chunk. Under torchrun the image axis is split among the processes the
same way: each rank holds and scores its share of every cluster's images, the squared errors and gradients are summed
over ranks, and every rank takes the same Adam step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pipeline.distributed import ONE_PROCESS, World, all_sum_
from pipeline.quantize.color import lab_to_rgb, rgb_to_lab
from pipeline.quantize.palette import nearest

_EPS = 1e-6  # keeps sqrt differentiable where an image is flat
STEP_PIXELS = 1 << 24  # above this many pixels a refinement step runs in chunks of images (module docstring)


def image_chunks(images_lab: torch.Tensor, max_pixels: int | None = None) -> list[slice]:
    """Slices of the image axis of (G,B,3,H,W) images, each with at most `max_pixels` (default STEP_PIXELS) pixels
    over the G groups (at least one image per group); a single slice, the whole axis, when all of them fit."""
    g, b, _, h, w = images_lab.shape
    per = max(1, (STEP_PIXELS if max_pixels is None else max_pixels) // max(1, g * h * w))
    return [slice(start, min(b, start + per)) for start in range(0, b, per)]


def sobel_magnitude(x: torch.Tensor) -> torch.Tensor:
    """Per-channel Sobel gradient magnitude of (B,C,H,W), replicate-padded so borders are not edges.

    Sx = [1,2,1]^T [-1,0,1] and Sy = Sx^T, computed separably with slices (faster than conv2d here)."""
    p = F.pad(x, (1, 1, 1, 1), mode="replicate")
    smooth_v = p[:, :, :-2] + 2 * p[:, :, 1:-1] + p[:, :, 2:]  # (B,C,H,W+2)
    gx = smooth_v[..., 2:] - smooth_v[..., :-2]
    smooth_h = p[..., :-2] + 2 * p[..., 1:-1] + p[..., 2:]  # (B,C,H+2,W)
    gy = smooth_h[:, :, 2:] - smooth_h[:, :, :-2]
    return torch.sqrt(gx**2 + gy**2 + _EPS)


def edge_maps(images_lab: torch.Tensor, chunks: list[slice] | None = None) -> torch.Tensor:
    """G(I) per channel for groups of images: (G,B,3,H,W) -> (G,B,3,H,W); with several `chunks`, computed a chunk at a
    time into one output (the same values: the map is per image)."""
    g, b, c, h, w = images_lab.shape
    if chunks is not None and len(chunks) > 1:
        out = torch.empty_like(images_lab)
        for part in chunks:
            out[:, part] = edge_maps(images_lab[:, part])
        return out
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


def chunked_loss(images_lab: torch.Tensor, orig_edges: torch.Tensor, palettes: torch.Tensor, weights: torch.Tensor,
                 fidelity_weight: float, chunks: list[slice], backward: bool, total_images: int | None = None
                 ) -> torch.Tensor:
    """`refine_loss` of the quantized images summed chunk by chunk: each chunk's squared errors over all of the
    images' pixels (`total_images` per group, over every rank; default: these), backpropagated (into `palettes`'
    grad) before the next chunk is quantized when `backward`. Returns the detached (G,) loss."""
    g, b, _, h, w = images_lab.shape
    b = b if total_images is None else total_images
    total = torch.zeros(g, device=images_lab.device)
    weights = weights.to(images_lab.device, torch.float32)
    for part in chunks:
        imgs, quant = images_lab[:, part], quantize(images_lab[:, part], palettes)
        sums = ((orig_edges[:, part] - edge_maps(quant)) ** 2).sum(dim=(1, 3, 4)) * weights  # (G,3)
        loss = sums.sum(1)
        if fidelity_weight > 0:
            loss = loss + fidelity_weight * ((imgs - quant) ** 2).sum(dim=(1, 3, 4)).sum(1)
        loss = loss / (b * h * w)
        if backward:
            loss.sum().backward()
        total += loss.detach()
    return total


def total_images(images_lab: torch.Tensor, world: World) -> int:
    """Images per group over every rank (each holds its share of the image axis)."""
    return int(all_sum_(torch.tensor([images_lab.shape[1]], dtype=torch.float64), world).item())


@torch.no_grad()
def evaluate(images_lab: torch.Tensor, palettes: torch.Tensor, weights: torch.Tensor,
             orig_edges: torch.Tensor | None = None, fidelity_weight: float = 0.0,
             world: World = ONE_PROCESS) -> torch.Tensor:
    """The (G,) loss of `palettes`; under torchrun, of every rank's images together (the same on every rank)."""
    chunks = image_chunks(images_lab)
    orig_edges = edge_maps(images_lab, chunks) if orig_edges is None else orig_edges
    if world.size > 1 or len(chunks) > 1:
        loss = chunked_loss(images_lab, orig_edges, palettes, weights, fidelity_weight, chunks, backward=False,
                            total_images=total_images(images_lab, world))
        return all_sum_(loss, world)
    return refine_loss(images_lab, orig_edges, quantize(images_lab, palettes), weights, fidelity_weight)


def refine_palettes(images_lab: torch.Tensor, palettes_lab: torch.Tensor, weights: torch.Tensor, steps: int,
                    lr: float, active: torch.Tensor | None = None, progress=None,
                    fidelity_weight: float = 0.0, world: World = ONE_PROCESS
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Refine (C,K,3) palettes on (C,B,3,H,W) LAB images (B sampled images per cluster).

    Returns (best palettes, loss before, loss after) with losses (C,). `active` (C,) bool marks the
    clusters that have images; the others are returned unchanged. Above STEP_PIXELS pixels each step runs in chunks.
    Under torchrun (`world`), `images_lab` is this rank's share of each group's images and every rank returns the
    same palettes and losses.
    """
    palettes_lab = palettes_lab.float()
    active = torch.ones(len(palettes_lab), dtype=torch.bool) if active is None else active
    param = torch.nn.Parameter(palettes_lab.clone())
    opt = torch.optim.Adam([param], lr=lr)
    best = palettes_lab.clone()
    chunks = image_chunks(images_lab)
    chunked = world.size > 1 or len(chunks) > 1
    count = total_images(images_lab, world) if chunked else None
    orig_edges = edge_maps(images_lab, chunks)
    before = evaluate(images_lab, palettes_lab, weights, orig_edges, fidelity_weight, world)
    best_loss = before.clone()
    for _ in range(steps):
        if chunked:
            param.grad = torch.zeros_like(param)  # a rank with no images of its own still joins the sum
            loss = chunked_loss(images_lab, orig_edges, param, weights, fidelity_weight, chunks, backward=True,
                                total_images=count)
            all_sum_(param.grad, world)
            all_sum_(loss, world)
        else:
            loss = refine_loss(images_lab, orig_edges, quantize(images_lab, param), weights, fidelity_weight)
            opt.zero_grad(set_to_none=True)
            loss.sum().backward()
        with torch.no_grad():
            better = (loss < best_loss) & active.to(loss.device)
            best[better] = param.detach()[better]
            best_loss = torch.where(better, loss.detach(), best_loss)
        opt.step()
        with torch.no_grad():
            param.copy_(project_to_gamut(param))
        if progress is not None:
            progress(1)
    final = evaluate(images_lab, param.detach(), weights, orig_edges, fidelity_weight, world)
    better = (final < best_loss) & active.to(final.device)
    best[better] = param.detach()[better]
    best_loss = torch.where(better, final, best_loss)
    return best, before, best_loss
