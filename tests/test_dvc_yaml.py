"""dvc.yaml and the studies' dvc.yaml files: each stage lists exactly the params keys it reads and every code file
it imports, and every path is declared once (paths.yaml)."""

import ast
import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from pipeline.config import BaseParams
from pipeline.stages import (
    ablate,
    attention,
    baseline,
    cluster,
    codec,
    colour_counts,
    distill,
    encode,
    evaluate_synthetic,
    experts,
    features,
    fidelity,
    palette,
    prepare,
    prune,
    refine,
    report,
    scores,
    teacher,
    train,
)
from tests.conftest import REPO

# The equal-bytes study's second regime: `dcq train --section regime2` on each contender's store.
REGIME2_STAGES = ("train_r2_full", "train_r2_dcq", "train_r2_variant", "train_r2_baseline", "train_r2_pruned",
                  "train_r2_codec", "train_r2_ablation")
STAGE_PARAMS = {
    "prepare": prepare.PrepareParams, "teacher": teacher.TeacherParams, "features": features.FeaturesParams,
    "cluster": cluster.ClusterParams, "attention": attention.AttentionParams, "palette": palette.PaletteParams,
    "colour_counts": palette.PaletteParams,
    "refine": refine.RefineParams, "encode": encode.EncodeParams, "train_full": train.TrainParams,
    "train_dcq": train.TrainParams, "report": report.ReportParams, "baseline": baseline.BaselineParams,
    "scores": scores.ScoresParams, "prune": prune.PruneParams, "train_baseline": train.TrainParams,
    "train_pruned": train.TrainParams, "train_ablation": train.TrainParams, "experts": experts.ExpertsParams,
    "distill": distill.DistillParams, "evaluate_synthetic": evaluate_synthetic.EvaluateSyntheticParams,
    "evaluate_dcq_ipc": evaluate_synthetic.EvaluateSyntheticParams, "fidelity": fidelity.FidelityParams,
    "fidelity_baseline": fidelity.FidelityParams, "fidelity_ablation": fidelity.FidelityParams,
    "train_full_seeds": train.TrainParams, "train_dcq_seeds": train.TrainParams,
    "train_baseline_seeds": train.TrainParams, "train_pruned_seeds": train.TrainParams,
    "codec": codec.CodecParams, "train_codec": train.TrainParams,
    "train_codec_seeds": train.TrainParams, "fidelity_codec": fidelity.FidelityParams,
    "train_dcq_variant": train.TrainParams, "fidelity_dcq_variant": fidelity.FidelityParams,
    "train_arch_full": train.TrainParams, "train_arch_dcq": train.TrainParams,
    "experts_dcq": experts.ExpertsParams, "distill_dcq": distill.DistillParams,
    "evaluate_distill_dcq": evaluate_synthetic.EvaluateSyntheticParams,
    **{name: train.TrainParams for name in REGIME2_STAGES},
}
# The params section each dvc stage reads (train_full/train_dcq are both the `train` stage on other inputs).
SECTION = {"colour_counts": "palette", "train_full": "train", "train_dcq": "train", "train_baseline": "train", "train_pruned": "train",
           "train_ablation": "train", "evaluate_dcq_ipc": "evaluate_synthetic", "fidelity_baseline": "fidelity", "fidelity_ablation": "fidelity",
           "train_full_seeds": "train", "train_dcq_seeds": "train", "train_baseline_seeds": "train",
           "train_pruned_seeds": "train",
           "train_codec": "train", "train_codec_seeds": "train", "fidelity_codec": "fidelity",
           "train_dcq_variant": "train", "fidelity_dcq_variant": "fidelity",
           "train_arch_full": "architectures", "train_arch_dcq": "architectures",
           "experts_dcq": "experts", "distill_dcq": "distill", "evaluate_distill_dcq": "evaluate_synthetic",
           **{name: "regime2" for name in REGIME2_STAGES}}
# `palette.bits` drives dvc.yaml's foreach: each palette/refine stage gets its own q on the command line, so adding
# a bit depth does not rerun the others (encode reads it whole: one pass writes every q).
# `train.models/seeds/bits` likewise drive the train stages' matrix: each run gets its item on the command line.
FOREACH_ONLY = {"palette": {"bits"}, "codec": {"codecs", "bits"}, "train": set(train.MATRIX_KEYS),
                "architectures": set(train.MATRIX_KEYS), "regime2": set(train.MATRIX_KEYS), "baseline": {"methods", "bits"},
                "prune": {"methods", "bits"}, "distill": {"methods", "ipcs"},
                "evaluate_synthetic": set(evaluate_synthetic.MATRIX_KEYS)}
