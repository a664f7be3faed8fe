"""Luma and chroma apart on real CIFAR-10 images: the decoder's pieces (patch grids, bilinear upsampling, LAB to
sRGB) against references, the encoder's assignment against brute force, and more bits decode closer."""

from __future__ import annotations

import numpy as np
import torch
import zarr

from pipeline.io import luma_chroma_store as store_io
from pipeline.quantize import luma_chroma as lc
from pipeline.quantize.color import lab_to_rgb_u8, rgb_to_lab


def real_images(small_run, n=64) -> np.ndarray:
    return zarr.open_group(str(small_run.prepared), mode="r")["train/images"][:n]


def test_patch_grids_round_trip(small_run):
    images = real_images(small_run)
    for patch in ((4, 4), (2, 4), (1, 1), (32, 32)):
        patches = store_io.grid_patches(images, patch)
        assert patches.shape == (len(images), 1024 // (patch[0] * patch[1]), patch[0] * patch[1] * 3)
        np.testing.assert_array_equal(store_io.from_grid_patches(patches, patch, (32, 32)), images)


def test_upsampling_is_torch_bilinear_with_half_pixel_centres():
    grid = np.random.default_rng(0).normal(size=(3, 4, 8, 2)).astype(np.float32)
    for factor in (1, 2, 4, 8):
        ours = store_io.upsample_bilinear(grid, factor)
        ref = torch.nn.functional.interpolate(torch.from_numpy(grid).permute(0, 3, 1, 2), scale_factor=factor,
                                              mode="bilinear", align_corners=False).permute(0, 2, 3, 1).numpy()
        np.testing.assert_allclose(ours, ref, atol=1e-5)
    flat = np.full((1, 2, 2, 2), 7.5, np.float32)
    np.testing.assert_allclose(store_io.upsample_bilinear(flat, 8), 7.5)


def test_lab_to_srgb_equals_the_torch_conversion_in_and_out_of_gamut(small_run):
    lab = rgb_to_lab(torch.from_numpy(real_images(small_run))).numpy()
    noisy = lab + np.random.default_rng(1).normal(0, 25, lab.shape).astype(np.float32)
    for x in (lab, noisy):
        np.testing.assert_array_equal(store_io.lab_to_srgb_u8(x), lab_to_rgb_u8(torch.from_numpy(x)).numpy())
    np.testing.assert_array_equal(store_io.lab_to_srgb_u8(lab), real_images(small_run))  # sRGB u8 round-trips


def test_each_patch_gets_its_nearest_stored_codeword(small_run):
    images = real_images(small_run)
    g = lc.Geometry((4, 4), 5, 4, (2, 2), 4)
    luma, chroma = lc.luma_chroma_vectors(images, g)
    books = lc.fit_codebooks(luma.reshape(-1, 16), chroma.reshape(-1, 8), g, 5, 0)
    assert books[0].dtype == np.uint8 and books[0].shape == (32, 4, 4)
    assert books[1].dtype == np.int8 and books[1].shape == (16, 2, 2, 2)
    codes = lc.Assigner(*books, g).codes(images)
    for vectors, words, found in zip((luma, chroma), store_io.dequantized(*books), codes):
        dist = ((vectors[:, :, None, :] - words[None, None]) ** 2).sum(-1)
        np.testing.assert_allclose(np.take_along_axis(dist, found[..., None], -1)[..., 0], dist.min(-1), rtol=1e-5)


def test_more_bits_decode_closer(small_run):
    images = real_images(small_run, 160)
    errors = []
    for luma_bits, chroma_bits in ((3, 2), (6, 5), (9, 8)):
        g = lc.Geometry((4, 4), luma_bits, 4, (2, 2), chroma_bits)
        luma, chroma = lc.luma_chroma_vectors(images, g)
        books = lc.fit_codebooks(luma.reshape(-1, 16), chroma.reshape(-1, 8), g, 10, 0)
        codes = lc.Assigner(*books, g).codes(images)
        decoded = store_io.reconstruct(*codes, *books, (32, 32), 4)
        errors.append(np.abs(decoded.astype(int) - images).mean())
    assert errors[0] > errors[1] > errors[2]
