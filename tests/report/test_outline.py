"""The report's outline: sections register themselves, the first screen holds the answer, the appendix is collapsed,
no figure is a placeholder, and the report package stays in small pieces."""

import ast

import pytest

from pipeline.report import outline
from tests.conftest import REPO
from tests.stages.test_report import render

SECTION_NAMES = [s.name for s in outline.ordered()]


def test_the_sections_run_answer_first_then_body_then_appendix():
    places = [s.place for s in outline.ordered()]
    assert places == sorted(places, key=outline.PLACES.index)
    answer = [s.name for s in outline.ordered() if s.place == "answer"]
    assert answer == ["matched storage", "differences to DCQ", "differences to the codec", "accuracy vs storage"]


def test_a_section_in_an_unknown_place_is_refused():
    with pytest.raises(ValueError, match="place 'middle'"):
        outline.section("x", "middle", 1)


@pytest.fixture(scope="module")
def rendered(small_run, tmp_path_factory):
    """The report of the small runs, and the inputs its sections were built from."""
    seen = {}
    build = outline.build

    def capture(inputs):
        seen["inputs"] = inputs
        return build(inputs)

    outline.build = capture
    try:
        paths = render(small_run, tmp_path_factory.mktemp("outline"))
    finally:
        outline.build = build
    return paths, seen["inputs"]


@pytest.mark.parametrize("name", SECTION_NAMES)
def test_every_section_renders_valid_blocks_on_real_runs(name, rendered):
    from pipeline.report.context import Report

    _, inputs = rendered
    blocks = outline.SECTIONS.get(name).render(Report(inputs))
    assert isinstance(blocks, list)
    for block in blocks:
        assert block[0] in ("h2", "h3", "p", "pre", "table", "img"), (name, block[0])
        if block[0] == "table":
            assert all(len(row) == len(block[1]) for row in block[2]), name


def test_the_first_screen_holds_the_answer_and_the_appendix_is_collapsed(rendered):
    paths, _ = rendered
    md = paths["md"].read_text()
    order = [md.index(h) for h in ("## At matched storage", "## Differences to DCQ", "## Accuracy vs storage",
                                   "## Studies", "## Appendix", "## Runs", "## Stage timings", "## Params")]
    assert order == sorted(order)
    html = paths["html"].read_text()
    start, end = html.index("<details>"), html.index("</details>")
    assert all(start < html.index(f"<h2>{h}</h2>") < end for h in ("Runs", "Stage timings", "Params"))
    assert html.index("<h2>At matched storage</h2>") < start


def test_a_figure_without_data_is_left_out_with_the_reason(rendered):
    paths, _ = rendered
    assert not paths["sharing"].exists()  # the small runs have no DCQ variants on the sharing axis
    assert "sharing.png" not in paths["md"].read_text()
    _, inputs = rendered
    assert inputs.absent["sharing"].startswith("fewer than two DCQ variants")


def test_an_old_figure_of_ours_is_removed_when_its_data_is_gone(small_run, tmp_path):
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    from pipeline.io.atomic import MARKER

    out = tmp_path / "reports"
    out.mkdir()
    old = out / "sharing.png"
    info = PngInfo()
    info.add_text("Software", MARKER)
    Image.new("RGB", (4, 4)).save(old, pnginfo=info)
    render(small_run, tmp_path)
    assert not old.exists()


REPORT = REPO / "pipeline" / "report"


@pytest.mark.parametrize("path", sorted(REPORT.rglob("*.py")), ids=lambda p: str(p.relative_to(REPORT)))
def test_the_report_stays_in_small_pieces(path):
    text = path.read_text()
    assert len(text.splitlines()) <= 250, f"{path.name} has {len(text.splitlines())} lines"
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            size = node.end_lineno - node.lineno + 1
            assert size <= 60, f"{path.name}: {node.name} has {size} lines"
