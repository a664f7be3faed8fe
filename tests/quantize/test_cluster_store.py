"""The cluster store on real CIFAR-10 features: K-means on every image, or fitted on a seeded sample and assigned
block by block (`cluster.train_images`: memory flat in N)."""

import numpy as np
import pytest
import zarr

from pipeline.errors import ParamsError
from pipeline.io.arrays import open_group
from pipeline.quantize.cluster_store import ClusterParams, write_clusters, write_sampled_clusters
from tests.conftest import BASE


def read(store):
    root = zarr.open_group(str(store), mode="r")
    return root["assignments"][:], root["centroids"][:], root["sizes"][:], dict(root.attrs)


def test_a_sampled_fit_assigns_every_image_to_its_nearest_centroid(small_run, tmp_path):
    params = ClusterParams(k=4, iterations=10, n_init=1, train_images=60)
    write_clusters(params, BASE, small_run.features, tmp_path / "a.zarr")
    assign, centroids, sizes, attrs = read(tmp_path / "a.zarr")
    feats = zarr.open_group(str(small_run.features), mode="r")["features"][:].astype(np.float64)
    x = (feats - feats.mean(0)) / np.maximum(feats.std(0), 1e-6)  # the whole set's statistics
    distances = ((x[:, None, :] - centroids[None].astype(np.float64)) ** 2).sum(2)
    assert len(assign) == len(feats) == 160 and assign.dtype == np.int32
    assert (distances[np.arange(160), assign] <= distances.min(1) + 1e-3).all()
    assert sizes.tolist() == np.bincount(assign, minlength=4).tolist() and sizes.min() >= 1
    assert attrs["inertia"] == pytest.approx(distances.min(1).sum(), rel=1e-4)
    assert attrs["params"]["cluster"]["train_images"] == 60 and attrs["train_images"] == 60
    write_clusters(params, BASE, small_run.features, tmp_path / "b.zarr")  # seeded: the same store again
    for got, again in zip(read(tmp_path / "a.zarr")[:3], read(tmp_path / "b.zarr")[:3]):
        assert np.array_equal(got, again)


def test_a_sample_as_large_as_the_set_is_the_exact_fit(small_run, tmp_path):
    exact, whole = ClusterParams(k=4, iterations=10, n_init=1), ClusterParams(k=4, iterations=10, n_init=1,
                                                                              train_images=160)
    write_clusters(exact, BASE, small_run.features, tmp_path / "exact.zarr")
    write_clusters(whole, BASE, small_run.features, tmp_path / "whole.zarr")
    for got, expected in zip(read(tmp_path / "whole.zarr")[:3], read(tmp_path / "exact.zarr")[:3]):
        assert np.array_equal(got, expected)
    assert "train_images" not in read(tmp_path / "exact.zarr")[3]["params"]["cluster"]  # off: not recorded


def test_a_sample_smaller_than_k_is_refused():
    with pytest.raises(ParamsError, match="train_images=3 must be 0 \\(every image\\) or >= k=4"):
        ClusterParams(k=4, train_images=3)


def test_the_block_size_changes_nothing(small_run, tmp_path):
    params = ClusterParams(k=4, iterations=10, n_init=1, train_images=60)
    write_clusters(params, BASE, small_run.features, tmp_path / "a.zarr")
    write_sampled_clusters(params, BASE, open_group(small_run.features, "features"), tmp_path / "b.zarr", False, 7)
    a, b = read(tmp_path / "a.zarr"), read(tmp_path / "b.zarr")
    for got, expected in zip(b[:3], a[:3]):
        assert np.array_equal(got, expected)
    assert b[3]["inertia"] == pytest.approx(a[3]["inertia"], rel=1e-9)
