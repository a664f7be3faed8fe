"""Expert trajectories and trajectory matching on a small real CIFAR-10 subset."""

import numpy as np
import pytest
import torch
import zarr

from pipeline.distill import mtt
from pipeline.distill.dsa import DSAParams
from pipeline.distill.experts import ExpertStore
from pipeline.distill.synthetic import PixelSet
from pipeline.errors import StoreError
from pipeline.io.train_sets import load_split
from pipeline.models.registry import create_model


def initial_set(store, small_run, ipc=2):
    images, labels, _ = load_split(small_run.prepared, "train")
    rows = np.concatenate([np.flatnonzero(labels.numpy() == c)[:ipc] for c in range(10)])
    return PixelSet(store.preprocess(images[rows]), labels[rows])


def test_expert_store_layout_and_trajectories_move(expert_store):
    store = ExpertStore(expert_store)
    assert (store.num_experts, store.num_snapshots) == (2, 5)
    model = create_model("convnetd3", 10, 32)
    assert store.num_params == sum(p.numel() for p in model.parameters())
    first, last = store.snapshot(0, 0), store.snapshot(0, 4)
    assert not torch.equal(first, last)
    assert not torch.equal(store.snapshot(0, 0), store.snapshot(1, 0))  # experts start apart
    root = zarr.open_group(str(expert_store), mode="r")
    assert root["trajectories"].chunks == (1, 1, store.num_params)
    assert len(store.attrs["test_accuracy"]) == 2 and "experts" in store.attrs["params"]


def test_mismatched_architecture_is_a_clear_error(expert_store):
    store = ExpertStore(expert_store)
    store.check_model("convnetd3", 10, 32, create_model("convnetd3", 10, 32))
    with pytest.raises(StoreError, match="arch='convnetd3' \\(asked: 'convnetd4'\\)"):
        store.check_model("convnetd4", 10, 32)
    with pytest.raises(StoreError, match="num_classes=10 \\(asked: 100\\)"):
        store.check_model("convnetd3", 100, 32)
    with pytest.raises(StoreError, match="no expert store"):
        ExpertStore(expert_store.parent / "missing.zarr")
    other = expert_store.parent / "other.zarr"
    zarr.open_group(str(other), mode="w").attrs["format"] = "something-else"
    with pytest.raises(StoreError, match="not a expert-trajectories-v1 store"):
        ExpertStore(other)


def test_zero_synthetic_steps_leave_the_loss_at_one(expert_store, small_run):
    store = ExpertStore(expert_store)
    synthetic = initial_set(store, small_run)
    images, targets = synthetic()
    model = create_model("convnetd3", 10, 32)
    loss = mtt.match_loss(model, store.spec, store.snapshot(0, 1), store.snapshot(0, 3), images, targets,
                          torch.tensor(0.01), 0, None, DSAParams(), seed=0)
    assert float(loss.detach()) == pytest.approx(1.0, abs=1e-6)


def test_matching_reduces_the_loss_and_moves_pixels_and_lr(expert_store, small_run):
    store = ExpertStore(expert_store)
    synthetic = initial_set(store, small_run)
    before = synthetic.images.detach().clone()
    model = create_model("convnetd3", 10, 32)
    params = mtt.MTTParams(iterations=6, syn_steps=5, expert_epochs=2, max_start_epoch=2, lr_img=100.0,
                           lr_lr=1e-5, lr_init=0.01)
    lr, losses = mtt.distill(store, model, synthetic, params, DSAParams(), seed=0)
    assert len(losses) == 6 and all(0 < v < 5 for v in losses)
    assert not torch.equal(synthetic.images.detach(), before)
    assert float(lr) != 0.01
    # a student stepping on the synthetic set gets closer to the target than one that stays put
    images, targets = synthetic()
    moved = mtt.match_loss(model, store.spec, store.snapshot(0, 0), store.snapshot(0, 2), images.detach(),
                           targets, lr, 5, None, DSAParams(strategy="none"), seed=1)
    assert float(moved.detach()) < 1.0


def test_start_epochs_beyond_the_trajectory_are_an_error(expert_store, small_run):
    store = ExpertStore(expert_store)
    with pytest.raises(ValueError, match="the experts have 4"):
        mtt.distill(store, create_model("convnetd3", 10, 32), initial_set(store, small_run),
                    mtt.MTTParams(iterations=1, expert_epochs=2, max_start_epoch=4), DSAParams(), 0)


def test_every_synthetic_parameter_needs_an_optimizer(expert_store, small_run):
    """A parameter left out of the optimizers would silently never learn (or, before, learned at lr_img)."""
    store = ExpertStore(expert_store)
    synthetic = initial_set(store, small_run)
    synthetic.extra = torch.nn.Parameter(torch.zeros(3))
    only_images = [torch.optim.SGD([synthetic.images], lr=1.0)]
    with pytest.raises(ValueError, match=r"\['extra'\] are in no optimizer"):
        mtt.distill(store, create_model("convnetd3", 10, 32), synthetic,
                    mtt.MTTParams(iterations=1, expert_epochs=1, max_start_epoch=1), DSAParams(), 0,
                    optimizers=only_images)


TINY = mtt.MTTParams(iterations=2, syn_steps=2, expert_epochs=1, max_start_epoch=3, lr_img=100.0)


def _distill_in_world(world, expert_store, prepared):
    store = ExpertStore(expert_store)
    images, labels, _ = load_split(prepared, "train")
    rows = np.concatenate([np.flatnonzero(labels.numpy() == c)[:1] for c in range(10)])
    synthetic = PixelSet(store.preprocess(images[rows]), labels[rows])
    lr, losses = mtt.distill(store, create_model("convnetd3", 10, 32), synthetic, TINY, DSAParams(), seed=3,
                             world=world)
    return {"images": synthetic.images.detach(), "lr": lr, "losses": torch.tensor(losses, dtype=torch.float64)}


def test_two_ranks_match_their_own_segments_and_stay_equal(expert_store, small_run, tmp_path):
    from pipeline.distributed import World
    from tests.conftest import run_in_world

    ranks = run_in_world(_distill_in_world, 2, tmp_path, expert_store, small_run.prepared)
    for key in ("images", "lr", "losses"):  # averaged gradients keep the copies equal
        assert torch.equal(ranks[0][key], ranks[1][key]), key
    one = _distill_in_world(World(), expert_store, small_run.prepared)
    assert not torch.equal(one["images"], ranks[0]["images"])  # rank 1's segments moved the set too
    # the first iteration's loss is the mean of the two segments each rank drew from the shared generator
    store = ExpertStore(expert_store)
    rng = np.random.default_rng(3)
    draws = [(int(rng.integers(store.num_experts)), int(rng.integers(TINY.max_start_epoch))) for _ in range(2)]
    images, labels, _ = load_split(small_run.prepared, "train")
    rows = np.concatenate([np.flatnonzero(labels.numpy() == c)[:1] for c in range(10)])
    x, y = store.preprocess(images[rows]), labels[rows]
    segments = [float(mtt.match_loss(create_model("convnetd3", 10, 32), store.spec, store.snapshot(e, t),
                                     store.snapshot(e, t + 1), x, y, torch.tensor(TINY.lr_init), TINY.syn_steps,
                                     None, DSAParams(), 3 * 100_003 + 1_000_000_007 * rank).detach())
                for rank, (e, t) in enumerate(draws)]
    assert float(ranks[0]["losses"][0]) == pytest.approx(np.mean(segments), rel=1e-5)
    assert float(one["losses"][0]) == pytest.approx(segments[0], rel=1e-5)
