import numpy as np
import pytest
import torch
import zarr

from pipeline.device import resolve_runtime
from pipeline.models.checkpoint import load_checkpoint
from pipeline.models.inputs import to_input
from pipeline.models.layers import truncated_extractor
from pipeline.quantize.feature_store import pool
from tests.conftest import BASE


def _maps(small_run, layer="layer1", precision="fp32"):
    images = zarr.open_group(str(small_run.prepared), mode="r")["train/images"][:40]
    model, norm, _ = load_checkpoint(small_run.teacher)
    extractor = truncated_extractor(model, layer, "features.layer").to(memory_format=torch.channels_last)
    with torch.no_grad(), resolve_runtime("cpu", precision).autocast():
        return extractor(to_input(torch.from_numpy(images), norm))


@pytest.mark.parametrize("pooling", ["mean", "mean_std", "grid"])
def test_pooling_is_the_same_in_either_memory_layout(small_run, pooling):
    """The features stage pools channels_last maps along their contiguous axis; NCHW maps give the same vectors, and
    both equal torch's own per-channel mean and population std."""
    fmap = _maps(small_run)
    assert fmap.is_contiguous(memory_format=torch.channels_last) and not fmap.is_contiguous()
    as_stored = pool(fmap, pooling, 2)
    nchw = pool(fmap.contiguous(), pooling, 2)
    np.testing.assert_allclose(as_stored.numpy(), nchw.numpy(), rtol=1e-5, atol=1e-6)
    if pooling == "grid":
        expected = torch.nn.functional.adaptive_avg_pool2d(fmap.contiguous(), 2).flatten(1)
    else:
        expected = fmap.contiguous().mean((2, 3))
        if pooling == "mean_std":
            expected = torch.cat([expected, fmap.contiguous().std((2, 3), unbiased=False)], 1)
    np.testing.assert_allclose(as_stored.numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)
    assert as_stored.dtype == torch.float32 and as_stored.shape[0] == fmap.shape[0]


def test_the_stored_features_are_the_pooled_extractor_output(small_run):
    """The stage's slices (32 images a forward pass on a CPU) give what one pass over all images gives."""
    stored = zarr.open_group(str(small_run.features), mode="r")["features"][:40]
    as_one_pass = pool(_maps(small_run, precision=BASE.precision), "mean_std", 2).numpy()  # the stage's runtime
    np.testing.assert_allclose(stored, as_one_pass, rtol=1e-4, atol=1e-4)
