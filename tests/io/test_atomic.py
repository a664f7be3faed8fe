import pytest

from pipeline.io.atomic import atomic_output


def test_success_replaces_and_failure_keeps_the_previous_output(tmp_path):
    out = tmp_path / "store"
    with atomic_output(out) as tmp:
        tmp.mkdir()
        (tmp / "a").write_text("first")
    assert (out / "a").read_text() == "first"
    with pytest.raises(RuntimeError):
        with atomic_output(out) as tmp:
            tmp.mkdir()
            (tmp / "a").write_text("half")
            raise RuntimeError("interrupted")
    assert (out / "a").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]  # no temporary left behind
    with atomic_output(out) as tmp:
        tmp.write_text("a file now")
    assert out.read_text() == "a file now"


def _dead_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid  # reaped: no process has this pid now (pids are not reused this fast)


def test_stale_temps_of_dead_processes_are_removed_and_nothing_else(tmp_path):
    import os

    out = tmp_path / "store.zarr"
    dead, alive = _dead_pid(), os.getppid()
    stale = [tmp_path / f".store.zarr.tmp-{dead}", tmp_path / f".store.zarr.old-{dead}",
             tmp_path / f".store.zarr.work-{dead}-abc123"]
    keep = [tmp_path / f".store.zarr.tmp-{alive}",          # a live writer's
            tmp_path / f".other.zarr.tmp-{dead}",           # another output's
            tmp_path / "store.zarr.tmp-1", tmp_path / ".store.zarr.tmp-x", tmp_path / "notes.txt"]
    for path in stale + keep:
        path.mkdir() if path.suffix != ".txt" else path.write_text("mine")
    with atomic_output(out) as tmp:
        tmp.mkdir()
    assert out.is_dir() and not any(p.exists() for p in stale)
    assert all(p.exists() for p in keep)
