"""Distribution matching, ZCA, the stored uint8 form of synthetic images, and the evaluation protocol."""

import numpy as np
import pytest
import torch

from pipeline.distill import dm
from pipeline.distill.dsa import DSAParams
from pipeline.distill.evaluate import EvalRecipe, real_accuracy, train_on_synthetic
from pipeline.distill.experts import preprocess, to_uint8
from pipeline.distill.synthetic import PixelSet
from pipeline.distill.zca import ZCA
from pipeline.io.train_sets import load_split
from pipeline.models.inputs import Normalization
from pipeline.models.registry import create_model


@pytest.fixture(scope="module")
def real(small_run):
    images, labels, _ = load_split(small_run.prepared, "train")
    return images, labels, Normalization.from_images(images.numpy())


@pytest.mark.parametrize("use_zca", [False, True])
def test_stored_uint8_round_trip(real, use_zca):
    images, _, norm = real
    zca = ZCA.fit(preprocess(images, norm, None), eps=0.1) if use_zca else None
    x = preprocess(images[:20], norm, zca)
    back = to_uint8(x, norm, zca)
    assert back.dtype == torch.uint8 and back.shape == images[:20].shape
    assert (back.int() - images[:20].int()).abs().max() <= 1


def test_zca_whitens(real):
    images, _, norm = real
    x = preprocess(images, norm, None)
    zca = ZCA.fit(x, eps=1e-3)
    white = zca(x).reshape(len(x), -1)
    # whitened data has much smaller off-diagonal covariance than the raw, strongly correlated pixels
    raw_corr = torch.corrcoef(x.reshape(len(x), -1)[:, :64].T).abs().mean()
    white_corr = torch.corrcoef(white[:, :64].T).abs().mean()
    assert white_corr < 0.5 * raw_corr


def test_distribution_matching_lowers_its_loss(real):
    images, labels, norm = real
    x = preprocess(images, norm, None)
    by_class = [x[labels == c] for c in range(10)]
    rows = np.concatenate([np.flatnonzero(labels.numpy() == c)[:1] for c in range(10)])
    torch.manual_seed(0)
    synthetic = PixelSet(torch.randn_like(x[rows]) * 0.5, labels[rows])
    initial = synthetic.images.detach().clone()

    def make(seed):
        torch.manual_seed(seed)
        return create_model("convnetd3", 10, 32)

    def loss_of(images):  # one fixed network and real batch, so before and after compare like with like
        return float(dm.dm_loss(make(12345), by_class, images, labels[rows], DSAParams(strategy="none"), 0, 32,
                                torch.Generator().manual_seed(0)).detach())

    losses = dm.distill(make, by_class, synthetic, dm.DMParams(iterations=10, lr_img=1.0, batch_real=32),
                        DSAParams(strategy="none"), seed=0)
    assert len(losses) == 10 and all(np.isfinite(losses))
    assert loss_of(synthetic.images.detach()) < loss_of(initial)


def test_evaluation_protocol_learns_from_real_images(real, small_run):
    images, labels, norm = real
    test_u8, test_y, _ = load_split(small_run.prepared, "test")
    torch.manual_seed(0)
    model = create_model("convnetd3", 10, 32)
    train_on_synthetic(model, preprocess(images, norm, None), labels, EvalRecipe(epochs=12, batch_size=64),
                       DSAParams(), seed=0)
    assert real_accuracy(model, preprocess(images, norm, None), labels) > 25.0  # learns its train set (chance: 10%)
    assert 0.0 <= real_accuracy(model, preprocess(test_u8, norm, None), test_y) <= 100.0


def _dm_in_world(world, prepared):
    from pipeline.distill.experts import preprocess as to_input

    images, labels, _ = load_split(prepared, "train")
    norm = Normalization.from_images(images.numpy())
    x, y = to_input(images, norm, None), labels
    rows = np.concatenate([np.flatnonzero(labels.numpy() == c)[:1] for c in range(10)])
    synthetic = PixelSet(to_input(images[rows], norm, None), labels[rows])

    def make(seed):
        torch.manual_seed(seed)
        return create_model("convnetd3", 10, 32)

    by_class = [x[y == c][slice(*world.shard(int((y == c).sum())))] for c in range(10)]
    losses = dm.distill(make, by_class, synthetic, dm.DMParams(iterations=2, batch_real=8),
                        DSAParams(), seed=5, world=world)
    return {"images": synthetic.images.detach(), "losses": torch.tensor(losses, dtype=torch.float64)}


def test_dm_two_ranks_average_into_one_synthetic_set(small_run, tmp_path):
    from pipeline.distributed import World
    from tests.conftest import run_in_world

    ranks = run_in_world(_dm_in_world, 2, tmp_path, small_run.prepared)
    assert torch.equal(ranks[0]["images"], ranks[1]["images"]) and torch.equal(ranks[0]["losses"], ranks[1]["losses"])
    one = _dm_in_world(World(), small_run.prepared)
    assert not torch.equal(one["images"], ranks[0]["images"])
    assert np.isfinite(ranks[0]["losses"].numpy()).all()
