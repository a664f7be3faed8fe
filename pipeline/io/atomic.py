"""Write-then-swap outputs: a stage writes into a hidden sibling and swaps it in only on success, so an interrupted
or failing stage leaves the previous output untouched, and a path that holds something dcq did not write is never
replaced.

- Ownership: an existing output path is replaced only when it holds a dcq output (`is_dcq_output`): a sealed dcq
  store, a dcq checkpoint, a JSON carrying the `written_by: dcq` marker, a PNG/Markdown/HTML report file carrying
  dcq's marker, or what the caller's own `owned` test accepts. Anything else, a folder such as `data/` among
  them, is an `OutputError` before anything is touched.
- The swap: the new output is written to `.NAME.tmp-PID`. Where the kernel offers `renameat2(RENAME_EXCHANGE)`
  the temp and NAME trade places in one step, and the old output (now in the temp) is removed. Elsewhere NAME is
  renamed to `.NAME.old-PID`, the temp to NAME, and the old one removed. At every point of either swap one
  complete output is at NAME or (between the two renames) in `.NAME.old-PID`.
- Recovery: a run killed before its swap leaves siblings behind. The next run that writes NAME first restores a
  dead process's `.NAME.old-PID` when NAME is missing (the only copy is never deleted), then removes every sibling
  whose process is gone, and nothing else.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import re
import shutil
import signal
from pathlib import Path
from typing import Callable

from pipeline.errors import DcqError

MARKER_KEY, MARKER = "written_by", "dcq"
# Markdown and HTML reports start with this comment; PNG figures carry it as their `Software` text chunk.
TEXT_MARKER = "<!-- written by dcq -->"
KILL_HOOK = "DCQ_TEST_KILL_AT"  # tests only: SIGKILL this process at the named step of the swap


class OutputError(DcqError):
    """An output path that holds something dcq did not write (it is never replaced)."""


def _kill_point(step: str) -> None:
    if os.environ.get(KILL_HOOK) == step:
        os.kill(os.getpid(), signal.SIGKILL)


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


# ---------------------------------------------------------------- what counts as ours

def _is_sealed_store(path: Path) -> bool:
    try:
        meta = json.loads((path / "zarr.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and isinstance(meta.get("attributes"), dict) \
        and isinstance(meta["attributes"].get("manifest"), dict)


def _json_marked(path: Path) -> bool:
    if path.stat().st_size > 64 * 2**20:
        return False
    try:
        obj = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(obj, dict) and obj.get(MARKER_KEY) == MARKER


def _png_marked(path: Path) -> bool:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.format == "PNG" and im.info.get("Software") == MARKER
    except (OSError, ValueError, SyntaxError):
        return False


def _text_marked(path: Path) -> bool:
    with path.open("rb") as fh:
        return TEXT_MARKER.encode() in fh.read(1024)


def _checkpoint(path: Path) -> bool:
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # anything torch cannot load as plain tensors is not ours
        return False
    return isinstance(ckpt, dict) and (ckpt.get(MARKER_KEY) == MARKER
                                       or {"arch", "state_dict", "normalization"} <= set(ckpt))


_FILE_KINDS: dict[str, Callable[[Path], bool]] = {
    ".json": _json_marked, ".png": _png_marked, ".md": _text_marked, ".html": _text_marked, ".pt": _checkpoint}


def is_dcq_output(path: Path, owned: Callable[[Path], bool] | None = None) -> bool:
    """True when `path` holds an output dcq wrote (see the module docstring); a symlink never is."""
    path = Path(path)
    if path.is_symlink():
        return False
    if path.is_dir():
        return _is_sealed_store(path)
    if not path.is_file():
        return False
    test = owned or _FILE_KINDS.get(path.suffix.lower())
    return bool(test and test(path))


def check_replaceable(path: str | Path, owned: Callable[[Path], bool] | None = None) -> None:
    path = Path(path)
    if (path.exists() or path.is_symlink()) and not is_dcq_output(path, owned):
        raise OutputError(f"{path} exists and is not a dcq output; nothing was changed (choose another path, or "
                          "move it away yourself)")


# ---------------------------------------------------------------- the swap

_SIBLING = "^\\.{name}\\.({kinds})-(\\d+)(-.*)?$"


def _dead_siblings(path: Path, kinds: tuple[str, ...]) -> list[tuple[Path, str]]:
    pattern = re.compile(_SIBLING.format(name=re.escape(path.name), kinds="|".join(kinds)))
    found = []
    if not path.parent.is_dir():
        return found
    for sibling in path.parent.iterdir():
        match = pattern.match(sibling.name)
        if match and int(match.group(2)) != os.getpid() and not pid_alive(int(match.group(2))):
            found.append((sibling, match.group(1)))
    return found


def recover(path: Path) -> Path | None:
    """A swap killed between its two renames leaves NAME missing and the previous output in a dead process's
    `.NAME.old-PID`: put it back (the newest, if several). Returns what was restored."""
    if path.exists() or path.is_symlink():
        return None
    olds = [p for p, kind in _dead_siblings(path, ("old",))]
    if not olds:
        return None
    newest = max(olds, key=lambda p: p.lstat().st_mtime_ns)
    os.rename(newest, path)
    return newest


def remove_stale_siblings(path: Path, kinds: tuple[str, ...] = ("tmp", "old", "work")) -> list[Path]:
    """Remove `.NAME.<kind>-PID[-...]` siblings of `path` left by processes that no longer run, after restoring an
    interrupted swap's previous output (`recover`): the last copy of an output is never removed."""
    path = Path(path)
    recover(path)
    removed = []
    for sibling, kind in _dead_siblings(path, kinds):
        if kind == "old" and not (path.exists() or path.is_symlink()):
            continue
        _remove(sibling)
        removed.append(sibling)
    return removed


