"""dvc.yaml lists exactly the params keys each stage reads, and declares each output path once."""

import dataclasses
import re

import yaml

from pipeline.config import BaseParams
from pipeline.stages import attention, cluster, encode, features, palette, prepare, refine, teacher
from tests.conftest import REPO

STAGE_PARAMS = {
    "prepare": prepare.PrepareParams, "teacher": teacher.TeacherParams, "features": features.FeaturesParams,
    "cluster": cluster.ClusterParams, "attention": attention.AttentionParams, "palette": palette.PaletteParams,
    "refine": refine.RefineParams, "encode": encode.EncodeParams,
}
# `palette.bits` drives dvc.yaml's foreach: each palette/refine/encode stage gets its own q on the
# command line, so adding a bit depth does not rerun the others.
FOREACH_ONLY = {"palette": {"bits"}}
# prepare only uses the seed (for the subset); the device cannot change what it writes.
BASE_KEYS = {"prepare": {"base.seed"}}


def load():
    return yaml.safe_load((REPO / "dvc.yaml").read_text())


def test_every_stage_lists_exactly_its_keys():
    stages = load()["stages"]
    assert set(stages) == set(STAGE_PARAMS)
    for name, cls in STAGE_PARAMS.items():
        body = stages[name].get("do", stages[name])
        listed = set(body["params"])
        fields = {f.name for f in dataclasses.fields(cls)} - FOREACH_ONLY.get(name, set())
        expected = {f"{name}.{f}" for f in fields} | BASE_KEYS.get(name, {"base"})
        assert listed == expected, name
        for key in listed:
            section, _, rest = key.partition(".")
            assert section in (name, "base"), f"{name} reads another stage's params: {key}"


def test_paths_are_declared_once_and_base_has_every_default():
    text = (REPO / "dvc.yaml").read_text()
    data = load()
    paths = data["vars"][0]["paths"]
    for value in paths.values():
        assert text.count(value) == 1, f"{value} is written more than once in dvc.yaml"
    assert not re.search(r"(?<!\$\{paths\.)\bdata/", text.split("stages:")[1])
    assert {f.name for f in dataclasses.fields(BaseParams)} == set(yaml.safe_load((REPO / "params.yaml").read_text())["base"])
