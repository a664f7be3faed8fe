"""`dcq`: one subcommand per pipeline stage (what dvc.yaml runs), plus `inspect`, `export` and `verify`.

A command's module is imported only when that command runs: `dcq --help` and `dcq --version` import neither torch
nor zarr, and `dvc repro` starts ~30 stage processes that each pay only for their own stage's libraries."""

from __future__ import annotations

import functools
import importlib
import inspect
from pathlib import Path

import typer
from typer.core import TyperGroup

STAGES = ["prepare", "teacher", "features", "cluster", "attention", "colour_counts", "palette", "refine", "encode",
          "fidelity", "ablate", "baseline", "codec", "patch_vq", "luma_chroma", "context_code", "scores", "prune",
          "evaluate_synthetic", "train", "report",
          "experts", "distill"]
# `dcq --help` lists these without importing any command (tests/test_cli.py checks each against its docstring).
SHORT_HELP = {
    "prepare": "Read the dataset named in params (prepare:) into Zarr.",
    "teacher": "Train (or load) the teacher and measure its test accuracy.",
    "features": "Pooled shallow-layer teacher features for every train image.",
    "cluster": "faiss K-means of the train images into chromaticity clusters (or the labels/random ablations).",
    "attention": "Grad-CAM++ maps for every train image's true label.",
    "colour_counts": "Colour counts of the top-k_gra% attention pixels of every cluster (shared by every palette@q).",
    "palette": "K-means palettes in LAB per cluster from the colour counts of the top-k_gra% attention pixels.",
    "refine": "Refine the K-means palettes by minimising the Sobel edge loss.",
    "encode": "Encode the train set as q-bit palette indices plus shared palettes, for every bit depth in one pass.",
    "fidelity": "Measure PSNR, SSIM and CIEDE2000 ΔE of a quantized train set against the original images.",
    "ablate": "Rebuild the DCQ store with one variant's params changed (an ablation).",
    "baseline": "Quantize every train image on its own (Median Cut, octree, K-means) at q bits.",
    "codec": "Store the train set with a standard codec at the quality that matches DCQ's bytes at q.",
    "patch_vq": "Store the train set as codes into one shared codebook of LAB patches (faiss K-means).",
    "luma_chroma": "Store the train set as luma (L*) and low-resolution chroma patch codes into two shared codebooks.",
    "context_code": "Code a DCQ store's index maps losslessly with a shared context model (range coder), in place of "
                    "zstd.",
    "scores": "Train a proxy model and record per-sample AUM, EL2N, forgetting and entropy scores.",
    "prune": "Keep the coreset a pruning method selects, at the storage of q-bit colour indices.",
    "evaluate_synthetic": "Train a fresh network on a synthetic set (with DSA) and test it on the original test set.",
    "train": "Train one model on one dataset variant and test it on the original test set.",
    "report": "Aggregate the runs into reports/: metrics list, summary, plot, image grid, Markdown and HTML.",
    "experts": "Train expert networks with DSA and save their parameters after every epoch.",
    "distill": "Distill a synthetic train set at the storage of IPC images per class.",
    "inspect": "Print a JSON summary: bits, images, clusters, bytes on disk vs raw 24-bit RGB, measured and nominal "
               "ratio.",
    "export": "Write the reconstructed train set as palette PNGs in ImageFolder layout.",
    "verify": "Check stores in full, exiting 2 with a line naming the first store and array that fail.",
    "preset": "Print a preset's overrides as `dvc exp run -S` values, or params.yaml with them applied.",
    "dvc-deps": "Check (or --write) every dvc stage's code deps and params keys against what the code reads.",
    "params-doc": "Check (or --write) docs/params.md, the parameters reference made from the params dataclasses.",
}


def inspect_store(store: Path = typer.Argument(..., help="a DCQ store (data/dcq/q{q}.zarr)")):
    """Print a JSON summary: bits, images, clusters, bytes on disk vs raw 24-bit RGB, measured and nominal ratio."""
    import json

    from pipeline.io.dcq_store import DCQStore
    from pipeline.stages.common import user_errors

    with user_errors():
        typer.echo(json.dumps(DCQStore(store).summary(), indent=2))


def export(store: Path = typer.Argument(..., help="a DCQ store"),
           out: Path = typer.Argument(..., help="folder to write <class>/<row>.png into"),
           overwrite: bool = typer.Option(False, "--overwrite", help="write into a non-empty folder, replacing only "
                                          "the files export writes")):
    """Write the reconstructed train set as palette PNGs in ImageFolder layout."""
    from pipeline.io.dcq_store import DCQStore, export_imagefolder
    from pipeline.stages.common import user_errors

    with user_errors():
        count = export_imagefolder(DCQStore(store), out, overwrite)
    typer.echo(f"exported {count} images to {out}")


def verify(stores: list[Path] = typer.Argument(..., help="Zarr stores written by dcq stages")):
    """Check stores in full, exiting 2 with a line naming the first store and array that fail.

    Checks the manifest, each node's metadata, shapes, every chunk present and its crc32c and hash, every array's
    content hash, and the format's own rules."""
    from pipeline.io.formats import open_store
    from pipeline.io.verify import read_attrs, verify_store
    from pipeline.stages.common import user_errors

    with user_errors():
        for store in stores:
            checked = verify_store(store)
            if read_attrs(store).get("format") is not None:
                open_store(store)  # the format's own checks (shapes against attrs, label and cluster ranges)
            typer.echo(f"ok {store}: {len(checked)} arrays ({', '.join(f'{k}[{v}]' for k, v in checked.items())})")


