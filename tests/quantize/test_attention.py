import numpy as np
import pytest
import torch
from torch import nn

from pipeline.device import resolve_runtime
from pipeline.errors import ParamsError, StoreError
from pipeline.models.checkpoint import load_checkpoint
from pipeline.models.inputs import to_input
from pipeline.models.layers import get_module
from pipeline.quantize.attention import (
    LabelCAM,
    full_size_cams,
    image_size_maps,
    selected_count,
    top_pixels,
)

# pytorch-grad-cam itself, set up as the attention stage used it before `LabelCAM`: the reference LabelCAM is held to.


def make_cam(model: nn.Module, target: nn.Module, method: str):
    """One CAM object for the whole run (re-creating them leaks memory, see pytorch-grad-cam issues).

    All weights are frozen and the target layer's output is made a leaf that requires grad, so the
    backward pass stops at the target layer instead of running through the whole network.
    """
    from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, LayerCAM

    for p in model.parameters():
        p.requires_grad_(False)
    # Registered before the CAM's own hooks, so theirs see the float32 leaf this one returns.
    target.register_forward_hook(lambda module, inputs, output: output.detach().float().requires_grad_())
    cls = {"gradcam++": GradCAMPlusPlus, "gradcam": GradCAM, "layercam": LayerCAM}[method]
    return cls(model=model.eval(), target_layers=[target])


def keep_cam_resolution(cam):
    """Make `cam` return each map at the CAM layer's resolution (8x8 for ConvNetD3's last block at 32 px, 7x7 for a
    ResNet's layer4 at 224 px), min-max scaled as pytorch-grad-cam scales it before resizing: the maps it would
    upsample, 16-1000x smaller to store. `full_size_cams` turns them into its image-size maps, bit for bit."""
    cam.get_target_width_height = lambda input_tensor: None  # scale_cam_image(cam, None): scale, no resize
    cam.aggregate_multi_layers = lambda per_layer: np.concatenate(per_layer, axis=1)[:, 0]  # one target layer
    return cam


