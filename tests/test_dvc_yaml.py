"""dvc.yaml lists exactly the params keys each stage reads, and declares each output path once."""

import dataclasses
import re

import pytest
import yaml

from pipeline.config import BaseParams
from pipeline.stages import (
    ablate,
    attention,
    baseline,
    cluster,
    distill,
    encode,
    evaluate_synthetic,
    experts,
    features,
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

STAGE_PARAMS = {
    "prepare": prepare.PrepareParams, "teacher": teacher.TeacherParams, "features": features.FeaturesParams,
    "cluster": cluster.ClusterParams, "attention": attention.AttentionParams, "palette": palette.PaletteParams,
    "refine": refine.RefineParams, "encode": encode.EncodeParams, "train_full": train.TrainParams,
    "train_dcq": train.TrainParams, "report": report.ReportParams, "baseline": baseline.BaselineParams,
    "scores": scores.ScoresParams, "prune": prune.PruneParams, "train_baseline": train.TrainParams,
    "train_pruned": train.TrainParams, "train_ablation": train.TrainParams, "experts": experts.ExpertsParams,
    "distill": distill.DistillParams, "evaluate_synthetic": evaluate_synthetic.EvaluateSyntheticParams,
    "evaluate_dcq_ipc": evaluate_synthetic.EvaluateSyntheticParams,
}
# The params section each dvc stage reads (train_full/train_dcq are both the `train` stage on other inputs).
SECTION = {"train_full": "train", "train_dcq": "train", "train_baseline": "train", "train_pruned": "train",
           "train_ablation": "train", "evaluate_dcq_ipc": "evaluate_synthetic"}
# `palette.bits` drives dvc.yaml's foreach: each palette/refine/encode stage gets its own q on the
# command line, so adding a bit depth does not rerun the others.
# `train.models/seeds/bits` likewise drive the train stages' matrix: each run gets its item on the command line.
FOREACH_ONLY = {"palette": {"bits"}, "train": set(train.MATRIX_KEYS), "baseline": {"methods", "bits"},
                "prune": {"methods", "bits"}, "distill": {"methods", "ipcs"},
                "evaluate_synthetic": set(evaluate_synthetic.MATRIX_KEYS)}
# prepare only uses the seed (for the subset); the device cannot change what it writes.
# train seeds itself from its matrix item; report uses the seed only to pick the images it shows.
BASE_KEYS = {"prepare": {"base.seed"}, "train_full": {"base.device", "base.precision"},
             "train_dcq": {"base.device", "base.precision"}, "report": {"base.seed"},
             "train_baseline": {"base.device", "base.precision"}, "train_pruned": {"base.device", "base.precision"},
             "train_ablation": {"base.device", "base.precision"},
             "evaluate_synthetic": {"base.device", "base.precision"},
             "evaluate_dcq_ipc": {"base.device", "base.precision"}}


def load():
    return yaml.safe_load((REPO / "dvc.yaml").read_text())


def test_every_stage_lists_exactly_its_keys():
    stages = load()["stages"]
    assert set(stages) == set(STAGE_PARAMS) | {"ablate"}  # ablate: its own test below
    for name, cls in STAGE_PARAMS.items():
        body = stages[name].get("do", stages[name])
        listed = set(body["params"])
        own = SECTION.get(name, name)
        fields = {f.name for f in dataclasses.fields(cls)} - FOREACH_ONLY.get(own, set())
        expected = {f"{own}.{f}" for f in fields} | BASE_KEYS.get(name, {"base"})
        assert listed == expected, name
        for key in listed:
            section = key.partition(".")[0]
            assert section in (own, "base"), f"{name} reads another stage's params: {key}"


def test_ablate_lists_its_variant_and_every_dcq_key_it_starts_from():
    """ablate reruns the DCQ chain, so it reads the DCQ sections (all but palette.bits) and only its own variant."""
    body = load()["stages"]["ablate"]
    expected = {"base", "ablate.variants.${item.variant}"}
    for section, cls in ablate.SECTIONS.items():
        expected |= {f"{section}.{f.name}" for f in dataclasses.fields(cls)} - {"palette.bits"}
    assert set(body["params"]) == expected
    assert set(body["matrix"]) == {"variant", "bits"}
    assert set(load()["stages"]["train_ablation"]["matrix"]) == {"variant", "bits", "model", "seed"}


def test_paths_are_declared_once_and_base_has_every_default():
    text = (REPO / "dvc.yaml").read_text()
    data = load()
    paths = data["vars"][0]["paths"]
    for value in paths.values():
        assert text.count(value) == 1, f"{value} is written more than once in dvc.yaml"
    assert not re.search(r"(?<!\$\{paths\.)\b(data|reports)/", text.split("stages:")[1])
    assert {f.name for f in dataclasses.fields(BaseParams)} == set(yaml.safe_load((REPO / "params.yaml").read_text())["base"])


@pytest.mark.parametrize("params_file", ["params.yaml", "pipeline/presets/paper.yaml"])
def test_trained_bit_depths_are_encoded(params_file):
    """train_dcq@q depends on data/dcq/q{q}.zarr, which only exists for q in palette.bits."""
    params = yaml.safe_load((REPO / params_file).read_text())
    assert set(params["train"]["bits"]) <= set(params["palette"]["bits"])
