"""`dcq`: one subcommand per pipeline stage (what dvc.yaml runs), plus `inspect` and `export`."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from pipeline.io.dcq_store import DCQStore, export_imagefolder
from pipeline.stages import attention, cluster, encode, features, palette, prepare, refine, teacher
from pipeline.stages.common import user_errors

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Dataset colour quantization: a staged pipeline from images to palettes + indices in Zarr.")

for name, module in [("prepare", prepare), ("teacher", teacher), ("features", features), ("cluster", cluster),
                     ("attention", attention), ("palette", palette), ("refine", refine), ("encode", encode)]:
    app.command(name)(module.command)


@app.command("inspect")
def inspect_store(store: Path = typer.Argument(..., help="a DCQ store (data/dcq/q{q}.zarr)")):
    """Print a JSON summary: bits, images, clusters, bytes on disk vs raw 24-bit RGB, measured and nominal ratio."""
    with user_errors():
        typer.echo(json.dumps(DCQStore(store).summary(), indent=2))


@app.command("export")
def export(store: Path = typer.Argument(..., help="a DCQ store"),
           out: Path = typer.Argument(..., help="folder to write <class>/<row>.png into")):
    """Write the reconstructed train set as palette PNGs in ImageFolder layout."""
    with user_errors():
        count = export_imagefolder(DCQStore(store), out)
    typer.echo(f"exported {count} images to {out}")


if __name__ == "__main__":
    app()
