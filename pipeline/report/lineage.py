"""Whether a run record is current, judged by its lineage in the dvc.lock files, not by what is on disk.

A record that a dvc stage wrote is current when
- today's pipelines (dvc.yaml and studies/*/dvc.yaml) still have the stage that wrote it, and that stage's lock
  entry records the record's bytes (so the lock describes this very record);
- that entry, and every entry upstream of it (a dep of one is an out of the next, across every lock), recorded
  each param with the value params.yaml holds today. Only the keys an entry recorded are compared: a key added
  to a section later changes no output, or its change comes with a version bump;
- and every one of those entries ran at today's algorithm version of its command
  (pipeline/algorithm_versions.yaml; an entry recorded before versions existed ran at version 1).

Where a run's train set is on disk, its params hash must be the record's `train_set_hash` (a store rebuilt with a
new upstream default would otherwise leave old runs current); a store further up is not re-read.

So a refactor that leaves the versions alone leaves every record current, and a changed param or algorithm makes
stale exactly the records downstream of it. Input bytes are not compared: a store rebuilt with the same params and
versions (on another kind of CPU, whose float kernels differ) keeps its records, draws of the same procedure whose
`hardware` says where they ran. A record no lock names is judged by nothing and kept. Stages run at the repository
root (the studies' `wdir: ../..`), so every lock's paths are relative to it.

For an older record without `train_set_info`, `Verdict.info` recovers the DCQ variant and the cluster count.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from pipeline.config import params_hash
from pipeline.errors import StoreError
from pipeline.io.train_set_info import flat_change
from pipeline.io.verify import read_attrs

VERSIONS_FILE = "pipeline/algorithm_versions.yaml"
_COMMAND = re.compile(r"(?:^|&&\s*)dcq (\w+)")
_VARIANT = re.compile(r"^(\w+)\.variants\.(.+)$")


class _Yaml12Loader(yaml.SafeLoader):
    """PyYAML reads `1e-05` as a string (YAML 1.1); dvc writes and reads YAML 1.2, where it is a float."""


_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)"
               r"|\.[0-9_]+(?:[eE][-+][0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."))


def _load(path: Path) -> dict:
    try:
        data = yaml.load(path.read_text(), Loader=_Yaml12Loader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as exc:
        raise StoreError(f"{path}: not YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise StoreError(f"{path}: expected a mapping at the top")
    return data


@dataclass
class Verdict:
    reasons: list[str] = field(default_factory=list)   # empty: current
    info: dict = field(default_factory=dict)           # the train set, as recovered from the lineage


def same(recorded, today) -> bool:
    """`today` holds what was recorded: a mapping compares only the keys it recorded; 5 and 5.0 are one number."""
    if isinstance(recorded, dict):
        return isinstance(today, dict) and all(k in today and same(v, today[k]) for k, v in recorded.items())
    numbers = (int, float)
    if isinstance(recorded, numbers) and isinstance(today, numbers) and not isinstance(recorded, bool) \
            and not isinstance(today, bool):
        return float(recorded) == float(today)
    return type(recorded) is type(today) and recorded == today


def _lookup(params: dict, dotted: str):
    value = params
    for key in dotted.split("."):
        if not isinstance(value, dict) or key not in value:
            return _ABSENT
        value = value[key]
    return value


_ABSENT = object()


def pipelines(root: Path) -> list[Path]:
    return [p for p in [root / "dvc.yaml", *sorted((root / "studies").glob("*/dvc.yaml"))] if p.is_file()]


def stage_names(root: Path) -> set[tuple[str, str]]:
    """(pipeline file, stage name) of every stage today's pipelines define, matrix items expanded (by dvc)."""
    from dvc.parsing import DataResolver
    from dvc.repo import Repo

    names = set()
    with Repo(str(root)) as repo:
        for path in pipelines(root):
            resolver = DataResolver(repo, str(path.parent), _load(path))
            names |= {(str(path.relative_to(root)), name) for name in resolver.get_keys()}
    return names


