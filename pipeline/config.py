"""Typed params: each `params.yaml` section parses into a frozen dataclass that rejects unknown keys.

Each stage has its typed dataclass (e.g. `PaletteParams`, in pipeline/quantize/palette_store.py) and calls
`load_section(path, "palette", PaletteParams)`. The shared `base:` section parses into `BaseParams`.
Errors name the file, the section, the key and the value.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, Callable, Literal, TypeVar

import yaml

from pipeline.errors import ParamsError

T = TypeVar("T")

INT_LIMIT = 2**63

# Rules by field name, for every section that has such a field: each rule is stated once, here.
_RULES: list[tuple[re.Pattern, Callable[[Any], bool], str]] = [
    (re.compile(r"^(lr|lr_\w+|(?!min_)\w+_lr)$"), lambda v: v > 0, "must be > 0"),
    (re.compile(r"^min_lr$"), lambda v: v >= 0, "must be >= 0"),
    (re.compile(r"^momentum$"), lambda v: 0 <= v < 1, "must be in [0, 1)"),
    (re.compile(r"^weight_decay$"), lambda v: v >= 0, "must be >= 0"),
    (re.compile(r"^seed$"), lambda v: 0 <= v < 2**32, "must be in [0, 2**32)"),
]


def _check_named_rule(name: str, value: Any, where: str) -> None:
    if value is None or isinstance(value, (bool, str, tuple, list, dict)) or dataclasses.is_dataclass(value):
        return
    for pattern, ok, rule in _RULES:
        if pattern.match(name) and not ok(value):
            raise ParamsError(f"{where}={value!r} {rule}")


_SCHEDULER = re.compile(r"^(tcp|tls|inproc|ucx|ws|wss)://[^\s:/]+:(\d{1,5})$|^[^\s:/]+:(\d{1,5})$")


def check_scheduler(address: str | None) -> None:
    """A Dask scheduler address: HOST:PORT or PROTOCOL://HOST:PORT, port 1-65535."""
    if address is None:
        return
    match = _SCHEDULER.match(address)
    port = match and int(match.group(2) or match.group(3))
    require(bool(match) and 1 <= port <= 65535,
            f"scheduler={address!r} must be HOST:PORT or tcp://HOST:PORT with a port in 1-65535")


@dataclasses.dataclass(frozen=True)
class BaseParams:
    """`base:` — read by every stage."""

    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # "auto" = the fastest dtype measured to work on the device (bf16 autocast on CUDA and on CPUs
    # with AVX-512 BF16 / AMX, else fp32).
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    # Where the per-image stages run their shards: in this process, or as Dask tasks (pipeline/executor.py).
    # Never part of an output's params: every executor writes the same bytes.
    executor: Literal["serial", "dask"] = dataclasses.field(default="serial", metadata={"not_recorded": True})
    scheduler: str | None = dataclasses.field(default=None, metadata={"not_recorded": True})  # null: a LocalCluster

    def __post_init__(self):  # seed's range is a rule by name (_RULES), like every section's seed
        check_scheduler(self.scheduler)


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader keeps the last of repeated keys silently; this one refuses them."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` may be overridden by the keys beside it
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                first = seen.setdefault(key, key_node)
            except TypeError:  # an unhashable key: the base class raises its own error
                continue
            if first is not key_node:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first at line {first.start_mark.line + 1}, again at line "
                    f"{key_node.start_mark.line + 1})", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"params file not found: {path}")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParamsError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = str(getattr(exc, "problem", None) or exc).splitlines()[0]
        raise ParamsError(f"{path}:{where} is not valid YAML ({problem})") from None
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: top level must be a mapping of sections, got {type(data).__name__}")
    return data