# The base keys an output can depend on; base.executor and base.scheduler never change a byte (tests/test_executor.py),
# so no stage lists them and switching executor reruns nothing.
RECORDED_BASE = {"base.seed", "base.device", "base.precision"}
# prepare only uses the seed (for the subset); the device cannot change what it writes.
# train seeds itself from its matrix item; report uses the seed only to pick the images it shows.
BASE_KEYS = {"prepare": {"base.seed"}, "train_full": {"base.device", "base.precision"},
             "train_dcq": {"base.device", "base.precision"}, "report": {"base.seed"},
             "train_baseline": {"base.device", "base.precision"}, "train_pruned": {"base.device", "base.precision"},
             "train_ablation": {"base.device", "base.precision"},
             "evaluate_synthetic": {"base.device", "base.precision"},
             "evaluate_dcq_ipc": {"base.device", "base.precision"},
             "evaluate_distill_dcq": {"base.device", "base.precision"},
             "fidelity": set(), "fidelity_baseline": set(), "fidelity_ablation": set(),
             **{name: {"base.device", "base.precision"}
                for name in ("train_full_seeds", "train_dcq_seeds", "train_baseline_seeds", "train_pruned_seeds",
                             "train_codec",
                             "train_codec_seeds", "train_dcq_variant", "train_arch_full", "train_arch_dcq")
                + REGIME2_STAGES},
             "fidelity_codec": set(), "fidelity_dcq_variant": set()}


# Stages that read only some keys of their section (colour_counts: the palette section's k_gra).
READS_ONLY = {"colour_counts": colour_counts.READS}
# Keys of another section a stage reads: encode writes every q of palette.bits in one pass.
ALSO_READS = {"encode": set(encode.ALSO_READS)}

PIPELINES = ["dvc.yaml", "studies/baselines/dvc.yaml", "studies/ablations/dvc.yaml", "studies/distillation/dvc.yaml",
             "studies/equal_bytes/dvc.yaml", "studies/architectures/dvc.yaml"]
MAIN_STAGES = {"prepare", "teacher", "features", "cluster", "attention", "colour_counts", "palette", "refine", "encode", "fidelity",
               "train_full", "train_dcq", "report"}
# dvc stage -> the stage module its command runs (`dcq <module>`)
MODULE = {"train_full": "train", "train_dcq": "train", "train_baseline": "train", "train_pruned": "train",
          "train_ablation": "train", "evaluate_dcq_ipc": "evaluate_synthetic", "fidelity_baseline": "fidelity", "fidelity_ablation": "fidelity",
          "train_full_seeds": "train", "train_dcq_seeds": "train", "train_baseline_seeds": "train",
          "train_pruned_seeds": "train",
          "train_codec": "train", "train_codec_seeds": "train", "fidelity_codec": "fidelity",
          "dcq_variant": "ablate", "train_dcq_variant": "train", "fidelity_dcq_variant": "fidelity",
          "train_arch_full": "train", "train_arch_dcq": "train",
          "experts_dcq": "experts", "distill_dcq": "distill", "evaluate_distill_dcq": "evaluate_synthetic",
          **{name: "train" for name in REGIME2_STAGES}}
# The stages that run `dcq ablate` on a params section of variants (checked by their own test below).
VARIANT_STAGES = {"ablate": "ablate", "dcq_variant": "dcq_variants"}


def load(path: str | None = None) -> dict:
    """One pipeline file, or every stage of every pipeline (stage names are unique across them)."""
    if path is not None:
        return yaml.safe_load((REPO / path).read_text())
    stages = {}
    for name in PIPELINES:
        for stage, body in yaml.safe_load((REPO / name).read_text())["stages"].items():
            assert stage not in stages, f"stage {stage} is defined twice"
            stages[stage] = body
    return {"stages": stages}


def _module_file(name: str) -> Path | None:
    base = REPO / Path(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _runs_code(path: Path) -> bool:
    """False for an `__init__.py` that holds only its docstring (importing it runs nothing that could matter)."""
    body = ast.parse(path.read_text()).body
    return path.name != "__init__.py" or any(not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))
                                             for n in body)


