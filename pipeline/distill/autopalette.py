"""AutoPalette (Yuan et al.): a palette network that reduces every synthetic image to K levels per channel,
its auxiliary losses, and colour-guided graph-cut initialisation.

Palette network (eq. 3): Conv1x1(C -> hidden), ReLU, Conv1x1(hidden -> C*K, no bias), softmax over K: a
probability map m (N, C, K, H, W). The palette (eq. 4) is, per image and channel, the mean base-image
value of the pixels whose argmax is bucket k; the quantized image (eq. 5) takes each pixel's argmax
bucket's palette value. Unlike the reference code (a soft blend in training, the hard image at evaluation)
the forward pass here *is* the hard image, with a straight-through gradient through the soft blend, so
distillation and evaluation see the same images. What is stored is the indices and palettes.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from pipeline.errors import finite_loss


class PaletteNet(nn.Module):
    def __init__(self, channels: int = 3, colours: int = 64, hidden: int = 256):
        super().__init__()
        self.channels, self.colours = channels, colours
        self.net = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(),
                                 nn.Conv2d(hidden, channels * colours, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        return torch.softmax(self.net(x).view(n, c, self.colours, h, w), dim=2)


def palettes_and_indices(x: torch.Tensor, probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 4: palette (N,C,K) = mean of x over the pixels whose argmax is k (0 where none is); indices
    (N,C,H,W) int64."""
    k = probs.shape[2]
    idx = probs.argmax(dim=2)
    onehot = F.one_hot(idx, k).permute(0, 1, 4, 2, 3).to(x.dtype)  # (N,C,K,H,W)
    counts = onehot.sum(dim=(3, 4))
    sums = (onehot * x.unsqueeze(2)).sum(dim=(3, 4))
    return sums / counts.clamp_min(1), idx


def quantize(x: torch.Tensor, probs: torch.Tensor, pixel_gradient: str = "identity",
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(image used in the forward pass, palettes, indices): the hard eq. 5 image with a straight-through
    gradient. The network always learns through the probability-weighted blend of the palette. The pixels
    get, with `pixel_gradient="identity"`, the upstream gradient unchanged plus the blend's (the classic
    straight-through estimator: quantization treated as the identity); with "blend", the blend's only, which
    vanishes as the auxiliary losses make the assignment confident, and the pixels then barely move."""
    if pixel_gradient not in ("identity", "blend"):
        raise ValueError(f"pixel_gradient={pixel_gradient!r} must be 'identity' or 'blend'")
    palette, idx = palettes_and_indices(x, probs)
    hard = palette.gather(2, idx.flatten(2)).view_as(x)
    soft = (probs * palette[..., None, None]).sum(dim=2)
    image = hard + (soft - soft.detach())  # value: exactly the hard image
    if pixel_gradient == "identity":
        image = image + (x - x.detach())
    return image, palette, idx


def levels_used(probs: torch.Tensor) -> float:
    """Mean number of distinct argmax buckets per image and channel: how many of the K levels are in use."""
    idx = probs.argmax(dim=2).flatten(2)  # (N,C,HW)
    used = torch.zeros(*idx.shape[:2], probs.shape[2], dtype=torch.bool, device=idx.device)
    used.scatter_(2, idx, True)
    return float(used.sum(dim=2).float().mean())


def warm_up(net: PaletteNet, base: torch.Tensor, auxiliary: Callable[[torch.Tensor], torch.Tensor],
            optimizer: torch.optim.Optimizer, steps: int) -> list[float]:
    """Train the palette network alone on its auxiliary losses (images fixed) before trajectory matching.

    An untrained network's argmax uses only a few of the K levels per channel (about 6 of 64 on CIFAR-10),
    so the first matching iterations would train students on posterized images whose trajectories drift
    from the experts', and the meta-gradient then shrinks the learnable student lr towards 0."""
    base = base.detach()
    losses = []
    for _ in range(steps):
        loss = auxiliary(net(base))
        finite_loss(float(loss.detach()), "autopalette palette network", len(losses))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses


