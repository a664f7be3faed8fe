"""Typed params: each `params.yaml` section parses into a frozen dataclass that rejects unknown keys.

Each stage has its typed dataclass (e.g. `PaletteParams`, in pipeline/quantize/palette_store.py) and calls
`load_section(path, "palette", PaletteParams)`. The shared `base:` section parses into `BaseParams`.
Errors name the file, the section, the key and the value.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from pipeline.errors import ParamsError

T = TypeVar("T")




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


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"params file not found: {path}")
    try:
        with path.open() as fh:
            data = yaml.safe_load(fh) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ParamsError(f"{path}:{where} is not valid YAML ({getattr(exc, 'problem', None) or exc})") from None
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
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParamsError(f"{where}: expected a number, got {value!r}")
        return float(value)
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
        elif dataclasses.is_dataclass(hints[name]) and field.default_factory is not dataclasses.MISSING:
            values[name] = field.default_factory()
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ParamsError(f"{where}: missing required key {name!r}")
    try:
        return cls(**values)
    except ParamsError as exc:
        raise ParamsError(f"{where}: {exc}") from None


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
