"""dvc.yaml and the studies' dvc.yaml files: each stage lists exactly the params keys it reads and every code file
it imports, as `dcq dvc-deps --write` writes them (pipeline/wiring.py), and every path is declared once (paths.yaml)."""

import dataclasses
import importlib
import re

import pytest
import yaml
from typer.testing import CliRunner

from pipeline import wiring
from pipeline.config import BaseParams
from pipeline.stages import distill, train
from pipeline.wiring import PIPELINES, import_closure
from tests.conftest import REPO

MAIN_STAGES = {"prepare", "teacher", "features", "cluster", "attention", "colour_counts", "palette", "refine", "encode",
               "fidelity", "train_full", "train_dcq", "report"}
REGIME2_STAGES = ("train_r2_full", "train_r2_dcq", "train_r2_variant", "train_r2_baseline", "train_r2_pruned",
                  "train_r2_codec", "train_r2_ablation")


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


def test_main_pipeline_is_the_dcq_job_and_the_studies_are_separate():
    assert set(load("dvc.yaml")["stages"]) == MAIN_STAGES


@pytest.mark.parametrize("name", PIPELINES)
def test_deps_and_params_are_what_the_code_writes(name):
    """Nobody edits a dep list by hand: the files equal what `dcq dvc-deps --write` would write."""
    text = (REPO / name).read_text()
    assert wiring.render(text, name) == text, f"{name} is stale: run `dcq dvc-deps --write`"


def test_render_rewrites_a_hand_edited_list_and_keeps_the_rest():
    text = (REPO / "dvc.yaml").read_text()
    edited = text.replace("      - pipeline/io/verify.py\n", "", 1).replace("      - features.pooling\n", "", 1)
    teacher = "      - pipeline/stages/teacher.py\n"
    edited = edited.replace(teacher, teacher + "      - pipeline/io/codec_store.py\n", 1)
    assert edited != text
    assert wiring.render(edited) == text


def test_render_rewrites_a_stage_whose_name_carries_a_comment():
    text = (REPO / "studies/distillation/dvc.yaml").read_text()
    assert "  evaluate_dcq_ipc:   #" in text
    dropped = "      - pipeline/stages/evaluate_synthetic.py\n"
    head, _, tail = text.partition("  evaluate_dcq_ipc:")
    edited = head + "  evaluate_dcq_ipc:" + tail.replace(dropped, "", 1)
    assert edited != text and wiring.render(edited) == text


def test_dvc_deps_command_checks_and_names_what_is_stale(monkeypatch):
    from pipeline.cli import app

    result = CliRunner().invoke(app, ["dvc-deps"])
    assert result.exit_code == 0 and "up to date" in result.output
    monkeypatch.setattr(wiring, "render", lambda text, where="": text + "# edited\n")
    result = CliRunner().invoke(app, ["dvc-deps"])
    assert result.exit_code == 1 and "stale: dvc.yaml" in result.output and "--write" in result.output


@pytest.mark.parametrize("stage", sorted(load()["stages"]))
def test_every_stage_lists_its_module_and_only_its_own_sections(stage):
    body = load()["stages"][stage]
    body = body.get("do", body)
    module_name, section = wiring.stage_module(body)
    assert f"pipeline/stages/{module_name}.py" in body["deps"]
    module = importlib.import_module(f"pipeline.stages.{module_name}")
    if module_name == "ablate":  # reruns the DCQ chain: every DCQ section but palette.bits, and its own variant
        own = set(module.SECTIONS)
        variant = "--variant" in body["cmd"]  # without one: the chain as params.yaml sets it (the paper-size regime)
        assert (f"{section or 'ablate'}.variants.${{item.variant}}" in body["params"]) == variant
        assert "palette.bits" not in body["params"] and set(body["matrix"]) == ({"variant", "bits"} if variant
                                                                                 else {"bits"})
    else:
        own = {section or module.WIRING.section, *(key.partition(".")[0] for key in module.WIRING.also_reads)}
    versions = [key for key in body["params"] if isinstance(key, dict)]
    # the algorithm versions: its own command's, and for `dcq ablate` those of the whole DCQ chain it reruns
    assert versions == [{wiring.VERSIONS_FILE: list(wiring.ABLATE_CHAIN) if module_name == "ablate" else [module_name]}]
    for key in (key for key in body["params"] if isinstance(key, str)):
        first = key.partition(".")[0]
        assert first == "base" or first in own or key.startswith(f"{section or 'ablate'}.variants."), f"{stage}: {key}"
    assert not {k for k in body["params"] if isinstance(k, str)} & {f"{module.WIRING.section}.{k}" for k in getattr(module, "WIRING", None) and
                                      module.WIRING.matrix or ()}, f"{stage} lists a key its matrix hands it"


