"""AutoPalette's palette network and losses, graph-cut initialisation, and MTT-LSS's low-rank set."""

import numpy as np
import pytest
import torch

from pipeline.distill import autopalette as ap
from pipeline.distill.synthetic import LowRankSet, progressive_start
from pipeline.io.train_sets import load_split
from pipeline.models.inputs import Normalization, to_input
from pipeline.models.registry import create_model


@pytest.fixture(scope="module")
def real(small_run):
    images, labels, _ = load_split(small_run.prepared, "train")
    x = to_input(images[:8], Normalization.from_images(images.numpy())).contiguous()
    return images[:8], labels[:8], x


@pytest.mark.parametrize("colours", [2, 4, 16])
def test_palette_network_gives_at_most_k_levels_and_gradients_reach_images_and_network(real, colours):
    _, _, x = real
    torch.manual_seed(0)
    net = ap.PaletteNet(3, colours, hidden=32)
    base = x.clone().requires_grad_(True)
    probs = net(base)
    assert probs.shape == (8, 3, colours, 32, 32)
    torch.testing.assert_close(probs.sum(2), torch.ones(8, 3, 32, 32))
    image, palette, idx = ap.quantize(base, probs)
    for n in range(8):
        for c in range(3):
            assert len(torch.unique(image[n, c].detach())) <= colours
    # the forward image is exactly the stored form: palette[index]
    torch.testing.assert_close(image.detach(), palette.gather(2, idx.flatten(2)).view_as(x).detach())
    loss = image.square().mean() + ap.max_colour_loss(probs) + ap.palette_balance_loss(probs)
    loss.backward()
    assert base.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


def test_auxiliary_losses_prefer_used_and_balanced_buckets():
    k = 4
    collapsed = torch.zeros(1, 1, k, 4, 4)
    collapsed[:, :, 0] = 1.0
    balanced = torch.zeros(1, 1, k, 4, 4)
    for b in range(k):
        balanced[0, 0, b, b] = 1.0  # bucket b owns row b
    assert ap.max_colour_loss(balanced) < ap.max_colour_loss(collapsed)
    assert ap.palette_balance_loss(balanced) < ap.palette_balance_loss(collapsed)


def test_alignment_loss_ignores_bucket_order(real):
    images, _, _ = real
    ref = torch.from_numpy(ap.median_cut_indices(images.numpy(), 4))
    same = torch.nn.functional.one_hot(ref, 4).permute(0, 3, 1, 2).float().unsqueeze(1).repeat(1, 3, 1, 1, 1)
    permuted = same[:, :, [2, 0, 3, 1]]
    pixels = torch.arange(0, 1024, 7)
    assert float(ap.alignment_loss(same, ref, pixels)) == pytest.approx(0.0, abs=1e-6)
    assert float(ap.alignment_loss(permuted, ref, pixels)) == pytest.approx(0.0, abs=1e-6)
    flat = torch.full_like(same, 0.25)
    assert float(ap.alignment_loss(flat, ref, pixels)) > 1.0


def test_graph_cut_picks_distinct_diverse_samples():
    """Two tight groups of near-duplicates and one group elsewhere: choosing 2 takes one from each side
    rather than two near-duplicates."""
    feats = torch.tensor([[1.0, 0.0], [0.99, 0.14], [0.98, 0.2], [0.0, 1.0], [0.1, 0.99]])
    feats = torch.nn.functional.normalize(feats, dim=1)
    sim = feats @ feats.T
    chosen = ap.graph_cut_select(sim, 2)
    assert len(set(chosen)) == 2
    assert {c < 3 for c in chosen} == {True, False}
    assert sorted(ap.graph_cut_select(sim, 5)) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="cannot select 6 of 5"):
        ap.graph_cut_select(sim, 6)


def test_gradient_similarity_on_real_images(real):
    _, labels, x = real
    torch.manual_seed(0)
    sim = ap.gradient_similarity(create_model("convnetd3", 10, 32), x, labels)
    assert sim.shape == (8, 8)
    torch.testing.assert_close(sim.diagonal(), torch.ones(8))
    picks = ap.graph_cut_select(sim, 3)
    assert len(set(picks)) == 3


