"""Reading plain dictionaries (from YAML or Hydra) with key paths in every error.

Every spec in the twin is built from a mapping through a `ConfigReader`, so a bad
value stops the run before anything is simulated with one message that names the
key (``network.nodes[3].parent``) and what is allowed there.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any


class SpecError(ValueError):
    """A configuration value is invalid; the message names the key and what is allowed."""


class ConfigReader:
    """A mapping plus the key path that led to it; reads typed values and rejects unknown keys."""

    def __init__(self, data: Mapping[str, Any] | None, path: str) -> None:
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise SpecError(f"{path}: expected a mapping of keys to values, got {type(data).__name__}")
        self.data = dict(data)
        self.path = path
        self._read: set[str] = set()

    def key(self, name: str) -> str:
        """The full path of a key below this reader."""
        return f"{self.path}.{name}" if self.path else name

    def has(self, name: str) -> bool:
        return name in self.data and self.data[name] is not None

    def raw(self, name: str, default: Any = None) -> Any:
        self._read.add(name)
        value = self.data.get(name, default)
        return default if value is None else value

    def number(
        self,
        name: str,
        default: float | None = None,
        *,
        low: float | None = None,
        high: float | None = None,
        low_open: bool = False,
        optional: bool = False,
    ) -> float | None:
        """A finite float within [low, high] (or (low, high] with low_open)."""
        value = self.raw(name, default)
        if value is None:
            if optional:
                return None
            raise SpecError(f"{self.key(name)}: required, expected a number")
        return check_number(self.key(name), value, low=low, high=high, low_open=low_open)

    def integer(self, name: str, default: int | None = None, *, low: int | None = None,
                high: int | None = None, optional: bool = False) -> int | None:
        """An integer within [low, high]."""
        value = self.raw(name, default)
        if value is None:
            if optional:
                return None
            raise SpecError(f"{self.key(name)}: required, expected an integer")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or int(value) != value:
            raise SpecError(f"{self.key(name)}: expected an integer, got {value!r}; allowed: a whole number")
        value = int(value)
        bounds(self.key(name), value, low, high, False)
        return value

    def choice(self, name: str, allowed: Sequence[str], default: str | None = None) -> str:
        """One of a fixed set of strings."""
        value = self.raw(name, default)
        if value not in allowed:
            raise SpecError(f"{self.key(name)}: {value!r} is not allowed; allowed: {', '.join(allowed)}")
        return value

    def text(self, name: str, default: str | None = None, *, optional: bool = False) -> str | None:
        value = self.raw(name, default)
        if value is None:
            if optional:
                return None
            raise SpecError(f"{self.key(name)}: required, expected a string")
        if not isinstance(value, str) or not value:
            raise SpecError(f"{self.key(name)}: expected a non-empty string, got {value!r}")
        return value

    def required_path(self, name: str, required_with: str, allowed: str) -> str:
        """A file or folder path that must be given (Hydra's `???` counts as missing): `required_with` says when,
        `allowed` what it may name."""
        value = self.raw(name)
        if value is None or value == "???":
            raise SpecError(f"{self.key(name)}: required with {required_with}; allowed: {allowed}")
        if not isinstance(value, str) or not value:
            raise SpecError(f"{self.key(name)}: expected a non-empty path, got {value!r}")
        return value

    def flag(self, name: str, default: bool) -> bool:
        value = self.raw(name, default)
        if not isinstance(value, bool):
            raise SpecError(f"{self.key(name)}: expected true or false, got {value!r}")
        return value

    def sequence(self, name: str, default: Sequence[Any] = ()) -> list[Any]:
        value = self.raw(name, default)
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise SpecError(f"{self.key(name)}: expected a list, got {value!r}")
        return list(value)

    def numbers(self, name: str, default: Sequence[float] = (), *, low: float | None = None,
                high: float | None = None, length: int | None = None) -> tuple[float, ...]:
        values = self.sequence(name, default)
        if length is not None and len(values) != length:
            raise SpecError(f"{self.key(name)}: expected {length} numbers, got {len(values)}")
        return tuple(check_number(f"{self.key(name)}[{i}]", v, low=low, high=high) for i, v in enumerate(values))

    def child(self, name: str) -> ConfigReader:
        self._read.add(name)
        return ConfigReader(self.data.get(name), self.key(name))

    def children(self, name: str) -> list[ConfigReader]:
        return [ConfigReader(item, f"{self.key(name)}[{i}]") for i, item in enumerate(self.sequence(name))]

    def done(self) -> None:
        """Reject keys that were never read (usually typos)."""
        unknown = sorted(set(self.data) - self._read)
        if unknown:
            allowed = ", ".join(sorted(self._read)) or "(none)"
            where = self.path or "config"
            raise SpecError(f"{where}: unknown key {unknown[0]!r}; allowed: {allowed}")


def check_number(key: str, value: Any, *, low: float | None = None, high: float | None = None,
                 low_open: bool = False) -> float:
    """Check that a value is a finite number within bounds and return it as float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpecError(f"{key}: expected a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise SpecError(f"{key}: expected a finite number, got {value!r}")
    bounds(key, value, low, high, low_open)
    return value


def bounds(key: str, value: float, low: float | None, high: float | None, low_open: bool) -> None:
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and value > high
    if too_low or too_high:
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        bracket = "(" if low_open else "["
        raise SpecError(f"{key}: {value:g} is out of range; allowed: {bracket}{lo}, {hi}]")


def check_warmup(warmup: Any, horizon: int, *, warmup_key: str = "warmup", horizon_key: str = "horizon") -> int:
    """The one rule for a warm-up: whole days in [0, horizon - 1], so at least one day of `horizon` is counted.

    Returns `warmup`; a SpecError (a ValueError) names `warmup_key`, and `horizon_key` where the bound comes from.
    """
    if isinstance(warmup, bool) or not isinstance(warmup, numbers.Integral) or not 0 <= warmup < horizon:
        raise SpecError(f"{warmup_key}: {warmup!r} is not allowed; allowed: whole days in [0, {horizon_key} - 1] = "
                        f"[0, {horizon - 1}] (the days before it are not counted, and at least one day must be)")
    return warmup