def max_colour_loss(probs: torch.Tensor) -> torch.Tensor:
    """Eq. 6: -mean over images, channels and buckets of the bucket's largest probability over pixels."""
    return -probs.flatten(3).amax(dim=3).mean()


def palette_balance_loss(probs: torch.Tensor) -> torch.Tensor:
    """Eq. 7: negative entropy of the (softmaxed) mean bucket usage; minimising it balances the buckets."""
    usage = torch.softmax(probs.mean(dim=(3, 4)), dim=2)  # (N,C,K)
    return (usage * usage.clamp_min(1e-12).log()).mean()


def alignment_loss(probs: torch.Tensor, reference_idx: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
    """Eq. 12: || M M^T - H' H'^T ||^2 / N on a fixed sample of pixels: the palette network should group the
    same pixels together as Median Cut did (bucket order does not matter). probs (N,C,K,H,W); reference_idx
    (N,H,W) Median-Cut indices; pixels: flat pixel positions to compare."""
    n, c, k = probs.shape[:3]
    m = probs.flatten(3)[..., pixels]                     # (N,C,K,P)
    own = torch.einsum("nckp,nckq->ncpq", m, m).mean(1)   # same-bucket probability, averaged over channels
    ref = F.one_hot(reference_idx.flatten(1)[:, pixels], int(reference_idx.max()) + 1).float()
    target = ref @ ref.transpose(1, 2)                    # (N,P,P) 1 where Median Cut put both in one colour
    return ((own - target) ** 2).sum() / n


def _median_cut(image: np.ndarray, colours: int) -> Image.Image:
    return Image.fromarray(image).quantize(colors=colours, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)


def median_cut_indices(images_u8: np.ndarray, colours: int) -> np.ndarray:
    """Pillow's Median Cut colour index of every pixel, (N,H,W) int64."""
    return np.stack([np.asarray(_median_cut(im, colours), dtype=np.int64) for im in images_u8])


def median_cut_images(images_u8: np.ndarray, colours: int) -> np.ndarray:
    """The Median-Cut-quantized images Q(x) of eq. 10, uint8 (N,H,W,3)."""
    return np.stack([np.asarray(_median_cut(im, colours).convert("RGB")) for im in images_u8])


def graph_cut_select(similarity: torch.Tensor, count: int, lam: float = 1.0) -> list[int]:
    """Greedy maximisation of the generalised graph cut (eqs. 8-11): each step adds the candidate c with the
    largest gain  sum_i Sim(i, c) - lam * (2 * sum_{j in A} Sim(j, c) + Sim(c, c)): representative of the
    whole class, unlike what is already chosen. Returns `count` distinct indices in selection order."""
    n = similarity.shape[0]
    if count > n:
        raise ValueError(f"cannot select {count} of {n} candidates")
    coverage = similarity.sum(dim=0)
    penalty = torch.zeros(n, dtype=similarity.dtype)
    chosen: list[int] = []
    available = torch.ones(n, dtype=torch.bool)
    for _ in range(count):
        gain = coverage - lam * (2 * penalty + similarity.diagonal())
        gain[~available] = float("-inf")
        c = int(gain.argmax())
        chosen.append(c)
        available[c] = False
        penalty += similarity[c]
    return chosen


def gradient_similarity(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of the per-sample last-layer gradients of the cross-entropy (eq. 10). For a linear
    classifier the gradient is (softmax - onehot) outer the penultimate features, computed in closed form."""
    with torch.no_grad():
        feats = torch.flatten(model.features(x), 1)
        err = torch.softmax(model.classifier(feats), 1) - F.one_hot(y, model.classifier.out_features).float()
        grads = torch.cat([(err[:, :, None] * feats[:, None, :]).flatten(1), err], dim=1)  # weight and bias
        grads = F.normalize(grads, dim=1)
    return grads @ grads.T
