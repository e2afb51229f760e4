"""Forecasters by name (the FORECASTERS registry), built from config mappings (`{name: lstm, ...}`), keys checked.

Classes are imported on first use, so choosing seasonal naive never loads torch
or statsforecast.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from agents.forecasting.base import Forecaster
from twin.config import SpecError
from twin.registry import Registry

FORECASTERS: Registry[type] = Registry("forecaster.name", {
    "seasonal_naive": "agents.forecasting.classical:SeasonalNaive",
    "moving_average": "agents.forecasting.classical:MovingAverage",
    "ets": "agents.forecasting.classical:AutoETS",
    "arima": "agents.forecasting.classical:AutoARIMA",
    "croston": "agents.forecasting.intermittent:Croston",
    "tsb": "agents.forecasting.intermittent:TSB",
    "adida": "agents.forecasting.intermittent:ADIDA",
    "imapa": "agents.forecasting.intermittent:IMAPA",
    "gradient_boosting": "agents.forecasting.tree:GradientBoosting",
    "glm": "agents.forecasting.glm:PoissonGLM",
    "lstm": "agents.forecasting.lstm:LSTMForecaster",
    "transformer": "agents.forecasting.transformer:TransformerForecaster",
    "ensemble": "agents.forecasting.ensemble:Ensemble",
    "oracle": "agents.forecasting.oracle:TrueMean",
    "conformal": "agents.forecasting.conformal:Conformal",
    "auto": "agents.forecasting.auto:Auto",
}, lazy=True)


def forecaster_class(name: str, path: str = "forecaster.name") -> type:
    """The class registered under `name`; SpecError naming `path` and the allowed names otherwise."""
    return FORECASTERS.resolve(name, path)


def _candidate_builders(candidates: object, params: Mapping[str, Any],
                        path: str) -> dict[str, Callable[[], Forecaster]]:
    """Auto's candidates (names or nested configs) as label -> factory, each checked under `path[i]`; a candidate
    that takes `max_horizon` validates as far ahead as auto (`params`) does."""
    from agents.forecasting.auto import free_label
    if not isinstance(candidates, (list, tuple)):
        raise SpecError(f"{path}: {candidates!r} is not allowed; allowed: a list of forecasters")
    builders = {}
    for i, entry in enumerate(candidates):
        if not isinstance(entry, (str, Mapping)):
            raise SpecError(f"{path}[{i}]: {entry!r} is not a forecaster config; allowed: a name or a mapping with "
                            f"name")
        spec = {"name": entry} if isinstance(entry, str) else dict(entry)
        label = spec.get("name")
        if (label in FORECASTERS and params.get("max_horizon") is not None and spec.get("max_horizon") is None
                and "max_horizon" in inspect.signature(forecaster_class(label)).parameters):
            spec["max_horizon"] = params["max_horizon"]  # a candidate that needs it validates as far
        make_candidate = forecaster_factory(spec, f"{path}[{i}]")
        builders[free_label(label, builders)] = make_candidate
    return builders


def forecaster_factory(spec: str | Mapping[str, Any], path: str = "forecaster") -> Callable[[], Forecaster]:
    """A function that builds a fresh forecaster from `spec` (a name, or a mapping with `name` and keywords).

    The keywords are checked against the class's and one forecaster is built
    at once, so a bad value fails here, naming its key, before any work starts.
    """
    params = {"name": spec} if isinstance(spec, str) else dict(spec)
    name = params.pop("name", None)
    if not isinstance(name, str):
        raise SpecError(f"{path}.name: required; allowed: {FORECASTERS.allowed()}")
    cls = forecaster_class(name, f"{path}.name")
    allowed = [p for p in inspect.signature(cls).parameters if p not in ("self", "members")]
    for key in params:
        if key not in allowed and not (key == "members" and name == "ensemble"):
            raise SpecError(f"{path}.{key}: unknown key for forecaster {name!r}; allowed: "
                            f"{', '.join(allowed + (['members'] if name == 'ensemble' else []))}")
    if name == "ensemble":
        members = params.pop("members", None) or ["seasonal_naive", "ets"]
        factories = [forecaster_factory(m, f"{path}.members[{i}]") for i, m in enumerate(members)]

        def make() -> Forecaster:
            return cls([f() for f in factories], **params)
    elif name == "auto":  # candidates built like an ensemble's members, each checked under its own key
        from agents.forecasting.auto import DEFAULT_CANDIDATES, DEFAULT_SHARED_UNIT_CANDIDATES
        candidates = params.pop("candidates", None) or list(DEFAULT_CANDIDATES)
        builders = _candidate_builders(candidates, params, f"{path}.candidates")
        unit_candidates = params.pop("shared_unit_candidates", None)
        unit_builders = _candidate_builders(list(DEFAULT_SHARED_UNIT_CANDIDATES) if unit_candidates is None
                                            else unit_candidates, params, f"{path}.shared_unit_candidates")

        def make() -> Forecaster:
            return cls(builders, shared_unit_candidates=unit_builders, **params)
    elif name == "conformal":
        base = params.pop("base", None) or "seasonal_naive"
        base_name = base if isinstance(base, str) else base.get("name") if isinstance(base, Mapping) else None
        if (base_name in FORECASTERS and "max_horizon" in inspect.signature(forecaster_class(base_name)).parameters
                and params.get("max_horizon") is not None):  # a base that needs it calibrates as far
            base = {"name": base} if isinstance(base, str) else dict(base)
            base["max_horizon"] = base.get("max_horizon") or params["max_horizon"]
        if not isinstance(base, (str, Mapping)):
            raise SpecError(f"{path}.base: {base!r} is not a forecaster config; allowed: a name or a mapping "
                            f"with name")
        make_base = forecaster_factory(base, f"{path}.base")

        def make() -> Forecaster:
            return cls(make_base, **params)
    else:
        def make() -> Forecaster:
            return cls(**params)
    try:
        make()
    except (TypeError, ValueError) as error:
        key = str(error).split(": ", 1)[-1].split(" ", 1)[0]  # "Class: key value is not allowed ..."
        raise SpecError(f"{path}.{key}: {error}" if key in params else f"{path}: {error}") from error
    return make
