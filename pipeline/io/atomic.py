"""Write-then-rename outputs: a stage writes into a hidden sibling and swaps it in only on success,
so an interrupted or failing stage leaves the previous output untouched.

The sibling is `.NAME.tmp-PID` (and `.NAME.old-PID` during the swap). A run killed before its rename leaves
one behind; the next run that writes NAME removes every such sibling whose process is gone, and nothing else.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from pathlib import Path


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_siblings(path: Path, kinds: tuple[str, ...] = ("tmp", "old", "work")) -> list[Path]:
    """Remove `.NAME.<kind>-PID[-...]` siblings of `path` left by processes that no longer run."""
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.({'|'.join(kinds)})-(\d+)(-.*)?$")
    removed = []
    if not path.parent.is_dir():
        return removed
    for sibling in path.parent.iterdir():
        match = pattern.match(sibling.name)
        if match and int(match.group(2)) != os.getpid() and not pid_alive(int(match.group(2))):
            _remove(sibling)
            removed.append(sibling)
    return removed


@contextlib.contextmanager
def atomic_output(path: str | Path):
    """Yield a temporary path next to `path`; on clean exit it replaces `path` (file or directory)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_siblings(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    _remove(tmp)
    try:
        yield tmp
    except BaseException:
        _remove(tmp)
        raise
    old = path.with_name(f".{path.name}.old-{os.getpid()}")
    if path.exists() or path.is_symlink():
        os.replace(path, old)
    os.replace(tmp, path)
    _remove(old)


@contextlib.contextmanager
def store_output(path: str | Path):
    """`atomic_output` for a Zarr store: sealed with its manifest (pipeline/io/verify.py) before the rename."""
    from pipeline.io.verify import seal

    with atomic_output(path) as tmp:
        yield tmp
        seal(tmp)
