"""Every network the pipeline trains or explains, by name, from one registry.

`create_model(name, num_classes, image_size)` builds it; `model_names()` lists the registry. ResNets,
MobileNetV2 and ShuffleNetV2 come from torchvision with the CIFAR stem (3x3 stride-1 first conv, no
max-pool) for images of 64 px or less; `convnetd{3,4,5}` is the distillation papers' ConvNet (width 128), `convnetd{3,4,5}w64` the same at width 64.
"""

from __future__ import annotations

from typing import Callable

import torch
import torchvision
from torch import nn

from pipeline.registry import Registry

MODELS: Registry[Callable[[int, int], nn.Module]] = Registry(
    "model", lambda name, names: f"unknown model {name!r}; the registry has {names}")

SMALL_IMAGE = 64  # at or below this size the stem keeps full resolution


register = MODELS.register
model_names = MODELS.names


def create_model(name: str, num_classes: int, image_size: int) -> nn.Module:
    return MODELS.get(name)(num_classes, image_size)


def _resnet(builder, num_classes: int, image_size: int) -> nn.Module:
    model = builder(num_classes=num_classes)
    if image_size <= SMALL_IMAGE:
        model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    return model


@register("resnet18")
def resnet18(num_classes: int, image_size: int) -> nn.Module:
    return _resnet(torchvision.models.resnet18, num_classes, image_size)


@register("resnet34")
def resnet34(num_classes: int, image_size: int) -> nn.Module:
    return _resnet(torchvision.models.resnet34, num_classes, image_size)


@register("resnet50")
def resnet50(num_classes: int, image_size: int) -> nn.Module:
    return _resnet(torchvision.models.resnet50, num_classes, image_size)


@register("mobilenetv2")
def mobilenetv2(num_classes: int, image_size: int) -> nn.Module:
    model = torchvision.models.mobilenet_v2(num_classes=num_classes)
    if image_size <= SMALL_IMAGE:
        model.features[0][0].stride = (1, 1)
    return model


@register("shufflenetv2")
def shufflenetv2(num_classes: int, image_size: int) -> nn.Module:
    model = torchvision.models.shufflenet_v2_x1_0(num_classes=num_classes)
    if image_size <= SMALL_IMAGE:
        model.conv1[0].stride = (1, 1)
        model.maxpool = nn.Identity()
    return model


class ConvNet(nn.Module):
    """depth x [conv3x3(width) -> instance norm -> ReLU -> avgpool2x2] -> linear (MTT/DC ConvNet)."""

    def __init__(self, num_classes: int, image_size: int, depth: int, width: int = 128):
        super().__init__()
        layers: list[nn.Module] = []
        channels, size = 3, image_size
        for _ in range(depth):
            # GroupNorm with one group per channel is instance norm with learnable affine.
            layers += [nn.Conv2d(channels, width, 3, padding=1), nn.GroupNorm(width, width, affine=True),
                       nn.ReLU(inplace=True), nn.AvgPool2d(2)]
            channels, size = width, size // 2
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(width * size * size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


for _depth in (3, 4, 5):
    register(f"convnetd{_depth}")(lambda num_classes, image_size, d=_depth: ConvNet(num_classes, image_size, d))
    # Half width: a quarter of the convolution FLOPs, measured 590 vs 237 training img/s on the 2-core CPU;
    # the main job's teacher and runs use it to fit its time budget.
    register(f"convnetd{_depth}w64")(
        lambda num_classes, image_size, d=_depth: ConvNet(num_classes, image_size, d, width=64))
