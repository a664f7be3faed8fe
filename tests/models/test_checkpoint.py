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
