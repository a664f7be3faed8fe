import pytest
import torch

from pipeline.errors import ParamsError
from pipeline.models.registry import create_model, model_names


@pytest.mark.parametrize("name", model_names())
def test_every_model_maps_32px_images_to_logits(name):
    model = create_model(name, num_classes=10, image_size=32).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("name", [n for n in model_names() if n.startswith("resnet")])
def test_resnets_use_the_cifar_stem_for_small_images(name):
    small, large = create_model(name, 10, 32), create_model(name, 10, 224)
    assert small.conv1.kernel_size == (3, 3) and isinstance(small.maxpool, torch.nn.Identity)
    assert large.conv1.kernel_size == (7, 7)


def test_unknown_model_is_a_clear_error():
    with pytest.raises(ParamsError, match="unknown model 'resnet19'"):
        create_model("resnet19", 10, 32)
