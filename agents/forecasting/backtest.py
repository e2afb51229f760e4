"""Rolling-origin backtests: refit at each origin on the history before it, forecast the periods after it.

Origins are `step` periods apart and the last one leaves exactly the longest
horizon of data after it, so every forecast is scored on real values. Each
horizon h is scored on the first h periods after every origin (MAE, RMSE, MAPE,
sMAPE, MASE, pinball loss, 10-90% interval coverage); the error by step ahead
is kept for plots. Forecasters see only `panel.until(origin, future=H)`.

`BacktestResult.cv_frame()` is the same forecasts as Nixtla's cross-validation
frame (unique_id, ds, cutoff, y, one column per forecaster, its quantiles as
`<name>-lo-80`, `<name>-median`, `<name>-hi-80`), which
`utilsforecast.evaluation.evaluate` reads.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from agents.forecasting import metrics
from agents.forecasting.base import Forecaster, SeriesPanel

log = logging.getLogger("agents.forecasting.backtest")

DEFAULT_HORIZONS = {"hourly": (24, 168), "daily": (7, 30, 60), "weekly": (4, 13, 26), "monthly": (3, 6, 12),
                    "quarterly": (2, 4, 8), "yearly": (1, 3, 5)}
METRICS = ("mae", "rmse", "mape", "smape", "mase", "quantile_loss", "coverage_80")


@dataclass(frozen=True)
class BacktestPlan:
    """Where the origins fall: `origins` of them, `step` periods apart, the last leaving max(horizons) periods."""

    horizons: tuple[int, ...]
    origins: tuple[int, ...]

    @classmethod
    def of(cls, panel: SeriesPanel, horizons: Sequence[int] | None = None, n_origins: int = 3,
           step: int | None = None, min_train: int | None = None) -> BacktestPlan:
        """A plan for `panel`; horizons default by frequency, step defaults to the longest horizon.

        ValueError naming the setting when the panel is too short for it.
        """
        horizons = tuple(sorted(set(horizons or DEFAULT_HORIZONS[panel.freq.name])))
        if not horizons or horizons[0] < 1:
            raise ValueError(f"backtest.horizons: {horizons} is not allowed; allowed: integers >= 1")
        longest = horizons[-1]
        step = step or longest
        min_train = min_train or max(2 * panel.freq.season_length, 8)
        last = panel.length - longest
        origins = tuple(last - step * i for i in reversed(range(n_origins)))
        if origins[0] < min_train:
            raise ValueError(f"backtest: {panel.length} periods are too few for {n_origins} origins {step} apart, "
                             f"horizon {longest} and at least {min_train} periods of history; allowed: fewer "
                             f"backtest.origins, a smaller backtest.step or shorter backtest.horizons")
        return cls(horizons=horizons, origins=origins)


@dataclass(frozen=True)
class ForecasterRun:
    """One forecaster's forecasts at every origin: mean and quantiles (origins, n, H[, levels]), and timings."""

    name: str
    mean: np.ndarray
    quantiles: np.ndarray
    levels: tuple[float, ...]
    fit_seconds: float
    predict_seconds: float


@dataclass(frozen=True)
class BacktestResult:
    """Forecasts of every forecaster, the actuals they are scored on, and the plan."""

    plan: BacktestPlan
    panel: SeriesPanel
    runs: dict[str, ForecasterRun]
    actual: np.ndarray  # (origins, n, H)
    scale: np.ndarray   # (origins, n) MASE scale: in-sample seasonal naive MAE before each origin

    def scores(self) -> list[dict]:
        """One row per (forecaster, horizon): every metric over the first h periods after every origin."""
        rows = []
        for name, run in self.runs.items():
            for h in self.plan.horizons:
                rows.append({"forecaster": name, "horizon": h, **score(self.actual[..., :h], run.mean[..., :h],
                                                                        run.quantiles[:, :, :h], run.levels,
                                                                        self.scale)})
        oracle = {r["horizon"]: r["mae"] for r in rows if r["forecaster"] == "oracle"}
        for r in rows:  # error relative to the oracle, where the data carry the true mean
            r["mae_vs_oracle"] = r["mae"] / oracle[r["horizon"]] if oracle.get(r["horizon"]) else float("nan")
        return rows

    def cv_frame(self) -> pd.DataFrame:
        """Nixtla's cross-validation frame: one row per (series, origin, period after it) with unique_id, ds,
        cutoff (the last date of the history), y and each forecaster's mean and quantile columns.

        Rows run by series, then origin, then step ahead; a quantile level that a forecaster lacks is NaN.
        """
        plan, panel = self.plan, self.panel
        n_origins, n, longest = self.actual.shape
        steps = np.arange(longest)
        frame = pd.DataFrame({
            "unique_id": np.repeat(np.asarray(panel.ids, dtype=object), n_origins * longest),
            "ds": np.tile(np.concatenate([panel.dates[o + steps] for o in plan.origins]), n),
            "cutoff": np.tile(np.repeat(panel.dates[[o - 1 for o in plan.origins]], longest), n),
            "y": self.actual.transpose(1, 0, 2).reshape(-1)})
        columns = {}
        for name, run in self.runs.items():
            columns[name] = run.mean.transpose(1, 0, 2).reshape(-1)
            for i, q in enumerate(run.levels):
                columns[quantile_column(name, q)] = run.quantiles[..., i].transpose(1, 0, 2).reshape(-1)
        return pd.concat([frame, pd.DataFrame(columns)], axis=1)

    def scaled_errors(self, name: str) -> np.ndarray:
        """(origins, n, H) absolute errors of forecaster `name` over each series' MASE scale at that origin:
        MASE at horizon h is the mean of the finite ones of `[..., :h]` (agents.forecasting.paired)."""
        longest = self.actual.shape[-1]  # as `score` reshapes for metrics.mase: one row per (origin, series)
        return metrics.scaled_errors(self.actual.reshape(-1, longest), self.runs[name].mean.reshape(-1, longest),
                                     self.scale.reshape(-1)).reshape(self.actual.shape)

    def mae_by_step(self) -> dict[str, np.ndarray]:
        """(H,) mean absolute error at each step ahead, per forecaster."""
        return {name: np.nanmean(np.abs(self.actual - run.mean), axis=(0, 1)) for name, run in self.runs.items()}