class Lineage:
    """Every lock entry of a repository, by the outputs it records."""

    def __init__(self, root: Path, names: set[tuple[str, str]] | None = None):
        self.root = root
        self.names = stage_names(root) if names is None else names
        self.entries: dict[tuple[str, str], dict] = {}
        self.writer: dict[str, tuple[str, str]] = {}
        for pipeline in pipelines(root):
            lock = pipeline.with_name("dvc.lock")
            if not lock.is_file():
                continue
            where = str(pipeline.relative_to(root))
            for name, entry in (_load(lock).get("stages") or {}).items():
                self.entries[(where, name)] = entry
                for out in entry.get("outs") or []:
                    self.writer[out["path"]] = (where, name)
        self.params_files: dict[str, dict] = {}
        self.store_hashes: dict[str, str] = {}
        versions = root / VERSIONS_FILE
        self.versions = _load(versions) if versions.is_file() else None

    @staticmethod
    def find(runs: Path) -> Lineage | None:
        """The lineage of the repository `runs` sits in; None outside one (nothing to judge records by)."""
        for folder in [runs.resolve(), *runs.resolve().parents]:
            if (folder / "dvc.yaml").is_file() and (folder / "params.yaml").is_file():
                return Lineage(folder)
        return None

    def _today(self, params_file: str) -> dict:
        if params_file not in self.params_files:
            path = self.root / params_file
            self.params_files[params_file] = _load(path) if path.is_file() else {}
        return self.params_files[params_file]

    def judge(self, record_path: Path, record: dict) -> Verdict:
        try:
            rel = str(record_path.resolve().relative_to(self.root))
        except ValueError:
            return Verdict()
        key = self.writer.get(rel)
        if key is None:
            return Verdict()  # no stage of this repository wrote it: nothing to judge it by
        verdict = Verdict()
        out = next(o for o in self.entries[key]["outs"] if o["path"] == rel)
        if out.get("md5") != hashlib.md5(record_path.read_bytes()).hexdigest():
            verdict.reasons.append(f"{rel} is not the record its stage {key[1]} last wrote (dvc.lock)")
        seen: set = set()
        self._walk(key, verdict, seen)
        train_set = record.get("train_set")
        if train_set in self.writer:
            verdict.info = self._train_set_info(self.writer[train_set], seen)
            if reason := self._rebuilt_since(train_set, record.get("train_set_hash")):
                verdict.reasons.append(reason)
        return verdict

    def _rebuilt_since(self, train_set: str, recorded_hash) -> str | None:
        """Why the run's train set is not the store it read (its params changed since), if it is not."""
        path = self.root / train_set
        if not isinstance(recorded_hash, str) or not (path / "zarr.json").is_file():
            return None  # an older record, or the store is not here: the lock's lineage alone decides
        if train_set not in self.store_hashes:
            try:
                self.store_hashes[train_set] = params_hash(read_attrs(path).get("params", {}))
            except StoreError as exc:
                self.store_hashes[train_set] = f"unreadable ({exc})"
        now = self.store_hashes[train_set]
        return None if now == recorded_hash else f"{train_set} was rebuilt with other params since this run read it " \
            f"(params hash {recorded_hash}, now {now})"

    def _walk(self, key: tuple[str, str], verdict: Verdict, seen: set) -> None:
        if key in seen:
            return
        seen.add(key)
        where, name = key
        if key not in self.names:
            verdict.reasons.append(f"{where} no longer has the stage {name}")
        entry = self.entries[key]
        recorded = entry.get("params") or {}
        for params_file, values in recorded.items():
            if params_file == VERSIONS_FILE:
                continue
            today = self._today(params_file)
            for dotted, value in values.items():
                now = _lookup(today, dotted)
                if now is _ABSENT or not same(value, now):
                    shown = "absent" if now is _ABSENT else repr(now)
                    verdict.reasons.append(f"{name}: {dotted} was {value!r}, is {shown}")
        if self.versions is not None:
            commands = _COMMAND.findall(" ".join(entry.get("cmd", "").split()))
            ran = recorded.get(VERSIONS_FILE) or dict.fromkeys(commands, 1)
            for command, version in ran.items():
                if self.versions.get(command, 1) != version:
                    verdict.reasons.append(f"{name}: dcq {command} ran at algorithm version {version}, "
                                           f"is {self.versions.get(command, 1)}")
        for dep in entry.get("deps") or []:
            upstream = self.writer.get(dep["path"])
            if upstream is not None:
                self._walk(upstream, verdict, seen)

    def _train_set_info(self, key: tuple[str, str], seen: set) -> dict:
        """The DCQ variant and the cluster count of a train set, from the params its stages recorded."""
        entry = self.entries[key]
        commands = _COMMAND.findall(" ".join(entry.get("cmd", "").split()))
        values = (entry.get("params") or {}).get("params.yaml", {})
        if "ablate" in commands:
            variant = next(((m.group(2), v) for k, v in values.items() if (m := _VARIANT.match(k))), None)
            if variant is None:
                return {}
            name, overrides = variant
            overrides = overrides or {}
            k = (overrides.get("cluster") or {}).get("k", values.get("cluster.k"))
            info = {"ablation": name, "ablation_change": ", ".join(flat_change(overrides)) or "none"}
            return info | ({"clusters": int(k)} if isinstance(k, int) else {})
        if "encode" in commands:  # a main DCQ store: its clusters are the cluster stage's
            cluster = next((self.entries[s] for s in sorted(seen) if "cluster" in _COMMAND.findall(
                " ".join(self.entries[s].get("cmd", "").split()))), None)
            k = ((cluster or {}).get("params") or {}).get("params.yaml", {}).get("cluster.k")
            return {"clusters": int(k)} if isinstance(k, int) else {}
        return {}


def annotator(lineage: Lineage | None):
    """`annotate(record, path)` for records.collect: what the record's train set is (its own `train_set_info`, or
    for an older record what its lineage says), and `stale_because` (the first reason) when it is stale."""

    def annotate(record: dict, path: Path) -> dict:
        verdict = lineage.judge(path, record) if lineage is not None else Verdict()
        info = record.get("train_set_info")
        out = dict(info if isinstance(info, dict) else verdict.info)
        if verdict.reasons:
            out["stale_because"] = verdict.reasons[0]
        return out

    return annotate


def split(recs: list[dict]) -> tuple[list[dict], list[dict]]:
    """(current, stale) records, as annotated."""
    return [r for r in recs if "stale_because" not in r], [r for r in recs if "stale_because" in r]
