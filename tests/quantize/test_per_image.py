"""Per-image quantizers on real CIFAR-10 images: colour counts, Pillow agreement, nearest-colour exactness."""

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.errors import ParamsError
from pipeline.io.train_sets import load_split
from pipeline.quantize.color import rgb_to_lab
from pipeline.quantize.per_image import QUANTIZERS, check_quantizer, quantize_block

AVAILABLE = list(QUANTIZERS)


@pytest.fixture(scope="module")
def images(small_run):
    return load_split(small_run.prepared, "train")[0][:24].numpy()


def decode(idx, pal):
    n = len(idx)
    return np.take_along_axis(pal, idx.reshape(n, -1, 1).astype(np.int64), axis=1).reshape(*idx.shape, 3)


@pytest.mark.parametrize("method", AVAILABLE)
@pytest.mark.parametrize("bits", [1, 2, 4, 6])
def test_at_most_2q_colours_per_image(images, method, bits):
    idx, pal = quantize_block(images, method, bits, iterations=10, seed=0)
    assert idx.shape == images.shape[:3] and idx.dtype == np.uint8 and pal.shape == (len(images), 2**bits, 3)
    assert int(idx.max()) < 2**bits
    out = decode(idx, pal)
    for image in out:
        assert len(np.unique(image.reshape(-1, 3), axis=0)) <= 2**bits
    # quantization changes the images but keeps them close: more bits, closer
    assert np.abs(out.astype(int) - images).mean() < 40


@pytest.mark.parametrize("method", [m for m in AVAILABLE if m in ("median_cut", "octree", "libimagequant")])
@pytest.mark.parametrize("bits", [1, 3, 5])
def test_pillow_methods_reproduce_pillows_own_output(images, method, bits):
    import imagequant

    idx, pal = quantize_block(images, method, bits)
    pillow_method = {"median_cut": Image.Quantize.MEDIANCUT, "octree": Image.Quantize.FASTOCTREE}.get(method)
    for i, image in enumerate(images):
        expected = (imagequant.quantize_pil_image(Image.fromarray(image).convert("RGBA"), dithering_level=0.0,
                                                  max_colors=2**bits)
                    if method == "libimagequant" else
                    Image.fromarray(image).quantize(colors=2**bits, method=pillow_method, dither=Image.Dither.NONE)
                    ).convert("RGB")
        np.testing.assert_array_equal(decode(idx[i:i + 1], pal[i:i + 1])[0], np.asarray(expected))


@pytest.mark.parametrize("method,space", [("kmeans_rgb", "rgb"), ("kmeans_lab", "lab")])
def test_kmeans_pixels_take_their_nearest_stored_colour(images, method, space):
    idx, pal = quantize_block(images, method, 3, iterations=10, seed=0)
    to_space = (lambda x: rgb_to_lab(torch.from_numpy(x))) if space == "lab" else (
        lambda x: torch.from_numpy(x).float())
    px, colours = to_space(images.reshape(len(images), -1, 3)), to_space(pal)
    dist = torch.cdist(px.double(), colours.double())
    chosen = dist.gather(2, torch.from_numpy(idx.reshape(len(images), -1, 1)).long())[..., 0]
    assert torch.all(chosen <= dist.min(2).values + 1e-6)


def test_kmeans_beats_median_cut_on_its_own_objective(images):
    """K-means in RGB minimises squared RGB error; it should not lose to Median Cut on that objective."""
    err = {}
    for method in ("kmeans_rgb", "median_cut"):
        idx, pal = quantize_block(images, method, 2, iterations=20, seed=0)
        err[method] = ((decode(idx, pal).astype(float) - images) ** 2).mean()
    assert err["kmeans_rgb"] <= err["median_cut"]


def test_deterministic(images):
    a = quantize_block(images, "kmeans_lab", 2, iterations=10, seed=3)
    b = quantize_block(images, "kmeans_lab", 2, iterations=10, seed=3)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_flat_image_pads_its_palette():
    flat = np.full((1, 8, 8, 3), 77, np.uint8)
    for method in AVAILABLE:
        idx, pal = quantize_block(flat, method, 2)
        assert (decode(idx, pal) == 77).all(), method


def test_unknown_method_is_an_error():
    with pytest.raises(ParamsError, match="'popularity' is not a per-image quantizer"):
        check_quantizer("popularity")
    assert check_quantizer("libimagequant") == "libimagequant"
