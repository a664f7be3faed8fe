"""docs/params.md, the parameters reference, made from the params dataclasses: every key of params.yaml with its
type, default, the rule it must satisfy and its help (the comment beside the field in the code).

`dcq params-doc --write` writes it; `dcq params-doc` (and tests/test_params_reference.py) fail when it is stale.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import io
import re
import tokenize
from pathlib import Path

from pipeline.config import _RULES, BaseParams, read_yaml

REPO = Path(__file__).resolve().parent.parent
STAGE_MODULES = ("prepare", "teacher", "features", "cluster", "attention", "palette", "refine", "encode", "fidelity",
                 "ablate", "baseline", "codec", "patch_vq", "luma_chroma", "context_code", "scores", "prune", "train", "experts", "distill", "evaluate_synthetic",
                 "report")
HEADER = """<!-- written by dcq -->
# Parameters reference

Every key of `params.yaml`, section by section: its type, its default, the rule a value must satisfy and what it
does. Generated from the params dataclasses by `dcq params-doc --write`; a test fails when this page is stale.
A key that is not listed here is an error that names it. Presets (`pipeline/presets/`) override some of these.
"""


def section_classes() -> dict[str, type | None]:
    """params.yaml's sections in file order, each with the dataclass it is parsed into (None: a section that only
    dvc.yaml's matrices read)."""
    classes: dict[str, type | None] = {"base": BaseParams}
    for name in STAGE_MODULES:
        module = importlib.import_module(f"pipeline.stages.{name}")
        wiring = getattr(module, "WIRING", None)
        if wiring is not None:
            classes.setdefault(wiring.section, wiring.params)
        if name == "ablate":
            classes["ablate"] = classes["dcq_variants"] = module.AblateParams
        if name == "train":
            classes.update({section: wiring.params for section in module.SECTIONS})
    order = list(read_yaml(REPO / "params.yaml"))
    return {section: classes.get(section) for section in order}


def field_comments(cls: type) -> dict[str, str]:
    """{field: its comment in the class body}: the comment on the field's line, else the comment lines just above."""
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    comments: dict[str, str] = {}
    above: list[str] = []
    line_of: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            line_of[tok.start[0]] = tok.string.lstrip("#").strip()
    for number, line in enumerate(source.splitlines(), 1):
        stripped = line.strip()
        found = re.match(r"^(\w+)\s*:", stripped)
        if stripped.startswith("#"):
            above.append(line_of.get(number, ""))
        elif found and line.startswith("    ") and not line.startswith("        "):
            comments[found.group(1)] = line_of.get(number) or " ".join(above)
            above = []
        else:
            above = []
    return comments


def _type_name(annotation) -> str:
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", repr(annotation))
    return text.replace("typing.", "").replace("|", "or").replace("  ", " ")


def checked_rules(cls: type) -> dict[str, list[str]]:
    """{field: rules} from the class's own checks: `require(..., f"NAME={...} RULE")` in `__post_init__`."""
    check = cls.__dict__.get("__post_init__")
    if check is None:
        return {}
    found: dict[str, list[str]] = {}
    for name, rule in re.findall(r'f"(\w+)=\{[^}]*\} ([^"{]*)"', inspect.getsource(check)):
        found.setdefault(name, []).append(rule.strip().rstrip(":,;"))
    return found


def _rule(name: str, annotation, own: list[str]) -> str:
    rules = list(dict.fromkeys([rule for pattern, _, rule in _RULES if pattern.match(name)] + own))
    text = annotation if isinstance(annotation, str) else repr(annotation)
    choices = re.search(r"Literal\[([^\]]*)\]", text)
    if choices:
        rules.append(f"one of {choices.group(1)}")
    return "; ".join(rules)


def _default(field: dataclasses.Field):
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


def yaml_comments(path: Path = REPO / "params.yaml") -> dict[str, str]:
    """{dotted key: the comment on its line in params.yaml}."""
    comments, stack = {}, []
    for line in path.read_text().splitlines():
        found = re.match(r"^( *)(\w+):(.*?)(?:\s#\s*(.*))?$", line)
        if not found:
            continue
        depth = len(found.group(1)) // 2
        stack = stack[:depth] + [found.group(2)]
        if found.group(4):
            comments[".".join(stack)] = found.group(4).strip()
    return comments


def _lookup(params: dict, key: str):
    for part in key.split("."):
        if not isinstance(params, dict) or part not in params:
            return "(not set)"
        params = params[part]
    return params


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _shown(value) -> str:
    if value == "(not set)":
        return "(default)"
    return "`null`" if value is None else f"`{_cell(repr(value) if isinstance(value, str) else value)}`"


def rows(cls: type, section: str, params: dict, notes: dict[str, str], prefix: str = "") -> list[str]:
    comments = field_comments(cls)
    own = checked_rules(cls)
    out = []
    for field in dataclasses.fields(cls):
        default = _default(field)
        annotation = field.type
        key = f"{prefix}{field.name}"
        help_text = comments.get(field.name) or notes.get(f"{section}.{key}", "")
        if dataclasses.is_dataclass(default):
            out.append(f"| `{key}` | {_cell(_type_name(annotation))} | (below) | (below) | | {_cell(help_text)} |")
            out += rows(type(default), section, params, notes, f"{key}.")
            continue
        out.append(f"| `{key}` | {_cell(_type_name(annotation))} | {_shown(default)} | "
                   f"{_shown(_lookup(params, f'{section}.{key}'))} | "
                   f"{_cell(_rule(field.name, annotation, own.get(field.name, [])))} | "
                   f"{_cell(help_text)} |")
    return out


def render() -> str:
    parts = [HEADER]
    params, notes = read_yaml(REPO / "params.yaml"), yaml_comments()
    for section, cls in section_classes().items():
        parts.append(f"\n## `{section}`\n")
        if cls is None:
            parts.append("Read only by the studies' `dvc.yaml` matrices (which runs exist); see the keys and their "
                         "comments in `params.yaml`.\n")
            continue
        doc = (cls.__dict__.get("__doc__") or "").strip()
        if notes.get(section):
            parts.append(f"{notes[section]}\n")
        elif doc and not doc.startswith(f"{cls.__name__}("):
            parts.append(f"{inspect.cleandoc(doc).split(chr(10) * 2)[0]}\n")
        parts.append("\n| key | type | default | params.yaml | rule | what it does |\n|---|---|---|---|---|---|")
        parts.append("\n".join(rows(cls, section, params, notes)))
    return "\n".join(parts).rstrip() + "\n"
