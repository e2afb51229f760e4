"""Names to classes (or builders): the one way the project maps a configured name to what it builds.

    SCENARIOS = Registry("scenario.name", {"baseline": Baseline, ...})
    SCENARIOS.resolve("covid_2020")        # the class
    SCENARIOS.resolve("nope")              # SpecError: scenario.name: 'nope' is not allowed; allowed: baseline, ...

Entries may also be given lazily as "package.module:Attribute" strings
(`lazy=True`), imported on first use, so that naming one forecaster never
imports the libraries of another. A registry is a read-only mapping
(`name in registry`, `list(registry)`, `registry[name]`), in the order given.
Plain Python: nothing here needs numpy.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Generic, TypeVar

from twin.config import SpecError

T = TypeVar("T")


class Registry(Mapping[str, T], Generic[T]):
    """An ordered, read-only map of names to classes or builders; unknown names raise SpecError.

    `key` is the config key the name is read from (`scenario.name`); errors name it,
    the value and the allowed names: ``KEY: VALUE is not allowed; allowed: a, b, c``.
    """

    def __init__(self, key: str, entries: Mapping[str, T | str], *, lazy: bool = False) -> None:
        self.key = key
        self.lazy = lazy
        self._entries: dict[str, T | str] = dict(entries)
        self._loaded: dict[str, T] = {}

    @classmethod
    def of(cls, key: str, *classes: type, attribute: str = "name") -> Registry:
        """A registry of classes under their own `name` (or another class attribute)."""
        return cls(key, {getattr(c, attribute): c for c in classes})

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def allowed(self) -> str:
        """The allowed names, as error messages list them."""
        return ", ".join(self._entries)

    def check(self, name: object, key: str | None = None) -> str:
        """`name` if registered; SpecError naming `key` (default: the registry's) and the allowed names."""
        if not isinstance(name, str) or name not in self._entries:
            raise SpecError(f"{key or self.key}: {name!r} is not allowed; allowed: {self.allowed()}")
        return name

    def resolve(self, name: object, key: str | None = None) -> T:
        """The entry registered under `name` (imported on first use if lazy); SpecError if unknown."""
        return self[self.check(name, key)]

    def __getitem__(self, name: str) -> T:
        if name in self._loaded:
            return self._loaded[name]
        entry = self._entries[name]
        if self.lazy and isinstance(entry, str):
            module, _, attribute = entry.partition(":")
            entry = getattr(importlib.import_module(module), attribute)
        self._loaded[name] = entry  # type: ignore[assignment]
        return entry  # type: ignore[return-value]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.key!r}: {self.allowed()})"
