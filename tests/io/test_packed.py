"""Packed train sets: palette-indexed stores decoded per batch give exactly the decoded store's pixels, the same
normalization and the same trained weights, in a fraction of the memory (real CIFAR-10 stores)."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from pipeline.device import resolve_runtime
from pipeline.io.bitpack import pack
from pipeline.io.bitpack import unpack as unpack_numpy
from pipeline.io.dcq_store import DCQStore
from pipeline.io.packed import PackedImages, unpack
from pipeline.io.train_sets import load_train_set
from pipeline.models.inputs import Normalization
from pipeline.models.registry import create_model
from pipeline.stages import baseline
from pipeline.train.engine import Recipe, train
from tests.conftest import BASE


@pytest.mark.parametrize("bits", range(1, 9))
def test_torch_unpack_is_the_stores_unpack(bits):
    rng = np.random.default_rng(bits)
    indices = rng.integers(0, 2**bits, (5, 37), dtype=np.uint8)  # 37 pixels: a ragged last byte
    packed = pack(indices, bits)
    assert np.array_equal(unpack(torch.from_numpy(packed), bits, 37).numpy(), unpack_numpy(packed, bits, 37))
    assert np.array_equal(unpack_numpy(packed, bits, 37), indices)


@pytest.fixture(scope="module")
def per_image_store(small_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("packed") / "median_cut-q2.zarr"
    baseline.run(baseline.BaselineParams(), BASE, "median_cut", 2, small_run.prepared, out)
    return out


@pytest.mark.parametrize("which", ["dcq1", "dcq2", "per_image"])
def test_packed_rows_are_the_decoded_pixels(small_run, per_image_store, which):
    path = {"dcq1": small_run.dcq(1), "dcq2": small_run.dcq(2), "per_image": per_image_store}[which]
    decoded = DCQStore(path).decode()
    packed = load_train_set(path, packed=True).images
    assert isinstance(packed, PackedImages) and packed.shape == decoded.shape
    rows = torch.from_numpy(np.random.default_rng(0).permutation(len(decoded))[:37])
    assert np.array_equal(packed[rows].numpy(), decoded[rows.numpy()])
    assert np.array_equal(packed[slice(5, 25)].numpy(), decoded[5:25])
    assert np.array_equal(packed[3].numpy(), decoded[3])
    assert np.array_equal(np.concatenate([b.numpy() for b in packed.blocks(64)]), decoded)
    assert Normalization.from_images(packed) == Normalization.from_images(decoded)
    bits = DCQStore(path).bits
    assert packed.nbytes < decoded.nbytes * bits / 24 * 1.5  # indices + palettes + ids, not 24-bit pixels


def test_training_on_the_packed_set_gives_the_decoded_sets_weights(small_run):
    decoded_set = load_train_set(small_run.dcq(2))
    packed_set = load_train_set(small_run.dcq(2), packed=True)
    runtime = resolve_runtime("cpu", "fp32")
    recipe = replace(Recipe(), epochs=1, batch_size=32, compile=False)
    weights = []
    for images in (decoded_set.images, packed_set.images):
        torch.manual_seed(0)
        model = create_model("convnetd3w64", 10, 32)
        norm = Normalization.from_images(images if isinstance(images, PackedImages) else images.numpy())
        train(model, images, decoded_set.labels, recipe, norm, runtime, seed=0)
        weights.append({k: v.clone() for k, v in model.state_dict().items()})
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
