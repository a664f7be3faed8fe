"""Attention maps (pytorch-grad-cam) for each image's *true* label, and the top-k_gra% pixel selection."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipeline.config import require
from pipeline.errors import StoreError

CAM_METHODS = ("gradcam++", "gradcam", "layercam")
MAPS = "cam-resolution"  # what an attention store's `cams` hold; older stores (full-size float16 maps) lack `maps`


class LabelCAM:
    """Grad-CAM++ (or Grad-CAM, LayerCAM) maps at the CAM layer's resolution for a batch of true labels: one forward
    pass, one backward pass from the labels' logits to the target layer, and the maps computed on the device.

    It computes what pytorch-grad-cam computes for the layer's maps before resizing them (its per-method weights,
    ReLU, then each map minus its min over 1e-7 + its max), without the library's copies to NumPy and per-image
    loops; `tests/quantize/test_attention.py` holds the two equal within float tolerance on real images. As there,
    the weights are frozen and the target layer's output is made a float32 leaf, so the backward pass stops at it.
    """

    def __init__(self, model: nn.Module, target: nn.Module, method: str):
        require(method in CAM_METHODS, f"attention.method={method!r} must be one of {CAM_METHODS}")
        for p in model.parameters():
            p.requires_grad_(False)
        self.model, self.method = model.eval(), method
        self._activations: torch.Tensor | None = None
        target.register_forward_hook(self._keep_activations)

    def _keep_activations(self, module, inputs, output):
        self._activations = output.detach().float().requires_grad_()
        return self._activations

    def __call__(self, x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(maps float32 (B,h,w) in [0,1], logits (B,classes)) for the images `x` and their `labels`."""
        with torch.enable_grad():
            logits = self.model(x)
            score = logits.float().gather(1, labels.to(logits.device, torch.int64).view(-1, 1)).sum()
            score.backward(inputs=[self._activations])  # the weights are frozen: only the leaf gets a gradient
        acts, grads, self._activations = self._activations.detach(), self._activations.grad, None
        cam = torch.relu(self._weighted(acts, grads.float()).sum(1))
        flat = cam.flatten(1)
        flat = flat - flat.amin(1, keepdim=True)
        flat = flat / (1e-7 + flat.amax(1, keepdim=True))
        return flat.view_as(cam), logits.detach()

    def _weighted(self, acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        """(B,C,h,w) activations times the method's weights, before the sum over channels."""
        if self.method == "layercam":
            return torch.relu(grads) * acts
        if self.method == "gradcam":
            return grads.mean((2, 3), keepdim=True) * acts
        # Grad-CAM++ (Chattopadhay et al., eq. 19), as pytorch-grad-cam writes it
        grads_2 = grads * grads
        grads_3 = grads_2 * grads
        sum_acts = acts.sum((2, 3), keepdim=True)
        aij = grads_2 / (2 * grads_2 + sum_acts * grads_3 + 1e-6)
        aij = torch.where(grads != 0, aij, torch.zeros_like(aij))
        return (torch.relu(grads) * aij).sum((2, 3), keepdim=True) * acts


def full_size_cams(low: np.ndarray, height: int, width: int) -> np.ndarray:
    """float16 (B,H,W) image-size maps from CAM-resolution ones: pytorch-grad-cam's own steps after the scaling
    (cv2 bilinear resize, then the multi-layer aggregation: max(0), mean over the one layer, min-max scaling),
    so the maps, and every top-k_gra% selection made from them, equal those of the full-size CAM."""
    import cv2

    resized = np.float32([cv2.resize(np.float32(m), (width, height)) for m in low]).reshape(len(low), height, width)
    cam = np.mean(np.maximum(resized[:, None], 0), axis=1)
    # pytorch-grad-cam's scale_cam_image for every map at once (its loop took half the time): minus each map's
    # min, over 1e-7 + its max, in float32 as there (tests/quantize/test_attention.py: the same bits)
    cam = cam - cam.min(axis=(1, 2), keepdims=True)
    cam = cam / (1e-7 + cam.max(axis=(1, 2), keepdims=True))
    return cam.astype(np.float32).astype(np.float16)


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


def check_maps(root, path: Path) -> tuple[int, int]:
    """The image size of an attention store's CAM-resolution maps; a clear error for any other store."""
    if root.attrs.get("maps") != MAPS:
        raise StoreError(f"{path}: not an attention store of CAM-resolution maps (an older attention stage wrote "
                         "full-size ones); rerun `dvc repro attention`")
    h, w = (int(v) for v in root.attrs["image_size"])
    cams = root["cams"]
    if cams.ndim != 3 or not (1 <= cams.shape[1] <= h and 1 <= cams.shape[2] <= w):
        raise StoreError(f"{path}: cams of shape {cams.shape} cannot be the maps of {h}x{w} images")
    return h, w


def image_size_maps(root, path: Path, start: int, stop: int) -> np.ndarray:
    """float16 (rows, H, W) image-size maps of rows [start, stop) of the attention store `root` (at `path`)."""
    h, w = check_maps(root, path)
    return full_size_cams(root["cams"][start:stop], h, w)
