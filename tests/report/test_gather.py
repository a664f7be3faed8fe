import shutil

import zarr

from pipeline.config import params_hash
from pipeline.report.gather import current


def test_a_record_whose_store_is_not_sealed_is_stale_not_an_error(small_run, tmp_path):
    store = tmp_path / "q1.zarr"
    shutil.copytree(small_run.dcq(1), store)
    root = zarr.open_group(str(store), mode="r+")
    rec = {"method": "dcq", "train_set": str(store), "train_set_hash": params_hash(dict(root.attrs["params"]))}
    assert current([rec]) == ([rec], [])
    del root.attrs["manifest"]  # a store written before stores were sealed
    assert current([rec]) == ([], [rec])
    shutil.rmtree(store)
    assert current([rec]) == ([], [rec])
