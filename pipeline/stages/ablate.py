"""ablate@variant-q: one DCQ ablation, the whole DCQ chain rerun with a few params changed, into one DCQ store.

Reads  `ablate.variants.<variant>` + `base`, and as the settings every variant starts from, the DCQ stage
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
code as the main stages (their `run` functions), so a variant with no overrides rebuilds the main DCQ store.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import typer
import zarr

from pipeline.config import BaseParams, load_base, load_section, params_hash, parse_section, read_yaml, require, to_dict
from pipeline.errors import ParamsError, StoreError
from pipeline.io.arrays import array_bytes, open_group
from pipeline.io.atomic import atomic_output
from pipeline.io.subset_store import write_subset
from pipeline.io.synthetic_store import budget_bytes
from pipeline.prune.select import kept_count
from pipeline.quantize.bitpack import check_bits, packed_bytes
from pipeline.stages import attention, cluster, encode, features, palette, prune, refine
from pipeline.stages.common import PARAMS_OPTION, TIMING_OPTION, Timer, stage_command, summary, user_errors

# The DCQ sections a variant may override, in chain order, with their typed configs.
SECTIONS = {"features": features.FeaturesParams, "cluster": cluster.ClusterParams,
            "attention": attention.AttentionParams, "palette": palette.PaletteParams,
            "refine": refine.RefineParams, "encode": encode.EncodeParams}


@dataclass(frozen=True)
class CoresetSpec:
    method: str = "ccs"
    keep: float | None = None  # fraction of the train images kept (pruning ratio 1 - keep), or
    ipc: int | None = None     # as many images as fit IPC full-colour images per class as q-bit indices
    ccs_score: Literal["aum", "el2n", "forgetting", "entropy"] = "aum"
    ccs_strata: int = 50
    ccs_hard_prune: float = 0.3

    def __post_init__(self):
        require(self.method in prune.METHODS, f"method={self.method!r} is not a pruning method {list(prune.METHODS)}")
        require((self.keep is None) != (self.ipc is None), "give exactly one of keep and ipc")
        require(self.keep is None or 0 < self.keep <= 1, f"keep={self.keep} must be in (0, 1]")
        require(self.ipc is None or self.ipc >= 1, f"ipc={self.ipc} must be >= 1")

    def prune_params(self) -> prune.PruneParams:
        return prune.PruneParams(methods=[self.method], ccs_score=self.ccs_score, ccs_strata=self.ccs_strata,
                                 ccs_hard_prune=self.ccs_hard_prune)


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


def load_params(path: Path) -> AblateParams:
    raw = dict(read_yaml(path).get("ablate") or {})
    variants = parse_variants(raw.pop("variants", None), f"{path}:ablate.variants")
    return dataclasses.replace(parse_section(AblateParams, raw, f"{path}:ablate"), variants=variants)


def resolve(defaults: dict[str, Any], variant: Variant, where: str) -> dict[str, Any]:
    """Each DCQ section's typed config: the params.yaml section with the variant's keys on top (typed and checked
    like the section itself, so an unknown or mistyped key names the variant)."""
    return {name: parse_section(cls, {**to_dict(defaults[name]), **getattr(variant, name)}, f"{where}.{name}")
            for name, cls in SECTIONS.items()}


def ipc_budget(ipc: int, num_classes: int, image_size: tuple[int, int]) -> int:
    """Bytes of IPC full-colour images per class with their labels: the distillation budget."""
    return budget_bytes(ipc, num_classes, image_size)


def images_within(budget: int, bits: int, clusters: int, image_size: tuple[int, int]) -> int:
    """How many images fit `budget` bytes as DCQ stores them, uncompressed: packed q-bit indices, a one-byte
    label and cluster id each, plus the shared palettes (zstd only makes the store smaller)."""
    per_image = packed_bytes(image_size[0] * image_size[1], bits) + 2
    return max(0, (budget - clusters * 2 ** bits * 3) // per_image)


def coreset_prepared(prepared: Path, scores_path: Path | None, spec: CoresetSpec, seed: int, out: Path,
                     bits: int, clusters: int) -> int:
    """A prepared-layout store (train/images, train/labels) of the coreset; returns the full train-set size."""
    prep = open_group(prepared, "prepared store")
    images, labels = prep["train/images"], prep["train/labels"][:].astype(np.int64)
    n = len(labels)
    if spec.ipc is not None:
        budget = ipc_budget(spec.ipc, len(prep.attrs["classes"]), tuple(images.shape[1:3]))
        keep = min(n, images_within(budget, bits, clusters, tuple(images.shape[1:3])))
        what = f"coreset ipc={spec.ipc} ({budget:,} bytes at q={bits})"
    else:
        keep, what = kept_count(1.0 - spec.keep, n), f"coreset keep={spec.keep} of {n} images"
    if keep < clusters:
        raise ParamsError(f"{what} keeps {keep} images, fewer than the {clusters} clusters")
    scores = None if spec.method == "random" else prune.read_scores(spec.method, scores_path, n, prepared)[0]
    kept = prune.select(spec.prune_params(), spec.method, labels, keep, seed, scores)
    root = zarr.open_group(str(out), mode="w")
    root.attrs.update(dict(prep.attrs))
    write_subset(root.create_group("train"), images, labels, kept, {"method": spec.method})
    return n


def run(params: AblateParams, base: BaseParams, defaults: dict[str, Any], name: str, bits: int, prepared: Path,
        teacher: Path, scores: Path | None, out: Path) -> dict:
    if name not in params.variants:
        raise ParamsError(f"ablate variant {name!r} is not in ablate.variants {sorted(params.variants)}")
    bits = check_bits(bits, "ablate --bits")
    variant = params.variants[name]
    cfg = resolve(defaults, variant, f"ablate.variants.{name}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with Timer() as timer, tempfile.TemporaryDirectory(prefix=f".{out.name}.work-", dir=out.parent) as scratch:
        work = Path(scratch)
        source_images = None
        if variant.coreset is not None:
            source_images = coreset_prepared(prepared, scores, variant.coreset, base.seed, work / "prepared.zarr",
                                             bits, cfg["cluster"].k)
            prepared = work / "prepared.zarr"
        features.run(cfg["features"], base, prepared, teacher, work / "features.zarr")
        cluster.run(cfg["cluster"], base, work / "features.zarr", work / "clusters.zarr", prepared)
        attention.run(cfg["attention"], base, prepared, teacher, work / "attention.zarr")
        palette.run(cfg["palette"], base, bits, prepared, work / "clusters.zarr", work / "attention.zarr",
                    work / "palettes.zarr")
        refine.run(cfg["refine"], base, bits, prepared, work / "clusters.zarr", work / "palettes.zarr",
                   work / "refined.zarr", work / "refined.json")
        encode.run(cfg["encode"], base, bits, prepared, work / "clusters.zarr", work / "refined.zarr",
                   work / "dcq.zarr")
        store = zarr.open_group(str(work / "dcq.zarr"), mode="r+")
        ablation = {"name": name, **{k: v for k, v in to_dict(variant).items() if v}}
        if variant.coreset is not None:
            ablation["coreset"] = {k: v for k, v in ablation["coreset"].items() if v is not None}
        lineage = {**store.attrs["params"], "ablate": ablation}
        extra = {} if source_images is None else {"source_images": source_images}
        if variant.coreset is not None and variant.coreset.ipc is not None:
            h, w = store.attrs["image_size"]
            budget = ipc_budget(variant.coreset.ipc, len(store.attrs["classes"]), (h, w))
            used = array_bytes(work / "dcq.zarr")
            if used > budget:
                raise StoreError(f"ablate {name}: the DCQ store holds {used:,} bytes, over the IPC "
                                 f"{variant.coreset.ipc} budget of {budget:,}")
            extra |= {"ipc": variant.coreset.ipc, "budget_bytes": budget}
        store.attrs.update({"ablation": ablation, "params": lineage, "params_hash": params_hash(lineage)} | extra)
        with atomic_output(out) as tmp:
            shutil.move(str(work / "dcq.zarr"), str(tmp))
    images = int(zarr.open_group(str(out), mode="r").attrs["num_images"])
    summary("ablate", images, "images", timer.seconds, variant=name, bits=bits, out=out)
    return {"variant": name, "bits": bits, "images": images, "source_images": source_images,
            "seconds": timer.seconds}


def read_defaults(params_file: Path) -> dict[str, Any]:
    return {name: load_section(params_file, name, cls) for name, cls in SECTIONS.items()}


def command(
    variant: str = typer.Option(..., help="name of the variant in ablate.variants"),
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
        base, params, defaults = load_base(params_file), load_params(params_file), read_defaults(params_file)
    with stage_command(f"ablate {variant}@{bits}", timing):
        run(params, base, defaults, variant, bits, prepared, teacher, scores, out)
