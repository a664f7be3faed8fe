"""Flat parameter vectors: what an expert trajectory stores and what a student network steps through."""

from __future__ import annotations

import torch
from torch import nn


def param_spec(model: nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of every trainable parameter, in registration order."""
    return [(name, tuple(p.shape)) for name, p in model.named_parameters()]


def flatten(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]).float().cpu()


def unflatten(flat: torch.Tensor, spec: list[tuple[str, tuple[int, ...]]]) -> dict[str, torch.Tensor]:
    """Views of `flat` shaped like the model's parameters (keeps the autograd graph of `flat`)."""
    out, offset = {}, 0
    for name, shape in spec:
        size = 1
        for dim in shape:
            size *= dim
        out[name] = flat[offset:offset + size].view(shape)
        offset += size
    if offset != flat.numel():
        raise ValueError(f"flat parameters have {flat.numel()} values, the model {offset}")
    return out
