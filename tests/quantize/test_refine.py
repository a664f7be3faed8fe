import numpy as np
import torch
import zarr

from pipeline.quantize import refine, refine_store
from pipeline.quantize.refine import (
    chunked_loss,
    edge_loss,
    edge_maps,
    image_chunks,
    quantize,
    refine_loss,
    refine_palettes,
    sobel_magnitude,
)
from pipeline.quantize.refine_store import sample_cluster_images, stored_lab


def test_sobel_is_zero_on_flat_and_positive_on_an_edge():
    flat = torch.full((1, 3, 8, 8), 50.0)
    assert sobel_magnitude(flat).max() < 1e-2
    step = flat.clone()
    step[..., 4:] = 0.0
    assert sobel_magnitude(step)[..., 3:5].min() > 100


def test_refinement_lowers_edge_loss_below_kmeans_on_real_images(small_run):
    prep = zarr.open_group(str(small_run.prepared), mode="r")
    assign = zarr.open_group(str(small_run.clusters), mode="r")["assignments"][:].astype(np.int64)
    weights = torch.ones(3)
    for q in (1, 2):
        kmeans = torch.from_numpy(zarr.open_group(str(small_run.palettes(q)), mode="r")["palettes"][:])
        imgs, active = sample_cluster_images(prep["train/images"], assign, len(kmeans), 8, seed=0)
        start = stored_lab(kmeans)
        best, before, after = refine_palettes(imgs, start, weights, steps=30, lr=0.5, active=active)
        assert torch.all(after <= before)
        assert after[active].mean() < before[active].mean()
        # The returned losses are the true losses of the returned palettes.
        recomputed = edge_loss(edge_maps(imgs), quantize(imgs, best), weights)
        torch.testing.assert_close(recomputed, after, rtol=1e-4, atol=1e-3)


def test_stage_records_loss_before_and_after(small_run):
    for q in (1, 2):
        root = zarr.open_group(str(small_run.refined(q)), mode="r")
        before, after = root["loss_before"][:], root["loss_after"][:]
        assert np.all(after <= before) and after.mean() < before.mean()


def test_gradient_reaches_only_used_palette_entries():
    imgs = torch.rand(1, 2, 3, 8, 8) * 100
    palette = torch.nn.Parameter(torch.tensor([[[0.0, 0, 0], [50, 0, 0], [1000, 0, 0]]]))
    edge_loss(edge_maps(imgs), quantize(imgs, palette), torch.ones(3)).sum().backward()
    assert palette.grad[0, 2].abs().sum() == 0  # never nearest
    assert palette.grad[0, :2].abs().sum() > 0


def test_sobel_matches_the_conv2d_definition():
    x = torch.rand(4, 3, 16, 16) * 100
    kx = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]])
    kernels = torch.stack([kx, kx.T]).unsqueeze(1).repeat(3, 1, 1, 1)
    g = torch.nn.functional.conv2d(torch.nn.functional.pad(x, (1, 1, 1, 1), mode="replicate"), kernels, groups=3)
    ref = torch.sqrt(g[:, 0::2] ** 2 + g[:, 1::2] ** 2 + 1e-6)
    torch.testing.assert_close(sobel_magnitude(x), ref, rtol=1e-5, atol=1e-4)


def _real_lab(small_run, q: int = 2, per_cluster: int = 8):
    prep = zarr.open_group(str(small_run.prepared), mode="r")
    assign = zarr.open_group(str(small_run.clusters), mode="r")["assignments"][:].astype(np.int64)
    kmeans = torch.from_numpy(zarr.open_group(str(small_run.palettes(q)), mode="r")["palettes"][:])
    imgs, active = sample_cluster_images(prep["train/images"], assign, len(kmeans), per_cluster, seed=0)
    return imgs, stored_lab(kmeans), active


def test_image_chunks_cover_the_image_axis_within_the_pixel_budget():
    imgs = torch.zeros(3, 10, 3, 4, 4)  # 3 groups x 16 pixels: 48 pixels per image index
    assert image_chunks(imgs, 10_000) == [slice(0, 10)]
    assert image_chunks(imgs, 100) == [slice(0, 2), slice(2, 4), slice(4, 6), slice(6, 8), slice(8, 10)]
    assert image_chunks(imgs, 1) == [slice(i, i + 1) for i in range(10)]  # never less than one image
    assert image_chunks(torch.zeros(20, 64, 3, 32, 32)) == [slice(0, 64)]  # the main job: one chunk, as before


def test_edge_maps_by_chunk_are_the_same_bits(small_run):
    imgs, _, _ = _real_lab(small_run)
    assert torch.equal(edge_maps(imgs, image_chunks(imgs, 3 * imgs.shape[0] * 32 * 32)), edge_maps(imgs))


def test_a_chunked_step_gives_the_loss_and_gradient_of_the_whole_step(small_run):
    """Real images in 3-image chunks: the loss and the palettes' gradient equal the one-graph step's up to float
    rounding, with and without the fidelity term."""
    imgs, start, _ = _real_lab(small_run)
    weights = torch.tensor([1.0, 0.5, 2.0])
    chunks = image_chunks(imgs, 3 * imgs.shape[0] * 32 * 32)
    assert len(chunks) == 3
    edges = edge_maps(imgs)
    for fidelity in (0.0, 10.0):
        whole = torch.nn.Parameter(start.clone())
        loss = refine_loss(imgs, edges, quantize(imgs, whole), weights, fidelity)
        loss.sum().backward()
        parts = torch.nn.Parameter(start.clone())
        chunked = chunked_loss(imgs, edges, parts, weights, fidelity, chunks, backward=True)
        torch.testing.assert_close(chunked, loss.detach(), rtol=1e-5, atol=1e-4)
        torch.testing.assert_close(parts.grad, whole.grad, rtol=1e-4, atol=1e-5)
        assert whole.grad.abs().sum() > 0


def test_refinement_in_chunks_follows_the_one_graph_refinement(small_run, monkeypatch):
    imgs, start, active = _real_lab(small_run)
    weights = torch.ones(3)
    best, before, after = refine_palettes(imgs, start, weights, steps=10, lr=0.5, active=active)
    monkeypatch.setattr(refine, "STEP_PIXELS", 3 * imgs.shape[0] * 32 * 32)
    assert len(image_chunks(imgs)) == 3
    best_c, before_c, after_c = refine_palettes(imgs, start, weights, steps=10, lr=0.5, active=active)
    torch.testing.assert_close(before_c, before, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(after_c, after, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(best_c, best, rtol=0, atol=1e-3)
    assert torch.all(after_c <= before_c) and after_c[active].mean() < before_c[active].mean()


def test_sampled_images_converted_in_chunks_are_the_same_bits(small_run, monkeypatch):
    prep = zarr.open_group(str(small_run.prepared), mode="r")
    assign = zarr.open_group(str(small_run.clusters), mode="r")["assignments"][:].astype(np.int64)
    whole, active = sample_cluster_images(prep["train/images"], assign, int(assign.max()) + 1, 8, seed=0)
    monkeypatch.setattr(refine_store, "STEP_PIXELS", 5 * 32 * 32)  # 5 images at a time, across clusters
    chunked, active_c = sample_cluster_images(prep["train/images"], assign, int(assign.max()) + 1, 8, seed=0)
    assert torch.equal(chunked, whole) and torch.equal(active_c, active)
