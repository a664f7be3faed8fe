import numpy as np
import pytest
import torch
from skimage.color import lab2rgb, rgb2lab

from pipeline.io.sources import list_imagefolder, load_image
from pipeline.quantize.color import lab_to_rgb, lab_to_rgb_u8, rgb_to_lab


@pytest.fixture(scope="module")
def real_pixels(cifar10):
    listing = list_imagefolder(cifar10, "train")
    rows = np.random.default_rng(0).choice(len(listing), 40, replace=False)
    return np.stack([load_image(listing.files[r], 32, "reject") for r in rows])


def test_rgb_to_lab_matches_skimage_on_real_images(real_pixels):
    ours = rgb_to_lab(torch.from_numpy(real_pixels)).numpy()
    ref = rgb2lab(real_pixels)
    assert np.abs(ours - ref).max() < 1e-4


def test_rgb_to_lab_matches_skimage_on_every_corner_and_random_colours():
    rng = np.random.default_rng(1)
    colours = np.concatenate([rng.integers(0, 256, (5000, 3)), np.array(np.meshgrid(*[[0, 1, 2, 128, 254, 255]] * 3)).reshape(3, -1).T])
    colours = colours.astype(np.uint8)[None]
    assert np.abs(rgb_to_lab(torch.from_numpy(colours)).numpy() - rgb2lab(colours)).max() < 1e-4


def test_lab_to_rgb_matches_skimage_and_round_trips(real_pixels):
    lab = rgb2lab(real_pixels)
    ours = lab_to_rgb(torch.from_numpy(lab)).numpy()
    assert np.abs(ours - lab2rgb(lab)).max() < 1e-4
    back = lab_to_rgb_u8(torch.from_numpy(lab)).numpy()
    np.testing.assert_array_equal(back, real_pixels)
