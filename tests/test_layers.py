"""The package's parts import only downward: each part of `pipeline/` sits on one level of LAYERS, and a module may
import only parts on a lower level, or its own part. The order is written here and nowhere else."""

from pathlib import Path

import pytest

from pipeline.wiring import pipeline_imports
from tests.conftest import REPO

# Top to bottom. A part is a folder of pipeline/ or a module directly under it.
LAYERS = (
    ("cli",),
    ("wiring", "params_reference"),
    ("stages", "data"),
    ("quantize", "distill"),
    ("prune", "report", "train"),
    ("models",),
    ("executor", "io", "distributed"),
    ("device", "config", "registry"),
    ("timing", "errors", "allocator"),
)
LEVEL = {part: level for level, parts in enumerate(LAYERS) for part in parts}
PACKAGE = REPO / "pipeline"


def part_of(module: str) -> str | None:
    """`pipeline.io.verify` -> "io"; `pipeline` itself (its __init__: the version) -> None."""
    names = module.split(".")
    if len(names) < 2 or names[0] != "pipeline":
        return None
    is_part = (PACKAGE / names[1]).is_dir() or (PACKAGE / f"{names[1]}.py").is_file()
    return names[1] if is_part else None  # `from pipeline import __version__` names the root's attribute


def imported_modules(path: Path, source: str) -> set[str]:
    """Every `pipeline` module that the file imports, at module or function level, absolute or relative."""
    module = ".".join(path.relative_to(REPO).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    package = package.removesuffix(".__init__")
    found = set()
    for target, names in pipeline_imports(source, package):
        found |= {target} if part_of(target) is not None or not names else {f"{target}.{n}" for n in names}
    return found


def upward_imports() -> list[str]:
    return [line for path in sorted(PACKAGE.rglob("*.py")) for line in imports_against_layers(path, path.read_text())]


def imports_against_layers(path: Path, source: str) -> list[str]:
    bad = []
    own = part_of(".".join(path.relative_to(REPO).with_suffix("").parts))
    if own is not None:
        for target in imported_modules(path, source):
            other = part_of(target)
            if other is not None and other != own and LEVEL[other] <= LEVEL[own]:
                bad.append(f"{path.relative_to(REPO)} ({own}, level {LEVEL[own]}) imports {target} "
                           f"({other}, level {LEVEL[other]})")
    return bad


def test_every_part_of_the_package_has_a_level():
    parts = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
             if (p.is_dir() and (p / "__init__.py").exists()) or (p.suffix == ".py" and p.name != "__init__.py")}
    assert parts == set(LEVEL), f"without a level: {sorted(parts - set(LEVEL))}; stale: {sorted(set(LEVEL) - parts)}"


def test_no_import_points_up_or_sideways_between_parts():
    bad = upward_imports()
    assert not bad, "\n".join(bad)


def test_the_check_sees_an_upward_import():
    """The parser must catch the forms the package uses: absolute, from-package, and relative imports."""
    probe = PACKAGE / "io" / "probe.py"
    source = ("import pipeline.report.stats\n"
              "def f():\n    from ..train import engine\n    from pipeline.stages import common\n"
              "    from pipeline.errors import StoreError\n    from . import verify\n")
    bad = imports_against_layers(probe, source)
    assert sorted(b.split(" imports ")[1].split()[0] for b in bad) == sorted(["pipeline.report.stats", "pipeline.train",
                                                                        "pipeline.stages"])


@pytest.mark.parametrize("level", range(len(LAYERS)))
def test_parts_on_one_level_do_not_import_each_other(level):
    bad = [b for b in upward_imports()
           if f"level {level}) imports" in b and f"level {level})" in b.split(" imports ")[1]]
    assert not bad, "\n".join(bad)
