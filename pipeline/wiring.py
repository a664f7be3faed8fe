"""The DVC wiring the code writes: each dvc stage's `deps:` code files and `params:` keys.

`deps:` of a stage running `dcq MODULE ...` = every file of `pipeline/` that `pipeline.stages.MODULE` imports,
directly or not (module- and function-level imports, relative ones too), plus the reader module of each store
format the stage reads (found through the format registry at run time, so no import names it).
`params:` = the keys its module's `WIRING` (pipeline/stages/common.py `StageWiring`) declares: the `base` keys,
every field of its section but those dvc's matrix hands it, and keys it also reads; and its command's entry of
`pipeline/algorithm_versions.yaml` (VERSIONS_FILE), so that dvc.lock records the algorithm version of every output.
`dcq ablate` reruns the DCQ chain, so it reads every DCQ section, its own variant only, and the chain's versions.

`render(text)` rewrites only those two lists of each stage of one dvc.yaml text and keeps everything else.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import re
from pathlib import Path

import yaml

from pipeline.errors import DcqError
from pipeline.io.formats import format_module

REPO = Path(__file__).resolve().parent.parent
PIPELINES = ("dvc.yaml", "studies/baselines/dvc.yaml", "studies/ablations/dvc.yaml", "studies/distillation/dvc.yaml",
             "studies/equal_bytes/dvc.yaml", "studies/architectures/dvc.yaml")
# What each declared path (paths.yaml) holds, by store format: a stage with such a dep reads it through the
# format registry. The prepared store and checkpoints are read by code the stage imports.
PATH_FORMATS = {"dcq": "dcq-v1", "ablations": "dcq-v1", "baselines": "palette-per-image-v1", "codecs": "codec-v1",
                "pruned": "subset-v1", "synthetic": "synthetic-v1", "experts": "expert-trajectories-v1",
                "experts_dcq": "expert-trajectories-v1", "regime3_dcq": "dcq-v1",
                "regime3_baselines": "palette-per-image-v1", "regime3_codecs": "codec-v1", "regime3_pruned": "subset-v1",
                "patch_vq": "patch-vq-v1", "context_sources": "dcq-v1", "context": "dcq-context-v1",
                "luma_chroma": "luma-chroma-vq-v1"}
_DEP_PATH = re.compile(r"\$\{paths\.(\w+)\}")
VERSIONS_FILE = "pipeline/algorithm_versions.yaml"
# The commands whose algorithms `dcq ablate` reruns, in chain order, besides its own.
ABLATE_CHAIN = ("features", "cluster", "attention", "colour_counts", "palette", "refine", "encode", "ablate")


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


def pipeline_imports(source: str, package: str) -> list[tuple[str, list[str]]]:
    """(module, names imported from it) for every `pipeline` import in `source`, at module or function level;
    relative imports resolved against `package`, the importing module's package. `import a.b` gives (a.b, [])."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names if alias.name.split(".")[0] == "pipeline"]
        elif isinstance(node, ast.ImportFrom):
            target = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(parts + ([target] if target else []))
            if target.split(".")[0] == "pipeline":
                found.append((target, [alias.name for alias in node.names]))
    return found


