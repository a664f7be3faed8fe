"""Outputs are swapped in crash-safely and only over what dcq wrote: a folder, a file or a link that is not a dcq
output is refused before anything is touched; a kill at any step of the swap, followed by the next run, leaves the
old or the new output at the path, never neither."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr

from pipeline.io import atomic
from pipeline.io.arrays import create_small, write_json
from pipeline.io.atomic import OutputError, atomic_output, is_dcq_output, store_output


def tree(root: Path) -> dict[str, bytes | None]:
    """Every entry under `root` (and root itself) with its bytes: what 'nothing touched' compares."""
    out = {}
    for p in sorted([root, *root.rglob("*")]) if root.is_dir() else [root]:
        out[str(p)] = None if p.is_dir() or p.is_symlink() else p.read_bytes()
    return out


def write_store(path: Path, value: int) -> None:
    with store_output(path) as tmp:
        create_small(zarr.open_group(str(tmp), mode="w"), "values", np.full(4, value))


def store_value(path: Path) -> int:
    from pipeline.io.verify import open_verified

    return int(open_verified(path)["values"][0])


def test_success_replaces_and_failure_keeps_the_previous_output(tmp_path):
    out = tmp_path / "store.zarr"
    write_store(out, 1)
    write_store(out, 2)
    assert store_value(out) == 2
    with pytest.raises(RuntimeError):
        with store_output(out) as tmp:
            create_small(zarr.open_group(str(tmp), mode="w"), "values", np.full(4, 3))
            raise RuntimeError("interrupted")
    assert store_value(out) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store.zarr"]  # no temporary left behind
    record = tmp_path / "record.json"
    write_json(record, {"a": 1})
    write_json(record, {"a": 2})
    assert json.loads(record.read_text()) == {"a": 2, "written_by": "dcq"}


def _not_ours(tmp_path: Path) -> dict[str, Path]:
    folder = tmp_path / "data"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "notes.txt").write_text("a user's file")
    (tmp_path / "plain.json").write_text(json.dumps({"mine": 1}))
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "model.pt").write_bytes(b"not a checkpoint")
    (tmp_path / "figure.png").write_bytes(b"\x89PNG\r\n\x1a\n junk")
    (tmp_path / "report.md").write_text("# my notes\n")
    unsealed = tmp_path / "unsealed.zarr"
    create_small(zarr.open_group(str(unsealed), mode="w"), "x", np.arange(3))
    (tmp_path / "link.json").symlink_to(tmp_path / "plain.json")
    (tmp_path / "dangling.zarr").symlink_to(tmp_path / "nowhere")
    return {p.name: p for p in (folder, tmp_path / "plain.json", tmp_path / "list.json", tmp_path / "model.pt",
                                tmp_path / "figure.png", tmp_path / "report.md", unsealed, tmp_path / "link.json",
                                tmp_path / "dangling.zarr")}


def test_what_dcq_did_not_write_is_never_replaced(tmp_path):
    for name, path in _not_ours(tmp_path).items():
        assert not is_dcq_output(path), name
        before = tree(tmp_path)
        with pytest.raises(OutputError, match="is not a dcq output"):
            with atomic_output(path) as tmp:
                tmp.write_text("new")
        assert tree(tmp_path) == before, name


def test_every_stage_output_option_refuses_a_path_dcq_did_not_write(tmp_path):
    """Every output option of every stage command, pointed at a folder or a file dcq did not write: exit 2, one
    line naming it, nothing touched, before the stage reads any input."""
    import inspect

    from typer.testing import CliRunner

    from pipeline.cli import STAGES, app, output_options
    from pipeline.stages import encode

    targets = _not_ours(tmp_path)
    checked = 0
    for stage in STAGES:
        module = __import__(f"pipeline.stages.{stage}", fromlist=["command"])
        params = inspect.signature(module.command).parameters
        for name in output_options(module.command):
            if module is encode and name in encode.OUTPUT_FOLDERS:
                continue
            option = _option(params[name])
            for target in (targets["data"], targets["plain.json"]):
                before = tree(tmp_path)
                result = CliRunner().invoke(app, [stage, *_required_args(module.command, tmp_path, name),
                                                  option, str(target)])
                assert result.exit_code == 2, (stage, option, result.output)
                assert result.output.strip().splitlines() == [
                    f"error: {target} exists and is not a dcq output; nothing was changed (choose another path, or "
                    "move it away yourself)"], (stage, option, result.output)
                assert tree(tmp_path) == before, (stage, option)
                checked += 1
    assert checked >= 2 * 30  # the stages have over 30 output options between them


def _option(param) -> str:
    return param.default.param_decls[0] if param.default.param_decls else "--" + param.name.replace("_", "-")


def _required_args(command, tmp_path: Path, skip: str) -> list[str]:
    """Every other required option of a stage command, with a value of its type (paths that do not exist)."""
    import inspect
    import typing

    args, hints = [], typing.get_type_hints(command)
    for name, param in inspect.signature(command).parameters.items():
        if name == skip or param.default.default is not ...:
            continue
        value = {int: "1", str: "x", float: "1"}.get(hints[name], str(tmp_path / f"absent-{name}"))
        args += [_option(param), value]
    return args


def test_stale_temps_of_dead_processes_are_removed_and_nothing_else(tmp_path):
    out = tmp_path / "store.zarr"
    dead, alive = _dead_pid(), os.getppid()
    stale = [tmp_path / f".store.zarr.tmp-{dead}", tmp_path / f".store.zarr.old-{dead}",
             tmp_path / f".store.zarr.work-{dead}-abc123"]
    keep = [tmp_path / f".store.zarr.tmp-{alive}",          # a live writer's
            tmp_path / f".other.zarr.tmp-{dead}",           # another output's
            tmp_path / "store.zarr.tmp-1", tmp_path / ".store.zarr.tmp-x", tmp_path / "notes.txt"]
    write_store(out, 1)
    for path in stale + keep:
        path.mkdir() if path.suffix != ".txt" else path.write_text("mine")
    write_store(out, 2)
    assert store_value(out) == 2 and not any(p.exists() for p in stale)
    assert all(p.exists() for p in keep)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid  # reaped: no process has this pid now (pids are not reused this fast)


WRITER = """
import sys
from pathlib import Path
import numpy as np, zarr
from pipeline.io import atomic
from pipeline.io.arrays import create_small
atomic.USE_EXCHANGE = sys.argv[3] == "exchange"
with atomic.store_output(Path(sys.argv[1])) as tmp:
    create_small(zarr.open_group(str(tmp), mode="w"), "values", np.full(4, int(sys.argv[2])))
