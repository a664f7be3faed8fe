"""ablate@variant-q: one DCQ ablation, the whole DCQ chain rerun with a few params changed, into one DCQ store.

Reads  `ablate.variants.<variant>` (or `dcq_variants.variants.<variant>` with `--section dcq_variants`) + `base`, and as the settings every variant starts from, the DCQ stage
       sections `features`, `cluster`, `attention`, `palette` (k_gra, iterations, max_pixels_per_cluster),
       `refine` and `encode`; the prepared store, the teacher checkpoint, the scores store (a variant with a
       `coreset` only).
Writes `OUT`, a `dcq-v1` store (pipeline/io/dcq_store.py) that the train stage reads like the main DCQ stores;
       attrs add `ablation` (variant name and its overrides) and, for a coreset variant, `source_images` (the
       train-set size its bytes are compared against). Intermediate stores live in a scratch folder beside OUT
       that is removed at the end.

A variant overrides keys of those sections, e.g. `{cluster: {source: labels, k: 10}}`, `{refine: {enabled:
false}}`, `{attention: {method: none}}`; `coreset: {method: ccs, keep: 0.1}` first selects a coreset (any
pruning method of the prune stage) and quantizes only it (DCQ paper table 4); `coreset: {method: ccs, ipc: 10}`
keeps as many images as fit the storage of 10 full-colour images per class (DCQ paper table 5) and fails if the
written store's array bytes exceed that budget. Every variant runs the same
library functions as the main stages (pipeline/quantize/*_store.py), so a variant with no overrides rebuilds the main DCQ store.
Without `--variant` it is that: the DCQ chain as params.yaml sets it, with no `ablation` attrs, on whatever prepared
store it is given (the equal-bytes study's paper-size regime builds DCQ on every train image this way).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer
import zarr

from pipeline.config import BaseParams, load_base, load_section, params_hash, parse_section, read_yaml, require, to_dict
from pipeline.errors import ParamsError
from pipeline.io.atomic import atomic_output
from pipeline.io.bitpack import check_bits
from pipeline.io.verify import seal
from pipeline.prune.coreset import CoresetSpec, coreset_prepared, within_ipc_budget
from pipeline.quantize.attention_store import AttentionParams, write_attention
from pipeline.quantize.cluster_store import ClusterParams, write_clusters
from pipeline.quantize.encode_store import EncodeParams, write_dcq
from pipeline.quantize.feature_store import FeaturesParams, write_features
from pipeline.quantize.palette_store import PaletteParams, write_colour_counts, write_palettes
from pipeline.quantize.refine_store import RefineParams, write_refined
from pipeline.stages.common import PARAMS_OPTION, TIMING_OPTION, Timer, stage_command, summary, user_errors

# The params sections that hold variants: the ablations study's, and the DCQ variants of the equal-bytes study.
VARIANT_SECTIONS = ("ablate", "dcq_variants")
# The DCQ sections a variant may override, in chain order, with their typed configs.
SECTIONS = {"features": FeaturesParams, "cluster": ClusterParams, "attention": AttentionParams,
            "palette": PaletteParams, "refine": RefineParams, "encode": EncodeParams}


@dataclass(frozen=True)
class Variant:
    features: dict = field(default_factory=dict)
    cluster: dict = field(default_factory=dict)
    attention: dict = field(default_factory=dict)
    palette: dict = field(default_factory=dict)
    refine: dict = field(default_factory=dict)
    encode: dict = field(default_factory=dict)
    coreset: CoresetSpec | None = None

    def __post_init__(self):
        for name in SECTIONS:
            require(isinstance(getattr(self, name), dict), f"{name} must be a mapping of that section's keys")
        require("bits" not in self.palette, "palette.bits is not a variant key: the bit depths are ablate.bits")


@dataclass(frozen=True)
class AblateParams:
    bits: list[int] = (1,)            # read by dvc.yaml's matrix: each variant is built at each of these q
    seeds: list[int] = (0, 1)         # read by dvc.yaml's train_ablation matrix
    variants: dict[str, Variant] = field(default_factory=dict)

    def __post_init__(self):
        for q in self.bits:
            check_bits(q)


def parse_variants(raw: dict | None, where: str) -> dict[str, Variant]:
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ParamsError(f"{where}: expected a mapping of variant name -> overrides, got {raw!r}")
    return {str(name): parse_section(Variant, spec, f"{where}.{name}") for name, spec in raw.items()}


def load_params(path: Path, section: str = "ablate") -> AblateParams:
    raw = dict(read_yaml(path).get(section) or {})
    variants = parse_variants(raw.pop("variants", None), f"{path}:{section}.variants")
    return dataclasses.replace(parse_section(AblateParams, raw, f"{path}:{section}"), variants=variants)


def resolve(defaults: dict[str, Any], variant: Variant, where: str) -> dict[str, Any]:
    """Each DCQ section's typed config: the params.yaml section with the variant's keys on top (typed and checked
    like the section itself, so an unknown or mistyped key names the variant)."""
    return {name: parse_section(cls, {**to_dict(defaults[name]), **getattr(variant, name)}, f"{where}.{name}")
            for name, cls in SECTIONS.items()}


def run(params: AblateParams, base: BaseParams, defaults: dict[str, Any], name: str | None, bits: int,
        prepared: Path, teacher: Path, scores: Path | None, out: Path, section: str = "ablate") -> dict:
    """`name` None: no variant, the DCQ chain as params.yaml sets it (on another prepared store): a main DCQ store."""
    if name is not None and name not in params.variants:
        raise ParamsError(f"ablate variant {name!r} is not in {section}.variants {sorted(params.variants)}")
    bits = check_bits(bits, "ablate --bits")
    variant = Variant() if name is None else params.variants[name]
    cfg = resolve(defaults, variant, f"{section}.variants.{name}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with Timer() as timer, tempfile.TemporaryDirectory(prefix=f".{out.name}.work-{os.getpid()}-", dir=out.parent) as scratch:
        work = Path(scratch)
        source_images = None
        if variant.coreset is not None:
            source_images = coreset_prepared(prepared, scores, variant.coreset, base.seed, work / "prepared.zarr",
                                             bits, cfg["cluster"].k)
            prepared = work / "prepared.zarr"
        write_features(cfg["features"], base, prepared, teacher, work / "features.zarr")
        write_clusters(cfg["cluster"], base, work / "features.zarr", work / "clusters.zarr", prepared)
        write_attention(cfg["attention"], base, prepared, teacher, work / "attention.zarr")
        write_colour_counts(cfg["palette"], base, prepared, work / "clusters.zarr", work / "attention.zarr",
                            work / "counts.zarr")
        write_palettes(cfg["palette"], base, bits, work / "counts.zarr", work / "palettes.zarr")
        write_refined(cfg["refine"], base, bits, prepared, work / "clusters.zarr", work / "palettes.zarr",
                      work / "refined.zarr", work / "refined.json")
        write_dcq(cfg["encode"], base, bits, prepared, work / "clusters.zarr", work / "refined.zarr",
                  work / "dcq.zarr")
        if name is not None:
            store = zarr.open_group(str(work / "dcq.zarr"), mode="r+")
            ablation = {"name": name, **{k: v for k, v in to_dict(variant).items() if v}}
            if variant.coreset is not None:
                ablation["coreset"] = {k: v for k, v in ablation["coreset"].items() if v is not None}
            lineage = {**store.attrs["params"], "ablate": ablation}
            extra = {} if source_images is None else {"source_images": source_images}
            if variant.coreset is not None and variant.coreset.ipc is not None:
                extra |= within_ipc_budget(work / "dcq.zarr", variant.coreset.ipc, f"ablate {name}")
            store.attrs.update({"ablation": ablation, "params": lineage, "params_hash": params_hash(lineage)} | extra)
            seal(store)  # the manifest vouches for the attrs too: seal again after changing them
        with atomic_output(out) as tmp:
            shutil.move(str(work / "dcq.zarr"), str(tmp))
    images = int(zarr.open_group(str(out), mode="r").attrs["num_images"])
    summary("ablate", images, "images", timer.seconds, variant=name or "none", bits=bits, out=out)
    return {"variant": name, "bits": bits, "images": images, "source_images": source_images,
            "seconds": timer.seconds}


def read_defaults(params_file: Path) -> dict[str, Any]:
    return {name: load_section(params_file, name, cls) for name, cls in SECTIONS.items()}


def command(
    variant: str | None = typer.Option(None, help="name of the variant in the section's variants; omitted: none, "
                                       "the DCQ chain as params.yaml sets it (e.g. on another prepared store)"),
    section: str = typer.Option("ablate", help="params section holding the variants: ablate | dcq_variants"),
    bits: int = typer.Option(..., help="bit depth q"),
    prepared: Path = typer.Option(..., help="prepared Zarr store"),
    teacher: Path = typer.Option(..., help="teacher checkpoint"),
    scores: Path | None = typer.Option(None, help="scores Zarr store (variants with a coreset)"),
    out: Path = typer.Option(..., help="DCQ store to write"),
    params_file: Path = PARAMS_OPTION,
    timing: Path | None = TIMING_OPTION,
):
    """Rebuild the DCQ store with one variant's params changed (an ablation)."""
    with user_errors():
        if section not in VARIANT_SECTIONS:
            raise ParamsError(f"--section {section!r} must be one of {list(VARIANT_SECTIONS)}")
        base, params, defaults = load_base(params_file), load_params(params_file, section), read_defaults(params_file)
    with stage_command(f"ablate {variant or 'none'}@{bits}", timing):
        run(params, base, defaults, variant, bits, prepared, teacher, scores, out, section)
