"""Named layers of a model: truncated feature extractors and target modules for CAMs."""

from __future__ import annotations

import torch
from torch import nn

from pipeline.errors import ParamsError


def _suggest(model: nn.Module) -> list[str]:
    return [name for name, _ in model.named_children()]


def get_module(model: nn.Module, name: str, param: str) -> nn.Module:
    modules = dict(model.named_modules())
    if not name or name not in modules:
        raise ParamsError(f"{param}={name!r} is not a layer of this model; top-level layers: {_suggest(model)} "
                          "(any dotted module name such as 'layer4.1' works)")
    return modules[name]


class _Reached(Exception):
    def __init__(self, output: torch.Tensor):
        super().__init__()
        self.output = output


class TruncatedForward(nn.Module):
    """The model's forward pass stopped where `layer` returns its output for the last time: the layers after it never
    run, so it costs only the layers up to it. A module called more than once in a forward pass (torchvision's
    ResNet blocks reuse one ReLU) stands for its last call, counted once on a one-image pass."""

    def __init__(self, model: nn.Module, layer: str, param: str, calls: int):
        super().__init__()
        self.model, self.layer, self.calls, self._seen = model.eval(), layer, calls, 0
        get_module(model, layer, param).register_forward_hook(self._count_or_stop)

    def _count_or_stop(self, module, inputs, output):
        self._seen += 1
        if self._seen == self.calls:
            raise _Reached(output)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._seen = 0
        try:
            self.model(x)
        except _Reached as reached:
            return reached.output
        raise RuntimeError(f"layer {self.layer!r} ran {self._seen} times, not {self.calls}, in this forward pass")


def truncated_extractor(model: nn.Module, layer: str, param: str, image_size: int = 32) -> nn.Module:
    """A module returning `layer`'s output (any dotted module name; everything after it is skipped)."""
    module = get_module(model, layer, param)
    calls = []
    handle = module.register_forward_hook(lambda m, i, o: calls.append(1))
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, image_size, image_size, device=next(model.parameters()).device))
    handle.remove()
    if not calls:
        raise ParamsError(f"{param}={layer!r} is a layer of this model that its forward pass never runs")
    return TruncatedForward(model, layer, param, len(calls)).eval()
