"""Named layers of a model: truncated feature extractors and target modules for CAMs."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

from pipeline.errors import ParamsError


def _suggest(model: nn.Module) -> list[str]:
    return [name for name, _ in model.named_children()]


def get_module(model: nn.Module, name: str, param: str) -> nn.Module:
    modules = dict(model.named_modules())
    if not name or name not in modules:
        raise ParamsError(f"{param}={name!r} is not a layer of this model; top-level layers: {_suggest(model)} "
                          "(any dotted module name such as 'layer4.1' works)")
    return modules[name]


def truncated_extractor(model: nn.Module, layer: str, param: str) -> nn.Module:
    """A module returning `layer`'s output; everything after `layer` is pruned, so it costs only the
    layers up to it (FX graph of the model)."""
    _, eval_nodes = get_graph_node_names(model.eval())
    # A module name stands for the last node of that module (torchvision's shortcut).
    if not any(node == layer or node.startswith(layer + ".") for node in eval_nodes):
        raise ParamsError(f"{param}={layer!r} is not a layer of this model; top-level layers: {_suggest(model)}")
    extractor = create_feature_extractor(model.eval(), return_nodes={layer: "out"})

    class Wrapped(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = extractor

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x)["out"]

    return Wrapped().eval()
