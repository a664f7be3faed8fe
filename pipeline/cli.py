"""`dcq`: one subcommand per pipeline stage (what dvc.yaml runs), plus `inspect`, `export` and `verify`."""

from __future__ import annotations

import functools
import importlib
import inspect
import json
import sys
from pathlib import Path

import typer

from pipeline.io.dcq_store import DCQStore, export_imagefolder
from pipeline.io.formats import open_store
from pipeline.io.verify import read_attrs, verify_store
from pipeline.stages.common import user_errors

STAGES = ["prepare", "teacher", "features", "cluster", "attention", "colour_counts", "palette", "refine", "encode", "fidelity", "ablate", "baseline", "codec", "scores", "prune", "evaluate_synthetic",
          "train", "report", "experts", "distill"]



def inspect_store(store: Path = typer.Argument(..., help="a DCQ store (data/dcq/q{q}.zarr)")):
    """Print a JSON summary: bits, images, clusters, bytes on disk vs raw 24-bit RGB, measured and nominal ratio."""
    with user_errors():
        typer.echo(json.dumps(DCQStore(store).summary(), indent=2))


def export(store: Path = typer.Argument(..., help="a DCQ store"),
           out: Path = typer.Argument(..., help="folder to write <class>/<row>.png into"),
           overwrite: bool = typer.Option(False, "--overwrite", help="write into a non-empty folder, replacing only "
                                          "the files export writes")):
    """Write the reconstructed train set as palette PNGs in ImageFolder layout."""
    with user_errors():
        count = export_imagefolder(DCQStore(store), out, overwrite)
    typer.echo(f"exported {count} images to {out}")


def verify(stores: list[Path] = typer.Argument(..., help="Zarr stores written by dcq stages")):
    """Check stores in full: manifest, shapes, every chunk present and its crc32c, every array's content hash,
    and the format's own rules. Exit 2 naming the first store and array that fail."""
    with user_errors():
        for store in stores:
            checked = verify_store(store)
            fmt = read_attrs(store).get("format")
            if fmt is not None:
                open_store(store)  # the format's own checks (shapes against attrs, label and cluster ranges)
            typer.echo(f"ok {store}: {len(checked)} arrays ({', '.join(f'{k}[{v}]' for k, v in checked.items())})")


def output_options(command) -> list[str]:
    """The parameters of a stage command that name a file or store it writes: `out`, `record`, `timing`, `*_out`."""
    return [name for name in inspect.signature(command).parameters
            if name in ("out", "record", "timing") or name.endswith("_out")]


def guarded(module):
    """The stage's command, refusing before it starts any output path that holds something dcq did not write (the
    stage would otherwise find out only when it swaps its output in, maybe hours later). A stage module may name
    `OUTPUT_FOLDERS` (options naming a folder it writes its outputs into, not an output) and `OUTPUT_OWNERS` (option
    -> test for an output format that carries no dcq marker)."""
    from pipeline.io.atomic import OutputError, check_replaceable

    command = module.command
    folders, owners = getattr(module, "OUTPUT_FOLDERS", ()), getattr(module, "OUTPUT_OWNERS", {})
    names = [n for n in output_options(command) if n not in folders]

    @functools.wraps(command)
    def run(**kwargs):
        with user_errors():
            inputs = {k: v.resolve() for k, v in kwargs.items() if isinstance(v, Path) and k not in names}
            for name in names:
                if isinstance(kwargs.get(name), Path):
                    check_replaceable(kwargs[name], owners.get(name))
                    out = kwargs[name].resolve()
                    for option, path in inputs.items():
                        if path == out or out in path.parents:
                            raise OutputError(f"{kwargs[name]} is also this stage's input --{option.replace('_', '-')}"
                                              "; nothing was changed (write the output elsewhere)")
        return command(**kwargs)

    return run


def build_app(stages: list[str]) -> typer.Typer:
    app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                      help="Dataset colour quantization: a staged pipeline from images to palettes + indices in Zarr.")
    for name in stages:
        module = importlib.import_module(f"pipeline.stages.{name}")
        app.command(name)(guarded(module))
    app.command("inspect")(inspect_store)
    app.command("export")(export)
    app.command("verify")(verify)
    return app


def main() -> None:
    """Console entry point. A stage subcommand imports only its own stage module: `dvc repro` starts ~30 of
    them and importing every stage's libraries costs ~3 s each. Anything else gets the whole CLI."""
    wanted = sys.argv[1] if len(sys.argv) > 1 else None
    build_app([wanted] if wanted in STAGES else STAGES)()


def __getattr__(name: str):
    if name == "app":  # `from pipeline.cli import app`: the whole CLI (tests, CliRunner)
        return build_app(STAGES)
    raise AttributeError(name)


if __name__ == "__main__":
    main()
