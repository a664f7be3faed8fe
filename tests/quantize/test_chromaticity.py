"""The chromaticity measure on real CIFAR-10 images: a random partition explains almost none of the colour
variance, K-means on the images' mean colour most of it, and every cluster store and DCQ store carries it."""

import numpy as np
import pytest
import zarr

from pipeline.io.arrays import open_group
from pipeline.quantize.chromaticity import chromaticity, explained_share, mean_lab
from pipeline.quantize.kmeans import faiss_kmeans


@pytest.fixture(scope="module")
def lab(small_run) -> np.ndarray:
    return mean_lab(open_group(small_run.prepared, "prepared store")["train/images"], block=64)


def test_mean_lab_is_each_images_mean_colour_whatever_the_block(small_run, lab):
    from skimage.color import rgb2lab

    images = open_group(small_run.prepared, "prepared store")["train/images"][:5]
    expected = rgb2lab(images / 255.0).reshape(5, -1, 3).mean(1)
    np.testing.assert_allclose(lab[:5], expected, rtol=1e-10, atol=1e-10)
    np.testing.assert_array_equal(mean_lab(open_group(small_run.prepared, "prepared store")["train/images"],
                                           block=7), lab)
    assert lab[:, 0].min() >= 0 and lab[:, 0].max() <= 100


def test_a_random_partition_explains_almost_nothing_and_kmeans_on_colour_most(lab):
    k = 8
    random = np.random.default_rng(0).permutation(len(lab)) % k
    _, by_colour = faiss_kmeans(np.ascontiguousarray(lab[:, 1:], np.float32), k, 25, 0)
    low, high = chromaticity(lab, random, k), chromaticity(lab, by_colour, k)
    assert low["ab"] < 0.15 and high["ab"] > 0.7 and high["ab"] > low["ab"]
    assert 0.0 <= low["L"] <= 1.0 and 0.0 <= high["L"] <= 1.0


def test_explained_share_ends():
    values = np.array([[1.0, 2.0], [1.0, 2.0], [5.0, 0.0], [5.0, 0.0]])
    assert explained_share(values, np.array([0, 0, 1, 1]), 2) == pytest.approx(1.0)
    assert explained_share(values, np.array([0, 0, 0, 0]), 1) == pytest.approx(0.0)
    assert explained_share(np.ones((4, 2)), np.array([0, 1, 0, 1]), 2) == 0.0  # no variance: nothing to explain


def test_the_cluster_store_and_the_dcq_stores_carry_the_measure(small_run, lab):
    attrs = dict(zarr.open_group(str(small_run.clusters), mode="r").attrs)
    assignments = open_group(small_run.clusters, "cluster store")["assignments"][:].astype(np.int64)
    k = int(assignments.max()) + 1
    assert attrs["chromaticity"] == chromaticity(lab, assignments, k)
    for q in (1, 2):
        dcq = dict(zarr.open_group(str(small_run.dcq(q)), mode="r").attrs)
        assert dcq["cluster_chromaticity"] == attrs["chromaticity"]
