"""docs/params.md is the parameters reference made from the params dataclasses, and it is current."""

from typer.testing import CliRunner

from pipeline import params_reference
from pipeline.config import read_yaml
from tests.conftest import REPO


def test_the_reference_page_is_current():
    assert (REPO / "docs" / "params.md").read_text() == params_reference.render(), \
        "docs/params.md is stale: run `dcq params-doc --write`"


def test_every_key_of_params_yaml_is_documented():
    page = (REPO / "docs" / "params.md").read_text()
    params = read_yaml(REPO / "params.yaml")
    classes = params_reference.section_classes()
    for section, body in params.items():
        assert f"## `{section}`" in page
        if classes[section] is None or not isinstance(body, dict):
            continue
        for key, value in body.items():
            if section in ("ablate", "dcq_variants") and key == "variants":
                continue  # a mapping of user-named variants, each a set of overrides of the DCQ sections
            assert f"| `{key}` |" in page, f"{section}.{key} is not in docs/params.md"


def test_the_rules_column_carries_the_named_and_the_checked_rules():
    page = (REPO / "docs" / "params.md").read_text()
    row = next(line for line in page.splitlines() if line.startswith("| `recipe.min_lr` |"))
    assert "must be >= 0" in row and "must be in [0, lr]" in row and "must be > 0" not in row
    seed = next(line for line in page.splitlines() if line.startswith("| `seed` |"))
    assert "must be in [0, 2**32)" in seed


def test_params_doc_command_fails_when_the_page_is_stale(monkeypatch):
    from pipeline.cli import app

    assert CliRunner().invoke(app, ["params-doc"]).exit_code == 0
    monkeypatch.setattr(params_reference, "render", lambda: "changed\n")
    result = CliRunner().invoke(app, ["params-doc"])
    assert result.exit_code == 1 and "stale" in result.output
