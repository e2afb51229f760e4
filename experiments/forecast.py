"""Backtest forecasters on the twin's history or on a data file (rolling origins, horizons by frequency).

    python -m experiments.forecast forecaster=lstm data=twin
    python -m experiments.forecast forecaster=ets data.path=sales.csv
    python -m experiments.forecast -m forecaster=lstm forecaster.hidden=32,64 compare=[]   # a grid search
    python -m experiments.forecast forecaster=lstm data.covariates=[] output.save_forecaster=true

The config is checked before any work (one `config error:` line naming the key,
exit status 2; a bad data file likewise). Writes config.yaml, scores.csv,
scores.md, cv.csv (every forecast as Nixtla's cross-validation frame, which
utilsforecast.evaluation.evaluate reads), forecast_vs_actual.png and
error_by_horizon.png into the run directory (with forecaster=auto also
auto_choices.csv: per backtest origin and series, the candidate chosen and every
candidate's validation score, in the `metric` column's measure), prints the table,
and returns the objective (for sweepers). When `compare` is not empty it also writes paired.csv and paired.md
(agents.forecasting.paired): per horizon, the subject's MASE over each compared
forecaster's and over the best single one's, with a 95% CI by a paired bootstrap
over cutoffs, and logs the best-single line per horizon.

With `output.save_forecaster=true` it then fits `forecaster` on the whole
panel (after `data.max_series` and `data.holdout`) and saves it into
`forecaster/` of the run directory (agents.forecasting.saved: a manifest, and
the fitted model for gradient boosting, an ONNX network for the LSTM), for a
service to forecast from the demand history of a request. `data.covariates`
keeps only the covariates named (`[]`: none, as an ERP history carries none).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import hydra
import pandas as pd
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf

import scenarios
from agents.forecasting.backtest import METRICS, BacktestPlan, backtest
from agents.forecasting.base import Forecaster, SeriesPanel
from agents.forecasting.data import DataError, load_panel, panel_from_twin
from agents.forecasting.datasets import is_bundled
from agents.forecasting.factory import FORECASTERS, forecaster_factory
from agents.forecasting.paired import BEST_SINGLE, MIN_CUTOFFS, paired_rows
from agents.forecasting.saved import check_savable, save_forecaster
from experiments.forecast_report import (
    format_paired,
    format_scores,
    plot_error_by_horizon,
    plot_forecasts,
    write_paired,
    write_scores,
)
from experiments.startup import config_errors, plain, run_checked, run_dir, stop
from twin.config import ConfigReader, SpecError
from twin.spec import network_from_dict

log = logging.getLogger("experiments.forecast")


@dataclass(frozen=True)
class ForecastConfig:
    """A checked backtest: the panel, the forecasters (factories by label) and the plan."""

    panel: SeriesPanel
    source: str
    forecasters: dict[str, Callable[[], Forecaster]]
    subject: str
    plan: BacktestPlan
    objective_metric: str
    objective_horizon: int
    plot_series: int
    save_forecaster: bool = False


def load_forecast_config(data: Mapping[str, Any]) -> ForecastConfig:
    """Check every key (SpecError naming it) and load the data (DataError naming the problem)."""
    r = ConfigReader(data, "")
    seed = r.integer("seed", 0, low=0)
    spec = dict(r.raw("forecaster") or {})
    spec.setdefault("name", "lstm")
    if spec["name"] in FORECASTERS and "seed" in _keywords(spec["name"]) and "seed" not in spec:
        spec["seed"] = seed
    subject = spec["name"]
    forecaster_factory(_with_horizon(spec, 60), "forecaster")  # checked now, built once the horizons are known
    compare = r.sequence("compare", ())
    for i, entry in enumerate(compare):
        forecaster_factory(_with_horizon(entry, 60), f"compare[{i}]")

    d = ConfigReader(r.raw("data"), "data")
    path = d.raw("path")
    days = d.integer("days", 730, low=30, high=36500) if d.raw("days") is not None else 730
    data_seed = d.integer("seed", 0, low=0)
    max_series = d.integer("max_series", 0, low=1) if d.raw("max_series") is not None else None
    holdout = d.integer("holdout", 0, low=0)
    keep = d.sequence("covariates") if d.raw("covariates") is not None else None
    shared_unit = d.flag("shared_unit", False) if d.raw("shared_unit") is not None else None
    d.done()
    network_data, scenario_data = r.raw("network"), dict(r.raw("scenario") or {})

    b = ConfigReader(r.raw("backtest"), "backtest")
    horizons = b.sequence("horizons", ()) or None
    if horizons is not None and not all(isinstance(h, int) and h >= 1 for h in horizons):
        raise SpecError(f"backtest.horizons: {list(horizons)} is not allowed; allowed: integers >= 1")
    origins = b.integer("origins", 3, low=1, high=100)
    step = b.integer("step", 0, low=1) if b.raw("step") is not None else None
    b.done()
    o = ConfigReader(r.raw("objective"), "objective")
    metric = o.choice("metric", METRICS, "mae")
    objective_horizon = o.integer("horizon", 0, low=1) if o.raw("horizon") is not None else None
    o.done()
    p = ConfigReader(r.raw("plots"), "plots")
    plot_series = p.integer("series", 4, low=0, high=50)
    p.done()
    out = ConfigReader(r.raw("output"), "output")
    save = out.flag("save_forecaster", False)
    out.done()
    r.done()
    if save:
        check_savable(subject, "forecaster.name")

    if path is not None:
        source = str(path) if is_bundled(path) else to_absolute_path(str(path))
        panel = load_panel(source)
    else:
        network = network_from_dict(network_data, "network")
        name = scenario_data.pop("name", "baseline")
        scenario = scenarios.build(name, network, days, **scenario_data)
        source = f"twin {network.name} / {name}, {days} days, seed {data_seed}"
        panel = panel_from_twin(network, days, seed=data_seed, shocks=scenario.shocks)
    if shared_unit is not None:  # null: the source's own (the twin's units sold, also as a file: true; a file: false)
        panel = replace(panel, shared_unit=shared_unit)
    if max_series is not None and panel.n > max_series:
        panel = panel.select(slice(0, max_series))
    if keep is not None:
        panel = _keep_covariates(panel, keep)
    if holdout:
        if holdout >= panel.length - 8:
            raise SpecError(f"data.holdout: {holdout} leaves too little data ({panel.length} periods)")
        panel = panel.until(panel.length - holdout)
    try:
        plan = BacktestPlan.of(panel, horizons, origins, step)
    except ValueError as error:
        raise SpecError(str(error)) from error
    longest = plan.horizons[-1]
    factories = {subject: forecaster_factory(_with_horizon(spec, longest), "forecaster")}
    for i, entry in enumerate(compare):
        name = entry if isinstance(entry, str) else dict(entry).get("name")
        if name == "oracle" and panel.oracle_mean is None:
            log.info("compare: oracle dropped (the data carry no true mean)")
            continue
        if name != subject:
            factories[name] = forecaster_factory(_with_horizon(entry, longest), f"compare[{i}]")
    horizon = objective_horizon or plan.horizons[len(plan.horizons) // 2]
    if horizon not in plan.horizons:
        raise SpecError(f"objective.horizon: {horizon} is not allowed; allowed: one of {list(plan.horizons)}")
    return ForecastConfig(panel=panel, source=source, forecasters=factories, subject=subject, plan=plan,
                          objective_metric=metric, objective_horizon=horizon, plot_series=plot_series,
                          save_forecaster=save)


def _keep_covariates(panel: SeriesPanel, names: list) -> SeriesPanel:
    """`panel` with only the covariates `names`, in that order (SpecError naming data.covariates otherwise)."""
    for i, name in enumerate(names):
        if name not in panel.covariate_names:
            raise SpecError(f"data.covariates[{i}]: {name!r} is not a covariate of the data; allowed: "
                            f"{list(panel.covariate_names)}")
    index = [panel.covariate_names.index(name) for name in names]
    return replace(panel, covariates=panel.covariates[:, :, index], covariate_names=tuple(names))


def _with_horizon(spec: str | Mapping[str, Any], longest: int) -> str | dict:
    """`spec` with `max_horizon: null` (a forecaster that needs it: the LSTM) set to the longest horizon."""
    name = spec if isinstance(spec, str) else spec.get("name")
    if name not in FORECASTERS or "max_horizon" not in _keywords(name):  # an unknown name: the factory says so
        return spec
    spec = {"name": spec} if isinstance(spec, str) else dict(spec)
    if spec.get("max_horizon") is None:
        spec["max_horizon"] = longest
    return spec


def _keeping_auto(config: ForecastConfig) -> tuple[dict[str, Callable[[], Forecaster]], list]:
    """The forecasters, the subject's factory keeping every model it builds when the subject is auto."""
    if config.subject != "auto":
        return config.forecasters, []
    fitted: list = []

    def make() -> Forecaster:
        fitted.append(config.forecasters["auto"]())
        return fitted[-1]
    return {**config.forecasters, "auto": make}, fitted