_RENAME_EXCHANGE, _AT_FDCWD = 2, -100


def _renameat2() -> Callable | None:
    try:
        return ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # not glibc >= 2.28 / not Linux
        return None


def exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths atomically (Linux renameat2 RENAME_EXCHANGE); False where the system cannot."""
    fn = _renameat2()
    if fn is None:
        return False
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
        return False
    raise OSError(err, os.strerror(err), str(b))


USE_EXCHANGE = True  # False: the two-rename swap even where renameat2 works (tests of the fallback)


def swap_in(tmp: Path, path: Path) -> None:
    """Put the finished `tmp` at `path`, removing what was there; crash-safe (module docstring)."""
    if not (path.exists() or path.is_symlink()):
        _kill_point("before_rename")
        os.replace(tmp, path)
        return
    if USE_EXCHANGE and exchange(tmp, path):
        _kill_point("after_exchange")
        _remove(tmp)  # the previous output, now in the temp
        return
    old = path.with_name(f".{path.name}.old-{os.getpid()}")
    os.replace(path, old)
    _kill_point("between_renames")
    os.replace(tmp, path)
    _kill_point("after_renames")
    _remove(old)


@contextlib.contextmanager
def atomic_output(path: str | Path, owned: Callable[[Path], bool] | None = None):
    """Yield a temporary path next to `path`; on clean exit it replaces `path` (file or directory). An existing
    `path` that is not a dcq output (`owned` decides for formats without a marker) is an OutputError, before
    anything is written or removed."""
    path = Path(path)
    remove_stale_siblings(path)
    check_replaceable(path, owned)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    _remove(tmp)
    try:
        yield tmp
        _kill_point("before_swap")
        check_replaceable(path, owned)  # another process may have put something there meanwhile
        swap_in(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


@contextlib.contextmanager
def store_output(path: str | Path):
    """`atomic_output` for a Zarr store: sealed with its manifest (pipeline/io/verify.py) before the swap."""
    from pipeline.io.verify import seal

    with atomic_output(path) as tmp:
        yield tmp
        seal(tmp)


def replace_text(path: str | Path, text: str, owned: Callable[[Path], bool] | None = None) -> None:
    """Write `text` to `path` crash-safely (`atomic_output`); `owned` as there."""
    with atomic_output(path, owned) as tmp:
        Path(tmp).write_text(text)