def test_a_stage_depends_only_on_the_store_readers_it_can_read():
    """The teacher and the full-colour runs never read a codec, subset or synthetic store, so an edit to those
    readers must not rerun them; a run on a DCQ store depends on the DCQ reader."""
    stages = load()["stages"]
    readers = {"pipeline/io/codec_store.py", "pipeline/io/subset_store.py", "pipeline/io/synthetic_store.py",
               "pipeline/io/dcq_store.py", "pipeline/distill/experts.py"}
    for name in ("teacher", "train_full", "train_arch_full", "train_r2_full"):
        body = stages[name].get("do", stages[name])
        assert not readers & set(body["deps"]), f"{name} depends on {sorted(readers & set(body['deps']))}"
    assert "pipeline/io/dcq_store.py" in stages["train_dcq"]["deps"]
    assert "pipeline/io/codec_store.py" in stages["train_codec"]["deps"]
    assert "pipeline/io/subset_store.py" in stages["train_pruned"]["deps"]


def test_import_closure_follows_function_level_and_submodule_imports():
    closure = import_closure("pipeline.stages.train")
    assert "pipeline/io/train_sets.py" in closure
    assert "pipeline/io/bitpack.py" in closure
    assert "pipeline/stages/prepare.py" not in closure
    assert "pipeline/__init__.py" not in closure


def test_no_stage_reruns_when_only_the_executor_changes():
    for name, body in load()["stages"].items():
        listed = {key for key in body.get("do", body)["params"] if isinstance(key, str)}
        assert not listed & {"base", "base.executor", "base.scheduler"}, name


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


REGIME3_STAGES = ("train_r3_full", "train_r3_dcq", "train_r3_variant", "train_r3_baseline", "train_r3_codec",
                  "train_r3_pruned")


@pytest.mark.parametrize("params_file", ["params.yaml", "pipeline/presets/paper.yaml",
                                         "pipeline/presets/imagenet.yaml"])
def test_the_paper_size_regime_trains_like_the_main_job_on_every_train_image(params_file):
    """regime3 (issue 34): the main recipe and models on a prepared store of every train image, from which every
    contender is built again; its contenders are named in equal_bytes and built by some stage of the study."""
    from pipeline.config import parse_section

    params = params_of(params_file)
    regime = parse_section(train.TrainParams, params["regime3"], f"{params_file}:regime3")
    main = parse_section(train.TrainParams, params["train"], f"{params_file}:train")
    assert regime.recipe == main.recipe and regime.models == main.models and len(regime.seeds) >= 3
    eb = params["equal_bytes"]
    assert set(eb["regime3_variants"]) <= set(params["dcq_variants"]["variants"])
    assert set(eb["regime3_methods"]) <= set(params["baseline"]["methods"])
    assert set(eb["regime3_codecs"]) <= set(params["codec"]["codecs"])
    # the scores store holds the main job's images: only a coreset that needs no scores fits every train image
    assert set(eb["regime3_coresets"]) <= set(params["prune"]["methods"]) & {"random"}
    stages = load()["stages"]
    assert "--all-train" in stages["prepare_r3"]["cmd"]
    for name in ("dcq_r3", "dcq_variant_r3", "baseline_r3", "codec_r3", "prune_r3", *REGIME3_STAGES):
        cmd = " ".join(stages[name]["cmd"].split())
        assert "--prepared ${paths.regime3_prepared}" in cmd and "${paths.prepared}" not in cmd, name
    for name in REGIME3_STAGES:
        assert "--section regime3" in stages[name]["cmd"] and "/regime3/" in stages[name]["cmd"], name


def test_the_root_lock_records_the_code_as_committed():
    """A fresh clone's `dvc status dvc.yaml` must not call a main stage changed because the lock is older than the
    code: every code dep's md5 in the root lock is the file's own (the lock is recommitted with the code)."""
    import hashlib

    lock = yaml.safe_load((REPO / "dvc.lock").read_text())
    stale = sorted({dep["path"] for body in lock["stages"].values() for dep in body.get("deps", [])
                    if dep["path"].startswith("pipeline/") and (not (REPO / dep["path"]).is_file()
                    or hashlib.md5((REPO / dep["path"]).read_bytes()).hexdigest() != dep.get("md5"))})
    assert not stale, f"dvc.lock records other code for {stale}: rerun the main job (`dvc repro`) and commit its lock"


def test_every_stage_command_has_an_algorithm_version():
    """dvc reads each stage's version from pipeline/algorithm_versions.yaml: a command without one cannot run."""
    versions = yaml.safe_load((REPO / wiring.VERSIONS_FILE).read_text())
    for name, body in load()["stages"].items():
        module, _ = wiring.stage_module(body.get("do", body))
        assert isinstance(versions.get(module), int), f"{name}: dcq {module} has no entry in {wiring.VERSIONS_FILE}"
