"""Run records: schema checks, collection, mean +- sample std, the DVC summary."""

import json

import pytest

from pipeline.errors import StoreError
from pipeline.report import records


def rec(method="dcq", bits=1, seed=0, acc=50.0, model="convnetd3", ratio=0.03, nbytes=1000):
    return {"method": method, "bits": bits, "model": model, "seed": seed, "test_accuracy": acc,
            "compression_ratio": ratio, "train_bytes": nbytes}


def write(tmp_path, *recs):
    for i, r in enumerate(recs):
        (tmp_path / f"r{i}.json").write_text(json.dumps(r))
    return tmp_path


def test_summary_is_mean_and_sample_std_with_the_gap_to_full(tmp_path):
    runs = write(tmp_path, rec("full", None, 0, 60.0, ratio=0.97), rec("full", None, 1, 62.0, ratio=0.97),
                 rec("dcq", 4, 0, 55.0), rec("dcq", 4, 1, 57.0), rec("dcq", 4, 2, 59.0), rec("dcq", 1, 0, 30.0))
    rows = records.summarize(records.collect(runs))
    assert [(r["method"], r["bits"]) for r in rows] == [("full", None), ("dcq", 1), ("dcq", 4)]
    q4 = rows[2]
    assert q4["test_accuracy_mean"] == 57.0 and q4["test_accuracy_std"] == 2.0 and q4["seeds"] == [0, 1, 2]
    assert q4["gap_to_full"] == -4.0 and q4["nominal_ratio"] == round(4 / 24, 6)
    assert rows[1]["test_accuracy_std"] == 0.0 and rows[1]["n"] == 1
    summary = records.dvc_summary(rows)  # the DVC metric: mean accuracy and bytes per main-job variant
    assert summary["dcq-q4"]["accuracy"] == 57.0 and set(summary) == {"full", "dcq-q1", "dcq-q4"}
    assert set(summary["full"]) == {"accuracy", "bytes"}


@pytest.mark.parametrize("broken, message", [
    ({"bits": 1}, "has no 'method'"),
    (dict(rec(), test_accuracy="high"), "test_accuracy='high' has the wrong type"),
    (dict(rec(), seed=True), "seed=True has the wrong type"),
    ([1, 2], "must be a JSON object"),
    (dict(rec(), train_set="data/../../etc"), r"train_set='data/\.\./\.\./etc' is not a store path"),
    (dict(rec(), train_set=["data/dcq/q1.zarr"]), "is not a store path"),
    (dict(rec(), train_set=""), "train_set='' is not a store path"),
])
def test_malformed_records_name_the_file_and_key(tmp_path, broken, message):
    write(tmp_path, rec(), broken)
    with pytest.raises(StoreError, match=message):
        records.collect(tmp_path)


def test_duplicate_runs_and_empty_folders_are_errors(tmp_path):
    with pytest.raises(StoreError, match="no run records"):
        records.collect(tmp_path)
    write(tmp_path, rec(seed=3), rec(seed=3))
    with pytest.raises(StoreError, match=r"are the same run \('dcq', None, None, None, 1, 'convnetd3', 3\)"):
        records.collect(tmp_path)