"""


def _write_in_subprocess(out: Path, value: int, swap: str, kill_at: str | None) -> int:
    env = {**os.environ, atomic.KILL_HOOK: kill_at or ""}
    return subprocess.run([sys.executable, "-c", WRITER, str(out), str(value), swap], env=env,
                          cwd=Path(__file__).resolve().parents[2]).returncode


@pytest.mark.parametrize("swap, kill_at", [
    ("exchange", "before_swap"), ("exchange", "after_exchange"),
    ("renames", "before_swap"), ("renames", "between_renames"), ("renames", "after_renames"),
])
def test_a_kill_at_any_step_of_the_swap_leaves_one_output_and_the_next_run_never_loses_it(tmp_path, swap, kill_at):
    if swap == "exchange" and not atomic.exchange(*_two_files(tmp_path)):
        pytest.skip("renameat2(RENAME_EXCHANGE) is not available here")
    out = tmp_path / "store.zarr"
    assert _write_in_subprocess(out, 1, swap, None) == 0
    assert _write_in_subprocess(out, 2, swap, kill_at) == -9  # SIGKILL at that step
    # the next run's start restores an interrupted swap, and then it fails: the output is still there
    with pytest.raises(RuntimeError):
        with store_output(out):
            raise RuntimeError("the next run fails too")
    assert store_value(out) in (1, 2)
    assert _write_in_subprocess(out, 3, swap, None) == 0
    assert store_value(out) == 3
    assert sorted(p.name for p in tmp_path.iterdir() if "store" in p.name) == ["store.zarr"]


def _two_files(tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "probe-a", tmp_path / "probe-b"
    a.write_text("a")
    b.write_text("b")
    return a, b


def test_exchange_swaps_a_file_and_a_folder(tmp_path):
    a, b = _two_files(tmp_path)
    b.unlink()
    b.mkdir()
    if not atomic.exchange(a, b):
        pytest.skip("renameat2(RENAME_EXCHANGE) is not available here")
    assert a.is_dir() and b.read_text() == "a"


def test_an_output_that_is_also_an_input_is_refused_before_the_stage_starts(small_run, tmp_path):
    """Sealed stores are ours, so a mistyped `--out` naming the stage's own input would otherwise replace it."""
    from typer.testing import CliRunner

    from pipeline.cli import app

    before = tree(small_run.prepared)
    result = CliRunner().invoke(app, ["features", "--prepared", str(small_run.prepared), "--teacher",
                                      str(small_run.teacher), "--out", str(small_run.prepared)])
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [f"error: {small_run.prepared} is also this stage's input --prepared; "
                                                  "nothing was changed (write the output elsewhere)"]
    assert tree(small_run.prepared) == before
