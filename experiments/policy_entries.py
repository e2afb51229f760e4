"""Policies named on the command line: `policies=[...]` of experiments.evaluate, `rule=` of experiments.export.

An entry is a conf/policy name (base_stock, echelon_base_stock, ss, rop: static levels from the demand model),
`file:PATH.yaml` (a policy file, e.g. tuned_policy.yaml from experiments.tune), `checkpoint:DIR` (a checkpoint of
experiments.train), `bundle:DIR` (a bundle of experiments.export, run in process), `service:URL` (every decision
answered by the decision service at URL; credentials from SUPPLYCHAIN_TWIN_CLIENT_ID and _SECRET),
`forecast:NAME` (the forecast-driven base-stock with live forecaster NAME), `replan` or `replan:NAME` (rolling
re-planning, agents/baselines/replan.py, with the settings of the `replan` block and live forecaster NAME, by
default `replan.forecaster`) or, on a reference case, `optimal`.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from hydra.utils import to_absolute_path

from agents.baselines.catalog import POLICIES, PolicySpec, optimal_policy
from agents.envs.core import EnvConfig, initial_on_hand
from experiments.startup import CONF_DIR
from twin import SpecError
from twin.spec import NetworkSpec


def live_forecaster(name: str, key: str, refit_every: int = 7):
    """A fresh live forecaster `name`: the oracle, or a forecaster with the settings of conf/forecaster/NAME.yaml
    (a null there: the class default) refitted every `refit_every` days (0: fitted once before the run and
    re-forecast weekly, as `env.forecast_refit_every=0` does in training); SpecError naming `key` if unknown."""
    from agents.forecasting.factory import FORECASTERS, forecaster_factory
    from agents.forecasting.live import OracleForecaster, Refitting

    if name not in FORECASTERS:
        raise SpecError(f"{key}: forecaster {name!r} is not allowed; allowed: {FORECASTERS.allowed()}")
    if name == "oracle":
        return OracleForecaster()
    path = CONF_DIR / "forecaster" / f"{name}.yaml"
    spec = yaml.safe_load(path.read_text()) if path.is_file() else {"name": name}
    spec = {k: v for k, v in spec.items() if v is not None}
    return Refitting(forecaster_factory(spec, key), name, refit_every=refit_every, key="forecast_refit_every")


def named_policy_spec(name: str, key: str) -> PolicySpec:
    """The policy of conf/policy/<name>.yaml (its safety factors, not the defaults): what a bare name such as
    `rop` or `shock_aware_base_stock` in a list of policies means; SpecError naming `key` for another name."""
    POLICIES.check(name, key)
    return PolicySpec.from_dict(yaml.safe_load((CONF_DIR / "policy" / f"{name}.yaml").read_text()), key)


def forecast_policy(name: str, key: str, z: dict[str, float] | None = None, refit_every: int = 7,
                    z_disrupted: dict[str, float] | None = None):
    """The forecast-driven base-stock policy with live forecaster `name` (`live_forecaster`); `z_disrupted`: its
    safety factors while a disruption is in force (None: `z` throughout)."""
    from agents.baselines.forecast_policy import ForecastBaseStock
    from agents.forecasting.factory import FORECASTERS

    if name not in FORECASTERS:
        raise SpecError(f"{key}: forecaster {name!r} is not allowed; allowed: forecast:NAME with NAME one of "
                        f"{FORECASTERS.allowed()}")
    return ForecastBaseStock(live_forecaster(name, key, refit_every), z=z, z_disrupted=z_disrupted)


def replan_policy(network: NetworkSpec, name: str | None, key: str, settings=None):
    """The rolling re-planner (agents/baselines/replan.py) with `settings` (a ReplanSpec; defaults if None) and
    live forecaster `name` (None: `settings.forecaster`)."""
    from agents.baselines.replan import ReplanSpec, RollingReplanner

    settings = settings or ReplanSpec()
    forecaster = live_forecaster(name, key) if name else live_forecaster(settings.forecaster, "replan.forecaster")
    return RollingReplanner(network, forecaster, settings)


def load_policies(entries: list, network: NetworkSpec, horizon: int, seed: int, case=None,
                  forecast_z: dict[str, float] | None = None, replan=None, demand=None,
                  forecast_refit_every: int = 7, keys: list[str] | None = None,
                  forecast_z_disrupted: dict[str, float] | None = None) -> dict[str, object]:
    """Build each policy entry (see the module docstring); SpecError naming `policies[i]` if one is bad. `demand`:
    the run's demand history (twin.demand_history.DemandSource), which the static policies' levels are set from;
    `forecast_refit_every`: the refit schedule of `forecast:NAME` entries (`live_forecaster`) and
    `forecast_z_disrupted` their safety factors while a disruption is in force (None: forecast_z); `keys`: the config
    key each entry's errors name (default `policies[i]`)."""
    if not entries:
        raise SpecError("policies: empty; allowed: a list of at least one policy")
    policies: dict[str, object] = {}
    for i, entry in enumerate(entries):
        key = keys[i] if keys else f"policies[{i}]"
        if not isinstance(entry, str):
            raise SpecError(f"{key}: {entry!r} is not allowed; allowed: a policy name, file:PATH, checkpoint:DIR, "
                            f"bundle:DIR, service:URL")
        kind, sep, rest = entry.partition(":")
        if sep and kind == "checkpoint":
            path = Path(to_absolute_path(rest))
            if not path.is_dir():
                raise SpecError(f"{key}: checkpoint {rest!r} is not a directory")
            from agents.rl.policy import TrainedPolicy  # ray and torch: loaded only for checkpoints
            policy = TrainedPolicy.from_checkpoint(path)
            label = policy.name
        elif sep and kind == "bundle":
            from agents.deploy.bundle import load_bundle

            path = Path(to_absolute_path(rest))
            policy = load_bundle(path).twin_policy()
            label = policy.name
        elif sep and kind == "service":
            from agents.deploy.client import ServiceClient, ServicePolicy

            policy = ServicePolicy(ServiceClient.from_env(rest, key), network)
            label = policy.name
        elif sep and kind == "file":
            path = Path(to_absolute_path(rest))
            if not path.is_file():
                raise SpecError(f"{key}: policy file {rest!r} does not exist")
            spec = PolicySpec.from_dict(yaml.safe_load(path.read_text()), key)
            label, policy = f"{spec.name}:{path.stem}", spec.build(network, horizon, seed, demand)
        elif sep and kind == "forecast":
            policy = forecast_policy(rest, key, forecast_z, forecast_refit_every, forecast_z_disrupted)
            label = f"forecast:{rest}"
        elif entry == "replan" or (sep and kind == "replan"):
            policy = replan_policy(network, rest or None, key, replan)
            label = policy.name
        elif entry == "optimal":
            if case is None:
                raise SpecError(f"{key}: 'optimal' is only known on a reference case; allowed with case=PATH")
            label, policy = "optimal", optimal_policy(case, network)
        elif entry in POLICIES:
            label, policy = entry, named_policy_spec(entry, key).build(network, horizon, seed, demand)
        else:
            raise SpecError(f"{key}: {entry!r} is not allowed; allowed: {POLICIES.allowed()}, optimal (case), "
                            f"file:PATH.yaml, checkpoint:DIR, bundle:DIR, service:URL, forecast:NAME, replan, "
                            f"replan:NAME")
        while label in policies:
            label += "'"
        policies[label] = policy
    return policies


def starting_stock(policies: dict[str, object], network: NetworkSpec):
    """Stock on hand at the start for every policy: a trained policy's own start (as in its training episodes),
    else the env's default (forecast demand over lead time + review period)."""
    for policy in policies.values():
        if getattr(policy, "initial_on_hand", None) is not None:
            return policy.initial_on_hand
    return initial_on_hand(EnvConfig(network=network))