def _keywords(name: str) -> list[str]:
    import inspect

    from agents.forecasting.factory import forecaster_class
    return list(inspect.signature(forecaster_class(name)).parameters)


@hydra.main(config_path="../conf", config_name="forecast", version_base="1.3")
def main(cfg: DictConfig) -> float:
    """Check the config and data, backtest, write and print the scores; return the objective."""
    resolved = plain(cfg)
    with config_errors():
        try:
            config = load_forecast_config(resolved)
        except DataError as error:
            stop(str(error), "data")
    panel, plan = config.panel, config.plan
    log.info("%s: %d series x %d periods (%s), horizons %s, origins %s; forecasters %s", config.source, panel.n,
             panel.length, panel.freq.name, list(plan.horizons), [str(panel.dates[o].date()) for o in plan.origins],
             list(config.forecasters))
    started = time.perf_counter()
    forecasters, fitted = _keeping_auto(config)
    result = backtest(panel, forecasters, plan)
    out = run_dir()
    out.mkdir(parents=True, exist_ok=True)
    if fitted:  # forecaster=auto: each origin's choice per series and the validation scores behind it
        pd.concat([model.choices_frame().assign(cutoff=panel.dates[origin - 1].date(), metric=model.fitted_metric)
                   for origin, model in zip(plan.origins, fitted)]).to_csv(out / "auto_choices.csv", index=False)
    (out / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(resolved)))
    rows = result.scores()
    write_scores(out / "scores.csv", rows, result)
    result.cv_frame().to_csv(out / "cv.csv", index=False)
    table = format_scores(rows, result, config.source)
    (out / "scores.md").write_text(table + "\n")
    paired = paired_rows(result, config.subject)
    if paired:  # the subject against each compared forecaster: MASE ratio with a bootstrap CI over cutoffs
        write_paired(out / "paired.csv", paired)
        (out / "paired.md").write_text(format_paired(paired, config.source) + "\n")
        for r in (r for r in paired if r["versus"] == BEST_SINGLE):
            ci = f"no CI (fewer than {MIN_CUTOFFS} cutoffs)" if r["ci_low"] is None else \
                f"95% CI {r['ci_low']:.3f} .. {r['ci_high']:.3f}"
            log.info("h=%d: MASE %s / best single (%s) = %.3f, %s over %d cutoffs: %s", r["horizon"], r["forecaster"],
                     r["compared"], r["ratio"], ci, r["cutoffs"], r["verdict"])
    plot_forecasts(result, out / "forecast_vs_actual.png", config.plot_series)
    plot_error_by_horizon(result, out / "error_by_horizon.png")
    print(table)
    if config.save_forecaster:
        started_fit = time.perf_counter()
        model = config.forecasters[config.subject]()
        model.fit(panel)
        saved = save_forecaster(model, config.subject, panel, out / "forecaster")
        log.info("%s fitted on the whole panel (%d series x %d periods) and saved in %s (%.1f s)", config.subject,
                 panel.n, panel.length, saved, time.perf_counter() - started_fit)
    objective = next(r[config.objective_metric] for r in rows
                     if r["forecaster"] == config.subject and r["horizon"] == config.objective_horizon)
    log.info("done in %.1f s; objective %s@%d = %.4f; outputs in %s", time.perf_counter() - started,
             config.objective_metric, config.objective_horizon, objective, out)
    return float(objective)


if __name__ == "__main__":
    run_checked(main)
