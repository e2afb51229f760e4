"""Live forecasts during a twin run: expected demand per node over the next P days, and its spread.

A node's demand is its customers' demand: a store's own customers, a DC's the sum
of the stores below it (DemandStats does the same for static levels).

Two kinds answer: the oracle, which reads the twin's demand model, and
`Refitting`, which wraps any panel forecaster (seasonal naive, ETS, the LSTM...)
and refits it on a schedule from the demand observed so far. At the decision
point of day d the twin has drawn demand for days before d only (the day contract,
docs/architecture.md), and `Refitting` reads exactly those: tests/agents/test_forecast_live.py
proves that no later demand reaches it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd

from agents.forecasting.base import Forecast, Forecaster, SeriesPanel
from agents.forecasting.data import TWIN_START, panel_from_twin, twin_covariates
from twin.config import SpecError
from twin.coverage import protection_periods
from twin.demand import draw_variance
from twin.engine import Engine
from twin.snapshot import Snapshot

log = logging.getLogger("agents.forecasting.live")

FORECAST_EVERY = 7  # days between the forecasts of a forecaster fitted once (Refitting with refit_every=0)
Z_80 = 1.2815515655446004  # the standard normal's 90% quantile: (q90 - q10) / (2 Z_80) is a normal's sd


class LiveForecaster(Protocol):
    """Attached to one engine run; answers forecasts at its decision points from what it may see."""

    def attach(self, engine: Engine) -> None:
        """Start forecasting for `engine` (a fresh run)."""

    def over(self, day: int, periods: np.ndarray) -> np.ndarray:
        """Expected demand (nodes, SKUs) over days [day, day + periods[node]) for each node."""

    def spread(self, day: int, periods: np.ndarray) -> np.ndarray:
        """Standard deviation (nodes, SKUs) of demand over the same days (days and stores independent)."""


@dataclass(frozen=True)
class DemandForecast:
    """Forecast demand per (node, SKU) over each node's protection period (lead time + review), from one day."""

    mean: np.ndarray                  # (nodes, SKUs)
    spread: np.ndarray | None = None  # (nodes, SKUs) its standard deviation, where asked for


def forecast_over_protection(snapshot: Snapshot, forecaster: LiveForecaster, review_period: int,
                             with_spread: bool = False) -> DemandForecast:
    """`forecaster`'s demand from the snapshot's day over each node's protection period at today's lead time.

    `with_spread` also asks for its standard deviation over those days (for SafetyFactor actions).
    """
    periods = protection_periods(snapshot.expected_lead_time, review_period)
    return DemandForecast(mean=forecaster.over(snapshot.day, periods),
                          spread=forecaster.spread(snapshot.day, periods) if with_spread else None)


def _window_sums(cumulative: np.ndarray, day: int, periods: np.ndarray, per_day_after: np.ndarray) -> np.ndarray:
    """Sums over [day, day + periods[node]) from running sums (T + 1, nodes, SKUs); days past T count
    `per_day_after` (nodes, SKUs) each."""
    days = cumulative.shape[0] - 1  # T, the days of the run
    periods = np.asarray(periods, dtype=np.int64)
    end = np.minimum(day + periods, days)
    nodes = np.arange(cumulative.shape[1])
    known = cumulative[end, nodes] - cumulative[min(day, days), nodes]
    beyond = (day + periods - np.maximum(end, day))[:, None]  # from `day` on when it is past T too
    return known + beyond * per_day_after


def daily_sd(forecast: Forecast) -> np.ndarray:
    """(n, h) standard deviation of each series' demand on each day: the 10-90% quantile spread over 2 Z_80 (a
    normal's), or sqrt(mean) (Poisson-like) for a forecast without both of those levels."""
    if 0.1 in forecast.levels and 0.9 in forecast.levels:
        return (forecast.quantile(0.9) - forecast.quantile(0.1)) / (2 * Z_80)
    return np.sqrt(np.maximum(forecast.mean, 0.0))


