"""What every section of the report reads: `ReportInputs` (gathered by the report stage) and `Report`, the same
records split once into the groups the sections show, plus the cell formats the sections share."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from pipeline.io.dcq_store import DCQStore
from pipeline.report import records


@dataclass(frozen=True)
class ReportInputs:
    title: str
    recs: list[dict]                  # current run records (stale ones left out)
    rows: list[dict]                  # their summary: one row per variant
    stale: list[dict]
    stores: dict[int, DCQStore]       # the main DCQ stores, by bit depth
    prepared_attrs: dict
    test_images: int
    full_bytes: int
    timings: list[tuple[str, float, bool]]   # (stage, seconds, in the main job)
    train_params: dict
    teacher: dict
    plot_png: Path
    grid_png: Path
    fidelity: dict[str, dict] = field(default_factory=dict)   # store path -> PSNR/SSIM/ΔE
    fidelity_png: Path | None = None
    classes: list[str] = field(default_factory=list)
    confusion: dict[tuple, np.ndarray] = field(default_factory=dict)
    confusion_png: Path | None = None
    methods_q: int | None = None
    methods_png: Path | None = None
    sharing_png: Path | None = None
    architecture_recs: list[dict] = field(default_factory=list)  # the architectures study's (not in recs)
    architecture_rows: list[dict] = field(default_factory=list)  # their summary
    regime_recs: list[dict] = field(default_factory=list)  # the second regime's (regime2.recipe; not in recs)
    regime_rows: list[dict] = field(default_factory=list)
    paper_size_recs: list[dict] = field(default_factory=list)  # the paper-size regime's (regime3; not in recs)
    paper_size_rows: list[dict] = field(default_factory=list)
    absent: dict[str, str] = field(default_factory=dict)  # figure -> why it is not drawn (its data is absent)


def is_ablation(r: dict) -> bool:
    """A run on a store the ablate stage built. A stale record has no `ablation` annotation (its store is gone), but
    its train set's path still says."""
    return r.get("ablation") is not None or "ablations" in Path(str(r.get("train_set", ""))).parts


def variant_names(recs: list[dict]) -> set[str]:
    """The DCQ variants of the equal-bytes study (dcq_variants in params.yaml): ablate-built stores whose runs sit
    in the equal_bytes run group."""
    return {r["ablation"] for r in recs if r.get("ablation") and r.get("run_group") == "equal_bytes"}


class Report:
    """The inputs, and the records and summary rows split into what each section shows."""

    def __init__(self, inputs: ReportInputs):
        self.inputs = inputs
        self.main_recs = inputs.recs  # every current record of the main regime (not architectures/regime2/3)
        self.variants = variant_names(inputs.recs)

    @cached_property
    def rows(self) -> list[dict]:
        """Matched-storage summary rows: no ablation, no IPC budget."""
        return [r for r in self.inputs.rows if r["ablation"] is None and r["ipc"] is None]

    @cached_property
    def recs(self) -> list[dict]:
        """Matched-storage records."""
        return [r for r in self.inputs.recs if r.get("ablation") is None and r.get("ipc") is None]

    @cached_property
    def variant_rows(self) -> list[dict]:
        return [r for r in self.inputs.rows if r["ablation"] in self.variants and r["ipc"] is None]

    @cached_property
    def ablation_rows(self) -> list[dict]:
        return [r for r in self.inputs.rows if r["ablation"] is not None and r["ablation"] not in self.variants
                and r["ipc"] is None]

    @cached_property
    def ablation_recs(self) -> list[dict]:
        return [r for r in self.inputs.recs if r.get("ablation") is not None and r.get("ipc") is None]

    @cached_property
    def ipc_rows(self) -> list[dict]:
        return [r for r in self.inputs.rows if r["ipc"] is not None]

    @cached_property
    def all_recs(self) -> list[dict]:
        return self.inputs.recs + self.inputs.architecture_recs + self.inputs.regime_recs + self.inputs.paper_size_recs

    @property
    def any_store(self) -> DCQStore:
        return self.inputs.stores[max(self.inputs.stores)]


def fmt_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"


accuracy_text = records.accuracy_text


def compared_cell(row: dict | None, reference: dict | None, extra: str) -> str:
    """'mean ± std, Δ change over the reference (bytes, extra)', or '-' where the run is missing."""
    if row is None:
        return "-"
    delta = "" if reference is None else f", Δ {row['test_accuracy_mean'] - reference['test_accuracy_mean']:+.2f}"
    return f"{accuracy_text(row)}{delta} ({fmt_bytes(row['train_bytes'])}, {extra})"


def figure_or_reason(path: Path | None, alt: str, absent: dict[str, str], key: str) -> list[tuple]:
    """The figure, or the sentence that says why it is not drawn (never a placeholder image)."""
    if key in absent or path is None:
        return [("p", f"No figure here: {absent.get(key, 'it was not requested')}.")]
    return [("img", path, alt)]
