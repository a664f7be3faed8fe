"""Where the per-image stages run their shards: `base.executor` serial (this process) or dask (a Dask cluster).

A per-image stage creates its output arrays, then maps one task over the row blocks that fill whole output shards
(`write_block_size`): each task reads its rows from the input stores by path, computes, writes exactly its own
shard(s) and returns a small summary. Tasks never share a shard, so they need no locks, and a block's result does
not depend on which process computed it or in what order: the serial and the Dask executor write the same bytes
(tests/test_executor.py checks it on real images). The store is sealed by the calling process after the map.

Dask: `base.scheduler` is a running cluster's address (`tcp://host:8786`, e.g. from `dask scheduler` and
`dask worker` on each machine, or dask-cuda's `LocalCUDACluster` for one worker per GPU); null starts a
LocalCluster on this machine, one single-threaded worker process per core. Models are loaded once per worker
process (`cached`), not once per task. The input and output stores must be on a filesystem every worker sees.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Hashable
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from tqdm import tqdm

from pipeline.allocator import keep_freed_memory
from pipeline.config import BaseParams
from pipeline.errors import ParamsError

T = TypeVar("T")

_CACHE: dict[Hashable, Any] = {}
_CACHE_LOCK = threading.Lock()


def file_stamp(path: str | Path) -> tuple[str, int, int]:
    """A cache key part that changes when the file does (a retrained checkpoint at the same path)."""
    st = os.stat(path)
    return str(Path(path).resolve()), st.st_mtime_ns, st.st_size


def cached(key: Hashable, build: Callable[[], T]) -> T:
    """`build()` once per process for `key` (a model on a worker), then the same object. One entry per kind of
    key: a new key of the same kind (key[0]) replaces the old one, so a long-lived worker holds one model."""
    with _CACHE_LOCK:
        if key not in _CACHE:
            kind = key[0] if isinstance(key, tuple) else key
            for old in [k for k in _CACHE if (k[0] if isinstance(k, tuple) else k) == kind]:
                del _CACHE[old]
            _CACHE[key] = build()
        return _CACHE[key]


def spans(n: int, block: int) -> list[tuple[int, int]]:
    return [(start, min(n, start + block)) for start in range(0, n, block)]


def map_shards(base: BaseParams, task: Callable[..., T], n: int, block: int, desc: str, unit: str = "img",
               payload: Callable[[int, int], Any] | None = None) -> list[T]:
    """task(start, stop) for every block of `block` rows of n, results in block order; with `payload`,
    task(start, stop, payload(start, stop)): what only this block needs (its file names), shipped with it. `task`
    must be picklable for the Dask executor (a module-level function, or functools.partial of one)."""
    blocks = spans(n, block)
    extra = (lambda start, stop: ()) if payload is None else (lambda start, stop: (payload(start, stop),))
    if base.executor == "serial":
        results = []
        with tqdm(total=n, desc=desc, unit=unit, leave=False) as bar:
            for start, stop in blocks:
                results.append(task(start, stop, *extra(start, stop)))
                bar.update(stop - start)
        return results
    if base.executor != "dask":
        raise ParamsError(f"base.executor={base.executor!r} must be serial or dask")
    return _map_dask(base.scheduler, task, blocks, [extra(a, b) for a, b in blocks], n, desc, unit)


def _map_dask(scheduler: str | None, task, blocks: list[tuple[int, int]], extras: list[tuple], n: int, desc: str,
              unit: str) -> list:
    from distributed import as_completed

    with _client(scheduler) as client:
        client.run(keep_freed_memory)  # each worker process: the allocator policy the `dcq` process has
        futures = [client.submit(task, start, stop, *extra, pure=False) for (start, stop), extra in zip(blocks, extras)]
        order = {f.key: i for i, f in enumerate(futures)}
        results: list = [None] * len(futures)
        with tqdm(total=n, desc=f"{desc} (dask)", unit=unit, leave=False) as bar:
            for future in as_completed(futures):
                i = order[future.key]
                results[i] = future.result()
                bar.update(blocks[i][1] - blocks[i][0])
        return results


@contextmanager
def _client(scheduler: str | None):
    """A client of the cluster at `scheduler`, or of a LocalCluster started (and stopped) here."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:  # pragma: no cover - dask is a dependency; this names it if an install lacks it
        raise ParamsError(f"base.executor=dask needs the dask and distributed packages ({exc})") from None
    cluster = None
    try:
        if scheduler is None:
            cluster = LocalCluster(n_workers=os.cpu_count() or 1, threads_per_worker=1, processes=True,
                                   dashboard_address=None)
            client = Client(cluster)
        else:
            client = Client(scheduler, timeout="30s")
    except OSError as exc:
        raise ParamsError(f"base.scheduler={scheduler!r}: cannot reach the Dask scheduler ({exc})") from None
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
