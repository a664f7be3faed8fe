"""The Dask executor writes the same bytes as the serial one: prepare, features, attention, colour counts (each task
spills its block's counts, one merge), palette, encode, the per-image baselines and a codec (each task encodes a
shard into a scratch file) on real CIFAR-10 images, mapped over their output shards by a 2-worker LocalCluster, against the serial run's stores."""

from dataclasses import replace
from pathlib import Path

import pytest
import zarr

from pipeline.config import to_dict
from pipeline.errors import ParamsError
from pipeline.executor import cached, map_shards, spans
from pipeline.stages import attention, baseline, codec, colour_counts, encode, features, palette, prepare
from tests.conftest import BASE, SMALL


def same_store(a: Path, b: Path) -> None:
    """Every file of two stores byte for byte (chunks, shard indices, metadata, the manifest)."""
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as local:
        yield local.scheduler_address


def test_dask_executor_writes_the_serial_bytes(small_run, tmp_path, cluster, monkeypatch):
    # small shards, so the 160 images make 5 to 10 tasks per stage (even the 64-byte rows of the CAM-resolution
    # attention maps), spread over both workers
    monkeypatch.setattr("pipeline.io.arrays.CHUNK_BYTES", 1024)
    monkeypatch.setattr("pipeline.io.arrays.SHARD_BYTES", 2048)
    # colour_counts reads the fixture's prepared store: one counting task per 16 of its images
    monkeypatch.setattr("pipeline.quantize.palette_store.write_block_size", lambda arr: 16)
    dask = replace(BASE, executor="dask", scheduler=cluster)
    import pipeline.executor as executor
    mapped: dict[str, list[int]] = {}  # stage -> tasks of each of its Dask maps
    real, stage = executor._map_dask, [""]
    monkeypatch.setattr(executor, "_map_dask", lambda *a: mapped.setdefault(stage[0], []).append(len(a[2])) or real(*a))
    for name, base in (("serial", BASE), ("dask", dask)):
        out = tmp_path / name
        stage[0] = "prepare"
        prepare.run(SMALL["prepare"], base, out / "prepared.zarr")
        stage[0] = "features"
        features.run(SMALL["features"], base, small_run.prepared, small_run.teacher, out / "features.zarr")
        stage[0] = "attention"
        attention.run(SMALL["attention"], base, small_run.prepared, small_run.teacher, out / "attention.zarr")
        stage[0] = "colour_counts"
        colour_counts.run(SMALL["palette"], base, small_run.prepared, small_run.clusters, out / "attention.zarr",
                          out / "counts.zarr")
        stage[0] = "palette"
        palette.run(SMALL["palette"], base, 2, out / "counts.zarr",
                    out / "palettes.zarr")
        for assign in ("cluster", "best_palette"):
            stage[0] = f"encode-{assign}"
            encode.run(replace(SMALL["encode"], assign=assign), base, [1, 2], small_run.prepared, small_run.clusters,
                       small_run.refined(2).parent, out / f"dcq-{assign}")
        for method in ("median_cut", "libimagequant"):
            stage[0] = method
            baseline.run(baseline.BaselineParams(), base, method, 2, small_run.prepared, out / f"{method}.zarr")
        # the codec maps over the shards of the prepared store it reads: this test's, with small shards
        stage[0] = "codec"
        codec.run(codec.CodecParams(search_images=64), base, "jpeg", 2, out / "prepared.zarr", small_run.dcq(2),
                  out / "jpeg.zarr")
    for store in ("prepared.zarr", "features.zarr", "attention.zarr", "palettes.zarr", "dcq-cluster/q1.zarr", "dcq-cluster/q2.zarr",
                  "dcq-best_palette/q1.zarr", "dcq-best_palette/q2.zarr", "median_cut.zarr",
                  "libimagequant.zarr", "jpeg.zarr"):
        same_store(tmp_path / "serial" / store, tmp_path / "dask" / store)
    # every Dask stage ran as several shard tasks; how many maps a stage makes is not fixed (the codec searches its
    # quality in as many passes as it needs to meet the DCQ store's bytes, which depend on the teacher's float bits)
    assert sorted(mapped) == sorted(["prepare", "features", "attention", "colour_counts", "encode-cluster",
                                     "encode-best_palette", "median_cut", "libimagequant", "codec"]), sorted(mapped)
    assert all(min(tasks) >= 5 for tasks in mapped.values()), mapped
    shards = zarr.open_group(str(tmp_path / "dask" / "attention.zarr"), mode="r")["cams"].shards[0]
    assert 160 // shards >= 4


def test_executor_settings_are_never_part_of_an_outputs_params():
    recorded = to_dict(replace(BASE, executor="dask", scheduler="tcp://somewhere:8786"))
    assert recorded == to_dict(BASE) == {"seed": 0, "device": "cpu", "precision": "auto"}


def test_unreachable_scheduler_is_a_one_line_params_error(monkeypatch):
    distributed = pytest.importorskip("distributed")
    client = distributed.Client  # the stage waits 30 s for a scheduler; the same failure after 2 s here
    monkeypatch.setattr(distributed, "Client", lambda *args, **kwargs: client(*args, **{**kwargs, "timeout": "2s"}))
    with pytest.raises(ParamsError, match=r"base.scheduler='tcp://127.0.0.1:1': cannot reach the Dask scheduler"):
        map_shards(replace(BASE, executor="dask", scheduler="tcp://127.0.0.1:1"), lambda a, b: a, 10, 5, "x")


def test_serial_map_returns_results_in_block_order_and_cache_builds_once():
    assert map_shards(BASE, lambda a, b: (a, b), 10, 4, "x") == [(0, 4), (4, 8), (8, 10)] == spans(10, 4)
    built = []
    for _ in range(3):
        cached(("test-kind", 1), lambda: built.append(1) or "model")
    assert built == [1]
    cached(("test-kind", 2), lambda: built.append(2) or "other")  # a new key of the kind replaces the old one
    assert built == [1, 2]