def import_closure(module: str) -> set[str]:
    """Repository-relative files of every `pipeline` module that `module` imports, directly or not: module-level
    and function-level `import`/`from ... import` (absolute and relative), including `from pkg import submodule`."""
    todo, seen = [module], set()
    while todo:
        name = todo.pop()
        path = _module_file(name)
        if path is None or path in seen:
            continue
        seen.add(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                todo += [alias.name for alias in node.names if alias.name.split(".")[0] == "pipeline"]
            elif isinstance(node, ast.ImportFrom):
                target = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join(parts + ([target] if target else []))
                if target.split(".")[0] == "pipeline":
                    todo += [target] + [f"{target}.{alias.name}" for alias in node.names]
    return {str(p.relative_to(REPO)) for p in seen if _runs_code(p)}


def test_main_pipeline_is_the_dcq_job_and_the_studies_are_separate():
    assert set(load("dvc.yaml")["stages"]) == MAIN_STAGES
    assert set(load()["stages"]) == set(STAGE_PARAMS) | set(VARIANT_STAGES)


@pytest.mark.parametrize("stage", sorted(set(STAGE_PARAMS) | set(VARIANT_STAGES)))
def test_deps_cover_the_import_closure_of_the_stage_module(stage):
    """A code change must rerun every stage that imports the changed file (a folder dep covers its files)."""
    body = load()["stages"][stage]
    body = body.get("do", body)
    listed = [d for d in body["deps"] if d.startswith("pipeline")]
    closure = import_closure(f"pipeline.stages.{MODULE.get(stage, stage)}")
    missing = sorted(f for f in closure if not any(f == d or f.startswith(d.rstrip("/") + "/") for d in listed))
    assert not missing, f"{stage} imports {missing} but does not list them as deps"
    assert f"pipeline/stages/{MODULE.get(stage, stage)}.py" in closure


def test_import_closure_follows_function_level_and_submodule_imports():
    closure = import_closure("pipeline.stages.train")
    assert "pipeline/io/dcq_store.py" in closure  # imported by train_sets inside a function or at module level
    assert "pipeline/quantize/bitpack.py" in closure
    assert "pipeline/stages/prepare.py" not in closure


def test_every_stage_lists_exactly_its_keys():
    stages = load()["stages"]
    assert set(stages) == set(STAGE_PARAMS) | set(VARIANT_STAGES)  # ablate, dcq_variant: their own test below
    for name, cls in STAGE_PARAMS.items():
        body = stages[name].get("do", stages[name])
        listed = set(body["params"])
        own = SECTION.get(name, name)
        fields = {f.name for f in dataclasses.fields(cls)} - FOREACH_ONLY.get(own, set())
        fields &= set(READS_ONLY.get(name, fields))
        expected = {f"{own}.{f}" for f in fields} | BASE_KEYS.get(name, RECORDED_BASE) | ALSO_READS.get(name, set())
        assert listed == expected, name
        for key in listed - ALSO_READS.get(name, set()):
            section = key.partition(".")[0]
            assert section in (own, "base"), f"{name} reads another stage's params: {key}"


@pytest.mark.parametrize("stage, trains", [("ablate", "train_ablation"), ("dcq_variant", "train_dcq_variant")])
def test_ablate_lists_its_variant_and_every_dcq_key_it_starts_from(stage, trains):
    """ablate reruns the DCQ chain, so it reads the DCQ sections (all but palette.bits) and only its own variant."""
    body = load()["stages"][stage]
    section_name = VARIANT_STAGES[stage]
    expected = RECORDED_BASE | {f"{section_name}.variants.${{item.variant}}"}
    for section, cls in ablate.SECTIONS.items():
        expected |= {f"{section}.{f.name}" for f in dataclasses.fields(cls)} - {"palette.bits"}
    assert set(body["params"]) == expected
    assert set(body["matrix"]) == {"variant", "bits"}
    assert f"--section {section_name}" in body["cmd"] or section_name == "ablate"
    assert set(load()["stages"][trains]["matrix"]) == {"variant", "bits", "model", "seed"}


def test_paths_are_declared_once_and_base_has_every_default():
    paths = yaml.safe_load((REPO / "paths.yaml").read_text())["paths"]
    assert len(set(paths.values())) == len(paths)
    for name in PIPELINES:
        text = (REPO / name).read_text()
        assert "paths.yaml" in load(name)["vars"][-1], f"{name} does not load paths.yaml"
        assert not re.search(r"(?<!\$\{paths\.)\b(data|reports)/", text.split("stages:")[1]), name
        for stage, body in load(name)["stages"].items():
            assert name == "dvc.yaml" or body.get("wdir") == "../..", f"{name}:{stage} must run at the repo root"
    assert {f.name for f in dataclasses.fields(BaseParams)} == set(yaml.safe_load((REPO / "params.yaml").read_text())["base"])


@pytest.mark.parametrize("params_file", ["params.yaml", "pipeline/presets/paper.yaml",
                                         "pipeline/presets/imagenet.yaml"])
def test_trained_bit_depths_are_encoded(params_file):
    """train_dcq@q depends on data/dcq/q{q}.zarr, which only exists for q in palette.bits."""
    params = params_of(params_file)
    assert set(params["train"]["bits"]) <= set(params["palette"]["bits"])


@pytest.mark.parametrize("params_file", ["params.yaml", "pipeline/presets/paper.yaml",
                                         "pipeline/presets/imagenet.yaml"])
def test_the_equal_bytes_study_trains_only_what_exists_and_adds_new_seeds(params_file):
    params = params_of(params_file)
    extra = params["equal_bytes"]
    assert set(extra["bits"]) <= set(params["palette"]["bits"]) & set(params["baseline"]["bits"])
    assert set(extra["methods"]) <= set(params["baseline"]["methods"])
    assert set(extra["coresets"]) <= set(params["prune"]["methods"])
    assert set(extra["bits"]) <= set(params["prune"]["bits"])
    assert not set(extra["seeds"]) & set(params["train"]["seeds"]), "a seed the main job already trains"
    assert len(set(extra["seeds"]) | set(params["train"]["seeds"])) >= 5


def params_of(params_file: str) -> dict:
    """params.yaml, or a preset applied over it (presets hold only overrides)."""
    from pipeline.config import preset_params

    if params_file.startswith("pipeline/presets/"):
        return preset_params(REPO / params_file, REPO / "params.yaml")
    return yaml.safe_load((REPO / params_file).read_text())


def test_no_stage_reruns_when_only_the_executor_changes():
    for name, body in load()["stages"].items():
        listed = set(body.get("do", body)["params"])
        assert not listed & {"base", "base.executor", "base.scheduler"}, name


@pytest.mark.parametrize("params_file", ["params.yaml", "pipeline/presets/paper.yaml",
                                         "pipeline/presets/imagenet.yaml"])
def test_the_issue_15_studies_read_only_what_exists(params_file):
    """architectures trains registry models on the main job's DCQ stores; distill_sources distils from them. Both
    sections feed dvc.yaml matrices only, so nothing else would catch a bit depth without a store or a typo."""
    from pipeline.config import parse_section
    from pipeline.models.registry import model_names

    params = params_of(params_file)
    arch = parse_section(train.TrainParams, params["architectures"], f"{params_file}:architectures")
    assert set(arch.models) <= set(model_names())
    assert set(arch.bits) <= set(params["palette"]["bits"])
    sources = params["distill_sources"]
    assert set(sources) == {"bits", "methods"}, "distill_sources has keys no stage reads"
    assert set(sources["bits"]) <= set(params["palette"]["bits"])
    assert set(sources["methods"]) <= set(distill.METHODS) and "random" not in sources["methods"]


@pytest.mark.parametrize("params_file", ["params.yaml", "pipeline/presets/paper.yaml",
                                         "pipeline/presets/imagenet.yaml"])
def test_the_second_regime_trains_longer_and_only_contenders_that_exist(params_file):
    """regime2 (issue 17) retrains the headline comparison with more epochs than train.recipe; its contenders are
    named in equal_bytes and must be stores some stage builds, at bit depths those stages build."""
    from pipeline.config import parse_section

    params = params_of(params_file)
    regime = parse_section(train.TrainParams, params["regime2"], f"{params_file}:regime2")
    main = parse_section(train.TrainParams, params["train"], f"{params_file}:train")
    assert regime.recipe.epochs == 4 * main.recipe.epochs
    assert regime.recipe.batch_size == main.recipe.batch_size and regime.models == main.models
    assert set(regime.bits) <= set(params["palette"]["bits"])
    eb = params["equal_bytes"]
    assert set(eb["regime2_variants"]) <= set(params["dcq_variants"]["variants"])
    assert set(eb["regime2_bits"]) <= set(params["dcq_variants"]["bits"]) & set(params["baseline"]["bits"]) \
        & set(params["prune"]["bits"]) & set(params["codec"]["bits"]) & set(regime.bits)
    assert set(eb["regime2_methods"]) <= set(params["baseline"]["methods"])
    assert set(eb["regime2_coresets"]) <= set(params["prune"]["methods"])
    assert set(eb["regime2_codecs"]) <= set(params["codec"]["codecs"])
    assert set(eb["regime2_ablations"]) <= set(params["ablate"]["variants"])
    assert set(eb["regime2_ablation_bits"]) <= set(params["ablate"]["bits"]) & set(regime.bits)
    for name in REGIME2_STAGES:
        body = load()["stages"][name]
        assert "--section regime2" in body["cmd"] and "/regime2/" in body["cmd"], name