def over_periods(forecast: Forecast, periods: np.ndarray, start: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Demand of each series summed over its protection period: days [start, start + periods[i]) of a daily
    `forecast` (day 0 its first day), as (mean (n,), sd (n,)); variances from `daily_sd`, days independent.

    Days past the forecast's horizon count as its last day (mean and variance), as `Refitting` carries the
    path on; a period of 0 days sums to 0. Pure: it reads only its arguments.
    """
    n, h = forecast.mean.shape
    periods = np.asarray(periods)
    if periods.shape != (n,) or not np.issubdtype(periods.dtype, np.integer) or (periods < 0).any():
        raise ValueError(f"over_periods: periods {periods.shape} {periods.dtype}; allowed: ({n},) integers >= 0, "
                         f"one per series")
    if start < 0 or h < 1:
        raise ValueError(f"over_periods: start {start} with a horizon of {h} days; allowed: start >= 0, horizon >= 1")
    zero = np.zeros((1, n, 1))
    mean = forecast.mean.T[:, :, None]            # (h, n, 1): the days as _window_sums reads them
    var = (daily_sd(forecast) ** 2).T[:, :, None]
    sums = _window_sums(np.concatenate([zero, mean.cumsum(axis=0)]), start, periods, mean[-1])[:, 0]
    variance = _window_sums(np.concatenate([zero, var.cumsum(axis=0)]), start, periods, var[-1])[:, 0]
    return sums, np.sqrt(np.maximum(variance, 0.0))


class OracleForecaster:
    """The true expected demand of the twin's demand model (calendar, promotions, weather; shocks not foreseen).

    It knows the mean, never the draws, so it is the best forecast a model of
    the mean could make: the reference the learned forecasters are measured
    against, and the default input to the agents' observations. Its spread is
    the demand law's own variance around that mean.
    """

    name = "oracle"

    def __init__(self) -> None:
        self._cumulative: np.ndarray | None = None  # (days + 1, nodes, SKUs) running sum of expected demand

    def attach(self, engine: Engine) -> None:
        model, topo = engine.demand_model, engine.topology
        days, n_nodes, n_sku = engine.horizon, engine.n_nodes, engine.n_sku
        daily = np.zeros((days, n_nodes, n_sku), dtype=np.float32)
        variance = np.zeros_like(daily)
        for i, name in enumerate(topo.names):
            if topo.is_store[i]:
                # the store's expected demand counts at the store and at every node above it
                mean = model.mean_matrix(name)
                daily[:, topo.descendants[:, i], :] += mean[:, None, :].astype(np.float32)
                variance[:, topo.descendants[:, i], :] += draw_variance(mean, engine.network.skus)[:, None, :]
        zero = np.zeros((1, n_nodes, n_sku), np.float32)
        self._cumulative = np.concatenate([zero, daily.cumsum(axis=0)])
        self._cumulative_variance = np.concatenate([zero, variance.cumsum(axis=0)])
        self._daily_mean = daily.mean(axis=0)
        self._daily_variance = variance.mean(axis=0)

    def over(self, day: int, periods: np.ndarray) -> np.ndarray:
        if self._cumulative is None:
            raise RuntimeError("OracleForecaster.over: call attach(engine) first")
        # days past the end of the run are forecast at the run's average (the model has no later days)
        return _window_sums(self._cumulative, day, periods, self._daily_mean)

    def spread(self, day: int, periods: np.ndarray) -> np.ndarray:
        if self._cumulative is None:
            raise RuntimeError("OracleForecaster.spread: call attach(engine) first")
        return np.sqrt(_window_sums(self._cumulative_variance, day, periods, self._daily_variance))


class Refitting:
    """Any panel forecaster made live: refitted every `refit_every` days on the store demand observed so far.

    `refit_every=0` fits once, on the year before the run, and then re-forecasts
    every `FORECAST_EVERY` (7) days from the demand observed so far with the fitted
    model (`predict_from`: no training), as a model trained offline and deployed
    does. That is far cheaper (one fit per run, not one a week), which is what
    makes training RL agents on a learned forecast affordable; only forecasters
    with `predict_from` (gradient boosting, the LSTM) can do it.

    Series are (store, SKU) pairs. Their history is `history_days` of the year
    before the run (the same network and calendar, its own seed and no shocks:
    the sales a retailer has when it starts) followed by the run's demand up to
    yesterday. Promotions, prices, holidays and weather are known covariates
    (the twin's plan), shocks are not. Each refit forecasts `refit_every` days
    plus the longest protection period, and each review epoch reads its days
    from that path. DCs get the sum over the stores below them, variances
    added as if stores and days were independent.
    """

    def __init__(self, make: Callable[[], Forecaster], name: str, refit_every: int = 7, history_days: int = 365,
                 max_periods: int = 30, key: str = "refit_every") -> None:
        if refit_every < 0:
            raise SpecError(f"{key}: {refit_every} is not allowed; allowed: >= 1 day, or 0 (fit once, before "
                            f"the run)")
        if refit_every == 0 and not hasattr(make(), "predict_from"):
            raise SpecError(f"{key}: 0 (fit once) needs a forecaster that forecasts from new demand without "
                            f"refitting; {name!r} cannot; allowed: gradient_boosting, lstm, or a refit every "
                            f">= 1 day")
        if history_days < 365 or history_days % 365:
            raise SpecError(f"history_days: {history_days} is not allowed; allowed: a whole number of years "
                            f"(365, 730, ...), so the calendar lines up")
        self.make, self.name = make, name
        self.refit_every, self.history_days, self.max_periods = refit_every, history_days, max_periods
        # a refit forecasts too; with refit_every=0 the fitted model forecasts every FORECAST_EVERY days
        self.forecast_every = refit_every or FORECAST_EVERY
        self.forecaster: Forecaster | None = None
        self.fit_seconds: list[float] = []
        self.fit_days: list[int] = []  # the days a refit happened, and how many days of the run it saw (tests)

    def attach(self, engine: Engine) -> None:
        if engine.first_day > 0:
            raise SpecError(f"forecaster {self.name!r}: the run starts from a snapshot of day {engine.first_day}, "
                            f"and a learned forecaster needs the demand observed before it, which a snapshot does "
                            f"not hold; allowed: the oracle forecaster, or a run from day 0")
        self.engine = engine
        self.log = engine.record_demand()
        topo, model = engine.topology, engine.demand_model
        self.stores = np.flatnonzero(topo.is_store)
        past = panel_from_twin(engine.network, self.history_days, seed=engine.seed + 7919)
        self.past_values = past.values  # (stores * SKUs, history_days), rows store-major like below
        # covariates over the past year and the whole run: the past panel's, then the run's plan
        names = [topo.names[i] for i in self.stores]
        run = np.stack(list(twin_covariates(model, engine.network, names).values()), axis=-1).astype(np.float32)
        self.covariates = np.concatenate([past.covariates, run], axis=1)
        self.template = past
        self.dates = pd.date_range(pd.Timestamp(TWIN_START) - pd.Timedelta(days=self.history_days),
                                   periods=self.history_days + engine.horizon, freq="D")
        self.descendants = topo.descendants[:, self.stores].astype(np.float32)  # (nodes, stores)
        self.path_mean: np.ndarray | None = None
        self.forecaster = None
        self.fitted_day = -1      # the day of the last fit
        self.forecast_day = -1    # the day the current forecast path starts
        self.fit_seconds, self.fit_days = [], []

    def history(self, day: int, future: int) -> SeriesPanel:
        """What the forecaster may see at the decision point of `day`: demand of the days before it."""
        observed = self.log[:day, self.stores, :]  # (day, stores, SKUs): days < day only
        run_values = np.moveaxis(observed, 0, -1).reshape(len(self.stores) * self.engine.n_sku, day)
        values = np.concatenate([self.past_values, run_values], axis=1)
        t = values.shape[1]
        stop = min(t + future, self.covariates.shape[1])
        dates = self.dates[:stop]
        return SeriesPanel(ids=self.template.ids, dates=dates, values=values, freq=self.template.freq,
                           covariates=self.covariates[:, :stop], covariate_names=self.template.covariate_names,
                           categories=self.template.categories, shared_unit=self.template.shared_unit)

    def _refit(self, day: int, fit: bool) -> None:
        """Forecast the path from `day`: fitted anew on the history so far (`fit`), or by the fitted model."""
        ahead = self.forecast_every + self.max_periods
        history = self.history(day, future=ahead)
        started = time.perf_counter()
        # one forecaster per run, refitted in place: a model that can warm-start (the LSTM) continues training
        forecaster = self.forecaster if self.forecaster is not None else self.make()
        # not past the run's end (no covariates there) nor past what the model can forecast
        ahead = min(ahead, history.future, getattr(forecaster, "max_horizon", ahead))
        if fit:
            forecaster.fit(history)
            forecast = forecaster.predict(ahead)
            self.fit_seconds.append(time.perf_counter() - started)
            self.fit_days.append(day)
            self.fitted_day = day
        else:
            forecast = forecaster.predict_from(history, ahead)
        self.forecaster = forecaster
        n_store, n_sku = len(self.stores), self.engine.n_sku
        mean = forecast.mean.reshape(n_store, n_sku, ahead)
        sd = daily_sd(forecast).reshape(n_store, n_sku, ahead)
        # per node: (nodes, stores) x (stores, SKUs, days) -> (days, nodes, SKUs), then running sums
        node_mean = np.einsum("ns,skd->dnk", self.descendants, mean)
        node_var = np.einsum("ns,skd->dnk", self.descendants, sd**2)
        zero = np.zeros((1, *node_mean.shape[1:]))
        self.path_mean = np.concatenate([zero, node_mean.cumsum(axis=0)])
        self.path_var = np.concatenate([zero, node_var.cumsum(axis=0)])
        self.forecast_day = day
        if fit and (len(self.fit_days) == 1 or len(self.fit_days) % 10 == 0):
            log.info("%s: refit %d on day %d (%d series, %.2f s)", self.name, len(self.fit_days), day,
                     history.n, self.fit_seconds[-1])

    def _path(self, day: int) -> int:
        if day != self.engine.day:
            raise SpecError(f"forecaster {self.name!r}: asked for day {day}, but it forecasts from the demand its "
                            f"run has seen, at that run's decision point (day {self.engine.day}); allowed: the "
                            f"attached run's day")
        fit_due = self.fitted_day < 0 or (self.refit_every > 0 and day - self.fitted_day >= self.refit_every)
        due = fit_due or day - self.forecast_day >= self.forecast_every or day < self.forecast_day
        # the run's end (the env's last observation, no decision follows) has no day left to forecast: a refit
        # there would ask for 0 days, so the last path carries on (its last day's level, as past its end)
        if due and (self.forecast_day < 0 or day < self.engine.horizon):
            self._refit(day, fit=fit_due or day < self.forecast_day)
        return day - self.forecast_day

    def over(self, day: int, periods: np.ndarray) -> np.ndarray:
        offset = self._path(day)
        # past the forecast path (a lead time stretched by a shock), the last day's level carries on
        last_day = self.path_mean[-1] - self.path_mean[-2]
        return _window_sums(self.path_mean, offset, periods, last_day)

    def spread(self, day: int, periods: np.ndarray) -> np.ndarray:
        offset = self._path(day)
        last_day = self.path_var[-1] - self.path_var[-2]
        return np.sqrt(np.maximum(_window_sums(self.path_var, offset, periods, last_day), 0.0))


def forecaster_from_name(name: str, refit_every: int = 7, key: str = "env.forecast_refit_every") -> LiveForecaster:
    """A fresh live forecaster by name: `oracle`, or any registered panel forecaster with its default settings,
    refitted every `refit_every` days (0: fitted once before the run, re-forecast weekly; `Refitting`);
    SpecError naming `forecaster` if unknown, `key` if the schedule is not allowed."""
    from agents.forecasting.factory import FORECASTERS, forecaster_factory

    if name == "oracle":
        return OracleForecaster()
    FORECASTERS.check(name, "env.forecaster")
    return Refitting(forecaster_factory(name, "env.forecaster"), name, refit_every=refit_every, key=key)