def _check_type(value: Any, annotation: Any, where: str) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if dataclasses.is_dataclass(annotation):
        return parse_section(annotation, value, where)
    if origin is Literal:
        if value not in args:
            raise ParamsError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arg in args:
            if arg is type(None):
                if value is None:
                    return None
                continue
            try:
                return _check_type(value, arg, where)
            except ParamsError as exc:
                errors.append(str(exc))
        raise ParamsError(errors[0] if errors else f"{where}: {value!r} has the wrong type")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ParamsError(f"{where}: expected a list, got {value!r}")
        inner = args[0] if args else Any
        return tuple(_check_type(v, inner, f"{where}[{i}]") for i, v in enumerate(value))
    if annotation is bool:
        if not isinstance(value, bool):
            raise ParamsError(f"{where}: expected true/false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamsError(f"{where}: expected an integer, got {value!r}")
        if not -INT_LIMIT < value < INT_LIMIT:
            raise ParamsError(f"{where}: {value} is out of range (|value| < 2**63)")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParamsError(f"{where}: expected a number, got {value!r}")
        try:
            number = float(value)
        except OverflowError:
            raise ParamsError(f"{where}: {value} is out of range for a number") from None
        if not math.isfinite(number):
            raise ParamsError(f"{where}: {value!r} is not a finite number")
        return number
    if annotation is str:
        if not isinstance(value, str):
            raise ParamsError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def parse_section(cls: type[T], raw: dict | None, where: str) -> T:
    """Build `cls` from a mapping; unknown keys and wrongly typed values raise ParamsError."""
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ParamsError(f"{where}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ParamsError(f"{where}: unknown key(s) {unknown}; allowed keys are {sorted(fields)}")
    values = {}
    for name, field in fields.items():
        if name in raw:
            values[name] = _check_type(raw[name], hints[name], f"{where}.{name}")
            _check_named_rule(name, values[name], f"{where}.{name}")
        elif dataclasses.is_dataclass(hints[name]) and field.default_factory is not dataclasses.MISSING:
            values[name] = field.default_factory()
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ParamsError(f"{where}: missing required key {name!r}")
    try:
        return cls(**values)
    except ParamsError as exc:
        raise ParamsError(f"{where}: {exc}") from None
    except (TypeError, ValueError, OverflowError) as exc:  # a __post_init__ rule meeting a value it did not expect
        raise ParamsError(f"{where}: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}") from None


def load_section(path: str | Path, section: str, cls: type[T]) -> T:
    data = read_yaml(path)
    if section not in data:
        raise ParamsError(f"{path}: missing section {section!r}")
    return parse_section(cls, data[section], f"{path}:{section}")


def load_base(path: str | Path) -> BaseParams:
    data = read_yaml(path)
    return parse_section(BaseParams, data.get("base"), f"{path}:base")


def require(condition: bool, message: str) -> None:
    """Range checks inside dataclass __post_init__; parse_section prefixes the section name."""
    if not condition:
        raise ParamsError(message)


def to_dict(obj: Any) -> dict:
    def plain(value):
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value

    out = plain(dataclasses.asdict(obj))
    for f in dataclasses.fields(obj):
        if f.metadata.get("not_recorded") or (f.metadata.get("off_switch") and getattr(obj, f.name) == f.default):
            out.pop(f.name)
    return out


def off_switch(default: Any) -> Any:
    """A dataclass field for an opt-in method switch: recorded in an output's params only when it is on, so that
    adding a switch leaves the lineage (and the bytes) of every output made with it off as they were."""
    return dataclasses.field(default=default, metadata={"off_switch": True})


def resolved_params(**sections: Any) -> dict:
    """The params that made an output, as plain JSON-able dicts, e.g. resolved_params(base=b, palette=p)."""
    return {name: to_dict(value) if dataclasses.is_dataclass(value) else value for name, value in sections.items()}


def lineage(*upstream: dict, **own) -> dict:
    """Resolved params of an output: those of every input it was made from, plus this stage's own."""
    merged: dict = {}
    for params in upstream:
        merged.update(params or {})
    merged.update(resolved_params(**own))
    return merged


def params_hash(params: dict) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]


PRESETS = Path(__file__).resolve().parent / "presets"


def preset_path(name: str | Path) -> Path:
    """A preset by name (`paper`, `imagenet`: pipeline/presets/NAME.yaml) or by path."""
    path = Path(name)
    if path.suffix not in (".yaml", ".yml"):
        path = PRESETS / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in PRESETS.glob("*.yaml"))
        raise ParamsError(f"no preset {name!r}; presets: {', '.join(known)}")
    return path


def merge_preset(params: dict, preset: dict, where: str) -> dict:
    """`params` with the preset's values put in. Every section of the preset must be a section of `params`; below
    that a mapping merges key by key where params has all its keys, and otherwise replaces the whole mapping (a
    map of named variants). A misspelt key then reaches the section's parser, which names it."""
    merged = dict(params)
    for key, value in preset.items():
        if key not in params:
            raise ParamsError(f"{where}: section {key!r} is not in params.yaml (a preset only overrides)")
        merged[key] = _merge(params[key], value)
    return merged


def _merge(default: Any, value: Any) -> Any:
    if isinstance(value, dict) and isinstance(default, dict) and set(value) <= set(default):
        return {**default, **{k: _merge(default[k], v) for k, v in value.items()}}
    return value


def preset_params(name: str | Path, params_file: str | Path = "params.yaml") -> dict:
    """params.yaml with the preset's overrides applied."""
    path = preset_path(name)
    return merge_preset(read_yaml(params_file), read_yaml(path), str(path))


def preset_overrides(name: str | Path) -> list[str]:
    """The preset as `dvc exp run -S` values, `section.key=value`, each value compact JSON (valid YAML, no spaces,
    so `$(dcq preset NAME)` splits into whole arguments)."""
    def leaves(obj: dict, prefix: str):
        for key, value in obj.items():
            if isinstance(value, dict) and value:
                yield from leaves(value, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}", value

    path = preset_path(name)
    # a space only occurs inside a string here: escaped, it stays one shell word and YAML reads it back as a space
    return [f"{key}={json.dumps(value, separators=(',', ':')).replace(' ', chr(92) + 'u0020')}"
            for key, value in leaves(read_yaml(path), "")]