def import_closure(*modules: str) -> set[str]:
    """Repository-relative files of every `pipeline` module that `modules` import, directly or not: module-level
    and function-level `import`/`from ... import` (absolute and relative), including `from pkg import submodule`."""
    todo, seen = list(modules), set()
    while todo:
        name = todo.pop()
        path = _module_file(name)
        if path is None or path in seen:
            continue
        seen.add(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for target, names in pipeline_imports(path.read_text(), package):
            todo += [target] + [f"{target}.{alias}" for alias in names]
    # The root package's __init__ only reads the installed version, which no output records: a release must not
    # rerun every stage.
    return {str(p.relative_to(REPO)) for p in seen if _runs_code(p) and p != REPO / "pipeline" / "__init__.py"}


def stage_module(body: dict) -> tuple[str, str]:
    """(module, params section) of the `dcq MODULE [--section S]` command a dvc stage runs."""
    cmd = " ".join(body["cmd"].split())
    found = re.search(r"(?:^|&&\s*)dcq (\w+)", cmd)
    if found is None:
        raise DcqError(f"stage command {cmd[:80]!r} does not run `dcq MODULE`")
    section = re.search(r"--section (\w+)", cmd)
    return found.group(1), section.group(1) if section else None


def code_deps(body: dict) -> list[str]:
    module, _ = stage_module(body)
    formats = {PATH_FORMATS[key] for dep in body.get("deps", []) if isinstance(dep, str)
               for key in _DEP_PATH.findall(dep) if key in PATH_FORMATS}
    return sorted(import_closure(f"pipeline.stages.{module}", *(format_module(f) for f in sorted(formats))))


def params_keys(body: dict) -> list[str | dict[str, list[str]]]:
    module_name, section = stage_module(body)
    module = importlib.import_module(f"pipeline.stages.{module_name}")
    if module_name == "ablate":
        keys: list = [f"base.{k}" for k in ("seed", "device", "precision")]
        if "--variant" in body["cmd"]:
            keys.append(f"{section or 'ablate'}.variants.${{item.variant}}")
        for name, cls in module.SECTIONS.items():
            keys += [f"{name}.{f.name}" for f in dataclasses.fields(cls) if f"{name}.{f.name}" != "palette.bits"]
        return keys + [{VERSIONS_FILE: list(ABLATE_CHAIN)}]
    wiring = module.WIRING
    section = section or wiring.section
    fields = [f.name for f in dataclasses.fields(wiring.params) if f.name not in wiring.matrix
              and (wiring.reads_only is None or f.name in wiring.reads_only)]
    return ([f"base.{k}" for k in wiring.base] + [f"{section}.{f}" for f in fields] + list(wiring.also_reads)
            + [{VERSIONS_FILE: [module_name]}])


def _items(item: str | dict[str, list[str]], indent: str) -> list[str]:
    """The lines of one list item: a key, or a params file with its keys."""
    if isinstance(item, str):
        return [f"{indent}- {item}"]
    return [line for name, keys in item.items()
            for line in [f"{indent}- {name}:"] + [f"{indent}    - {key}" for key in keys]]


def _list_span(lines: list[str], start: int, stop: int, key: str) -> tuple[int, int, str] | None:
    """(first item line, end line, item indent) of the `key:` list inside lines[start:stop]."""
    for i in range(start, stop):
        found = re.match(rf"^(\s+){key}:\s*$", lines[i])
        if found:
            depth = len(found.group(1))
            j = i + 1
            while j < stop and (not lines[j].strip() or len(lines[j]) - len(lines[j].lstrip()) > depth):
                j += 1
            while j > i + 1 and not lines[j - 1].strip():
                j -= 1
            return i + 1, j, found.group(1) + "  "
    return None


def _stage_name(line: str) -> str:
    return line.split("#")[0].strip()[:-1]


def render(text: str, where: str = "dvc.yaml") -> str:
    """`text` (one dvc.yaml) with every stage's code deps and params keys as the code says they are."""
    stages = yaml.safe_load(text)["stages"]
    lines = text.split("\n")
    heads = [i for i, line in enumerate(lines) if re.match(r"^  [\w-]+:\s*(#.*)?$", line)
             and _stage_name(line) in stages]
    for head, stop in reversed(list(zip(heads, heads[1:] + [len(lines)], strict=True))):
        name = _stage_name(lines[head])
        body = stages[name].get("do", stages[name])
        for key, make in (("params", params_keys), ("deps", code_deps)):
            span = _list_span(lines, head + 1, stop, key)
            if span is None:
                raise DcqError(f"{where}: stage {name} has no `{key}:` list to write")
            first, end, indent = span
            old = [line.strip()[2:] for line in lines[first:end] if line.strip()]
            new = make(body)
            if key == "deps":
                new = new + [dep for dep in old if not dep.startswith("pipeline/")]
            lines[first:end] = [line for item in new for line in _items(item, indent)]
    return "\n".join(lines)


def stale(root: Path = REPO) -> dict[str, str]:
    """{pipeline file: what `render` would write} for every pipeline whose lists differ from the code's."""
    out = {}
    for name in PIPELINES:
        text = (root / name).read_text()
        new = render(text, name)
        if new != text:
            out[name] = new
    return out
