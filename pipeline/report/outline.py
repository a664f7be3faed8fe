"""The report's outline: a registry of sections, each a function of `Report` returning blocks, with its place.

A study adds its tables and figures by adding a module to `pipeline/report/sections/` (and its import line there)
that registers `@section(name, place, order)`. `build(inputs)` walks the registry:

- "answer": the first screen, what wins at each budget (the matched-storage table, the differences to DCQ with
  their intervals, the accuracy-against-storage figure);
- "body": every other study's tables and figures;
- "appendix": runs, stage timings and resolved params (collapsed in the HTML).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pipeline.registry import Registry
from pipeline.report import document
from pipeline.report.context import Report, ReportInputs

PLACES = ("answer", "body", "appendix")


@dataclass(frozen=True)
class Section:
    name: str
    place: str
    order: int
    render: Callable[[Report], list[document.Block]]


SECTIONS: Registry[Section] = Registry("report section", error=ValueError)


def section(name: str, place: str, order: int):
    """Register the decorated `render(report) -> blocks` as the report section `name`."""
    if place not in PLACES:
        raise ValueError(f"section {name}: place {place!r} is not one of {PLACES}")

    def wrap(render: Callable[[Report], list[document.Block]]):
        SECTIONS.register(name)(Section(name, place, order, render))
        return render

    return wrap


def ordered() -> list[Section]:
    import pipeline.report.sections  # noqa: F401  (registers every section)

    found = [SECTIONS.get(name) for name in SECTIONS.names()]
    return sorted(found, key=lambda s: (PLACES.index(s.place), s.order, s.name))


def header(report: Report) -> list[document.Block]:
    inputs, store = report.inputs, report.any_store
    prep = inputs.prepared_attrs.get("params", {}).get("prepare", {})
    ablations = len(report.ablation_recs)
    return [("h1", inputs.title), ("p", (
        f"Dataset `{prep.get('source', '?')}` from `{prep.get('root', '?')}`: {len(store):,} train images "
        f"({prep.get('train_per_class') or 'all'} per class), {inputs.test_images:,} test images (never "
        f"quantized), {store.image_size[0]}x{store.image_size[1]} px, {len(store.classes)} classes. Teacher "
        f"`{inputs.teacher.get('arch', '?')}`: {inputs.teacher.get('test_accuracy', '?')}% test accuracy. "
        f"{len(report.all_recs)} run records: {len(report.recs)} at matched storage, {ablations} DCQ variant or "
        f"ablation runs, {len(report.main_recs) - len(report.recs) - ablations} distillation evaluations, "
        f"{len(inputs.architecture_recs)} of the architectures study, {len(inputs.regime_recs)} of the second "
        f"regime{f', {len(inputs.paper_size_recs)} of the paper-size regime' if inputs.paper_size_recs else ''}"
        f"{f'; {len(inputs.stale)} stale left out' if inputs.stale else ''}. Accuracy is the mean ± sample "
        "std over seeds."))]


def build(inputs: ReportInputs) -> list[document.Block]:
    """The whole report: the header, then every registered section by place and order."""
    report = Report(inputs)
    blocks = header(report)
    appendix: list[document.Block] = []
    for part in ordered():
        (appendix if part.place == "appendix" else blocks).extend(part.render(report))
    if appendix:
        blocks.append(("details", "Appendix: runs, stage timings and params", appendix))
    return blocks
