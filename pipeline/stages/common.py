"""Bits every stage command shares: reading params, one-line user errors and timing a typer command.
`summary` and `Timer` live in `pipeline.timing` (libraries print the summary line too) and are re-exported."""

from __future__ import annotations

import contextlib
import errno
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import typer

from pipeline.config import BaseParams, load_base, load_section
from pipeline.errors import DcqError
from pipeline.timing import Timer, summary  # noqa: F401  (re-exported for the stage modules)

T = TypeVar("T")
# What the machine, not the code, got wrong: a one-line error, not a traceback. Outputs are swapped in only when
# complete (pipeline/io/atomic.py), so the previous output is still in place.
ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG, errno.EMFILE,
                      errno.ENAMETOOLONG, errno.EXDEV, errno.EIO, errno.ENOTDIR, errno.EISDIR}


@dataclass(frozen=True)
class StageWiring:
    """What a stage reads from params.yaml, declared once in its module. `dcq dvc-deps` writes each dvc stage's
    `params:` from it (and its `deps:` from the module's imports).

    section: the params section it parses into `params` (a dvc stage may name another with `--section`);
    base: the `base` keys that can change its output; matrix: keys of the section that dvc's foreach/matrix hands
    to each run on the command line (each run reads only its own item, so they are not listed);
    reads_only: when it reads only some keys of its section; also_reads: keys of other sections it reads."""

    params: type
    section: str
    base: tuple[str, ...] = ("seed", "device", "precision")
    matrix: tuple[str, ...] = ()
    reads_only: tuple[str, ...] | None = None
    also_reads: tuple[str, ...] = ()


def read_params(params_file: Path, section: str, cls: type[T]) -> tuple[BaseParams, T]:
    """For typer commands: parse base + the stage's own section, exiting with the message on error."""
    with user_errors():
        return load_base(params_file), load_section(params_file, section, cls)


@contextlib.contextmanager
def user_errors():
    """Turn input errors into one clear line and exit status 2 (bugs still show a traceback)."""
    try:
        yield
    except (DcqError, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except OSError as exc:
        if exc.errno not in ENVIRONMENT_ERRNOS:
            raise
        where = next((str(f) for f in (exc.filename, exc.filename2) if f), "")
        typer.echo(f"error: {exc.strerror or exc}{f': {where}' if where else ''} (nothing was replaced)", err=True)
        raise typer.Exit(2) from None


@contextlib.contextmanager
def stage_command(stage: str, timing: Path | None):
    """`user_errors` around a stage's run; on success its wall time goes to `timing` (a small JSON the
    report's stage-timing table reads). Kept out of the stage's own outputs so those stay byte-identical."""
    with user_errors():
        start = time.perf_counter()
        yield
        if timing is not None:
            from pipeline.io.arrays import write_json

            write_json(timing, {"stage": stage, "seconds": round(time.perf_counter() - start, 1)})


PARAMS_OPTION = typer.Option(Path("params.yaml"), "--params", help="params.yaml to read base + this stage's section from")
TIMING_OPTION = typer.Option(None, "--timing", help="write this stage's wall time to this JSON file")
