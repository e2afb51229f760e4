"""Scenarios named on the command line (experiments.stress and experiments.robustness `scenarios` lists).

    built = read_scenarios(["baseline", {"name": "covid_2020", "severity": 1.5}, "my_shocks.yaml"], network, 365)

Each entry is a conf/scenario name (its YAML defaults under the entry's parameters), a mapping with a name and
parameters, or a scenario file (scenarios/files.py); a bad one is one SpecError naming `scenarios[i]`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import yaml
from hydra.utils import to_absolute_path

import scenarios
from experiments.startup import CONF_DIR, SCENARIO_FILE_SUFFIXES
from scenarios import SCENARIOS, Scenario
from twin import SpecError
from twin.spec import NetworkSpec


def read_scenarios(entries: Sequence, network: NetworkSpec, horizon: int, key: str = "scenarios"
                   ) -> dict[str, Scenario]:
    """Each entry built on the network: a conf/scenario name, a mapping {name: ..., params}, or a scenario file;
    labels are the scenarios' names (a repeated name gets a ' appended). SpecError naming `<key>[i]`."""
    if not entries:
        raise SpecError(f"{key}: empty; allowed: a list of at least one scenario name or scenario file")
    built: dict[str, Scenario] = {}
    names = [n for n in SCENARIOS.names if n != "file"]
    for i, entry in enumerate(entries):
        where = f"{key}[{i}]"
        if isinstance(entry, str) and entry.lower().endswith(SCENARIO_FILE_SUFFIXES):
            params = {"name": "file", "path": to_absolute_path(entry)}
        elif isinstance(entry, (str, Mapping)):
            params = {"name": entry} if isinstance(entry, str) else dict(entry)
            name = params.get("name")
            if name not in names:
                raise SpecError(f"{where}: {name!r} is not allowed; allowed: {', '.join(names)}, a mapping "
                                f"{{name: NAME, PARAMETER: VALUE}}, or a scenario file (FILE.yaml)")
            defaults = yaml.safe_load((CONF_DIR / "scenario" / f"{name}.yaml").read_text()) or {}
            params = {**defaults, **params}
        else:
            raise SpecError(f"{where}: {entry!r} is not allowed; allowed: a scenario name, a mapping with a name, or "
                            f"a scenario file (FILE.yaml)")
        try:
            scenario = scenarios.build(params.pop("name"), network, horizon, **params)
        except SpecError as error:
            raise SpecError(f"{where}: {error}") from None
        label = scenario.name
        while label in built:
            label += "'"
        built[label] = scenario
    return built
