"""Differentiable Siamese Augmentation: same seed, same transform; gradients reach the pixels."""

import pytest
import torch

from pipeline.distill.dsa import FAMILIES, DSAParams, augment
from pipeline.errors import ParamsError
from pipeline.io.train_sets import load_split
from pipeline.models.inputs import Normalization, to_input


@pytest.fixture(scope="module")
def batch(small_run):
    images, _, _ = load_split(small_run.prepared, "train")
    return to_input(images[:16], Normalization.from_images(images.numpy())).contiguous()


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_is_siamese_differentiable_and_changes_images(batch, family):
    params = DSAParams(strategy=family)
    real = batch.clone().requires_grad_(True)
    out = augment(real, params, seed=3)
    assert out.shape == batch.shape and not torch.equal(out, batch)
    torch.testing.assert_close(augment(batch, params, seed=3), out.detach())  # same seed, same transform
    out.square().sum().backward()
    assert real.grad is not None and real.grad.abs().sum() > 0


def test_siamese_pairs_get_the_same_geometry(batch):
    """A real and a 'synthetic' batch augmented with one seed are moved the same way."""
    params = DSAParams(strategy="flip_crop_rotate", single=False)
    shifted = batch + 1.0
    torch.testing.assert_close(augment(shifted, params, 11) - augment(batch, params, 11),
                               augment(torch.ones_like(batch), params, 11), atol=1e-4, rtol=1e-4)


def test_single_mode_draws_one_family_per_call(batch):
    params = DSAParams()
    outs = {tuple(augment(batch, params, s).flatten()[:8].tolist()) for s in range(6)}
    assert len(outs) > 1
    assert torch.equal(augment(batch, DSAParams(strategy="none"), 0), batch)


def test_unknown_family_is_an_error():
    with pytest.raises(ParamsError, match="unknown families \\['blur'\\]"):
        DSAParams(strategy="color_blur")
