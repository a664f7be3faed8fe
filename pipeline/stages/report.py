"""report: the compression-vs-accuracy report a researcher reads after `dvc repro`.

Reads  `report:` + `base` (seed of the images shown) + `baseline.kmeans_iterations`; every run record under RUNS
       (the main job's and any study's), judged current or stale by its lineage in the dvc.lock files
       (pipeline/report/lineage.py), the main job's DCQ stores (image grids), the fidelity JSONs under FIDELITY, the
       prepared store, the stage timing JSONs under TIMINGS and the teacher metrics. No study store is read: the
       methods grid quantizes its few images again, as the baselines study did.
Writes RECORDS (reports/metrics.json: {records: the list of run records}), SUMMARY (the main job's mean accuracy and bytes
       per method and q: the DVC metric), PLOT_DATA (CSV for `dvc plots`), PLOT_PNG (two panels: storage and IPC),
       FIDELITY_PNG, CONFUSION_PNG, SHARING_PNG (the equal-bytes study's k sweep), GRID_PNG, METHODS_PNG, MARKDOWN
       and HTML (self-contained). A figure whose data is absent is not drawn (a figure of ours left from an earlier
       run is removed) and the report says why. The report's sections: pipeline/report/sections/.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import typer

from pipeline.config import BaseParams, load_section, require
from pipeline.errors import StoreError
from pipeline.io.arrays import disk_bytes, open_group, write_json
from pipeline.io.atomic import atomic_output, is_dcq_output
from pipeline.report import document, figures, gather, lineage, outline, plot_data, records
from pipeline.report.context import ReportInputs
from pipeline.report.sections import architectures, per_class, regimes, variants
from pipeline.report.sections import fidelity as fidelity_section
from pipeline.stages.common import PARAMS_OPTION, TIMING_OPTION, StageWiring, Timer, read_params, stage_command, summary

if TYPE_CHECKING:  # the quantizers import torch: only a report that draws the methods grid pays for it
    from pipeline.quantize.per_image import BaselineParams


@dataclass(frozen=True)
class ReportParams:
    grid_images: int = 8   # train images shown in the grid (one per class first, chosen with base.seed)
    title: str = "dcq: dataset colour quantization, compression vs accuracy"

    def __post_init__(self):
        require(1 <= self.grid_images <= 64, f"grid_images={self.grid_images} must be in 1..64")


WIRING = StageWiring(ReportParams, "report", base=("seed",), also_reads=("baseline.kmeans_iterations",))


def quantizers(baseline: BaselineParams | None, base: BaseParams) -> dict:
    """method -> quantize(images, bits), as the baseline stage quantized each image."""
    from pipeline.quantize.per_image import QUANTIZERS, BaselineParams, quantize_block

    baseline = baseline or BaselineParams()
    return {m: lambda images, bits, m=m: quantize_block(images, m, bits, baseline.kmeans_iterations, base.seed)
            for m in QUANTIZERS}


def figure(out: Path | None, draw, absent: str | None = None, reasons: dict | None = None, key: str = "") -> None:
    """Draw the figure at `out`; with `absent` (why its data is missing) draw nothing, remove a figure of ours
    left there by an earlier run, and note the reason for the report."""
    if out is None:
        return
    if absent is not None:
        reasons[key] = absent
        if out.is_file() and is_dcq_output(out):
            out.unlink()
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(out) as tmp:
        draw(tmp)


def run(params: ReportParams, base: BaseParams, runs: Path, prepared: Path, fidelity: Path | None, timings: Path,
        teacher_metrics: Path, records_out: Path, summary_out: Path, plot_data_out: Path, plot_png_out: Path,
        grid_png_out: Path, methods_png_out: Path, markdown_out: Path, html_out: Path,
        fidelity_png_out: Path | None = None, confusion_png_out: Path | None = None,
        sharing_png_out: Path | None = None, baseline: BaselineParams | None = None) -> dict:
    with Timer() as timer:
        every, stale = lineage.split(records.collect(runs, annotate=lineage.annotator(lineage.Lineage.find(runs))))
        if not every:
            raise StoreError(f"every run record under {runs} is stale, e.g. {stale[0]['stale_because']}")
        # the architectures study and the other regimes train with their own recipes or data: their own tables
        arch_recs = [r for r in every if architectures.is_architecture_run(r)]
        regime_recs = [r for r in every if regimes.is_regime_run(r)]
        paper_size_recs = [r for r in every if regimes.is_paper_size_run(r)]
        recs = [r for r in every if not architectures.is_architecture_run(r) and r.get("run_group") not in
                regimes.RUN_GROUPS]
        rows = records.summarize(recs)
        stores = gather.load_stores(recs)
        root = open_group(prepared, "prepared store")
        attrs = dict(root.attrs)
        labels = root["train"]["labels"][:]
        picked = gather.grid_rows(labels, params.grid_images, base.seed)
        originals = np.stack([root["train"]["images"][int(r)] for r in picked])
        names = [attrs["classes"][int(labels[r])] for r in picked]
        teacher = json.loads(Path(teacher_metrics).read_text()) if Path(teacher_metrics).is_file() else {}
        methods_q, columns = gather.method_columns(recs, stores, originals, picked,
                                                   quantizers(baseline, base))
        classes, confusion = gather.confusion_by_variant(recs)
        storage_rows = plot_data.plotted([r for r in rows if r["ipc"] is None], recs)
        fidelity_found = gather.load_fidelity(fidelity) if fidelity else {}
        matrices = [(per_class.variant_title(k), confusion[k]) for k in per_class.confusion_order(confusion)]
        panels = variants.sharing_panels(rows, recs)
        absent: dict[str, str] = {}
        inputs = ReportInputs(
            title=params.title, recs=recs, rows=rows, stale=stale, stores=stores, prepared_attrs=attrs,
            test_images=int(root["test"]["labels"].shape[0]), full_bytes=disk_bytes(Path(prepared) / "train"),
            timings=gather.load_timings(timings), train_params=gather.run_params(runs), teacher=teacher,
            plot_png=plot_png_out, grid_png=grid_png_out, fidelity=fidelity_found,
            fidelity_png=fidelity_png_out, classes=classes, confusion=confusion, confusion_png=confusion_png_out,
            methods_q=methods_q, methods_png=methods_png_out, sharing_png=sharing_png_out,
            architecture_recs=arch_recs, architecture_rows=records.summarize(arch_recs) if arch_recs else [],
            regime_recs=regime_recs, regime_rows=records.summarize(regime_recs) if regime_recs else [],
            paper_size_recs=paper_size_recs,
            paper_size_rows=records.summarize(paper_size_recs) if paper_size_recs else [],
            absent=absent)
        fidelity_rows = fidelity_section.fidelity_rows(inputs, [r for r in rows if r["ipc"] is None])
        figure(plot_png_out, lambda out: figures.accuracy_plot(storage_rows, [r for r in rows if r["ipc"] is not None],
                                                               out))
        figure(grid_png_out, lambda out: figures.image_grid(originals, names, picked,
                                                            [(f"{q} bit", st) for q, st in stores.items()], out))
        figure(methods_png_out, lambda out: figures.image_grid(originals, names, picked, columns, out),
               None if columns else "no per-image quantizer runs at a DCQ bit depth", absent, "methods")
        figure(fidelity_png_out, lambda out: figures.fidelity_plot(fidelity_rows, out),
               None if fidelity_rows else "no quantized train set has a fidelity measurement", absent, "fidelity")
        figure(confusion_png_out, lambda out: figures.confusion_grid(matrices[:5], classes, out),
               None if matrices else "no run record holds a confusion matrix", absent, "confusion")
        figure(sharing_png_out, lambda out: figures.sharing_plot(panels, out),
               None if panels else "fewer than two DCQ variants on the sharing axis have runs (the equal-bytes "
               "study, `dvc repro studies/equal_bytes/dvc.yaml`)", absent, "sharing")
        blocks = outline.build(inputs)
        write_json(records_out, {"records": every})
        write_json(summary_out, records.dvc_summary(rows))
        with atomic_output(plot_data_out, owned=plot_data.is_plot_csv) as tmp:
            tmp.write_text(plot_data.plot_csv(storage_rows))
        with atomic_output(markdown_out) as tmp:
            tmp.write_text(document.to_markdown(blocks, markdown_out))
        with atomic_output(html_out) as tmp:
            tmp.write_text(document.to_html(blocks, params.title))
    summary("report", len(every), "runs", timer.seconds, variants=len(rows), stale=len(stale),
            stores_measured=len(inputs.fidelity), markdown=str(markdown_out))
    return {"records": every, "rows": rows, "stale": stale}


def baseline_params(params_file: Path) -> BaselineParams:
    from pipeline.quantize.per_image import BaselineParams

    return load_section(params_file, "baseline", BaselineParams)


OUTPUT_OWNERS = {"plot_data_out": plot_data.is_plot_csv}  # a CSV carries no marker: its header says it is ours


def command(
    runs: Path = typer.Option(..., help="folder of run records (*.json) and checkpoints from the train stage"),
    prepared: Path = typer.Option(..., help="prepared store"),
    fidelity: Path = typer.Option(None, help="folder of fidelity JSONs (the fidelity stages' outputs)"),
    timings: Path = typer.Option(..., help="folder of stage timing JSONs"),
    teacher_metrics: Path = typer.Option(..., help="teacher metrics JSON"),
    records_out: Path = typer.Option(..., "--records", help="reports/metrics.json: the list of run records"),
    summary_out: Path = typer.Option(..., "--summary", help="mean/std summary JSON (DVC metric)"),
    plot_data_out: Path = typer.Option(..., "--plot-data", help="CSV for dvc plots"),
    plot_png_out: Path = typer.Option(..., "--plot", help="accuracy vs compression PNG"),
    grid_png_out: Path = typer.Option(..., "--grid", help="image grid PNG: full colour and DCQ at each q"),
    methods_png_out: Path = typer.Option(..., "--methods-grid", help="image grid PNG: DCQ vs per-image quantizers"),
    fidelity_png_out: Path = typer.Option(None, "--fidelity-plot", help="accuracy vs colour fidelity PNG"),
    confusion_png_out: Path = typer.Option(None, "--confusion", help="per-class confusion matrices PNG"),
    sharing_png_out: Path = typer.Option(None, "--sharing-plot", help="accuracy vs shared palettes k PNG"),
    markdown_out: Path = typer.Option(..., "--markdown", help="Markdown report"),
    html_out: Path = typer.Option(..., "--html", help="self-contained HTML report"),
    params_file: Path = PARAMS_OPTION,
    timing: Path | None = TIMING_OPTION,
):
    """Aggregate the runs into reports/: metrics list, summary, plot, image grid, Markdown and HTML."""
    base, params = read_params(params_file, WIRING.section, WIRING.params)
    with stage_command("report", timing):
        run(params, base, runs, prepared, fidelity, timings, teacher_metrics, records_out, summary_out, plot_data_out,
            plot_png_out, grid_png_out, methods_png_out, markdown_out, html_out, fidelity_png_out, confusion_png_out,
            sharing_png_out, baseline_params(params_file))
