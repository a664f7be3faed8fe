"""The README and docs/: every relative link and image path resolves, and the README stays a five-minute read
with no lab-notebook content (dates, commit hashes, issue numbers, the first person)."""

import re

import pytest

from tests.conftest import REPO

PAGES = sorted([REPO / "README.md", REPO / "benchmarks" / "README.md", *(REPO / "docs").rglob("*.md")])
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def relative_links(text: str) -> list[str]:
    return [target for target in LINK.findall(text) if not re.match(r"^[a-z]+:|^#", target)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_and_image_resolves(page):
    missing = [t for t in relative_links(page.read_text()) if not (page.parent / t.split("#")[0]).exists()]
    assert not missing, f"{page.relative_to(REPO)} links to {missing}"


def test_the_link_check_sees_a_broken_link():
    assert relative_links("see [a](docs/a.md), ![f](x.png), [web](https://x.org) and [here](#top)") == \
        ["docs/a.md", "x.png"]


def test_the_readme_is_short_and_starts_with_the_two_commands():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 220
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    assert "dvc repro" in blocks[0] and "pytest" in blocks[1]
    assert blocks[1].strip() in (REPO / ".ci" / "run").read_text()


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_page_reads_as_a_lab_notebook(page):
    text = page.read_text()
    text = re.sub(r"`[^`]*`", "", text)  # file names (a benchmark folder named by its date) are not prose
    assert not re.search(r"\b20\d\d-\d\d-\d\d\b", text), "a date"
    assert not re.search(r"\b[Ii]ssue \d+", text), "an issue number"
    assert not re.search(r"\bcommit [0-9a-f]{7,}", text), "a commit hash"
    assert not re.search(r"(^|[.:;(]\s+|\s)(I|my|mine)\s", text), "the first person"
