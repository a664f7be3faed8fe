"""Every network the pipeline trains or explains, by name, from one registry.

`create_model(name, num_classes, image_size)` builds it; `model_names()` lists the registry. ResNets,
MobileNetV2 and ShuffleNetV2 come from torchvision, with the stem chosen by image size: the CIFAR stem (3x3
stride-1 first conv, no max-pool) below 64 px, torchvision's ImageNet stem (stride 4 before the first stage) at
64 px and above, where full resolution would cost 16x the compute of the same net at 224 px / 4. The names
`<net>_cifar_stem` and `<net>_imagenet_stem` force one stem at any size (the param that overrides the rule:
`teacher.arch`, `train.models`, ...). `convnetd{3,4,5}` is the distillation papers' ConvNet (width 128),
`convnetd{3,4,5}w64` the same at width 64.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from pipeline.registry import Registry

MODELS: Registry[Callable[[int, int], nn.Module]] = Registry(
    "model", lambda name, names: f"unknown model {name!r}; the registry has {names}")

IMAGENET_STEM_FROM = 64  # images at least this size get the ImageNet stem (unless a name forces one)


register = MODELS.register
model_names = MODELS.names


def create_model(name: str, num_classes: int, image_size: int) -> nn.Module:
    return MODELS.get(name)(num_classes, image_size)


def _cifar_stem(image_size: int, stem: str) -> bool:
    return stem == "cifar" or (stem == "auto" and image_size < IMAGENET_STEM_FROM)


def _torchvision_model(name: str, num_classes: int) -> nn.Module:
    # imported here: torchvision costs a model stage 1.3 s of start-up, and the ConvNets do not need it
    import torchvision

    return getattr(torchvision.models, name)(num_classes=num_classes)


def _resnet(name: str, num_classes: int, image_size: int, stem: str = "auto") -> nn.Module:
    model = _torchvision_model(name, num_classes)
    if _cifar_stem(image_size, stem):
        model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    return model


def _mobilenetv2(num_classes: int, image_size: int, stem: str = "auto") -> nn.Module:
    model = _torchvision_model("mobilenet_v2", num_classes)
    if _cifar_stem(image_size, stem):
        model.features[0][0].stride = (1, 1)
    return model


def _shufflenetv2(num_classes: int, image_size: int, stem: str = "auto") -> nn.Module:
    model = _torchvision_model("shufflenet_v2_x1_0", num_classes)
    if _cifar_stem(image_size, stem):
        model.conv1[0].stride = (1, 1)
        model.maxpool = nn.Identity()
    return model


_TORCHVISION_NETS = {
    "resnet18": lambda c, s, stem: _resnet("resnet18", c, s, stem),
    "resnet34": lambda c, s, stem: _resnet("resnet34", c, s, stem),
    "resnet50": lambda c, s, stem: _resnet("resnet50", c, s, stem),
    "mobilenetv2": _mobilenetv2,
    "shufflenetv2": _shufflenetv2,
}
for _name, _build in _TORCHVISION_NETS.items():
    register(_name)(lambda num_classes, image_size, b=_build: b(num_classes, image_size, "auto"))
    for _stem in ("cifar", "imagenet"):
        register(f"{_name}_{_stem}_stem")(lambda num_classes, image_size, b=_build, st=_stem: b(num_classes, image_size, st))


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