def quantile_column(model: str, q: float) -> str:
    """Nixtla's name of quantile `q` of `model`: `<model>-lo-80` for 0.1, `<model>-hi-80` for 0.9 (the ends of
    the central 80% interval), `<model>-median` for 0.5."""
    if np.isclose(q, 0.5):
        return f"{model}-median"
    level = round(abs(2 * q - 1) * 100, 6)
    return f"{model}-{'lo' if q < 0.5 else 'hi'}-{int(level) if level == int(level) else level:g}"


def score(actual: np.ndarray, mean: np.ndarray, quantiles: np.ndarray, levels: tuple[float, ...],
          scale: np.ndarray) -> dict[str, float]:
    """Every metric of forecasts (origins, n, h) against actuals; `scale` (origins, n) for MASE."""
    row = {"mae": metrics.mae(actual, mean), "rmse": metrics.rmse(actual, mean), "mape": metrics.mape(actual, mean),
           "smape": metrics.smape(actual, mean),
           "mase": metrics.mase(actual.reshape(-1, actual.shape[-1]), mean.reshape(-1, mean.shape[-1]),
                                scale.reshape(-1)),
           "quantile_loss": metrics.quantile_loss(actual, quantiles, levels)}
    if 0.1 in levels and 0.9 in levels:
        row["coverage_80"] = metrics.coverage(actual, quantiles[..., levels.index(0.1)],
                                              quantiles[..., levels.index(0.9)])
    else:
        row["coverage_80"] = float("nan")
    return row


def backtest(panel: SeriesPanel, forecasters: dict[str, Callable[[], Forecaster]],
             plan: BacktestPlan) -> BacktestResult:
    """Fit each forecaster (a fresh one from its factory at every origin) and forecast; log progress."""
    longest = plan.horizons[-1]
    actual = np.stack([panel.values[:, o: o + longest] for o in plan.origins])
    season = panel.freq.season_length
    scale = np.stack([metrics.naive_scale(panel.values[:, :o], season) for o in plan.origins])
    runs = {}
    for name, make in forecasters.items():
        means, quantiles, fit_s, predict_s, levels = [], [], 0.0, 0.0, ()
        for i, origin in enumerate(plan.origins):
            forecaster = make()
            history = panel.until(origin, future=longest)
            started = time.perf_counter()
            forecaster.fit(history)
            fitted = time.perf_counter()
            forecast = forecaster.predict(longest)
            done = time.perf_counter()
            fit_s, predict_s = fit_s + fitted - started, predict_s + done - fitted
            means.append(forecast.mean)
            quantiles.append(forecast.quantiles)
            levels = forecast.levels
            log.info("%s: origin %d/%d (%s): fit %.1f s, predict %.2f s", name, i + 1, len(plan.origins),
                     panel.dates[origin].date(), fitted - started, done - fitted)
        runs[name] = ForecasterRun(name=name, mean=np.stack(means), quantiles=np.stack(quantiles), levels=levels,
                                   fit_seconds=fit_s / len(plan.origins), predict_seconds=predict_s / len(plan.origins))
    return BacktestResult(plan=plan, panel=panel, runs=runs, actual=actual, scale=scale)
