"""Checkpoints are read with weights_only: a file that is not a dcq checkpoint is a clear error, and a pickle
payload never runs."""

import pickle

import pytest

from pipeline.errors import StoreError
from pipeline.models.checkpoint import load_checkpoint


def test_a_pickle_with_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    bad = tmp_path / "evil.pt"
    bad.write_bytes(pickle.dumps({"arch": "convnetd3", "state_dict": Payload()}))
    with pytest.raises(StoreError, match="evil.pt: not a dcq checkpoint"):
        load_checkpoint(bad)
    assert not marker.exists()


def test_garbage_is_refused_by_name(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(StoreError, match="garbage.pt: not a dcq checkpoint"):
        load_checkpoint(garbage)


def test_the_projects_own_checkpoint_loads(small_run):
    model, norm, ckpt = load_checkpoint(small_run.teacher)
    assert ckpt["arch"] == "resnet18" and len(norm.mean) == 3 and not model.training


def _resaved(src, dst, change):
    import torch

    ckpt = torch.load(src, map_location="cpu", weights_only=True)
    change(ckpt)
    torch.save(ckpt, dst)
    return dst


@pytest.mark.parametrize("case, match", [
    ("zero_std", r"std \[0.0, .*\] must be > 0"), ("nan_mean", "must hold 3 finite means"),
    ("two_channels", "must hold 3 finite means"), ("nan_weight", "weights hold NaN or Inf"),
])
def test_a_checkpoint_with_unusable_numbers_is_refused_on_load(small_run, tmp_path, case, match):
    def change(ckpt):
        if case == "zero_std":
            ckpt["normalization"]["std"][0] = 0.0
        elif case == "nan_mean":
            ckpt["normalization"]["mean"][1] = float("nan")
        elif case == "two_channels":
            ckpt["normalization"]["std"] = ckpt["normalization"]["std"][:2]
        else:
            first = next(k for k, v in ckpt["state_dict"].items() if v.is_floating_point())
            ckpt["state_dict"][first].view(-1)[0] = float("nan")

    bad = _resaved(small_run.teacher, tmp_path / f"{case}.pt", change)
    with pytest.raises(StoreError, match=match):
        load_checkpoint(bad)
