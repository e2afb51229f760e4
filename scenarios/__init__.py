"""Named scenarios: shocks composed for a network and a horizon, and the registry that builds them.

    from scenarios import build
    scenario = build("covid_2020", network, horizon=365, severity=1.5)
    Engine(network, horizon=365, seed=0, shocks=scenario.shocks)

Each scenario is a `ScenarioBuilder` subclass in scenarios/library.py whose fields
are its parameters; conf/scenario/<name>.yaml lists them with their defaults. The
scenario `file` runs a scenario file (scenarios/files.py: shocks in YAML with dates,
durations and ramps): `build("file", network, horizon, path="my_scenario.yaml")`.
"""

from __future__ import annotations

from typing import Any

from scenarios.base import Scenario, ScenarioBuilder
from scenarios.files import ScenarioFile
from scenarios.library import Baseline, Covid2020, Custom, DcOutage, FlashSale, HolidayPeak, PortStrike
from twin.registry import Registry
from twin.spec import NetworkSpec

SCENARIOS: Registry[type[ScenarioBuilder]] = Registry.of(
    "scenario.name", Baseline, Covid2020, FlashSale, PortStrike, DcOutage, HolidayPeak, Custom, ScenarioFile)


def build(name: str, network: NetworkSpec, horizon: int, **params: Any) -> Scenario:
    """The scenario `name` with `params` on `network` over `horizon` days; SpecError naming the key if bad."""
    return SCENARIOS.resolve(name).from_params(params).build(network, horizon)


__all__ = ["SCENARIOS", "Scenario", "ScenarioBuilder", "build"]
