"""Shared patch codebooks on real CIFAR-10 images: patches and codes round-trip exactly, the codebook is seeded,
and every patch gets its nearest codeword among what is decoded."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.errors import ParamsError
from pipeline.io.patch_store import decode_codes, from_patches, pack_codes, packed_code_bytes, unpack_codes
from pipeline.quantize.color import rgb_to_lab
from pipeline.quantize.patch_vq import Assigner, check_patch, fit_codebook, lab_patches, to_patches


@pytest.fixture(scope="module")
def images(small_run) -> np.ndarray:
    import zarr

    return zarr.open_group(str(small_run.prepared), mode="r")["train/images"][:64]


@pytest.mark.parametrize("bits", [1, 3, 8, 9, 12, 16])
def test_codes_pack_and_unpack_exactly_at_every_width(bits):
    codes = np.random.default_rng(bits).integers(0, 1 << bits, size=(5, 37))
    packed = pack_codes(codes, bits)
    assert packed.shape == (5, packed_code_bytes(37, bits)) and packed.dtype == np.uint8
    np.testing.assert_array_equal(unpack_codes(packed, bits, 37), codes)
    with pytest.raises(ValueError, match=f"does not fit in {bits} bits"):
        pack_codes(codes + (1 << bits), bits)


@pytest.mark.parametrize("patch", [(4, 4), (4, 2), (2, 2), (1, 8), (32, 32)])
def test_patches_round_trip_real_images(images, patch):
    parts = to_patches(images, patch)
    assert parts.shape == (len(images), (32 // patch[0]) * (32 // patch[1]), patch[0] * patch[1] * 3)
    np.testing.assert_array_equal(from_patches(parts, patch, (32, 32)), images)


def test_a_patch_that_does_not_divide_the_image_is_refused():
    assert check_patch((4, 2), (32, 32)) == (4, 2)
    for bad in ((3, 4), (0, 4), (64, 4)):
        with pytest.raises(ParamsError, match="whole patches"):
            check_patch(bad, (32, 32), "patch_vq.patch[1]")


def test_the_codebook_is_seeded_and_every_patch_gets_its_nearest_decoded_codeword(images):
    vectors = lab_patches(images, (4, 4)).reshape(-1, 48)
    codebook = fit_codebook(vectors, (4, 4), 5, iterations=8, seed=3)
    assert codebook.shape == (32, 4, 4, 3) and codebook.dtype == np.uint8
    np.testing.assert_array_equal(codebook, fit_codebook(vectors, (4, 4), 5, iterations=8, seed=3))
    codes = Assigner(codebook).codes(images)
    assert codes.shape == (len(images), 64) and 0 <= codes.min() and codes.max() < 32
    # brute force in LAB against the decoded (sRGB-rounded) codewords
    words = rgb_to_lab(torch.from_numpy(codebook)).numpy().reshape(32, -1).astype(np.float64)
    dist = ((vectors[:, None, :].astype(np.float64) - words[None]) ** 2).sum(-1)
    best = dist.min(1)
    chosen = dist[np.arange(len(dist)), codes.reshape(-1)]
    np.testing.assert_allclose(chosen, best, rtol=1e-4, atol=1e-3)
    decoded = decode_codes(codes, codebook, (32, 32))
    assert decoded.shape == images.shape and decoded.dtype == np.uint8
    # more codewords decode closer to the originals
    richer = fit_codebook(vectors, (4, 4), 8, iterations=8, seed=3)
    err = [float(((decode_codes(Assigner(c).codes(images), c, (32, 32)).astype(float) - images) ** 2).mean())
           for c in (codebook, richer)]
    assert err[1] < err[0]
