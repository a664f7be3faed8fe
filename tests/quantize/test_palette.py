import numpy as np
import torch

from pipeline.quantize.bitpack import unpack
from pipeline.quantize.color import rgb_to_lab
from pipeline.quantize.encode_store import encode_block
from pipeline.quantize.palette import fit_palette, nearest


def test_cluster_with_fewer_colours_than_the_palette(small_run):
    import zarr

    images = zarr.open_group(str(small_run.prepared), mode="r")["train/images"][:4]
    posterized = (images // 128 * 255).astype(np.uint8)  # at most 8 distinct colours
    pixels = posterized.reshape(-1, 3)
    distinct = len(np.unique(pixels, axis=0))
    palette, n = fit_palette(pixels, 64, iterations=5, seed=0, max_pixels=None)
    assert n == distinct < 64 and palette.shape == (64, 3)
    packed = encode_block(torch.from_numpy(posterized), torch.zeros(4, dtype=torch.long),
                          torch.from_numpy(palette)[None], 6)
    used = np.unique(unpack(packed, 6, 1024))
    assert used.max() < distinct  # padded entries are never chosen
    np.testing.assert_allclose(palette[:distinct], rgb_to_lab(torch.from_numpy(np.unique(pixels, axis=0))).numpy())


def test_empty_cluster_and_kmeans_sizes(small_run):
    pal, n = fit_palette(np.zeros((0, 3), np.uint8), 4, 5, 0, None)
    assert n == 0 and pal.shape == (4, 3)
    rng = np.random.default_rng(0)
    pal, n = fit_palette(rng.integers(0, 256, (5000, 3), dtype=np.uint8), 16, 10, 0, max_pixels=1000)
    assert n == 16 and len(np.unique(pal.round(3), axis=0)) == 16


def test_nearest_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    lab = torch.rand(3, 500, 3, generator=g) * 100
    pal = torch.rand(3, 8, 3, generator=g) * 100
    brute = torch.cdist(lab.double(), pal.double()).argmin(-1)
    assert torch.equal(nearest(lab, pal, max_elements=1000), brute)