def label_cams(cam, x: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """float32 (B,h,w) maps in [0,1], each explaining the image's label (not the predicted class); (h,w) is the
    image size, or the CAM layer's for a `keep_cam_resolution` CAM."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    targets = [ClassifierOutputTarget(int(y)) for y in labels]
    return cam(input_tensor=x, targets=targets).astype(np.float32)


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
    stored = image_size_maps(zarr.open_group(str(small_run.attention), mode="r"), small_run.attention, 0, 16)
    np.testing.assert_allclose(stored.astype(np.float32), as_stage, atol=1e-3)  # float16 maps
    assert predicted.shape == labels.shape


@pytest.mark.parametrize("method", ["gradcam++", "layercam"])
def test_cam_resolution_maps_give_the_full_size_maps_and_selections_bit_for_bit(small_run, method):
    """Issue 14: the attention store keeps each map at the CAM layer's resolution (4x4 for the test teacher's layer4,
    64x fewer values than 32x32), and upsampling it as pytorch-grad-cam does gives exactly the float16 map the store
    used to hold, so every top-k_gra% selection, and every palette, is unchanged."""
    import zarr

    train = zarr.open_group(str(small_run.prepared), mode="r")["train"]
    x_u8, labels = torch.from_numpy(train["images"][:64]), torch.from_numpy(train["labels"][:64])
    full_model, norm, _ = load_checkpoint(small_run.teacher)
    low_model, _, _ = load_checkpoint(small_run.teacher)
    x = to_input(x_u8, norm)
    with make_cam(full_model, get_module(full_model, "layer4", "attention.layer"), method) as cam:
        full = label_cams(cam, x, labels).astype(np.float16)  # what the store held before
    with keep_cam_resolution(make_cam(low_model, get_module(low_model, "layer4", "attention.layer"), method)) as cam:
        low = label_cams(cam, x, labels)
    assert low.shape == (64, 4, 4) and full.shape == (64, 32, 32)
    upsampled = full_size_cams(low, 32, 32)
    assert upsampled.dtype == np.float16 and np.array_equal(upsampled, full)
    for k_gra in (10.0, 50.0, 80.0):
        assert torch.equal(top_pixels(upsampled, k_gra), top_pixels(full, k_gra))


def test_palette_refuses_an_attention_store_of_full_size_maps(small_run, tmp_path):
    import shutil

    import zarr

    old = tmp_path / "attention-old.zarr"
    shutil.copytree(small_run.attention, old)
    root = zarr.open_group(str(old), mode="r+")
    del root.attrs["maps"]
    with pytest.raises(StoreError, match="not an attention store of CAM-resolution maps .* rerun `dvc repro attention`"):
        image_size_maps(root, old, 0, 4)
    root.attrs["maps"] = "cam-resolution"
    root.attrs["image_size"] = [2, 2]  # smaller than the maps it holds
    with pytest.raises(StoreError, match=r"cams of shape \(160, 4, 4\) cannot be the maps of 2x2 images"):
        image_size_maps(root, old, 0, 4)


def test_upsampling_equals_pytorch_grad_cams_own_steps_bit_for_bit(small_run):
    """full_size_cams scales all maps at once instead of importing pytorch-grad-cam (2 s per colour_counts process):
    the same float16 bits as its resize + scale_cam_image, on the fixture's real maps at 32 px and on 7x7 maps
    (a ResNet layer4) at 224 px, a flat map included."""
    import cv2
    import zarr
    from pytorch_grad_cam.utils.image import scale_cam_image

    def reference(low, height, width):
        resized = np.float32([cv2.resize(np.float32(m), (width, height)) for m in low])
        return scale_cam_image(np.mean(np.maximum(resized[:, None], 0), axis=1)).astype(np.float32).astype(np.float16)

    real = zarr.open_group(str(small_run.attention), mode="r")["cams"][:]
    wide = np.repeat(real[:40, :1, :1], 7, axis=1).repeat(7, axis=2) * np.linspace(0.5, 1.5, 49).reshape(1, 7, 7)
    wide[3] = 0.0
    for low, size in ((real, 32), (wide.astype(np.float32), 224)):
        ours, theirs = full_size_cams(low, size, size), reference(low, size, size)
        assert ours.dtype == np.float16 and np.array_equal(ours.view(np.uint16), theirs.view(np.uint16))


@pytest.mark.parametrize("method", ["gradcam++", "gradcam", "layercam"])
@pytest.mark.parametrize("precision", ["fp32", "auto"])
def test_batched_cams_equal_pytorch_grad_cams_on_real_images(small_run, method, precision):
    """Issue 35: the stage's own CAM (one forward, one backward, weights on the device) gives pytorch-grad-cam's maps,
    for each method and for the runtime's precision (bf16 autocast on CPUs with native bf16)."""
    import zarr

    train = zarr.open_group(str(small_run.prepared), mode="r")["train"]
    x_u8, labels = torch.from_numpy(train["images"][:48]), torch.from_numpy(train["labels"][:48])
    runtime = resolve_runtime("cpu", precision)
    ours_model, norm, _ = load_checkpoint(small_run.teacher)
    ours = LabelCAM(ours_model, get_module(ours_model, "layer4", "attention.layer"), method)
    ref_model, _, _ = load_checkpoint(small_run.teacher)
    x = to_input(x_u8, norm)
    with keep_cam_resolution(make_cam(ref_model, get_module(ref_model, "layer4", "attention.layer"), method)) as ref:
        with runtime.autocast():
            maps, logits = ours(x, labels)
            expected = label_cams(ref, x, labels)
        predicted = ref.outputs.argmax(1)
    assert maps.dtype == torch.float32 and maps.shape == expected.shape
    np.testing.assert_allclose(maps.numpy(), expected, atol=1e-5)
    assert torch.equal(logits.argmax(1), predicted)
    assert maps.amin().item() >= 0 and maps.amax().item() <= 1
    # the maps explain the given labels: other labels give other maps
    other, _ = ours(x, (labels + 1) % 10)
    assert not torch.allclose(other, maps, atol=1e-3)


def test_labels_of_any_integer_dtype_give_the_same_maps(small_run):
    """Stores keep labels in the smallest unsigned type (a coreset's are uint8)."""
    import zarr

    train = zarr.open_group(str(small_run.prepared), mode="r")["train"]
    model, norm, _ = load_checkpoint(small_run.teacher)
    cam = LabelCAM(model, get_module(model, "layer4", "attention.layer"), "gradcam++")
    x, labels = to_input(torch.from_numpy(train["images"][:8]), norm), torch.from_numpy(train["labels"][:8])
    as_int64, _ = cam(x, labels.to(torch.int64))
    as_uint8, _ = cam(x, labels.to(torch.uint8))
    assert torch.equal(as_int64, as_uint8)


def test_an_unknown_cam_method_is_refused(small_run):
    model, _, _ = load_checkpoint(small_run.teacher)
    with pytest.raises(ParamsError, match="attention.method"):
        LabelCAM(model, get_module(model, "layer4", "attention.layer"), "scorecam")
