import numpy as np
import pytest
import torch

from pipeline.models.inputs import Normalization, to_input
from pipeline.train.engine import augment, cosine_lr


def test_augment_crops_and_flips_batched_and_seeded():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    a = augment(x, 2, True, torch.Generator().manual_seed(0))
    b = augment(x, 2, True, torch.Generator().manual_seed(0))
    assert a.shape == x.shape and torch.equal(a, b)
    same = augment(x, 0, False, torch.Generator().manual_seed(0))
    assert torch.equal(same, x)


def test_every_crop_is_a_window_of_the_padded_image():
    x = torch.rand(16, 3, 8, 8)
    out = augment(x, 4, False, torch.Generator().manual_seed(1))
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for i in range(16):
        windows = padded[i].unfold(1, 8, 1).unfold(2, 8, 1)  # (3, 9, 9, 8, 8)
        assert any(torch.equal(windows[:, r, c], out[i]) for r in range(9) for c in range(9))


def test_normalization_and_cosine():
    imgs = torch.randint(0, 256, (10, 4, 4, 3), dtype=torch.uint8)
    norm = Normalization.from_images(imgs.numpy())
    x = to_input(imgs, norm)
    assert torch.allclose(x.mean((0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert cosine_lr(0, 100, 0.1, 0.0) == 0.1 and abs(cosine_lr(100, 100, 0.1, 1e-4) - 1e-4) < 1e-12


def test_compiled_step_trains_like_the_eager_one_and_uses_full_batches(cifar10):
    """`recipe.compile: true` (the default params) must give the same training, up to float reordering."""
    from pipeline.device import resolve_runtime
    from pipeline.models.inputs import Normalization
    from pipeline.models.registry import create_model
    from pipeline.train.engine import Recipe, train

    images, labels = _real_sample(cifar10, 100)
    norm = Normalization.from_images(images.numpy())
    runtime = resolve_runtime("cpu", "fp32")
    histories, weights = [], []
    for compile_ in (False, True):
        torch.manual_seed(0)
        model = create_model("convnetd3", 10, 32)
        histories.append(train(model, images, labels, Recipe(epochs=2, batch_size=32, compile=compile_), norm,
                               runtime, seed=0))
        weights.append(model.state_dict())
    # 100 images at batch 32: 3 full batches per epoch, the 4 left over are a different subset each epoch
    assert [h["epoch"] for h in histories[1]] == [1, 2]
    for eager, compiled in zip(*histories):
        assert compiled["loss"] == pytest.approx(eager["loss"], rel=1e-3)
    flat = [torch.cat([w[k].flatten() for k in sorted(w)]) for w in weights]
    assert (flat[0] - flat[1]).norm() / flat[0].norm() < 1e-2  # 0.2% measured after 6 steps


def _real_sample(cifar10, n: int):
    from pipeline.io.sources import list_imagefolder, load_image

    listing = list_imagefolder(cifar10, "train")
    rows = np.random.default_rng(0).choice(len(listing), n, replace=False)
    images = torch.from_numpy(np.stack([load_image(listing.files[r], 32, "reject") for r in rows]))
    return images, torch.from_numpy(listing.labels[rows])


def test_fp16_training_scales_the_loss_and_unscales_before_each_step(cifar10):
    """fp16 autocast (a GPU without bf16) trains through a GradScaler: the history carries its scale, and the
    weights follow fp32's (a step taken on still-scaled gradients would land 2^16 times too far)."""
    from pipeline.device import Runtime
    from pipeline.models.inputs import Normalization
    from pipeline.models.registry import create_model
    from pipeline.train.engine import Recipe, train

    images, labels = _real_sample(cifar10, 96)
    norm = Normalization.from_images(images.numpy())
    recipe = Recipe(epochs=2, batch_size=32, compile=False)
    histories, weights = {}, {}
    for name, dtype in (("fp32", None), ("fp16", torch.float16)):
        torch.manual_seed(0)
        model = create_model("convnetd3", 10, 32)
        start = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
        histories[name] = train(model, images, labels, recipe, norm, Runtime(torch.device("cpu"), dtype), seed=0)
        weights[name] = torch.cat([p.detach().flatten() for p in model.parameters()]) - start
    assert all("loss_scale" not in h for h in histories["fp32"])
    assert all(h["loss_scale"] >= 1.0 for h in histories["fp16"])
    assert all(np.isfinite(h["loss"]) for h in histories["fp16"])
    moved = weights["fp32"].norm()
    assert moved > 0 and torch.isfinite(weights["fp16"]).all()
    assert (weights["fp16"] - weights["fp32"]).norm() / moved < 0.1


def test_a_loss_that_turns_nan_stops_training_with_a_one_line_error(cifar10):
    """A huge lr drives the weights to Inf within a few steps: training stops at the first non-finite loss."""
    from pipeline.device import Runtime
    from pipeline.errors import TrainingError
    from pipeline.models.inputs import Normalization
    from pipeline.models.registry import create_model
    from pipeline.train.engine import Recipe, train

    images, labels = _real_sample(cifar10, 64)
    norm = Normalization.from_images(images.numpy())
    torch.manual_seed(0)
    model = create_model("convnetd3", 10, 32)
    with pytest.raises(TrainingError, match=r"train: the loss is (nan|inf) at step \d+; training stopped") as info:
        train(model, images, labels, Recipe(epochs=20, batch_size=16, lr=1e30, min_lr=0.0), norm,
              Runtime(torch.device("cpu"), None), seed=0)
    assert "\n" not in str(info.value)