def preset(name: str = typer.Argument(..., help="paper | imagenet, or a preset file"),
           merged: bool = typer.Option(False, "--merged", help="print params.yaml with the preset applied instead"),
           params_file: Path = typer.Option(Path("params.yaml"), "--params", help="the params the preset overrides")):
    """Print a preset's overrides as `dvc exp run -S` values, or params.yaml with them applied.

    `dvc exp run $(dcq preset paper)` runs an experiment with the paper's settings; `dcq preset paper --merged`
    prints the whole params file (write it elsewhere, then move it over params.yaml)."""
    import yaml

    from pipeline.config import preset_overrides, preset_params
    from pipeline.stages.common import user_errors

    with user_errors():
        if merged:
            typer.echo(yaml.safe_dump(preset_params(name, params_file), sort_keys=False, width=110), nl=False)
        else:
            preset_params(name, params_file)  # every section of the preset is one of params.yaml's
            typer.echo(" ".join(f"-S {value}" for value in preset_overrides(name)))


def dvc_deps(write: bool = typer.Option(False, "--write", help="rewrite the stale lists in place")):
    """Check (or --write) every dvc stage's code deps and params keys against what the code reads.

    Without --write, exits 1 and names each dvc.yaml whose lists differ. Only the `deps:` code files and `params:`
    keys are written; everything else in the files stays as it is."""
    from pipeline import wiring
    from pipeline.io.atomic import replace_text

    stale = wiring.stale()
    for name, text in stale.items():
        if write:
            # dvc.yaml is the project's own file and only its code-deps and params lists change
            replace_text(wiring.REPO / name, text, owned=lambda _: True)
        typer.echo(f"{'wrote' if write else 'stale'}: {name}")
    if not stale:
        typer.echo(f"up to date: {len(wiring.PIPELINES)} pipelines")
    elif not write:
        typer.echo("run `dcq dvc-deps --write` to rewrite them")
        raise typer.Exit(1)


def params_doc(write: bool = typer.Option(False, "--write", help="rewrite docs/params.md")):
    """Check (or --write) docs/params.md, the parameters reference made from the params dataclasses."""
    from pipeline import params_reference, wiring
    from pipeline.io.atomic import replace_text

    path = wiring.REPO / "docs" / "params.md"
    text = params_reference.render()
    current = path.read_text() if path.exists() else None
    if current == text:
        typer.echo(f"up to date: {path}")
    elif write:
        replace_text(path, text)
        typer.echo(f"wrote: {path}")
    else:
        typer.echo(f"stale: {path}; run `dcq params-doc --write`")
        raise typer.Exit(1)


TOOLS = {"inspect": inspect_store, "export": export, "verify": verify, "preset": preset, "dvc-deps": dvc_deps,
         "params-doc": params_doc}  # not stages: no guard


def output_options(command) -> list[str]:
    """The parameters of a stage command that name a file or store it writes: `out`, `record`, `timing`, `*_out`."""
    return [name for name in inspect.signature(command).parameters
            if name in ("out", "record", "timing") or name.endswith("_out")]


def guarded(module):
    """The stage's command, refusing before it starts any output path that holds something dcq did not write (the
    stage would otherwise find out only when it swaps its output in, maybe hours later), or that is one of its
    inputs. A stage module may name `OUTPUT_FOLDERS` (options naming a folder it writes its outputs into, not an
    output) and `OUTPUT_OWNERS` (option -> test for an output format that carries no dcq marker)."""
    from pipeline.io.atomic import OutputError, check_replaceable
    from pipeline.stages.common import user_errors

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


def load_command(name: str):
    """The function behind subcommand `name`, importing its module now."""
    if name in TOOLS:
        return TOOLS[name]
    return guarded(importlib.import_module(f"pipeline.stages.{name}"))


class LazyGroup(TyperGroup):
    """A typer group whose subcommands are built on first use, and whose help lists them from SHORT_HELP."""

    def list_commands(self, ctx) -> list[str]:
        return [*STAGES, *TOOLS]

    def get_command(self, ctx, name: str):
        if name not in SHORT_HELP:
            return None
        single = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
        single.command(name)(load_command(name))
        command = typer.main.get_command(single)
        command.name = name
        return command

    def format_help(self, ctx, formatter) -> None:
        super(TyperGroup, self).format_help(ctx, formatter)  # plain click's: rich's would build every command first

    def format_commands(self, ctx, formatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, SHORT_HELP[name]) for name in self.list_commands(ctx)])


def version() -> str:
    from pipeline import __version__

    return __version__


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"dcq {version()}")
        raise typer.Exit()


def build_app() -> typer.Typer:
    app = typer.Typer(cls=LazyGroup, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                      rich_markup_mode=None,
                      help="Dataset colour quantization: a staged pipeline from images to palettes + indices in Zarr.")

    @app.callback()
    def options(show_version: bool = typer.Option(False, "--version", callback=_show_version, is_eager=True,
                                                  help="print dcq's version and exit")):
        """Dataset colour quantization: a staged pipeline from images to palettes + indices in Zarr."""

    return app


def main() -> None:
    """Console entry point."""
    from pipeline.allocator import keep_freed_memory

    keep_freed_memory()
    build_app()(prog_name="dcq")


def __getattr__(name: str):
    if name == "app":  # `from pipeline.cli import app`: the whole CLI (tests, CliRunner)
        return build_app()
    raise AttributeError(name)


if __name__ == "__main__":
    main()