def test_low_rank_set_shape_storage_and_gradients(real):
    _, labels, x = real
    lss = LowRankSet(x, labels, 10, sets=2, rank=8)
    images, soft = lss()
    assert images.shape == x.shape and soft.shape == (8, 10)
    torch.testing.assert_close(soft.sum(1), torch.ones(8))
    assert int(soft.argmax(1).eq(labels).all())
    assert lss.stored_values() == 2 * 3 * 32 * 8 * 2 + 8 * 3 * 8 * 8 + 8 * 10
    # fewer numbers than the images it stands for, and a fair reconstruction of real images
    assert lss.stored_values() < x.numel()
    assert (images - x).square().mean() < x.square().mean()
    (images.square().mean() + soft[:, 0].sum()).backward()
    assert all(p.grad is not None for p in lss.parameters())


def test_shared_subspaces_reconstruct_real_images_better_than_the_mean_image_svd(real):
    """The mappers start from every image of the set: orthonormal, and a lower reconstruction error of the
    images than the top singular vectors of their mean image (the blurry blob a whole set averages to)."""
    from pipeline.distill.synthetic import shared_subspaces

    _, _, x = real
    x = x.double()

    def error(u, v):
        rec = u.unsqueeze(0) @ (u.transpose(-1, -2).unsqueeze(0) @ x @ v.unsqueeze(0)) @ v.transpose(-1, -2).unsqueeze(0)
        return float((rec - x).square().sum() / x.square().sum())

    u, v = shared_subspaces(x, 4)
    assert u.shape == (3, 32, 4) and v.shape == (3, 32, 4)
    torch.testing.assert_close(u.transpose(-1, -2) @ u, torch.eye(4, dtype=torch.float64).expand(3, 4, 4))
    svd_u, _, svd_vh = torch.linalg.svd(x.mean(0))
    assert error(u, v) < 0.9 * error(svd_u[..., :4], svd_vh.transpose(-1, -2)[..., :4])


def test_progressive_start_grows_and_stays_in_range():
    rng = np.random.default_rng(0)
    starts = [progressive_start(it, 1000, 20, 2, 4, rng) for it in range(1000)]
    assert min(starts) >= 0 and max(starts) < 20
    assert np.mean(starts[:100]) < np.mean(starts[-100:])


def test_warm_up_spreads_real_images_over_more_levels(real):
    """The auxiliary losses alone (max-colour + balance) make an untrained network use more of its K levels."""
    _, _, x = real
    torch.manual_seed(0)
    net = ap.PaletteNet(3, 16, hidden=32)
    with torch.no_grad():
        before = ap.levels_used(net(x))
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    losses = ap.warm_up(net, x, lambda p: ap.max_colour_loss(p) + ap.palette_balance_loss(p), opt, steps=30)
    with torch.no_grad():
        after = ap.levels_used(net(x))
    assert len(losses) == 30 and losses[-1] < losses[0]
    assert 1 <= before < after <= 16
    assert ap.warm_up(net, x, ap.max_colour_loss, opt, steps=0) == []


def test_identity_straight_through_passes_the_upstream_gradient_to_the_pixels(real):
    """Same forward value either way; "identity" adds exactly the upstream gradient to the blend's, so pixels
    keep learning when the assignment is confident; the network's gradient is the blend's in both."""
    _, _, x = real
    torch.manual_seed(0)
    net = ap.PaletteNet(3, 8, hidden=16)
    upstream = torch.randn_like(x)
    grads, images = {}, {}
    for mode in ("blend", "identity"):
        base = x.clone().requires_grad_(True)
        net.zero_grad()
        image, _, _ = ap.quantize(base, net(base), mode)
        (image * upstream).sum().backward()
        grads[mode] = (base.grad.clone(), [p.grad.clone() for p in net.parameters()])
        images[mode] = image.detach()
    torch.testing.assert_close(images["identity"], images["blend"])
    torch.testing.assert_close(grads["identity"][0] - grads["blend"][0], upstream)
    for a, b in zip(grads["identity"][1], grads["blend"][1]):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="pixel_gradient='sign'"):
        ap.quantize(x, net(x), "sign")
