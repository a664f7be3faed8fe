"""Model checkpoints: weights plus what is needed to use them (arch, classes, size, normalisation)."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from pipeline.errors import StoreError
from pipeline.io.atomic import MARKER, MARKER_KEY
from pipeline.models.inputs import Normalization
from pipeline.models.registry import create_model


def save_checkpoint(path: Path, model: nn.Module, arch: str, num_classes: int, image_size: int,
                    norm: Normalization, extra: dict) -> None:
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    torch.save({MARKER_KEY: MARKER, "arch": arch, "num_classes": num_classes, "image_size": image_size,
                "normalization": norm.to_dict(), "state_dict": state, **extra}, path)


def _normalization(path: Path, raw: object) -> Normalization:
    """The checkpoint's input normalisation: 3 finite means and 3 finite, positive stds, or a StoreError."""
    ok = isinstance(raw, dict) and all(
        isinstance(raw.get(k), (list, tuple)) and len(raw[k]) == 3
        and all(isinstance(v, (int, float)) and math.isfinite(v) for v in raw[k]) for k in ("mean", "std"))
    if not ok:
        raise StoreError(f"{path}: normalization={raw!r} must hold 3 finite means and 3 finite stds")
    if min(raw["std"]) <= 0:
        raise StoreError(f"{path}: normalization std {list(raw['std'])} must be > 0 (a constant train set?)")
    return Normalization(tuple(float(v) for v in raw["mean"]), tuple(float(v) for v in raw["std"]))


def load_checkpoint(path: Path, arch: str | None = None, num_classes: int | None = None,
                    image_size: int | None = None) -> tuple[nn.Module, Normalization, dict]:
    """Rebuild the model; a checkpoint for another arch, class count or image size is a clear error."""
    path = Path(path)
    if not path.is_file():
        raise StoreError(f"checkpoint not found: {path}")
    try:  # weights_only: plain tensors and containers; a pickle that would run code is refused, not executed
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError or EOFError depending on the damage
        raise StoreError(f"{path}: not a dcq checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "arch" not in ckpt:
        raise StoreError(f"{path}: not a dcq checkpoint (expected keys arch, state_dict, normalization)")
    for key, want in (("arch", arch), ("num_classes", num_classes), ("image_size", image_size)):
        if want is not None and ckpt.get(key) != want:
            raise StoreError(f"{path}: checkpoint has {key}={ckpt.get(key)!r}, the params/data need {want!r}")
    model = create_model(ckpt["arch"], ckpt["num_classes"], ckpt["image_size"])
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise StoreError(f"{path}: weights do not fit {ckpt['arch']}: {exc}") from None
    norm = _normalization(path, ckpt.get("normalization"))
    bad = [k for k, v in ckpt["state_dict"].items() if torch.is_tensor(v) and v.is_floating_point()
           and not bool(torch.isfinite(v).all())]
    if bad:
        raise StoreError(f"{path}: weights hold NaN or Inf ({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}); "
                         "the run that wrote it diverged")
    return model.eval(), norm, ckpt
