"""Training-dynamics scores: hand-checked values, and the real proxy run on a small CIFAR-10 subset."""

import numpy as np
import pytest
import torch
import zarr

from pipeline.prune.dynamics import SCORES, TrainingDynamics, importance


def test_scores_from_hand_made_passes():
    labels = torch.tensor([0, 1, 2])
    dyn = TrainingDynamics(labels, epochs=2, el2n_epochs=1)
    dyn(0, torch.tensor([0, 1, 2]), torch.tensor([[2.0, 0, 0], [0, 1, 3], [0, 0, 5]]))
    dyn(1, torch.tensor([0, 1, 2]), torch.tensor([[0.0, 1, 0], [0, 3, 1], [0, 0, 5]]))
    s = dyn.scores(torch.zeros(3, 3))
    np.testing.assert_allclose(s["aum"], [(2 - 1) / 2, (-2 + 2) / 2, 5], rtol=1e-6)
    np.testing.assert_array_equal(s["forgetting"], [1, 0, 0])  # 0: right then wrong; 1: learned late
    p = torch.softmax(torch.tensor([[2.0, 0, 0], [0, 1, 3], [0, 0, 5]]), 1)
    expected = (p - torch.eye(3)).norm(dim=1).numpy()  # first epoch only
    np.testing.assert_allclose(s["el2n"], expected, rtol=1e-5)
    np.testing.assert_allclose(s["entropy"], np.log(3), rtol=1e-6)  # uniform final logits


def test_never_learned_is_the_most_forgotten_and_unseen_falls_back_to_final_logits():
    labels = torch.tensor([0, 1])
    dyn = TrainingDynamics(labels, epochs=3, el2n_epochs=3)
    dyn(0, torch.tensor([0]), torch.tensor([[0.0, 1.0]]))
    s = dyn.scores(torch.tensor([[0.0, 0.0], [0.0, 2.0]]))
    assert s["forgetting"][0] == 4 and s["forgetting"][1] == 4
    assert s["aum"][1] == pytest.approx(2.0)  # sample 1 never seen: margin of the final model


def test_importance_orders_hard_first():
    s = {"aum": np.array([-1.0, 2.0]), "el2n": np.array([0.9, 0.1]), "forgetting": np.array([3.0, 0.0]),
         "entropy": np.array([2.0, 0.1])}
    for name in SCORES:
        assert importance(name, s)[0] > importance(name, s)[1], name


def test_scores_stage_on_real_images(scores_store, small_run):
    root = zarr.open_group(str(scores_store), mode="r")
    n = zarr.open_group(str(small_run.prepared), mode="r")["train/labels"].shape[0]
    for name in SCORES:
        values = root[name][:]
        assert values.shape == (n,) and np.isfinite(values).all(), name
    assert root["el2n"][:].min() >= 0 and root["el2n"][:].max() <= np.sqrt(2) + 1e-6
    assert root["forgetting"][:].min() >= 0
    assert len(root.attrs["history"]) == 3 and "scores" in root.attrs["params"]
