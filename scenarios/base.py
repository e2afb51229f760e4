"""What a scenario is, and the base class that turns a scenario's parameters into shocks.

A `Scenario` is a name, a description and a tuple of `twin.shocks.Shock`s fitted
to one network and horizon. A `ScenarioBuilder` subclass declares its parameters
as dataclass fields (with bounds in `param(...)`); `from_params` reads them from a
plain mapping (YAML, Hydra) under the key `scenario`, so a bad or unknown value
raises one `SpecError` naming `scenario.<param>` before anything is simulated.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from twin.config import ConfigReader, SpecError
from twin.shocks import Shock
from twin.spec import NetworkSpec

KEY = "scenario"


@dataclass(frozen=True)
class Scenario:
    """A named set of shocks, fitted to a network and clipped to a horizon."""

    name: str
    description: str
    shocks: tuple[Shock, ...] = ()


def param(default: Any, *, low: float | None = None, high: float | None = None) -> Any:
    """A scenario parameter with a default and, for numbers, an allowed range [low, high]."""
    return field(default=default, metadata={"low": low, "high": high})


@dataclass(frozen=True)
class ScenarioBuilder:
    """Base class: typed parameters in, shocks for a given network and horizon out."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> ScenarioBuilder:
        """Read and check the parameters; unknown or bad ones raise SpecError naming `scenario.<param>`."""
        check_known(cls.name, params, [f.name for f in dataclasses.fields(cls)])
        reader = ConfigReader(params, KEY)
        return cls(**{f.name: read_param(reader, f) for f in dataclasses.fields(cls)})

    def shocks(self, network: NetworkSpec, horizon: int) -> list[Shock]:
        """The scenario's shocks on `network` (windows may reach past the horizon: `build` clips them)."""
        raise NotImplementedError

    def build(self, network: NetworkSpec, horizon: int) -> Scenario:
        """The scenario for `network` over `horizon` days: shocks validated and clipped to [0, horizon)."""
        if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
            raise SpecError(f"horizon: {horizon!r} is not allowed; allowed: an integer >= 1 (days)")
        shocks = clip_to_horizon(self.shocks(network, horizon), horizon)
        for i, shock in enumerate(shocks):
            shock.validate(network, f"{KEY}[{self.name}].shocks[{i}]")
        return Scenario(name=self.name, description=self.description, shocks=shocks)


def check_known(scenario: str, params: Mapping[str, Any], known: Sequence[str]) -> None:
    """Reject a parameter the scenario does not have (usually a typo)."""
    for key in params:
        if key not in known:
            raise SpecError(f"{KEY}.{key}: unknown parameter of scenario {scenario!r}; "
                            f"allowed: {', '.join(known) or '(none)'}")


def read_param(reader: ConfigReader, f: dataclasses.Field) -> Any:
    """One parameter, read with the reader method that matches the type of its default."""
    default, low, high = f.default, f.metadata.get("low"), f.metadata.get("high")
    if isinstance(default, bool):
        return reader.flag(f.name, default)
    if isinstance(default, int):
        return reader.integer(f.name, default, low=low, high=high)
    if isinstance(default, float):
        return reader.number(f.name, default, low=low, high=high)
    if isinstance(default, tuple):
        return tuple(reader.sequence(f.name, default))
    return reader.text(f.name, default, optional=default is None)


def clip_to_horizon(shocks: Sequence[Shock], horizon: int) -> tuple[Shock, ...]:
    """Drop shocks that start at or after the horizon or have an empty window; end the rest by the horizon."""
    kept = []
    for shock in shocks:
        end = min(shock.end, horizon)
        if shock.start < end:
            kept.append(shock if end == shock.end else dataclasses.replace(shock, end=end))
    return tuple(kept)


# ---------------------------------------------------------------------------
# Checks that name the scenario's parameter (not the shock's field) in errors
# ---------------------------------------------------------------------------

def check_names(name: str, values: Sequence[str], allowed: Sequence[str], what: str) -> tuple[str, ...]:
    """The values as strings, each one of `allowed`; `[]` is always allowed (it means 'all')."""
    for value in values:
        if str(value) not in allowed:
            raise SpecError(f"{KEY}.{name}: {value!r} is not a {what} of this network; "
                            f"allowed: {', '.join(allowed)} (or [] for all)")
    return tuple(str(v) for v in values)


def sku_groups(network: NetworkSpec, name: str, groups: Sequence[str]) -> tuple[str, ...]:
    """Check that `groups` are SKU groups of the network (empty: all SKUs)."""
    return check_names(name, groups, sorted(set(network.skus.group)), "SKU group")


def store_regions(network: NetworkSpec, name: str, regions: Sequence[str]) -> tuple[str, ...]:
    """Check that `regions` are store regions of the network (empty: all stores)."""
    return check_names(name, regions, sorted({n.region for n in network.nodes_of_kind("store")}), "store region")


def suppliers(network: NetworkSpec, name: str, chosen: Sequence[str]) -> tuple[str, ...]:
    """The chosen supplier names (empty: every supplier of the network)."""
    allowed = [n.name for n in network.nodes_of_kind("supplier")]
    return check_names(name, chosen, allowed, "supplier") or tuple(allowed)


def pick_dc(network: NetworkSpec, name: str, dc: str | None) -> str | None:
    """The DC named `dc`, or the first DC by name when `dc` is None (None if the network has no DC)."""
    allowed = sorted(n.name for n in network.nodes_of_kind("dc"))
    if dc is None:
        return allowed[0] if allowed else None
    if dc not in allowed:
        raise SpecError(f"{KEY}.{name}: {dc!r} is not a DC of network {network.name!r}; "
                        f"allowed: {', '.join(allowed) or '(none: the network has no DC)'}")
    return dc


def check_reroute(network: NetworkSpec, dc: str) -> None:
    """Re-routing needs a backup parent for every customer of the closed DC."""
    orphans = [n.name for n in network.nodes if n.parent == dc and n.backup_parent is None]
    if orphans:
        raise SpecError(f"{KEY}.reroute: {orphans[0]!r} (a customer of {dc!r}) has no backup_parent to re-route "
                        f"to; allowed: false on network {network.name!r}, or give it a backup_parent")


def scaled(name: str, multiplier: float, severity: float) -> float:
    """`multiplier` moved away from 1 by `severity` (1: as given, 0: no effect); must stay >= 0."""
    value = 1.0 + severity * (multiplier - 1.0)
    if value < 0:
        raise SpecError(f"{KEY}.severity: {severity:g} scales {name} {multiplier:g} to {value:g}; "
                        f"allowed: a severity that keeps every multiplier >= 0")
    return value


def whole_days(count: float) -> int:
    """A duration in whole days (rounded)."""
    return int(round(count))
