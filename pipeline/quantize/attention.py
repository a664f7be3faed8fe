"""Attention maps (pytorch-grad-cam) for each image's *true* label, and the top-k_gra% pixel selection."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from pipeline.config import require

CAM_METHODS = ("gradcam++", "gradcam", "layercam")


def make_cam(model: nn.Module, target: nn.Module, method: str):
    """One CAM object for the whole run (re-creating them leaks memory, see pytorch-grad-cam issues).

    All weights are frozen and the target layer's output is made a leaf that requires grad, so the
    backward pass stops at the target layer instead of running through the whole network.
    """
    from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, LayerCAM

    for p in model.parameters():
        p.requires_grad_(False)
    # Registered before the CAM's own hooks, so theirs see the float32 leaf this one returns.
    target.register_forward_hook(lambda module, inputs, output: output.detach().float().requires_grad_())
    cls = {"gradcam++": GradCAMPlusPlus, "gradcam": GradCAM, "layercam": LayerCAM}[method]
    return cls(model=model.eval(), target_layers=[target])


def label_cams(cam, x: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """float32 (B,H,W) maps in [0,1], each explaining the image's label (not the predicted class)."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    targets = [ClassifierOutputTarget(int(y)) for y in labels]
    return cam(input_tensor=x, targets=targets).astype(np.float32)


def selected_count(k_gra: float, pixels: int) -> int:
    require(0 < k_gra <= 100, f"k_gra={k_gra} must be in (0, 100]")
    return max(1, min(pixels, round(k_gra / 100.0 * pixels)))


def top_pixels(cams: torch.Tensor | np.ndarray, k_gra: float) -> torch.Tensor:
    """bool (B,H,W) mask keeping exactly round(k_gra% * H*W) highest-attention pixels per image.

    Ties (flat maps) are broken by pixel order, deterministically, via a stable sort.
    """
    cams = torch.as_tensor(np.asarray(cams, dtype=np.float32)) if not torch.is_tensor(cams) else cams.float()
    b, h, w = cams.shape
    n = selected_count(k_gra, h * w)
    order = torch.argsort(-cams.reshape(b, -1), dim=1, stable=True)[:, :n]
    mask = torch.zeros(b, h * w, dtype=torch.bool)
    mask.scatter_(1, order, True)
    return mask.view(b, h, w)
