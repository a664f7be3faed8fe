import pytest
import torch

from pipeline.errors import ParamsError
from pipeline.models.layers import get_module, truncated_extractor
from pipeline.models.registry import create_model


def _last_output(model, layer, x):
    """What `layer` returns the last time a full forward pass calls it."""
    seen = []
    handle = get_module(model, layer, "layer").register_forward_hook(lambda m, i, o: seen.append(o.clone()))
    with torch.no_grad():
        model(x)
    handle.remove()
    return seen[-1], len(seen)


@pytest.mark.parametrize("arch,layer,calls", [
    ("convnetd3w64", "features.2", 1),
    ("convnetd3w64", "features.0", 1),
    ("resnet18", "layer1", 1),
    ("resnet18", "layer1.0.relu", 2),  # torchvision's BasicBlock calls its one ReLU twice
    ("mobilenetv2", "features.3", 1),
])
def test_the_truncated_forward_returns_the_layers_last_output(arch, layer, calls):
    torch.manual_seed(0)
    model = create_model(arch, 10, 32).eval()
    x = torch.randn(4, 3, 32, 32)
    expected, seen = _last_output(model, layer, x)
    assert seen == calls
    extractor = truncated_extractor(model, layer, "features.layer")
    with torch.no_grad():
        assert torch.equal(extractor(x), expected)


def test_the_layers_after_the_cut_never_run():
    model = create_model("convnetd3w64", 10, 32).eval()
    extractor = truncated_extractor(model, "features.2", "features.layer")  # counts the calls on a full pass
    ran = []
    model.classifier.register_forward_hook(lambda m, i, o: ran.append(1))
    with torch.no_grad():
        extractor(torch.randn(2, 3, 32, 32))
    assert not ran


def test_an_unknown_layer_is_named():
    with pytest.raises(ParamsError, match=r"features.layer='features.99' is not a layer"):
        truncated_extractor(create_model("convnetd3w64", 10, 32), "features.99", "features.layer")
