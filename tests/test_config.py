
import pytest
import yaml

from pipeline.config import BaseParams, load_base, load_section, params_hash, parse_section, resolved_params
from pipeline.errors import ParamsError
from pipeline.stages.attention import AttentionParams
from pipeline.stages.palette import PaletteParams
from pipeline.stages.teacher import TeacherParams
from tests.conftest import REPO


def write(tmp_path, data) -> str:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_repo_params_parse_for_every_stage():
    from tests.test_dvc_yaml import SECTION, STAGE_PARAMS

    load_base(REPO / "params.yaml")
    for stage, cls in STAGE_PARAMS.items():
        load_section(REPO / "params.yaml", SECTION.get(stage, stage), cls)


def test_unknown_key_is_rejected_with_its_name(tmp_path):
    path = write(tmp_path, {"palette": {"k_gra": 50, "kgra": 40}})
    with pytest.raises(ParamsError, match=r"palette: unknown key\(s\) \['kgra'\]"):
        load_section(path, "palette", PaletteParams)


def test_unknown_nested_key_is_rejected(tmp_path):
    path = write(tmp_path, {"teacher": {"recipe": {"epochs": 2, "epoch": 3}}})
    with pytest.raises(ParamsError, match=r"teacher.recipe: unknown key\(s\) \['epoch'\]"):
        load_section(path, "teacher", TeacherParams)


@pytest.mark.parametrize("bits", [[0], [9], [1, 2, 12], [-1]])
def test_bits_outside_1_to_8_is_an_error(tmp_path, bits):
    path = write(tmp_path, {"palette": {"bits": bits}})
    with pytest.raises(ParamsError, match=r"bits=.*outside 1\.\.8"):
        load_section(path, "palette", PaletteParams)


@pytest.mark.parametrize("k_gra", [0, -5, 100.5, 250])
def test_k_gra_outside_0_100_is_an_error(tmp_path, k_gra):
    path = write(tmp_path, {"palette": {"k_gra": k_gra}})
    with pytest.raises(ParamsError, match=r"k_gra=.* must be in \(0, 100\]"):
        load_section(path, "palette", PaletteParams)


def test_wrong_type_and_choice_are_named(tmp_path):
    with pytest.raises(ParamsError, match=r"attention.batch_size: expected an integer, got 'big'"):
        load_section(write(tmp_path, {"attention": {"batch_size": "big"}}), "attention", AttentionParams)
    with pytest.raises(ParamsError, match=r"attention.method: 'rise' is not one of"):
        load_section(write(tmp_path, {"attention": {"method": "rise"}}), "attention", AttentionParams)


def test_missing_section_and_file(tmp_path):
    with pytest.raises(ParamsError, match="missing section 'palette'"):
        load_section(write(tmp_path, {"base": {}}), "palette", PaletteParams)
    with pytest.raises(ParamsError, match="params file not found"):
        load_base(tmp_path / "nope.yaml")


def test_nested_recipe_and_defaults():
    params = parse_section(TeacherParams, {"recipe": {"epochs": 3}}, "teacher")
    assert params.recipe.epochs == 3 and params.recipe.lr == 0.1
    assert parse_section(BaseParams, None, "base") == BaseParams()


def test_resolved_params_hash_is_stable():
    a = resolved_params(base=BaseParams(), palette=PaletteParams())
    b = resolved_params(base=BaseParams(), palette=PaletteParams())
    assert a == b and params_hash(a) == params_hash(b)
    assert params_hash(a) != params_hash(resolved_params(base=BaseParams(seed=1), palette=PaletteParams()))


@pytest.mark.parametrize("name", ["paper.yaml", "imagenet.yaml"])
def test_paper_preset_parses_for_every_stage_and_has_the_same_keys(name):
    from tests.test_dvc_yaml import SECTION, STAGE_PARAMS

    preset = REPO / "pipeline" / "presets" / name
    load_base(preset)
    for stage, cls in STAGE_PARAMS.items():
        load_section(preset, SECTION.get(stage, stage), cls)
    default = yaml.safe_load((REPO / "params.yaml").read_text())
    assert yaml.safe_load(preset.read_text()).keys() == default.keys()
