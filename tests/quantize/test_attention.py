import numpy as np
import pytest
import torch

from pipeline.device import resolve_runtime
from pipeline.errors import ParamsError
from pipeline.models.checkpoint import load_checkpoint
from pipeline.models.layers import get_module
from pipeline.quantize.attention import label_cams, make_cam, selected_count, top_pixels
from pipeline.train.engine import to_input


@pytest.mark.parametrize("k_gra", [0.5, 10, 33.3, 50, 75, 100])
def test_top_pixels_keeps_exactly_the_share(k_gra):
    cams = torch.rand(6, 32, 32)
    mask = top_pixels(cams, k_gra)
    assert mask.sum((1, 2)).tolist() == [round(k_gra / 100 * 1024) or 1] * 6
    kept_min = torch.where(mask, cams, torch.inf).amin((1, 2))
    dropped_max = torch.where(mask, -torch.inf, cams).amax((1, 2))
    assert torch.all((kept_min >= dropped_max) | ~torch.isfinite(dropped_max))


def test_flat_maps_still_give_the_exact_share_deterministically():
    cams = torch.zeros(3, 8, 8)
    a, b = top_pixels(cams, 50), top_pixels(cams, 50)
    assert a.sum().item() == 3 * 32 and torch.equal(a, b)


@pytest.mark.parametrize("k_gra", [0, -1, 100.01])
def test_k_gra_out_of_range(k_gra):
    with pytest.raises(ParamsError, match="k_gra"):
        selected_count(k_gra, 1024)


def test_gradcampp_targets_the_label_not_the_prediction(small_run):
    import zarr
    from pytorch_grad_cam import GradCAMPlusPlus
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    train = zarr.open_group(str(small_run.prepared), mode="r")["train"]
    x_u8, labels = torch.from_numpy(train["images"][:16]), torch.from_numpy(train["labels"][:16])
    model, norm, _ = load_checkpoint(small_run.teacher)
    x = to_input(x_u8, norm)
    # The pipeline's CAM (frozen weights, float32 leaf at the target layer) ...
    runtime = resolve_runtime("cpu", "auto")
    with make_cam(model, get_module(model, "layer4", "attention.layer"), "gradcam++") as cam:
        ours = label_cams(cam, x, labels)
        predicted = cam.outputs.argmax(1)
        with runtime.autocast():  # as the attention stage runs it (bf16 on CPUs with native bf16)
            as_stage = label_cams(cam, x, labels)
    # ... equals a plain GradCAMPlusPlus with the label as target, on a fresh copy of the model.
    plain, _, _ = load_checkpoint(small_run.teacher)
    with GradCAMPlusPlus(model=plain, target_layers=[plain.layer4]) as ref_cam:
        ref = ref_cam(input_tensor=x, targets=[ClassifierOutputTarget(int(y)) for y in labels])
        other = ref_cam(input_tensor=x, targets=[ClassifierOutputTarget(int((y + 1) % 10)) for y in labels])
    np.testing.assert_allclose(ours, ref, atol=1e-4)
    assert not np.allclose(ours, other, atol=1e-3)
    stored = zarr.open_group(str(small_run.attention), mode="r")["cams"][:16].astype(np.float32)
    np.testing.assert_allclose(stored, as_stage, atol=1e-3)  # float16 storage
    assert predicted.shape == labels.shape
