"""One registry shape for everything that grows by name: models, distillers, store formats.

An entry is registered with the `register(*names)` decorator; registering a second, different object under a
name that is taken is a programming error. `get(name)` raises the registry's own user-facing error, worded by
its `unknown` callback, which receives the name and the names registered.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from pipeline.errors import ParamsError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, unknown: Callable[[str, list[str]], str] | None = None,
                 error: type[Exception] = ParamsError, sort: bool = True):
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._unknown = unknown or (lambda name, names: f"unknown {kind} {name!r}; known: {names}")
        self._error = error
        self._sort = sort

    def register(self, *names: str) -> Callable[[T], T]:
        def wrap(entry: T) -> T:
            for name in names:
                if self._entries.get(name, entry) is not entry:
                    raise ValueError(f"{self.kind} {name!r} is registered twice")
                self._entries[name] = entry
            return entry

        return wrap

    def names(self) -> list[str]:
        return sorted(self._entries) if self._sort else list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def get(self, name: str) -> T:
        if name not in self._entries:
            raise self._error(self._unknown(name, self.names()))
        return self._entries[name]
