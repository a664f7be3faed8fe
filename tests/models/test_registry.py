import pytest
import torch

from pipeline.errors import ParamsError
from pipeline.models.registry import create_model, model_names


@pytest.mark.parametrize("name", model_names())
def test_every_model_maps_32px_images_to_logits(name):
    model = create_model(name, num_classes=10, image_size=32).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("name", [n for n in model_names() if n.startswith("resnet") and not n.endswith("_stem")])
def test_resnets_use_the_cifar_stem_for_small_images(name):
    small, large = create_model(name, 10, 32), create_model(name, 10, 224)
    assert small.conv1.kernel_size == (3, 3) and isinstance(small.maxpool, torch.nn.Identity)
    assert large.conv1.kernel_size == (7, 7)


def test_unknown_model_is_a_clear_error():
    with pytest.raises(ParamsError, match="unknown model 'resnet19'"):
        create_model("resnet19", 10, 32)


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "mobilenetv2", "shufflenetv2"])
def test_stem_follows_image_size_and_a_name_can_force_it(name):
    """CIFAR stem below 64 px, the ImageNet stem (4x downsampling first) from 64 px; `_cifar_stem` /
    `_imagenet_stem` force one at any size. Measured by how far the first stage's maps shrink."""
    def first_stage_size(model, size):
        seen = []
        first = {"resnet18": "layer1", "resnet50": "layer1", "mobilenetv2": "features.1",
                 "shufflenetv2": "stage2"}[name]
        dict(model.named_modules())[first].register_forward_hook(lambda m, i, o: seen.append(o.shape[-1]))
        with torch.no_grad():
            model.eval()(torch.randn(1, 3, size, size))
        return seen[0]

    assert first_stage_size(create_model(name, 10, 32), 32) in (32, 16)  # full or half resolution (shufflenet)
    auto_64 = first_stage_size(create_model(name, 10, 64), 64)
    cifar_64 = first_stage_size(create_model(f"{name}_cifar_stem", 10, 64), 64)
    imagenet_32 = first_stage_size(create_model(f"{name}_imagenet_stem", 10, 32), 32)
    assert cifar_64 > auto_64 and imagenet_32 < first_stage_size(create_model(name, 10, 32), 32)
    assert f"{name}_cifar_stem" in model_names() and f"{name}_imagenet_stem" in model_names()
