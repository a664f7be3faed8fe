
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


def _section_classes() -> dict:
    """{params section: the dataclass it parses into} for every section a stage parses."""
    from pipeline.params_reference import section_classes

    return {section: cls for section, cls in section_classes().items() if cls is not None}


def test_repo_params_parse_for_every_stage():
    load_base(REPO / "params.yaml")
    for section, cls in _section_classes().items():
        load_section(REPO / "params.yaml", section, cls)


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


@pytest.mark.parametrize("name", ["paper", "imagenet"])
def test_a_preset_holds_only_overrides_of_existing_keys_and_parses_for_every_stage(name, tmp_path):
    import json

    from pipeline.config import preset_overrides, preset_params
    default = yaml.safe_load((REPO / "params.yaml").read_text())
    preset = yaml.safe_load((REPO / "pipeline" / "presets" / f"{name}.yaml").read_text())

    def overridden(value, base, key):  # each value the preset sets, down to a mapping it replaces whole
        if isinstance(value, dict) and isinstance(base, dict) and set(value) <= set(base):
            for k, v in value.items():
                yield from overridden(v, base[k], f"{key}.{k}")
        else:
            yield key, value, base

    for section, body in preset.items():
        assert section in default, section
        for key, value, base in overridden(body, default[section], section):
            assert value != base, f"{name}: {key} repeats params.yaml's value"
    merged = tmp_path / "params.yaml"
    merged.write_text(yaml.safe_dump(preset_params(name, REPO / "params.yaml")))
    load_base(merged)
    for section, cls in _section_classes().items():
        load_section(merged, section, cls)
    # the -S values, applied as DVC applies them (each a YAML value at its dotted key), give the same params
    applied = yaml.safe_load((REPO / "params.yaml").read_text())
    for item in preset_overrides(name):
        assert " " not in item, item
        key, value = item.split("=", 1)
        *parents, last = key.split(".")
        node = applied
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = yaml.safe_load(value)
    assert json.dumps(applied, sort_keys=True) == json.dumps(preset_params(name, REPO / "params.yaml"), sort_keys=True)


def test_a_preset_section_params_yaml_lacks_is_an_error_naming_it(tmp_path):
    from pipeline.config import preset_params

    bad = tmp_path / "mine.yaml"
    bad.write_text("prepare: {train_per_class: 5}\nprepair: {root: x}\n")
    with pytest.raises(ParamsError, match="section 'prepair' is not in params.yaml"):
        preset_params(bad, REPO / "params.yaml")
    with pytest.raises(ParamsError, match="no preset 'nope'; presets: imagenet, paper"):
        preset_params("nope", REPO / "params.yaml")


# ---- finite or refuse, and params files read strictly (duplicate keys, encoding)

def test_a_duplicated_key_is_an_error_naming_it_and_both_lines(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("base:\n  seed: 0\nprepare:\n  train_per_class: 10\nprepare:\n  train_per_class: 20\n")
    with pytest.raises(ParamsError, match=r"duplicate key 'prepare' \(first at line 3, again at line 5\)"):
        load_base(path)
    path.write_text("base:\n  seed: 0\n  seed: 1\n")
    with pytest.raises(ParamsError, match=r"duplicate key 'seed' \(first at line 2, again at line 3\)"):
        load_base(path)


def test_a_params_file_that_is_not_utf8_is_a_one_line_error(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_bytes("base:\n  seed: 0\nreport:\n  title: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ParamsError, match="not UTF-8 text"):
        load_base(path)


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan", "1.0e+400"])
def test_non_finite_floats_are_refused(tmp_path, value):
    path = tmp_path / "params.yaml"
    path.write_text(f"teacher:\n  recipe:\n    lr: {value}\n")
    with pytest.raises(ParamsError, match=r"teacher.recipe.lr: .* (not a finite number|out of range)"):
        load_section(path, "teacher", TeacherParams)


@pytest.mark.parametrize("key, value, rule", [("lr", 0.0, "> 0"), ("lr", -0.1, "> 0"), ("momentum", 1.0, r"\[0, 1\)"),
                                              ("momentum", -0.5, r"\[0, 1\)"), ("weight_decay", -1e-4, ">= 0")])
def test_training_numbers_have_ranges(tmp_path, key, value, rule):
    with pytest.raises(ParamsError, match=rf"teacher.recipe.{key}={value!r} must be.*{rule}"):
        load_section(write(tmp_path, {"teacher": {"recipe": {key: value}}}), "teacher", TeacherParams)


@pytest.mark.parametrize("seed", [-1, 2**32, 10**30])
def test_a_seed_outside_32_bits_is_refused(tmp_path, seed):
    with pytest.raises(ParamsError, match="seed"):
        load_base(write(tmp_path, {"base": {"seed": seed}}))


@pytest.mark.parametrize("address", ["localhost", "tcp://host", "tcp://host:", "tcp://host:99999", "host:port",
                                     "", " tcp://a:1"])
def test_a_malformed_scheduler_address_is_refused(tmp_path, address):
    with pytest.raises(ParamsError, match="scheduler=.* must be HOST:PORT"):
        load_base(write(tmp_path, {"base": {"executor": "dask", "scheduler": address}}))


@pytest.mark.parametrize("address", ["tcp://127.0.0.1:8786", "localhost:8786", "tls://scheduler.example:443"])
def test_well_formed_scheduler_addresses_parse(tmp_path, address):
    assert load_base(write(tmp_path, {"base": {"scheduler": address}})).scheduler == address


# ---- the parser, fuzzed: a valid dataclass or a ParamsError, never anything else

def _params_classes():
    import dataclasses
    import typing

    seen, todo = {BaseParams}, [BaseParams, *_section_classes().values()]
    while todo:  # nested sections (a recipe inside train, ...) get fuzzed on their own too
        cls = todo.pop()
        seen.add(cls)
        for hint in typing.get_type_hints(cls).values():
            for inner in (hint, *typing.get_args(hint)):
                if dataclasses.is_dataclass(inner) and inner not in seen:
                    todo.append(inner)
    return sorted(seen, key=lambda c: c.__qualname__)


def _raw_values():
    from hypothesis import strategies as st

    scalars = st.one_of(
        st.none(), st.booleans(), st.integers(), st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
        st.sampled_from(["", " ", "auto", "cpu", "cuda", "fp32", "dask", "../x", "\x00", "tcp://h:1", "1e400"]))
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                        | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)


@pytest.mark.parametrize("cls", _params_classes(), ids=lambda c: c.__qualname__)
def test_the_parser_returns_a_dataclass_or_a_params_error_for_any_input(cls):
    import dataclasses

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    names = [f.name for f in dataclasses.fields(cls)]
    raw = st.dictionaries(st.sampled_from(names) | st.text(max_size=6), _raw_values(), max_size=len(names) + 1)

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(raw)
    def check(values):
        try:
            parsed = parse_section(cls, values, "fuzz")
        except ParamsError:
            return
        assert isinstance(parsed, cls)

    check()
